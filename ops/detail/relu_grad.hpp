#pragma once
// relu's VJP, shared by the ops whose output is a relu (relu itself and
// conv2d_relu, ops/activation.cpp and ops/conv.cpp).
#include "ops/detail/record.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops::detail {

/// g * (y > 0) for relu's output y, (y > 0) a constant mask: its own
/// derivative is zero wherever it exists. First order: one pass
/// (math::mul_step), the same bits as the composed product with 1 or 0 that
/// create_graph records; on a CNN's first layer the composed path's two
/// passes and its mask tensor cost a tenth of the training step.
inline Var relu_grad(const Var& g, const Var& y) {
  return fused_or(
      {&g}, [&] { return math::mul_step(g.value(), y.value()); },
      [&] { return mul(g, Var(math::step(y.value()))); });
}

}  // namespace npdl::ops::detail
