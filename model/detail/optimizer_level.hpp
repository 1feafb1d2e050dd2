#pragma once
// The optimisers' elementwise updates, compiled once per instruction-set
// level (model/detail/optimizer_level.cpp; Note [Kernels per instruction set] in
// tensor/kernels/kernels.hpp). model/optimizers.cpp checks shapes, keeps
// the state and picks the table per call by kernels::level_for_this_thread().
// Raw pointers and counts only, so that nothing here instantiates a
// template in a level's object.
#include <cstdint>

#include "model/update_rule.hpp"

namespace npdl::model::optimizer_level {

using Rule = UpdateRule;

/// One step: its learning rate (Adam, Adamax: with the bias corrections)
/// and the rule's hyper-parameters.
struct StepParams {
  double lr = 0;
  RuleParameters rule;
};

template <class T>
struct TypedOptimizerKernels {
  /// Updates the n parameters p in place from their gradients g and the
  /// rule's state s0, s1 (n each; null where the rule keeps less).
  void (*update)(Rule rule, const StepParams& step, T* p, const T* g, T* s0, T* s1, std::int64_t n);
  /// g[i] = min(max(g[i], -clip), clip)
  void (*clip)(T* g, T clip, std::int64_t n);
};

struct OptimizerKernelTable {
  TypedOptimizerKernels<float> f32;
  TypedOptimizerKernels<double> f64;
};

}  // namespace npdl::model::optimizer_level
