#pragma once
// The hand-derived double backward of batch normalisation's training
// forward: the gradients of the first backward (batchnorm_backward_train),
// for second derivatives. Derivation: Note [Batch-norm double backward] in
// double_backward.cpp.
#include <vector>

#include "layers/batch_norm/kernels.hpp"
#include "tensor/tensor.hpp"

namespace npdl::layers {

/// Gradients of L2 = <ggx, dx> + <gggamma, dgamma> + <ggbeta, dbeta>, where
/// (dx, dgamma, dbeta) = batchnorm_backward_train(dy, x, gamma, stats), with
/// respect to x, gamma and dy. A gradient that is zero because its upstream
/// terms are all undefined is returned undefined (no buffer of zeros):
/// dx when ggx and gggamma are, dgamma when ggx is, ddy when all three are.
struct BatchNormDoubleGrads {
  Tensor dx, dgamma, ddy;
};

/// ggx has x's shape; gggamma and ggbeta the parameters' shape; any of the
/// three may be undefined, meaning zero. `stats` are the training forward's
/// batch statistics of x. Every tensor has x's dtype (float32 or float64;
/// the statistics are float64); per-feature sums are accumulated in float64.
/// Five reductions per feature and one elementwise pass writing dx and ddy.
/// Throws ShapeError or DTypeError (naming what was expected and what was
/// given) for tensors that do not fit x and the layout, ValueError for an
/// undefined dy, x, gamma or statistic.
BatchNormDoubleGrads batchnorm_double_backward_train(const Tensor& ggx, const Tensor& gggamma,
                                                     const Tensor& ggbeta, const Tensor& dy,
                                                     const Tensor& x, const Tensor& gamma,
                                                     const BatchNormStats& stats,
                                                     const BatchNormLayout& layout);

/// The derivation of the double backward, step by step, as the teaching
/// tools print it; its last steps are the fused formulas the kernel runs.
const std::vector<DerivationStep>& batchnorm_double_derivation();

}  // namespace npdl::layers
