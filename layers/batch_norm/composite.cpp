// The batch-norm forward recorded from primitives: reverse mode through it
// is the autodiff backward that the hand-derived one is checked against.
#include "layers/batch_norm/composite.hpp"

#include "ops/ops.hpp"

namespace npdl::layers {
namespace {

Tensor as_stat(const Var& v, const BatchNormLayout& L) {
  return v.value().reshape(L.param_shape).astype(DType::Float64);
}

}  // namespace

Var broadcastable(const Var& p, const BatchNormLayout& L) {
  // Broadcasting aligns the parameter shape with the input's trailing axes.
  // That is the feature axis's place when it is the last axis, and the
  // sample's shape when it is axis 0; anywhere else the parameters are put
  // on the feature axis explicitly. The axis and the rank decide, never the
  // sizes: axes of size 1 after the feature axis, as in (N, C, 1, 1), are
  // still axes, and (C,) against them would broadcast to (N, C, 1, C).
  const int last = static_cast<int>(L.broadcast_shape.size()) - 1;
  const bool aligned = L.feature_axis == 0 || L.feature_axis == last;
  return aligned ? p : ops::reshape(p, L.broadcast_shape);
}

Var batchnorm_composite_train(const Var& x, const Var& gamma, const Var& beta,
                              const BatchNormLayout& L, double epsilon, Variant variant,
                              BatchNormStats* stats) {
  const Var mean = ops::mean(x, L.reduced_axes, /*keepdims=*/true);
  const Var xmu = x - mean;
  const Var var = ops::mean(ops::square(xmu), L.reduced_axes, /*keepdims=*/true);
  const Var spread = variant == Variant::NpdlStd ? ops::sqrt(var) : var;
  const Var invstd = ops::rsqrt(spread + epsilon);
  const Var xhat = xmu * invstd;
  const Var y = broadcastable(gamma, L) * xhat + broadcastable(beta, L);
  if (stats != nullptr) {
    stats->mean = as_stat(mean, L);
    stats->var = as_stat(var, L);
    stats->invstd = as_stat(invstd, L);
  }
  return y;
}

Var batchnorm_composite_infer(const Var& x, const Var& gamma, const Var& beta,
                              const BatchNormLayout& L, double epsilon, const Tensor& running_mean,
                              const Tensor& running_var) {
  const Var mean(running_mean.reshape(L.broadcast_shape));
  const Var var(running_var.reshape(L.broadcast_shape));
  const Var xhat = (x - mean) * ops::rsqrt(var + epsilon);
  return broadcastable(gamma, L) * xhat + broadcastable(beta, L);
}

}  // namespace npdl::layers
