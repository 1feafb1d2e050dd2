#pragma once
// Shared by the ops' .cpp files: recording on the inputs' graph.
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

}  // namespace npdl::ops::detail
