// Fuzz target: npdl::io::read_idx (and the images/labels views) on arbitrary
// bytes. The first byte picks how the rest reaches the reader:
//   even: gzip-compressed here first, so that the fuzzer explores the IDX
//         header and data (the reader only accepts gzip files);
//   odd:  written as they are, so that it explores the gzip layer: bad
//         magic, corrupt or cut streams, plain (uncompressed) IDX files.
// The second byte, mod 4, is the expected rank (0: any).
// Outcome: an array whose data size matches its dimensions, or an npdl::Error.
#include <zlib.h>

#include <cstdlib>
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "io/idx.hpp"
#include "tensor/error.hpp"

namespace {

std::vector<std::uint8_t> gzip(const std::uint8_t* data, std::size_t size) {
  z_stream z{};
  // 15 + 16: a gzip header and trailer, as the .gz files of the data sets.
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    std::abort();
  }
  std::vector<std::uint8_t> out(deflateBound(&z, static_cast<uLong>(size)) + 32);
  z.next_in = const_cast<Bytef*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool compress_here = data[0] % 2 == 0;
  const int expected_rank = data[1] % 4;
  data += 2;
  size -= 2;
  std::string path;
  if (compress_here) {
    const std::vector<std::uint8_t> gz = gzip(data, size);
    path = npdl::fuzz::write_scratch("input.idx.gz", gz.data(), gz.size());
  } else {
    path = npdl::fuzz::write_scratch("input.idx.gz", data, size);
  }
  try {
    const npdl::io::IdxArray a = npdl::io::read_idx(path, expected_rank);
    if (expected_rank > 0 && static_cast<int>(a.dims.size()) != expected_rank) std::abort();
    if (static_cast<std::int64_t>(a.data.size()) != npdl::numel(a.dims)) std::abort();
    if (compress_here && a.data.size() > size) std::abort();  // never more data than given
  } catch (const npdl::Error&) {
  }
  // The typed views on the same file: images (rank 3) and labels (rank 1).
  try {
    const npdl::Tensor images = npdl::io::read_idx_images(path, npdl::DType::Float32);
    for (std::int64_t i = 0; i < images.size(); ++i) {
      const double v = images.at(i);
      if (!(v >= 0.0 && v <= 1.0)) std::abort();  // pixels scaled to [0, 1]
    }
  } catch (const npdl::Error&) {
  }
  try {
    const std::vector<int> labels = npdl::io::read_idx_labels(path);
    for (int label : labels) {
      if (label < 0 || label > 255) std::abort();
    }
  } catch (const npdl::Error&) {
  }
  return 0;
}
