// Reductions over any set of axes.
#include "ops/detail/record.hpp"
#include "ops/info.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kSum{"sum", "sum of a over axes",
                  "ga = broadcast g back over the reduced axes (each element gets g)"};
const OpInfo kMean{"mean", "sum of a over axes / M (M = elements reduced)",
                   "ga = broadcast g / M back over the reduced axes"};
}  // namespace info

namespace {
// g has the reduced shape; put the reduced axes back as size 1 and expand.
Var expand_back(const Var& g, const Shape& input, const Axes& axes) {
  return broadcast_to(reshape(g, reduced_shape(input, axes, /*keepdims=*/true)), input);
}

std::int64_t count_of(const Shape& shape, const Axes& axes) {
  std::int64_t n = 1;
  for (int ax : axes) n *= shape[ax];
  return n;
}
}  // namespace

Var sum(const Var& a, const Axes& axes_in, bool keepdims) {
  const Axes axes = normalize_axes(axes_in, a.rank());
  return record(
      info::kSum, {&a}, m::sum(a.value(), axes, keepdims), {},
      [axes](const VjpArgs& c) -> Vars { return {expand_back(c.grad, c.input_shapes[0], axes)}; });
}

Var mean(const Var& a, const Axes& axes_in, bool keepdims) {
  const Axes axes = normalize_axes(axes_in, a.rank());
  return record(info::kMean, {&a}, m::mean(a.value(), axes, keepdims), {},
                [axes](const VjpArgs& c) -> Vars {
                  const double count = static_cast<double>(count_of(c.input_shapes[0], axes));
                  return {expand_back(mul_scalar(c.grad, 1.0 / count), c.input_shapes[0], axes)};
                });
}

}  // namespace npdl::ops
