// Matrix product.
#include "ops/detail/record.hpp"
#include "ops/info.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kMatmul{"matmul", "a @ b", "ga = g @ b^T, gb = a^T @ g", false, 0b11};
}  // namespace info

Var matmul(const Var& a, const Var& b) {
  return record(info::kMatmul, {&a, &b}, m::matmul(a.value(), b.value()), {},
                [](const VjpArgs& c) -> Vars {
                  // The first layer's input is data: its gradient would cost as much
                  // as the weight's and be thrown away.
                  return {c.needs_input_grad(0) ? matmul(c.grad, c.input(1), false, true) : Var(),
                          c.needs_input_grad(1) ? matmul(c.input(0), c.grad, true, false) : Var()};
                });
}

Var matmul(const Var& a, const Var& b, bool transpose_a, bool transpose_b) {
  return detail::fused_or(
      {&a, &b}, [&] { return m::matmul(a.value(), b.value(), transpose_a, transpose_b); },
      [&] { return matmul(transpose_a ? transpose(a) : a, transpose_b ? transpose(b) : b); });
}

}  // namespace npdl::ops
