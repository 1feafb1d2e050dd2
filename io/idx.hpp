#pragma once
// IDX files (the MNIST / Fashion-MNIST format), gzip-compressed, read through
// zlib.
//
// An IDX file is: two zero bytes, a type byte (0x08 = unsigned byte, the
// only type these data sets use and the only one read here), a rank byte,
// one big-endian u32 per dimension, then the values, row-major. Anything
// else (a missing file, a file that is not gzip, a bad magic, another type,
// a rank the caller did not expect, fewer or more data bytes than the
// dimensions say) throws IOError naming the file, what was expected and what
// was found.
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace npdl::io {

struct IdxArray {
  Shape dims;
  std::vector<std::uint8_t> data;  // numel(dims) values, row-major
};

/// Reads a gzip-compressed unsigned-byte IDX file. With expected_rank > 0,
/// a file of another rank is an error.
IdxArray read_idx(const std::string& path, int expected_rank = 0);

/// An images file (rank 3: N, rows, cols) as an (N, rows * cols) tensor of
/// pixels scaled to [0, 1].
Tensor read_idx_images(const std::string& path, DType dtype = DType::Float32);

/// A labels file (rank 1) as integers.
std::vector<int> read_idx_labels(const std::string& path);

}  // namespace npdl::io
