// Shape ops: they move no arithmetic, only layout.
#include "autodiff/catalogue.hpp"
#include "ops/detail/entries.hpp"
#include "ops/detail/record.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kReshape{"reshape", "a viewed with another shape", "ga = reshape(g, shape of a)"};
const OpInfo kBroadcastTo{"broadcast_to", "a repeated along broadcast axes",
                          "ga = sum_to(g): sum over the axes that were broadcast"};
const OpInfo kTranspose{"transpose", "axes of a permuted by perm",
                        "ga = transpose(g, inverse of perm)"};
}  // namespace info

Var reshape(const Var& a, const Shape& shape) {
  return record(info::kReshape, {&a}, a.value().reshape(shape), {},
                [](const VjpArgs& c) -> Vars { return {reshape(c.grad, c.input_shapes[0])}; });
}

Var broadcast_to(const Var& a, const Shape& shape) {
  return record(info::kBroadcastTo, {&a}, m::broadcast_to(a.value(), shape), {},
                [](const VjpArgs& c) -> Vars { return {sum_to(c.grad, c.input_shapes[0])}; });
}

Var sum_to(const Var& a, const Shape& shape) {
  if (a.shape() == shape) return a;
  // Leading axes that broadcasting added, and axes it stretched from 1.
  const int extra = a.rank() - static_cast<int>(shape.size());
  if (extra < 0) {
    throw ShapeError("sum_to: cannot sum a tensor of shape " + to_string(a.shape()) +
                     " down to the larger rank of " + to_string(shape));
  }
  Axes axes;
  for (int i = 0; i < a.rank(); ++i) {
    if (i < extra || (shape[i - extra] == 1 && a.shape()[i] != 1)) axes.push_back(i);
  }
  return detail::fused_or(
      {&a}, [&] { return m::unbroadcast(a.value(), shape); },
      [&] { return reshape(sum(a, axes, /*keepdims=*/true), shape); });
}

Var transpose(const Var& a, const Axes& perm_in) {
  Axes perm = perm_in;
  if (perm.empty()) {
    for (int i = a.rank() - 1; i >= 0; --i) perm.push_back(i);
  }
  Tensor value = m::transpose(a.value(), perm);  // validates perm
  Axes inverse(perm.size());
  for (std::size_t i = 0; i < perm.size(); ++i)
    inverse[normalize_axis(perm[i], a.rank())] = static_cast<int>(i);
  return record(info::kTranspose, {&a}, std::move(value), {},
                [inverse](const VjpArgs& c) -> Vars { return {transpose(c.grad, inverse)}; });
}

// Catalogue entries (Note [One entry per primitive] in autodiff/catalogue.hpp).
// Shape ops are linear: their samples square the result, so that the second
// derivative is not zero.
namespace {
using namespace catalogue;  // NOLINT: the entries below are written in its words
constexpr const char* kFile = "ops/shape.cpp";

const Primitive kEntries[] = {
    Primitive(info::kReshape, kFile)
        .with_samples([] {
          return Samples{
              {"(2, 3, 4) to (4, 6)", [](const std::vector<Var>& v) { return square(reshape(v[0], {4, 6})); },
               {sample::normal({2, 3, 4}, 41)}},
              {"(2, 3) to (-1)", [](const std::vector<Var>& v) { return square(reshape(v[0], {-1})); },
               {sample::normal({2, 3}, 42)}}};
        })
        .with_random([](const Var& a, const Var&, const Choices& c) {
          return reshape(a, detail::random_reshape_target(a.shape(), c.flag, c.bits));
        }),
    Primitive(info::kBroadcastTo, kFile)
        .with_samples([] {
          return Samples{{"(3, 1) to (2, 3, 4)",
                          [](const std::vector<Var>& v) { return square(broadcast_to(v[0], {2, 3, 4})); },
                          {sample::normal({3, 1}, 43)}},
                         {"a row to (2, 3)",
                          [](const std::vector<Var>& v) { return square(broadcast_to(v[0], {2, 3})); },
                          {sample::normal({3}, 44)}}};
        })
        .with_random([](const Var& a, const Var&, const Choices& c) {
          const Shape target = detail::random_broadcast_target(a.shape(), c.bits, c.flag);
          detail::check_random_size(numel(target), c, "broadcast_to");
          return broadcast_to(a, target);
        }),
    Primitive(info::kTranspose, kFile)
        .with_samples([] {
          const Tensor x = sample::normal({2, 3, 4}, 45);
          return Samples{
              {"reversed", [](const std::vector<Var>& v) { return square(transpose(v[0])); }, {x}},
              {"(1, 2, 0)", [](const std::vector<Var>& v) { return square(transpose(v[0], {1, 2, 0})); },
               {x}}};
        })
        .with_random([](const Var& a, const Var&, const Choices& c) {
          return transpose(a, detail::random_permutation(a.rank(), c.bits));
        }),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
