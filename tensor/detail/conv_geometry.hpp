#pragma once
// What the convolution kernels (tensor/conv_math.cpp, tensor/winograd.cpp)
// share: a convolution's sizes, and a matrix product into a block of a
// larger matrix on the calling thread. Internal to tensor/.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <new>

#include "tensor/error.hpp"
#include "tensor/kernels/kernels.hpp"

namespace npdl::math::detail {

// The sizes of one conv2d: input (N, C, H, W), filters (F, C, KH, KW),
// output (N, F, OH, OW), stride (sh, sw), padding top and left (pt, pl; the
// bottom and right padding follow from OH and OW).
struct ConvGeometry {
  std::int64_t N, C, H, W, F, KH, KW, OH, OW, sh, sw, pt, pl;
  std::int64_t rows() const { return C * KH * KW; }  // of col
  std::int64_t plane() const { return OH * OW; }
};

// c = op(a) @ op(b) on the calling thread at the chosen instruction-set
// level: c is m x n with its rows ldc apart, op(a) is m x k (a stored
// (m, k), or (k, m) when trans_a, rows lda apart), op(b) is k x n (b stored
// (k, n), or (n, k) when trans_b, rows ldb apart); with `accumulate`,
// c += op(a) @ op(b). So one sample's block of a group's col (or of gy) is
// an operand as it lies, and a sample's NCHW output is a result as it lies:
// no copy in between.
template <class T>
inline void product_into(std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
                         std::int64_t lda, bool trans_a, const T* b, std::int64_t ldb, bool trans_b,
                         T* c, std::int64_t ldc, bool accumulate = false) {
  if (k == 0 && accumulate) return;
  if (k == 0) {  // a sum of nothing
    for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  try {
    const kernels::TypedKernels<T>& kernels = kernels::kernels_for<T>();
    (accumulate ? kernels.gemm_add : kernels.gemm)(m, n, k, a, lda, trans_a, b, ldb, trans_b, c,
                                                   ldc);
  } catch (const std::bad_alloc&) {  // Eigen's blocks: as matmul reports it
    throw MemoryError(
        "conv2d: cannot allocate a product's working buffers: the system has no "
        "memory left for them");
  }
}

// What conv2d does to its outputs right after computing them, while they
// are in cache: bias[f] added to filter f's outputs (when bias is not null),
// then relu (when `relu`). Each is the same rounding as a pass of its own
// over the whole output afterwards (relu through the same kernel), so the
// same bits, without those passes: on a CNN's first layer a separate relu
// read and wrote 22 MB a step at batch 256.
template <class T>
struct OutputStage {
  const T* bias = nullptr;
  bool relu = false;
};

// The stage on `count` elements of each filter's plane in one sample of y
// (NCHW), from `at` on (a sample's whole plane, or a slab of its rows).
template <class T>
inline void finish_outputs(const ConvGeometry& g, const OutputStage<T>& stage, T* at,
                           std::int64_t count) {
  if (stage.bias == nullptr && !stage.relu) return;
  const auto relu = kernels::kernels_for<T>().unary;
  for (std::int64_t f = 0; f < g.F; ++f) {
    T* plane = at + f * g.plane();
    if (stage.bias != nullptr) {
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(plane, count) += stage.bias[f];
    }
    if (stage.relu) relu(kernels::UnaryOp::Relu, plane, plane, count);
  }
}

// The same over the whole of y's samples [n0, n1).
template <class T>
inline void finish_outputs(const ConvGeometry& g, const OutputStage<T>& stage, std::int64_t n0,
                           std::int64_t n1, T* y) {
  for (std::int64_t n = n0; n < n1; ++n) {
    finish_outputs(g, stage, y + n * g.F * g.plane(), g.plane());
  }
}

}  // namespace npdl::math::detail
