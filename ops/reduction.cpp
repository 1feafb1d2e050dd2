// Reductions over any set of axes.
#include "autodiff/catalogue.hpp"
#include "ops/detail/entries.hpp"
#include "ops/detail/record.hpp"
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

// Catalogue entries (Note [One entry per primitive] in autodiff/catalogue.hpp).
namespace {
using namespace catalogue;  // NOLINT: the entries below are written in its words
constexpr const char* kFile = "ops/reduction.cpp";
using Reduce = Var (*)(const Var&, const Axes&, bool);

// Every axis set of a rank-3 tensor, negative axes and size-1 axes among
// them, with and without keepdims; squared, so that the second derivative
// is not zero.
template <Reduce op>
Samples reduction_samples() {
  Samples s;
  const Tensor x = sample::normal({2, 3, 4}, 31), thin = sample::normal({1, 3, 1}, 32);
  for (const Axes& axes : {Axes{}, Axes{0}, Axes{1}, Axes{2}, Axes{0, 2}, Axes{-1, 0}}) {
    for (bool keep : {false, true}) {
      s.push_back({"axes " + to_string(Shape(axes.begin(), axes.end())) + (keep ? " keepdims" : ""),
                   [axes, keep](const std::vector<Var>& v) { return square(op(v[0], axes, keep)); },
                   {x}});
    }
  }
  s.push_back({"size-1 axes", [](const std::vector<Var>& v) { return square(op(v[0], {0, 2}, false)); },
               {thin}});
  s.push_back({"exp of the whole", [](const std::vector<Var>& v) { return exp(op(v[0], {}, false)); },
               {sample::normal({2, 3}, 33)}});
  return s;
}

// Reducing an empty axis can make a result larger than the input: zeros
// (sums) or NaNs (means) over the other axes.
template <Reduce op>
Var random_reduction(const Var& a, const Var&, const Choices& c) {
  const Axes axes = detail::random_axes(a.rank(), c.bits);
  detail::check_random_size(numel(reduced_shape(a.shape(), normalize_axes(axes, a.rank()), c.flag)),
                            c, "a reduction");
  return op(a, axes, c.flag);
}

const Primitive kEntries[] = {
    Primitive(info::kSum, kFile).with_samples(reduction_samples<sum>).with_random(random_reduction<sum>),
    Primitive(info::kMean, kFile).with_samples(reduction_samples<mean>).with_random(random_reduction<mean>),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
