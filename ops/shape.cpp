// Shape ops: they move no arithmetic, only layout.
#include "autodiff/tensor_math.hpp"
#include "ops/info.hpp"
#include "ops/ops.hpp"
#include "ops/record.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kReshape{"reshape", "a viewed with another shape", "ga = reshape(g, shape of a)"};
const OpInfo kBroadcastTo{"broadcast_to", "a repeated along broadcast axes",
                          "ga = unbroadcast(g): sum over the axes that were broadcast"};
const OpInfo kTranspose{"transpose", "axes of a permuted by perm",
                        "ga = transpose(g, inverse of perm)"};
}  // namespace info

Var reshape(const Var& a, const Shape& shape) {
  return record(info::kReshape, {&a}, a.value().reshape(shape), {},
                [](const VjpArgs& c) -> Tensors { return {c.grad.reshape(c.input_shapes[0])}; });
}

Var broadcast_to(const Var& a, const Shape& shape) {
  return record(info::kBroadcastTo, {&a}, m::broadcast_to(a.value(), shape), {},
                [](const VjpArgs& c) -> Tensors { return {c.unbroadcast(c.grad, 0)}; });
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
                [inverse](const VjpArgs& c) -> Tensors { return {m::transpose(c.grad, inverse)}; });
}

}  // namespace npdl::ops
