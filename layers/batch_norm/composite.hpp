#pragma once
// Batch norm as a composite of primitives (mean, sub, square, rsqrt, mul,
// add), recorded on the input's graph. Reverse mode through it is the
// autodiff backward; the fused node (batch_normal.hpp) and the double
// backward (second_order.hpp) are checked against it.
#include "autodiff/graph.hpp"
#include "layers/batch_norm/kernels.hpp"

namespace npdl::layers {

/// A parameter (shape param_shape) viewed so that it broadcasts against the
/// input.
Var broadcastable(const Var& p, const BatchNormLayout& layout);

/// The training forward recorded from primitives on x's graph:
/// mean, sub, square, mean, add epsilon, rsqrt, mul, mul by gamma, add beta.
/// Reverse mode through it is the autodiff backward. Fills `stats` (float64,
/// parameter shape) when given.
Var batchnorm_composite_train(const Var& x, const Var& gamma, const Var& beta,
                              const BatchNormLayout& layout, double epsilon,
                              Variant variant = Variant::Correct, BatchNormStats* stats = nullptr);
/// The inference forward from primitives, with given running statistics.
Var batchnorm_composite_infer(const Var& x, const Var& gamma, const Var& beta,
                              const BatchNormLayout& layout, double epsilon,
                              const Tensor& running_mean, const Tensor& running_var);

}  // namespace npdl::layers
