// Matrix product.
#include "autodiff/tensor_math.hpp"
#include "ops/info.hpp"
#include "ops/ops.hpp"
#include "ops/record.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kMatmul{"matmul", "a @ b", "ga = g @ b^T, gb = a^T @ g"};
}  // namespace info

Var matmul(const Var& a, const Var& b) {
  return record(info::kMatmul, {&a, &b}, m::matmul(a.value(), b.value()), {a.value(), b.value()},
                [](const VjpArgs& c) -> Tensors {
                  return {m::matmul(c.grad, c.saved[1], false, true),
                          m::matmul(c.saved[0], c.grad, true, false)};
                });
}

}  // namespace npdl::ops
