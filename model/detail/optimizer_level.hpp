#pragma once
// The optimisers' elementwise updates, compiled once per instruction-set
// level (model/detail/optimizer_level.cpp; Note [Kernels per instruction set] in
// tensor/kernels/kernels.hpp). model/optimizers.cpp checks shapes, keeps
// the state and picks the table per call by kernels::level_for_this_thread().
// Raw pointers and counts only, so that nothing here instantiates a
// template in a level's object.
#include <cstdint>

namespace npdl::model::optimizer_level {

/// The update rules (the optimisers of model/optimizers.hpp, which documents
/// each formula).
enum class Rule : int { Sgd, Momentum, Nesterov, Adagrad, RMSprop, Adadelta, Adam, Adamax };

/// One step's hyper-parameters; a rule reads the ones its optimiser has.
struct StepParams {
  double lr = 0;        // this step's learning rate (Adam, Adamax: with the bias corrections)
  double momentum = 0;  // Momentum, Nesterov
  double rho = 0;       // RMSprop, Adadelta: decay of the running averages
  double beta1 = 0, beta2 = 0;  // Adam, Adamax
  double epsilon = 0;
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
