// The .npy reader and writer: round trips, files written byte by byte in
// every supported format version, and every kind of bad file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "io/npy.hpp"
#include "tensor/tensor.hpp"
#include "tests/temp_dir_test.hpp"

namespace npdl {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class NpyTest : public testing::TempDirTest {
 protected:
  std::string write_bytes(const std::string& name, const std::string& bytes) const {
    std::ofstream out(path(name), std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path(name);
  }

  static std::string read_bytes(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::vector<std::string> files_in_dir() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
};

// A .npy file as bytes: preamble of `major`.0, the header `dict` padded with
// `padding` spaces and '\n', then `data`. Any padding is legal to a reader,
// so odd header lengths are easy to make.
std::string npy_file(int major, const std::string& dict, std::size_t padding,
                     const std::string& data) {
  const std::string header = dict + std::string(padding, ' ') + "\n";
  std::string bytes("\x93NUMPY", 6);
  bytes += static_cast<char>(major);
  bytes += '\0';
  const int length_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < length_bytes; ++i)
    bytes += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return bytes + header + data;
}

template <class T>
std::string raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::string f4_dict(const std::string& shape) {
  return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
}

// Expects IOError whose one-line message names the file and contains every
// piece of `needles`.
void expect_io_error(const std::string& file, const std::vector<std::string>& needles) {
  try {
    io::load_npy(file);
    ADD_FAILURE() << "no IOError for " << file;
  } catch (const IOError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(file), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    for (const std::string& needle : needles) {
      EXPECT_NE(message.find(needle), std::string::npos)
          << "'" << needle << "' not in: " << message;
    }
  }
}

TEST_F(NpyTest, RoundTripsBothDtypesAndRanksZeroToSix) {
  const std::vector<Shape> shapes{
      {}, {5}, {2, 3}, {2, 1, 3}, {1, 2, 3, 2}, {2, 1, 2, 1, 3}, {1, 2, 1, 2, 1, 2}};
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (std::size_t rank = 0; rank < shapes.size(); ++rank) {
      SCOPED_TRACE(to_string(dtype) + " rank " + std::to_string(rank));
      const Tensor original = Tensor::randn(shapes[rank], 10 + rank, dtype);
      const std::string file = path("a.npy");
      io::save_npy(file, original);
      const Tensor loaded = io::load_npy(file);
      EXPECT_EQ(loaded.dtype(), dtype);
      EXPECT_EQ(loaded.shape(), shapes[rank]);
      ASSERT_EQ(loaded.nbytes(), original.nbytes());
      EXPECT_EQ(std::memcmp(loaded.raw_data(), original.raw_data(), original.nbytes()), 0);
    }
  }
}

TEST_F(NpyTest, IndexFilesRoundTripWhereIndicesAreReadAndAreRefusedWhereValuesAre) {
  const Tensor i64 = Tensor::from_indices({2, 3}, {0, 5, -1, 7, std::int64_t{1} << 40, 2});
  const Tensor small = Tensor::from_indices({3}, {4, 0, 9}).astype(DType::Int32);
  for (const Tensor& original : {i64, small}) {
    SCOPED_TRACE(to_string(original.dtype()));
    const std::string file = path("i.npy");
    io::save_npy(file, original);
    for (io::NpyKind kind : {io::NpyKind::Indices, io::NpyKind::Any}) {
      const Tensor loaded = io::load_npy(file, kind);
      EXPECT_EQ(loaded.dtype(), original.dtype());
      EXPECT_EQ(loaded.shape(), original.shape());
      EXPECT_EQ(loaded.to_vector(), original.to_vector());
    }
    expect_io_error(file, {"holds " + to_string(original.dtype()),
                           "expected float32 ('<f4') or float64 ('<f8')"});
  }
  const std::string floats = path("f.npy");
  io::save_npy(floats, Tensor::randn({3}, 1));
  try {
    io::load_npy(floats, io::NpyKind::Indices);
    ADD_FAILURE() << "float32 read as indices";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find("expected int32 ('<i4') or int64 ('<i8')"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(io::load_npy(floats, io::NpyKind::Any).dtype(), DType::Float32);
}

TEST_F(NpyTest, WriterHeaderIsNumpysDictPaddedToSixtyFourBytes) {
  const Tensor t = Tensor::from_vector({2, 3}, {0, 1, 2, 3, 4, 5}, DType::Float32);
  io::save_npy(path("a.npy"), t);
  const std::string bytes = read_bytes(path("a.npy"));
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const std::size_t header_len =
      static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  const std::size_t data_offset = 10 + header_len;
  EXPECT_EQ(data_offset % 64, 0u);
  ASSERT_EQ(bytes.size(), data_offset + 6 * 4);
  const std::string header = bytes.substr(10, header_len);
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  EXPECT_EQ(header.substr(0, dict.size()), dict);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(header.find_first_not_of(' ', dict.size()), header_len - 1) << "padding not spaces";
  EXPECT_EQ(bytes.substr(data_offset), raw(std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST_F(NpyTest, WriterWritesRankOneAndZeroTuplesAsPythonDoes) {
  io::save_npy(path("v.npy"), Tensor::zeros({7}, DType::Float64));
  io::save_npy(path("s.npy"), Tensor::scalar(1.0, DType::Float64));
  EXPECT_NE(read_bytes(path("v.npy")).find("'shape': (7,), }"), std::string::npos);
  EXPECT_NE(
      read_bytes(path("s.npy")).find("'descr': '<f8', 'fortran_order': False, 'shape': (), }"),
      std::string::npos);
}

// Ranks 0 to 6 are the format npdl promises: a file of a higher rank is
// refused by name in every version, and the writer makes no file the
// reader would refuse (30000 axes once made a version 2.0 file).
TEST_F(NpyTest, RanksAboveSixAreRefusedOnReadAndOnWrite) {
  for (int major : {1, 2, 3}) {
    SCOPED_TRACE("version " + std::to_string(major));
    expect_io_error(write_bytes("r7.npy", npy_file(major, f4_dict("(1, 1, 1, 1, 1, 1, 1)"), 0,
                                                   raw(std::vector<float>{1}))),
                    {"rank 7", "expected rank 0 to 6"});
  }
  fs::remove(path("r7.npy"));
  for (const Shape& shape : {Shape(7, 1), Shape(30000, 1), Shape{2, 1, 1, 1, 1, 1, 0}}) {
    SCOPED_TRACE(to_string(shape));
    try {
      io::save_npy(path("w.npy"), Tensor::zeros(shape));
      ADD_FAILURE() << "no IOError";
    } catch (const IOError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("w.npy"), std::string::npos) << message;
      EXPECT_NE(message.find("rank " + std::to_string(shape.size())), std::string::npos) << message;
      EXPECT_NE(message.find("expected rank 0 to 6"), std::string::npos) << message;
    }
    EXPECT_TRUE(files_in_dir().empty()) << "written despite the error";
  }
}

TEST_F(NpyTest, ReadsHandWrittenFilesOfEveryVersionAndOddHeaderLengths) {
  const std::vector<float> values{1.5f, -2.25f, 3.0f, 0.125f, -0.0f, 1e-30f};
  for (int major : {1, 2, 3}) {
    for (std::size_t padding : {0u, 1u, 6u, 77u}) {
      SCOPED_TRACE("version " + std::to_string(major) + ", padding " + std::to_string(padding));
      const std::string file =
          write_bytes("hand.npy", npy_file(major, f4_dict("(3, 2)"), padding, raw(values)));
      const Tensor t = io::load_npy(file);
      EXPECT_EQ(t.dtype(), DType::Float32);
      EXPECT_EQ(t.shape(), (Shape{3, 2}));
      EXPECT_EQ(std::memcmp(t.raw_data(), values.data(), values.size() * 4), 0);
    }
  }
}

TEST_F(NpyTest, ReadsHeaderVariantsNumpyAccepts) {
  const std::vector<double> values{1.0, 2.0, 3.0, 4.0};
  struct Case {
    std::string dict;
    Shape shape;
  };
  const std::vector<Case> cases{
      // Keys in another order, double quotes, no trailing comma.
      {"{\"shape\": (4,), \"fortran_order\": False, \"descr\": \"<f8\"}", {4}},
      // Python 2's longs and extra blanks.
      {"{ 'descr' : '<f8' , 'fortran_order' : False , 'shape' : ( 2L , 2L ) , }", {2, 2}},
      // Native byte order on a little-endian machine.
      {"{'descr': '=f8', 'fortran_order': False, 'shape': (1, 4), }", {1, 4}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dict);
    const std::string file = write_bytes("v.npy", npy_file(1, c.dict, 3, raw(values)));
    const Tensor t = io::load_npy(file);
    EXPECT_EQ(t.shape(), c.shape);
    EXPECT_EQ(t.to_vector(), values);
  }
}

TEST_F(NpyTest, ReadsEmptyArraysAndIgnoresTrailingBytes) {
  const std::string empty = write_bytes("e.npy", npy_file(1, f4_dict("(0, 3)"), 2, ""));
  EXPECT_EQ(io::load_npy(empty).shape(), (Shape{0, 3}));
  const std::string trailing =
      write_bytes("t.npy", npy_file(1, f4_dict("(2,)"), 2, raw(std::vector<float>{7, 8}) + "xyz"));
  EXPECT_EQ(io::load_npy(trailing).to_vector(), (std::vector<double>{7, 8}));
}

TEST_F(NpyTest, BadMagic) {
  expect_io_error(write_bytes("zip.npy", "PK\x03\x04 not numpy at all"),
                  {"not a .npy file", "\\x93NUMPY", "PK\\x03\\x04"});
  expect_io_error(write_bytes("empty.npy", ""), {"not a .npy file"});
}

TEST_F(NpyTest, UnsupportedVersion) {
  expect_io_error(
      write_bytes("v4.npy", npy_file(4, f4_dict("(1,)"), 0, raw(std::vector<float>{1}))),
      {"version 4.0", "expected 1.0, 2.0 or 3.0"});
}

TEST_F(NpyTest, OtherDtypesAreNamed) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"<i4", "int32 ('<i4')"},        {">f8", "big-endian float64 ('>f8')"},
      {"<f2", "float16 ('<f2')"},      {"|b1", "bool ('|b1')"},
      {"<c16", "complex128 ('<c16')"}, {"<U3", "unicode string ('<U3')"}};
  for (const auto& [descr, name] : cases) {
    SCOPED_TRACE(descr);
    const std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (2,), }";
    expect_io_error(write_bytes("d.npy", npy_file(1, dict, 1, std::string(32, '\0'))),
                    {"holds " + name, "expected float32 ('<f4') or float64 ('<f8')"});
  }
  const std::string structured =
      "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }";
  expect_io_error(write_bytes("s.npy", npy_file(1, structured, 1, std::string(8, '\0'))),
                  {"structured dtype"});
}

// Regression (npy_reader fuzzer): a dtype size too long for an int made
// the message's "size in bits" overflow (undefined behaviour). Named as
// written instead.
TEST_F(NpyTest, AnAbsurdDtypeSizeIsNamedAsWritten) {
  for (const std::string size : {"6666666666668", "99999", "4x"}) {
    SCOPED_TRACE(size);
    const std::string dict = "{'descr': '<f" + size + "', 'fortran_order': False, 'shape': (), }";
    expect_io_error(write_bytes("d.npy", npy_file(1, dict, 1, std::string(8, '\0'))),
                    {"holds float of " + size + " bytes", "expected float32 ('<f4')"});
  }
}

TEST_F(NpyTest, FortranOrder) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }";
  expect_io_error(write_bytes("f.npy", npy_file(1, dict, 1, std::string(16, '\0'))),
                  {"Fortran order", "expected C order"});
}

TEST_F(NpyTest, TruncatedDataHeaderAndPreamble) {
  const std::string full = npy_file(1, f4_dict("(1000, 3)"), 5, std::string(12000, '\0'));
  expect_io_error(write_bytes("data.npy", full.substr(0, full.size() - 1)),
                  {"truncated", "(1000, 3)", "needs 12000 bytes", "has 11999"});
  expect_io_error(write_bytes("header.npy", full.substr(0, 30)), {"truncated", "header"});
  expect_io_error(write_bytes("preamble.npy", full.substr(0, 7)), {"truncated", "preamble"});
}

// A shape no tensor can have is the file's fault, reported as such and not
// allocated: its non-zero sizes multiply past 64 bits (even beside a 0,
// which makes the data empty) or its bytes do.
TEST_F(NpyTest, AShapeNoTensorCanHaveIsAnIOError) {
  for (const std::string shape :
       {"(4611686018427387904, 8)", "(0, 4611686018427387904, 4611686018427387904)",
        "(2305843009213693952, 0, 4)"}) {
    SCOPED_TRACE(shape);
    expect_io_error(write_bytes("huge.npy", npy_file(1, f4_dict(shape), 0, "")),
                    {"shape " + shape, "no float32 tensor can have"});
  }
}

TEST_F(NpyTest, MissingFileAndDirectory) {
  expect_io_error(path("nope.npy"), {"cannot read", "No such file"});
  expect_io_error(dir_.string(), {"is a directory"});
}

TEST_F(NpyTest, MalformedHeaders) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", "expected ',' or '}'"},
      {"{'descr': '<f4', 'fortran_order': False}", "found no 'shape'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}", "integer dimension"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "integer dimension"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", "shape tuple"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", "True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "unexpected key"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", "twice"},
      {"{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}", "expected ':'"},
      {"{descr: '<f4'}", "quoted key"},
  };
  for (const auto& [dict, needle] : cases) {
    SCOPED_TRACE(dict);
    expect_io_error(write_bytes("m.npy", npy_file(1, dict, 2, std::string(8, '\0'))),
                    {"malformed header", needle});
  }
}

TEST_F(NpyTest, FailedWriteLeavesNothing) {
  const std::string missing_dir = path("no/such/folder/a.npy");
  EXPECT_THROW(io::save_npy(missing_dir, Tensor::zeros({2})), IOError);
  EXPECT_TRUE(files_in_dir().empty());
}

TEST_F(NpyTest, BatchWritesNothingUntilCommitAndCleansUp) {
  {
    io::FileBatch batch;
    batch.add(path("a.npy"), Tensor::ones({3}));
    batch.add(path("b.npy"), Tensor::ones({4}));
    EXPECT_FALSE(fs::exists(path("a.npy")));
    EXPECT_FALSE(fs::exists(path("b.npy")));
    // Destroyed without commit: as if a later step had failed.
  }
  EXPECT_TRUE(files_in_dir().empty());
  io::FileBatch batch;
  batch.add(path("a.npy"), Tensor::ones({3}));
  batch.add(path("b.npy"), Tensor::ones({4}));
  batch.commit();
  EXPECT_EQ(files_in_dir(), (std::vector<std::string>{"a.npy", "b.npy"}));
  EXPECT_EQ(io::load_npy(path("b.npy")).shape(), (Shape{4}));
}

TEST_F(NpyTest, SaveReplacesAnExistingFile) {
  io::save_npy(path("a.npy"), Tensor::ones({3}));
  io::save_npy(path("a.npy"), Tensor::zeros({2, 2}, DType::Float64));
  const Tensor t = io::load_npy(path("a.npy"));
  EXPECT_EQ(t.shape(), (Shape{2, 2}));
  EXPECT_EQ(t.dtype(), DType::Float64);
  EXPECT_EQ(files_in_dir(), (std::vector<std::string>{"a.npy"}));
}

TEST_F(NpyTest, LargeArrayRoundTrip) {
  // 48 MB: the data moves in one read and one write.
  const Tensor big = Tensor::uniform({3000, 4000}, 5, DType::Float32);
  io::save_npy(path("big.npy"), big);
  const Tensor loaded = io::load_npy(path("big.npy"));
  ASSERT_EQ(loaded.shape(), big.shape());
  EXPECT_EQ(std::memcmp(loaded.raw_data(), big.raw_data(), big.nbytes()), 0);
}

}  // namespace
}  // namespace npdl
