// The .npy format (NumPy's NEP 1): a 6-byte magic string "\x93NUMPY", a
// major and a minor version byte, the header length (2 bytes little-endian
// in version 1.0, 4 bytes in 2.0 and 3.0), the header (a Python dict literal
// with the keys 'descr', 'fortran_order' and 'shape', padded with spaces and
// ending in '\n'), then the raw data.
#include "io/npy.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string_view>

namespace npdl::io {

// The data is read and written as the machine holds it, which must be the
// byte order the supported descriptors name.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "npdl's .npy reader and writer assume a little-endian machine");
#endif

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMagic{"\x93NUMPY", 6};
constexpr std::size_t kPreambleBytes = 8;   // magic + version bytes
constexpr std::size_t kDataAlignment = 64;  // NumPy aligns the data to 64 bytes
// The ranks npdl's files hold, read and written alike (npy.hpp).
constexpr std::size_t kMaxRank = 6;

std::string quoted(const std::string& path) { return "'" + path + "'"; }

// Bytes shown in a message: printable ones as they are, others as \xNN.
std::string printable(std::string_view bytes, std::size_t limit = 16) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (std::isprint(c) && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (bytes.size() > limit) out += "...";
  return out;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw IOError(quoted(path) + " " + what);
}

// ---------------------------------------------------------------------------
// dtype descriptors

struct Descriptor {
  char byte_order = '|';  // '<', '>', '=' or '|'
  char kind = '?';        // 'f', 'i', 'u', 'c', 'b', 'U', 'S', 'O', ...
  std::string size;       // bytes per element, as written
};

/// "32" for a size of "4" bytes. The size is the file's claim: a number
/// too long for an int (the fuzzer wrote '<f6666666666') or not a number is
/// named as written instead of overflowing (the bug std::atoi(...) * 8 had).
std::string size_in_bits(const std::string& size) {
  const bool digits =
      !size.empty() && size.size() <= 4 &&
      std::all_of(size.begin(), size.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
  return digits ? std::to_string(std::stoi(size) * 8) : " of " + size + " bytes";
}

std::optional<Descriptor> split_descriptor(const std::string& descr) {
  if (descr.empty()) return std::nullopt;
  Descriptor d;
  std::size_t i = 0;
  if (std::string_view("<>=|").find(descr[0]) != std::string_view::npos) d.byte_order = descr[i++];
  if (i >= descr.size()) return std::nullopt;
  d.kind = descr[i++];
  d.size = descr.substr(i);
  return d;
}

// NumPy's name for a descriptor, for messages: "int32 ('<i4')".
std::string describe_dtype(const std::string& descr) {
  struct Kind {
    char code;
    const char* name;
    bool sized;  // the name ends in the size in bits (float32)
  };
  static const Kind kKinds[] = {{'f', "float", true},
                                {'i', "int", true},
                                {'u', "uint", true},
                                {'c', "complex", true},
                                {'b', "bool", false},
                                {'U', "unicode string", false},
                                {'S', "byte string", false},
                                {'O', "Python object", false},
                                {'M', "datetime64", false},
                                {'m', "timedelta64", false},
                                {'V', "void (raw bytes)", false}};
  std::string name = "an unknown dtype";
  if (const std::optional<Descriptor> d = split_descriptor(descr)) {
    for (const Kind& k : kKinds) {
      if (k.code != d->kind) continue;
      name = k.name;
      if (k.sized) name += size_in_bits(d->size);
    }
    if (d->byte_order == '>') name = "big-endian " + name;
  }
  return name + " ('" + descr + "')";
}

// float32, float64, int32 or int64 stored little-endian ('=' is native,
// which is little-endian here; '|' "not applicable" is tolerated), among
// the ones `kind` takes.
std::optional<DType> supported_dtype(const std::string& descr, NpyKind kind) {
  const std::optional<Descriptor> d = split_descriptor(descr);
  if (!d || d->byte_order == '>') return std::nullopt;
  if (d->kind == 'f' && kind != NpyKind::Indices) {
    if (d->size == "4") return DType::Float32;
    if (d->size == "8") return DType::Float64;
  }
  if (d->kind == 'i' && kind != NpyKind::Floating) {
    if (d->size == "4") return DType::Int32;
    if (d->size == "8") return DType::Int64;
  }
  return std::nullopt;
}

std::string expected_dtypes(NpyKind kind) {
  switch (kind) {
    case NpyKind::Floating:
      return "float32 ('<f4') or float64 ('<f8')";
    case NpyKind::Indices:
      return "int32 ('<i4') or int64 ('<i8')";
    case NpyKind::Any:
      break;
  }
  return "float32 ('<f4'), float64 ('<f8'), int32 ('<i4') or int64 ('<i8')";
}

std::string descriptor_of(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return "<f4";
    case DType::Int32:
      return "<i4";
    case DType::Int64:
      return "<i8";
    case DType::Float64:
      break;
  }
  return "<f8";
}

// ---------------------------------------------------------------------------
// The header: a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }

struct HeaderFields {
  std::string descr;
  bool fortran_order = false;
  Shape shape;
};

class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  HeaderFields parse() {
    HeaderFields fields;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    expect('{', "'{' opening the header dict");
    while (!consume('}')) {
      const std::string key = parse_string("a quoted key or '}'");
      expect(':', "':' after the key '" + key + "'");
      if (key == "descr") {
        mark_seen(seen_descr, key);
        fields.descr = parse_descr();
      } else if (key == "fortran_order") {
        mark_seen(seen_order, key);
        fields.fortran_order = parse_bool();
      } else if (key == "shape") {
        mark_seen(seen_shape, key);
        fields.shape = parse_shape();
      } else {
        fail(path_, "has a malformed header: unexpected key '" + key +
                        "'; expected only 'descr', 'fortran_order' and 'shape'");
      }
      if (!consume(',')) {
        expect('}', "',' or '}' after the value of '" + key + "'");
        break;
      }
    }
    skip_space();
    if (!seen_descr || !seen_order || !seen_shape) {
      fail(path_,
           "has a malformed header: expected the keys 'descr', 'fortran_order' and 'shape', "
           "found " +
               std::string(seen_descr ? "" : "no 'descr' ") +
               (seen_order ? "" : "no 'fortran_order' ") + (seen_shape ? "" : "no 'shape' ") +
               "in " + printable(text_, 80));
    }
    return fields;
  }

 private:
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c, const std::string& what) {
    if (!consume(c)) malformed(what);
  }
  [[noreturn]] void malformed(const std::string& expected) const {
    const std::string found =
        pos_ < text_.size() ? "'" + printable(text_.substr(pos_), 24) + "'" : "the end of it";
    fail(path_, "has a malformed header: expected " + expected + " at character " +
                    std::to_string(pos_) + ", found " + found);
  }
  void mark_seen(bool& seen, const std::string& key) const {
    if (seen) fail(path_, "has a malformed header: the key '" + key + "' appears twice");
    seen = true;
  }

  std::string parse_string(const std::string& what) {
    skip_space();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) malformed(what);
    const char quote = text_[pos_++];
    const std::size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) malformed("a closing quote");
    std::string s(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }

  std::string parse_descr() {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == '[') {
      fail(path_, "holds a structured dtype (" + printable(text_.substr(pos_), 40) +
                      "); expected a plain dtype such as float32 ('<f4') or float64 ('<f8')");
    }
    return parse_string("a quoted dtype descriptor such as '<f4'");
  }

  bool parse_bool() {
    skip_space();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      const std::string_view w(word);
      if (text_.substr(pos_, w.size()) == w) {
        pos_ += w.size();
        return value;
      }
    }
    malformed("True or False");
  }

  // A tuple of non-negative integers: (), (5,), (2, 3). Python 2 wrote longs
  // as 3L, which NumPy still reads; so do we.
  Shape parse_shape() {
    Shape shape;
    expect('(', "a shape tuple such as (3, 4)");
    while (!consume(')')) {
      shape.push_back(parse_dimension());
      if (!consume(',')) {
        expect(')', "',' or ')' in the shape tuple");
        break;
      }
    }
    return shape;
  }

  std::int64_t parse_dimension() {
    skip_space();
    const std::size_t start = pos_;
    std::int64_t value = 0;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      const int digit = text_[pos_++] - '0';
      if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) {
        pos_ = start;
        malformed("a dimension that fits in 64 bits");
      }
      value = value * 10 + digit;
    }
    if (pos_ == start) malformed("a non-negative integer dimension");
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;
    return value;
  }

  std::string_view text_;
  const std::string& path_;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// Reading

std::uint32_t little_endian(const unsigned char* bytes, int count) {
  std::uint32_t v = 0;
  for (int i = count - 1; i >= 0; --i) v = (v << 8) | bytes[i];
  return v;
}

std::uintmax_t size_of_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(path, "is a directory; expected a .npy file");
  const std::uintmax_t bytes = fs::file_size(path, ec);
  if (ec) {
    throw IOError("cannot read " + quoted(path) + ": " + ec.message());
  }
  return bytes;
}

void read_exactly(std::ifstream& in, char* buffer, std::size_t bytes, const std::string& path,
                  const std::string& what) {
  in.read(buffer, static_cast<std::streamsize>(bytes));
  if (static_cast<std::size_t>(in.gcount()) != bytes) {
    fail(path, "is truncated: expected " + std::to_string(bytes) + " bytes of " + what +
                   ", found " + std::to_string(in.gcount()));
  }
}

// Bytes the data needs, or nothing for a shape no tensor can have: Tensor
// refuses non-zero sizes whose product, or whose bytes, pass int64 (a 0
// elsewhere in the shape does not save it), and the file is to blame.
std::optional<std::uint64_t> data_bytes(const Shape& shape, std::size_t itemsize) {
  std::int64_t nonzero = 1;
  bool empty = false;
  for (std::int64_t d : shape) {
    if (d == 0) {
      empty = true;
    } else if (__builtin_mul_overflow(nonzero, d, &nonzero)) {
      return std::nullopt;
    }
  }
  if (nonzero > std::numeric_limits<std::int64_t>::max() / std::int64_t(itemsize)) {
    return std::nullopt;
  }
  return empty ? 0 : std::uint64_t(nonzero) * itemsize;
}

std::string beyond_max_rank(std::size_t rank) {
  return "rank " + std::to_string(rank) + "; expected rank 0 to " + std::to_string(kMaxRank);
}

struct Preamble {
  int major = 0, minor = 0;
  std::size_t header_bytes = 0;
  std::size_t data_offset = 0;
};

Preamble read_preamble(std::ifstream& in, std::uintmax_t file_bytes, const std::string& path) {
  std::array<char, kPreambleBytes> start{};
  in.read(start.data(), start.size());
  const std::string_view found(start.data(), static_cast<std::size_t>(in.gcount()));
  if (found.substr(0, kMagic.size()) != kMagic) {
    fail(path, "is not a .npy file: expected the magic string \\x93NUMPY, found '" +
                   printable(found.substr(0, kMagic.size())) + "'");
  }
  if (found.size() < kPreambleBytes) fail(path, "is truncated: the file ends inside the preamble");
  Preamble p;
  p.major = static_cast<unsigned char>(start[6]);
  p.minor = static_cast<unsigned char>(start[7]);
  if (p.major < 1 || p.major > 3 || p.minor != 0) {
    fail(path, "has the unsupported .npy format version " + std::to_string(p.major) + "." +
                   std::to_string(p.minor) + "; expected 1.0, 2.0 or 3.0");
  }
  const int length_bytes = p.major == 1 ? 2 : 4;
  unsigned char length[4] = {};
  read_exactly(in, reinterpret_cast<char*>(length), length_bytes, path, "header length");
  p.header_bytes = little_endian(length, length_bytes);
  p.data_offset = kPreambleBytes + length_bytes + p.header_bytes;
  if (p.data_offset > file_bytes) {
    fail(path, "is truncated: the header should take " + std::to_string(p.header_bytes) +
                   " bytes, the file has " +
                   std::to_string(file_bytes - kPreambleBytes - length_bytes) +
                   " after the preamble");
  }
  return p;
}

// The header's fields within what npdl reads (npy.hpp); returns the dtype.
DType checked_fields(const HeaderFields& fields, const std::string& path, NpyKind kind) {
  if (fields.shape.size() > kMaxRank) fail(path, "has " + beyond_max_rank(fields.shape.size()));
  const std::optional<DType> dtype = supported_dtype(fields.descr, kind);
  if (!dtype)
    fail(path, "holds " + describe_dtype(fields.descr) + "; expected " + expected_dtypes(kind));
  if (fields.fortran_order) {
    fail(path,
         "is in Fortran order (fortran_order: True); expected C order "
         "(save a C-contiguous array, e.g. np.ascontiguousarray(a))");
  }
  return *dtype;
}

// ---------------------------------------------------------------------------
// Writing

std::string shape_tuple(const Shape& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ',';
  return s + ")";
}

// Everything before the data: preamble, header dict, padding and '\n'.
// Version 1.0 always: six sizes of at most 19 digits keep the header far
// below its 65535-byte limit (2.0 exists for headers beyond it).
std::string encode_header(const Tensor& tensor) {
  const std::string dict = "{'descr': '" + descriptor_of(tensor.dtype()) +
                           "', 'fortran_order': False, 'shape': " + shape_tuple(tensor.shape()) +
                           ", }";
  constexpr std::size_t kLengthBytes = 2;
  const std::size_t unpadded = kPreambleBytes + kLengthBytes + dict.size() + 1;  // + '\n'
  const std::size_t padding = (kDataAlignment - unpadded % kDataAlignment) % kDataAlignment;
  const std::size_t header_bytes = dict.size() + padding + 1;
  std::string bytes(kMagic);
  bytes += '\x01';
  bytes += '\0';
  bytes += static_cast<char>(header_bytes & 0xff);
  bytes += static_cast<char>(header_bytes >> 8);
  return bytes + dict + std::string(padding, ' ') + '\n';
}

std::string errno_text() { return std::strerror(errno); }

// Creates a fresh file beside `target` (O_EXCL: never someone else's) with
// the usual permissions (0666 less the umask), and returns its descriptor.
int create_temp_beside(const fs::path& target, std::string& temp_path) {
  static std::atomic<unsigned> counter{0};
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_path = (folder / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                           "-" + std::to_string(counter++)))
                    .string();
    const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return fd;
    if (errno != EEXIST) {
      throw IOError("cannot write " + quoted(target.string()) + ": creating a file in " +
                    quoted(folder.string()) + " failed: " + errno_text());
    }
  }
  throw IOError("cannot write " + quoted(target.string()) + ": no free temporary name in " +
                quoted(folder.string()));
}

// write(2) may write less than asked (signals, large buffers): loop.
bool write_all(int fd, const char* data, std::size_t bytes) {
  while (bytes > 0) {
    const ssize_t n = ::write(fd, data, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    bytes -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

Tensor load_npy(const std::string& path, NpyKind kind) {
  const std::uintmax_t file_bytes = size_of_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IOError("cannot open " + quoted(path) + ": " + errno_text());

  const Preamble preamble = read_preamble(in, file_bytes, path);
  std::string header(preamble.header_bytes, '\0');
  read_exactly(in, header.data(), header.size(), path, "header");
  const HeaderFields fields = HeaderParser(header, path).parse();
  const DType dtype = checked_fields(fields, path, kind);

  // Checked against the file's size before allocating, so that a corrupt
  // shape cannot ask for terabytes.
  const std::optional<std::uint64_t> needed = data_bytes(fields.shape, element_size(dtype));
  if (!needed) {
    fail(path, "has the shape " + to_string(fields.shape) + ", which no " + to_string(dtype) +
                   " tensor can have: its non-zero sizes, or its bytes, multiply past 2^63");
  }
  const std::uint64_t available = file_bytes - preamble.data_offset;
  if (*needed > available) {
    fail(path, "is truncated: shape " + to_string(fields.shape) + " " + to_string(dtype) +
                   " needs " + std::to_string(*needed) + " bytes of data, the file has " +
                   std::to_string(available));
  }
  Tensor tensor(fields.shape, dtype);
  if (*needed > 0) {
    read_exactly(in, static_cast<char*>(tensor.raw_data()), *needed, path, "data");
  }
  return tensor;
}

void save_npy(const std::string& path, const Tensor& tensor) {
  FileBatch batch;
  batch.add(path, tensor);
  batch.commit();
}

FileBatch::~FileBatch() {
  for (const Pending& p : pending_) ::unlink(p.temp_path.c_str());
}

std::string FileBatch::add(const std::string& path, const Tensor& tensor) {
  if (!tensor.defined()) {
    throw IOError("cannot write " + quoted(path) + ": expected a tensor, got an undefined one");
  }
  // A file of another rank would be refused when read back.
  if (static_cast<std::size_t>(tensor.rank()) > kMaxRank) {
    throw IOError("cannot write " + quoted(path) + ": the tensor has " +
                  beyond_max_rank(static_cast<std::size_t>(tensor.rank())));
  }
  return write_temp(path, encode_header(tensor), tensor.raw_data(), tensor.nbytes());
}

std::string FileBatch::add_text(const std::string& path, const std::string& text) {
  return write_temp(path, text, nullptr, 0);
}

std::string FileBatch::add_external(const std::string& path) {
  return write_temp(path, "", nullptr, 0);
}

std::string FileBatch::write_temp(const std::string& path, const std::string& head,
                                  const void* data, std::size_t bytes) {
  std::string temp_path;
  const int fd = create_temp_beside(fs::path(path), temp_path);
  pending_.push_back({temp_path, path});  // removed by the destructor unless committed
  const bool written = write_all(fd, head.data(), head.size()) &&
                       write_all(fd, static_cast<const char*>(data), bytes);
  const std::string write_error = written ? "" : errno_text();
  if (::close(fd) != 0 && written) {
    throw IOError("cannot write " + quoted(path) + ": " + errno_text());
  }
  if (!written) throw IOError("cannot write " + quoted(path) + ": " + write_error);
  return temp_path;
}

void FileBatch::commit() {
  while (!pending_.empty()) {
    const Pending& p = pending_.front();
    if (std::rename(p.temp_path.c_str(), p.target_path.c_str()) != 0) {
      throw IOError("cannot write " + quoted(p.target_path) +
                    ": renaming the finished file "
                    "into place failed: " +
                    errno_text());
    }
    pending_.erase(pending_.begin());
  }
}

}  // namespace npdl::io
