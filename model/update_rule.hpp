#pragma once
// The optimisers' update rules and their hyper-parameters: what one
// optimiser differs from another by (model/optimizers.hpp documents each
// formula). A plain enum and struct, so that the per-level kernels
// (model/detail/optimizer_level.cpp) can read them too.
namespace npdl::model {

enum class UpdateRule : int { Sgd, Momentum, Nesterov, Adagrad, RMSprop, Adadelta, Adam, Adamax };
constexpr int kUpdateRuleCount = static_cast<int>(UpdateRule::Adamax) + 1;

/// The rule-specific hyper-parameters; a rule reads the ones it has.
struct RuleParameters {
  double momentum = 0;          // Momentum, Nesterov
  double rho = 0;               // RMSprop, Adadelta: decay of the running averages
  double beta1 = 0, beta2 = 0;  // Adam, Adamax
  double epsilon = 0;           // Adagrad, RMSprop, Adadelta, Adam, Adamax
};

}  // namespace npdl::model
