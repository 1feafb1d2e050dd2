// Matrix product.
#include "autodiff/tensor_math.hpp"
#include "ops/info.hpp"
#include "ops/ops.hpp"
#include "ops/record.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kMatmul{"matmul", "a @ b", "ga = g @ b^T, gb = a^T @ g", false, 0b11};
}  // namespace info

Var matmul(const Var& a, const Var& b) {
  return record(
      info::kMatmul, {&a, &b}, m::matmul(a.value(), b.value()), {}, [](const VjpArgs& c) -> Vars {
        return {matmul(c.grad, c.input(1), false, true), matmul(c.input(0), c.grad, true, false)};
      });
}

Var matmul(const Var& a, const Var& b, bool transpose_a, bool transpose_b) {
  return detail::fused_or(
      {&a, &b}, [&] { return m::matmul(a.value(), b.value(), transpose_a, transpose_b); },
      [&] { return matmul(transpose_a ? transpose(a) : a, transpose_b ? transpose(b) : b); });
}

}  // namespace npdl::ops
