// The IDX reader on small gzip files written here with zlib: good images and
// labels, and every kind of bad file (not gzip, bad magic, another type,
// wrong rank, truncated header or data, trailing data, a cut gzip stream).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "npdl.hpp"
#include "tests/temp_dir_test.hpp"

namespace npdl::io {
namespace {

std::string idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims,
                      const std::vector<std::uint8_t>& data) {
  std::string b{char(0), char(0), char(type), char(dims.size())};
  for (std::uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) b += char((d >> shift) & 0xff);
  }
  b.append(data.begin(), data.end());
  return b;
}

std::vector<std::uint8_t> ramp(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::uint8_t(i * 11);
  return v;
}

/// Expects an IOError whose message holds every one of `parts`.
void expect_io_error(const std::function<void()>& read, std::initializer_list<const char*> parts) {
  try {
    read();
    ADD_FAILURE() << "expected an IOError";
  } catch (const IOError& e) {
    for (const char* part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  }
}

// Files go to a fresh folder per test (CTest runs tests in parallel processes).
class Idx : public npdl::testing::TempDirTest {
 protected:
  std::string gzip_file(const std::string& name, const std::string& bytes) {
    const std::string file = path(name);
    gzFile f = gzopen(file.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
    gzclose(f);
    return file;
  }

  std::string plain_file(const std::string& name, const std::string& bytes) {
    const std::string file = path(name);
    std::ofstream(file, std::ios::binary) << bytes;
    return file;
  }
};

TEST_F(Idx, ReadsImagesScaledToTheUnitInterval) {
  const std::string path = gzip_file("images.gz", idx_bytes(0x08, {2, 3, 4}, ramp(24)));
  const IdxArray raw = read_idx(path);
  EXPECT_EQ(raw.dims, (Shape{2, 3, 4}));
  EXPECT_EQ(raw.data, ramp(24));
  const Tensor images = read_idx_images(path);
  EXPECT_EQ(images.shape(), (Shape{2, 12}));
  EXPECT_EQ(images.dtype(), DType::Float32);
  EXPECT_FLOAT_EQ(float(images.at({1, 11})), float(23 * 11) / 255.0f);
  EXPECT_FLOAT_EQ(float(images.at({0, 0})), 0.0f);
}

TEST_F(Idx, ReadsLabels) {
  const std::string path = gzip_file("labels.gz", idx_bytes(0x08, {5}, {3, 1, 4, 1, 5}));
  EXPECT_EQ(read_idx_labels(path), (std::vector<int>{3, 1, 4, 1, 5}));
}

TEST_F(Idx, PlainFileIsNotGzip) {
  const std::string path = plain_file("plain.idx", idx_bytes(0x08, {5}, {3, 1, 4, 1, 5}));
  expect_io_error([&] { read_idx(path); }, {"not a gzip file", "0x1f 0x8b", "0x00 0x00"});
}

TEST_F(Idx, BadMagic) {
  const std::string path = gzip_file("magic.gz", "\x01\x02\x08\x01" + std::string(8, '\0'));
  expect_io_error([&] { read_idx(path); }, {"bad IDX magic", "0x01 0x02"});
}

TEST_F(Idx, AnotherDataType) {
  const std::string path = gzip_file("type.gz", idx_bytes(0x0D, {1}, {0, 0, 0, 0}));
  expect_io_error([&] { read_idx(path); }, {"0x0d", "expected 0x08"});
}

TEST_F(Idx, WrongRank) {
  const std::string labels = gzip_file("rank.gz", idx_bytes(0x08, {5}, ramp(5)));
  expect_io_error([&] { read_idx_images(labels); }, {"rank 1", "expected 3"});
  const std::string images = gzip_file("rank3.gz", idx_bytes(0x08, {1, 2, 2}, ramp(4)));
  expect_io_error([&] { read_idx_labels(images); }, {"rank 3", "expected 1"});
}

TEST_F(Idx, TruncatedHeaderOrData) {
  const std::string header = gzip_file("short_header.gz", std::string("\0\0\x08\x03\0\0", 6));
  expect_io_error([&] { read_idx(header); }, {"truncated", "dimension 0"});
  const std::string data = gzip_file("short_data.gz", idx_bytes(0x08, {2, 3, 4}, ramp(20)));
  expect_io_error([&] { read_idx(data); }, {"truncated", "expected 24 bytes", "got 20"});
}

TEST_F(Idx, CorruptDimensionsAreRefusedBeforeAllocating) {
  // 65536 * 65536 * 2 bytes (8 GiB) declared by a 20-byte file.
  const std::string path = gzip_file("huge.gz", idx_bytes(0x08, {65536, 65536, 2}, ramp(4)));
  expect_io_error([&] { read_idx(path); }, {"exceed", "corrupt"});
}

TEST_F(Idx, MoreDataThanTheDimensionsSay) {
  const std::string path = gzip_file("long.gz", idx_bytes(0x08, {4}, ramp(6)));
  expect_io_error([&] { read_idx(path); }, {"more data", "(4,)"});
}

TEST_F(Idx, CutGzipStream) {
  // A valid gzip file cut in half: zlib reports the broken stream.
  const std::string whole = gzip_file("whole.gz", idx_bytes(0x08, {64, 16}, ramp(1024)));
  std::ifstream in(whole, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), {}};
  const std::string cut = plain_file("cut.gz", bytes.substr(0, bytes.size() / 2));
  EXPECT_THROW(read_idx(cut), IOError);
}

TEST_F(Idx, MissingFile) {
  expect_io_error([this] { read_idx(path("missing.gz")); }, {"cannot open"});
}

}  // namespace
}  // namespace npdl::io
