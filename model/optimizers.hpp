#pragma once
// npdl's optimisers: each updates parameters in place from their gradients
// (Parameter::grad, filled by reverse mode), with npdl's hyper-parameter
// names and defaults.
//
// Common to all (npdl's Optimizer(lr=0.001, clip=-1, decay=0., lr_min=0.,
// lr_max=np.inf)):
//   clip > 0   each gradient element is clipped to [-clip, clip] first;
//   decay      step t (from 0) uses lr_t = lr / (1 + decay * t), kept within
//              [lr_min, lr_max]. (npdl's Python writes `lr *= 1. / 1 +
//              decay * t`, which by precedence grows lr; this follows the
//              time-based decay it documents, and applies it to every
//              optimiser, as it does clipping.)
//
// State (velocities, moments) is per parameter, in the order of the list
// passed to update(); that list must keep its length and shapes.
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/graph.hpp"
#include "model/update_rule.hpp"

namespace npdl::model {

struct OptimizerOptions {
  double lr = 0.001;
  double clip = -1.0;
  double decay = 0.0;
  double lr_min = 0.0;
  double lr_max = std::numeric_limits<double>::infinity();
};

/// One mechanism for every optimiser: an update rule with its
/// hyper-parameters, the common options, and per-parameter state. The rules
/// are stated once, in a table (model/optimizers.cpp: name, state, step
/// size, checks) and in the per-level kernels (model/detail/optimizer_level.cpp);
/// the classes below only name a rule and npdl's defaults for it.
class Optimizer {
 public:
  /// Throws ValueError for a hyper-parameter outside its domain, naming it.
  Optimizer(UpdateRule rule, RuleParameters parameters, OptimizerOptions options);
  virtual ~Optimizer() = default;
  /// npdl's class name: "SGD", "NesterovMomentum", "Adam", ...
  std::string name() const;
  UpdateRule rule() const { return rule_; }
  const RuleParameters& parameters() const { return parameters_; }

  /// One step on every parameter. Throws ShapeError when a gradient is
  /// missing or does not fit its parameter, or when the parameters differ
  /// from the ones the state was made for; nothing is updated then.
  void update(const std::vector<ParameterPtr>& params);
  /// The checks update() makes first, without updating: a caller that must
  /// not fail part-way checks, lets go of what it holds, then updates.
  void check(const std::vector<ParameterPtr>& params) const;

  /// The learning rate the next step uses.
  double current_lr() const;
  std::int64_t iterations() const { return iterations_; }
  const OptimizerOptions& options() const { return options_; }
  /// Forgets the steps taken (state and decay), as a fresh optimiser.
  void reset();

 private:
  UpdateRule rule_;
  RuleParameters parameters_;
  OptimizerOptions options_;
  std::int64_t iterations_ = 0;
  std::vector<std::vector<Tensor>> state_;  // per parameter: the rule's slots
  std::vector<Shape> shapes_;               // of the parameters the state was made for
};
using OptimizerPtr = std::shared_ptr<Optimizer>;

/// p -= lr * g
struct SGD : Optimizer {
  explicit SGD(OptimizerOptions options = {});
};

/// v = momentum * v - lr * g; p += v
struct Momentum : Optimizer {
  explicit Momentum(double momentum = 0.9, OptimizerOptions options = {});
};

/// v = momentum * v - lr * g; p += momentum * v - lr * g
struct NesterovMomentum : Optimizer {
  explicit NesterovMomentum(double momentum = 0.9, OptimizerOptions options = {});
};

/// c += g^2; p -= lr * g / (sqrt(c) + epsilon)
struct Adagrad : Optimizer {
  explicit Adagrad(double epsilon = 1e-6, OptimizerOptions options = {});
};

/// c = rho * c + (1 - rho) * g^2; p -= lr * g / sqrt(c + epsilon)
struct RMSprop : Optimizer {
  explicit RMSprop(double rho = 0.9, double epsilon = 1e-6, OptimizerOptions options = {});
};

/// c = rho * c + (1 - rho) * g^2; u = g * sqrt(d + epsilon) / sqrt(c + epsilon);
/// p -= lr * u; d = rho * d + (1 - rho) * u^2
struct Adadelta : Optimizer {
  explicit Adadelta(double rho = 0.9, double epsilon = 1e-6, OptimizerOptions options = {});
};

/// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
/// p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon)
struct Adam : Optimizer {
  explicit Adam(double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8,
                OptimizerOptions options = {});
};

/// m = b1 m + (1 - b1) g; u = max(b2 u, |g|); p -= lr / (1 - b1^t) * m / (u + epsilon)
struct Adamax : Optimizer {
  explicit Adamax(double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8,
                  OptimizerOptions options = {});
};

/// The optimiser of a name, with npdl's defaults ("sgd", "SGD", "momentum",
/// "nesterov_momentum", "NesterovMomentum", "adagrad", "rmsprop",
/// "adadelta", "adam", "adamax" and their CamelCase); throws ValueError
/// listing the valid names. `options` sets the common ones (lr, clip...).
OptimizerPtr get_optimizer(const std::string& name, const OptimizerOptions& options = {});
const std::vector<std::string>& optimizer_names();

}  // namespace npdl::model
