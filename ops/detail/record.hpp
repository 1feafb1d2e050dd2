#pragma once
// Shared by the ops' .cpp files: recording on the inputs' graph, and the
// differentiable pieces VJPs are written with (Note [Differentiable VJPs]).
#include "autodiff/graph.hpp"

namespace npdl::ops::detail {

/// Records `value` as the result of `info` applied to `inputs`, on their
/// graph; an untracked Var when no input is on a graph.
inline Var record(const OpInfo& info, std::initializer_list<const Var*> inputs, Tensor value,
                  Tensors saved, VjpFn vjp) {
  Graph* graph = common_graph(inputs, info.name);
  if (graph == nullptr) return Var(std::move(value));
  return graph->record(info, inputs, std::move(value), std::move(saved), std::move(vjp));
}

/// Whether an op applied to `operands` would record: one of them is on a
/// graph and gradients are enabled (in a VJP: under create_graph).
inline bool records(std::initializer_list<const Var*> operands) {
  if (!grad_enabled()) return false;
  for (const Var* v : operands) {
    if (v->tracked()) return true;
  }
  return false;
}

/// One formula, two ways of computing it: `compose` from ops (it records
/// when an operand is on a graph: a VJP under create_graph), or `fused`, a
/// single kernel giving the same values, when nothing would record (a
/// first-order VJP). The fused kernel is an optimisation of the composition,
/// never a different formula; gradgradcheck compares the two.
template <class Fused, class Compose>
Var fused_or(std::initializer_list<const Var*> operands, Fused&& fused, Compose&& compose) {
  return records(operands) ? compose() : Var(fused());
}

}  // namespace npdl::ops::detail
