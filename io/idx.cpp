#include "io/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <sstream>

namespace npdl::io {
namespace {

constexpr std::uint8_t kUnsignedByte = 0x08;
// Larger than any real IDX file; keeps a corrupt header from asking for
// terabytes.
constexpr std::uint64_t kMaxElements = std::uint64_t(1) << 32;

std::string hex(std::uint8_t b) {
  char s[5];
  std::snprintf(s, sizeof s, "0x%02x", b);
  return s;
}

/// The gzip stream of a file; the gzip magic is checked first because zlib
/// would otherwise read a plain file as "transparent" uncompressed data.
class GzipFile {
 public:
  explicit GzipFile(const std::string& path) : path_(path) {
    std::FILE* raw = std::fopen(path.c_str(), "rb");
    if (raw == nullptr) throw IOError("cannot open the IDX file " + path);
    unsigned char magic[2] = {0, 0};
    const std::size_t got = std::fread(magic, 1, 2, raw);
    std::fclose(raw);
    if (got != 2 || magic[0] != 0x1f || magic[1] != 0x8b) {
      throw IOError(
          path + ": not a gzip file: expected the gzip magic 0x1f 0x8b, got " +
          (got == 2 ? hex(magic[0]) + " " + hex(magic[1]) : std::to_string(got) + " bytes"));
    }
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) throw IOError("cannot open the IDX file " + path + " with zlib");
  }
  ~GzipFile() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzipFile(const GzipFile&) = delete;
  GzipFile& operator=(const GzipFile&) = delete;

  /// Reads up to n bytes; returns how many were read. A corrupt or cut
  /// stream is an IOError.
  std::size_t read(void* buffer, std::size_t n) {
    std::size_t total = 0;
    while (total < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - total, 1u << 30));
      const int got = gzread(file_, static_cast<char*>(buffer) + total, chunk);
      if (got < 0) fail();
      if (got == 0) break;
      total += static_cast<std::size_t>(got);
    }
    if (total < n) {
      int code = Z_OK;
      gzerror(file_, &code);
      if (code != Z_OK && code != Z_STREAM_END) fail();
    }
    return total;
  }

  /// Reads exactly n bytes of `what`.
  void read_exactly(void* buffer, std::size_t n, const std::string& what) {
    const std::size_t got = read(buffer, n);
    if (got != n) {
      throw IOError(path_ + ": truncated IDX file: expected " + std::to_string(n) + " bytes of " +
                    what + ", got " + std::to_string(got));
    }
  }

 private:
  [[noreturn]] void fail() {
    int code = Z_OK;
    const char* message = gzerror(file_, &code);
    throw IOError(path_ + ": corrupt or truncated gzip data (" +
                  std::string(message != nullptr ? message : "unknown zlib error") + ")");
  }

  std::string path_;
  gzFile file_ = nullptr;
};

std::uint32_t big_endian_u32(const unsigned char* b) {
  return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) |
         std::uint32_t(b[3]);
}

}  // namespace

IdxArray read_idx(const std::string& path, int expected_rank) {
  GzipFile in(path);
  unsigned char header[4];
  in.read_exactly(header, 4, "header");
  if (header[0] != 0 || header[1] != 0) {
    throw IOError(path + ": bad IDX magic: expected the first two bytes 0x00 0x00, got " +
                  hex(header[0]) + " " + hex(header[1]));
  }
  if (header[2] != kUnsignedByte) {
    throw IOError(path + ": IDX data type " + hex(header[2]) + ", expected " + hex(kUnsignedByte) +
                  " (unsigned byte)");
  }
  const int rank = header[3];
  if (rank < 1 || (expected_rank > 0 && rank != expected_rank)) {
    throw IOError(path + ": IDX rank " + std::to_string(rank) + ", expected " +
                  (expected_rank > 0 ? std::to_string(expected_rank) : std::string("at least 1")));
  }
  IdxArray out;
  std::uint64_t count = 1, nonzero = 1;
  for (int d = 0; d < rank; ++d) {
    unsigned char b[4];
    in.read_exactly(b, 4, "dimension " + std::to_string(d));
    const std::uint32_t dim = big_endian_u32(b);
    out.dims.push_back(dim);
    count *= dim;
    // A zero size makes the count 0, but the other sizes are still
    // multiplied later (rows x columns): their product must stay bounded.
    nonzero *= std::max<std::uint64_t>(dim, 1);
    if (nonzero > kMaxElements) {
      throw IOError(path + ": IDX dimensions " + to_string(out.dims) + "... exceed " +
                    std::to_string(kMaxElements) + " elements; the header is corrupt");
    }
  }
  // The header's count is a claim: memory grows with the data that really
  // arrives, so a short file cannot make the reader allocate gigabytes.
  constexpr std::uint64_t kReadChunk = std::uint64_t(1) << 22;
  while (out.data.size() < count) {
    const std::size_t have = out.data.size();
    const std::size_t want = static_cast<std::size_t>(std::min(kReadChunk, count - have));
    out.data.resize(have + want);
    const std::size_t got = in.read(out.data.data() + have, want);
    if (got != want) {
      throw IOError(path + ": truncated IDX file: expected " + std::to_string(count) +
                    " bytes of data for dimensions " + to_string(out.dims) + ", got " +
                    std::to_string(have + got));
    }
  }
  unsigned char extra;
  if (in.read(&extra, 1) != 0) {
    throw IOError(path + ": IDX file holds more data than its dimensions " + to_string(out.dims) +
                  " say (" + std::to_string(count) + " bytes)");
  }
  return out;
}

Tensor read_idx_images(const std::string& path, DType dtype) {
  const IdxArray a = read_idx(path, 3);
  Tensor images({a.dims[0], a.dims[1] * a.dims[2]}, dtype);
  dispatch(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* out = images.data<T>();
    for (std::size_t i = 0; i < a.data.size(); ++i) out[i] = T(a.data[i]) / T(255);
  });
  return images;
}

std::vector<int> read_idx_labels(const std::string& path) {
  const IdxArray a = read_idx(path, 1);
  return {a.data.begin(), a.data.end()};
}

}  // namespace npdl::io
