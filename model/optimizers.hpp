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

namespace npdl::model {

struct OptimizerOptions {
  double lr = 0.001;
  double clip = -1.0;
  double decay = 0.0;
  double lr_min = 0.0;
  double lr_max = std::numeric_limits<double>::infinity();
};

class Optimizer {
 public:
  explicit Optimizer(OptimizerOptions options);
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;

  /// One step on every parameter. Throws ShapeError when a gradient is
  /// missing or does not fit its parameter, or when the parameters differ
  /// from the ones the state was made for; nothing is updated then.
  void update(const std::vector<ParameterPtr>& params);

  /// The learning rate the next step uses.
  double current_lr() const;
  std::int64_t iterations() const { return iterations_; }
  const OptimizerOptions& options() const { return options_; }
  /// Forgets the steps taken (state and decay), as a fresh optimiser.
  void reset();

 protected:
  /// Updates one parameter (index i into the state) with gradient g, already
  /// clipped, at learning rate lr; `t` is the step number counted from 1.
  virtual void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) = 0;
  /// Slots of state per parameter (velocity, moments...), zero-initialised.
  virtual int state_slots() const { return 0; }
  Tensor& state(std::size_t param, int slot) { return state_[param][slot]; }

 private:
  void check(const std::vector<ParameterPtr>& params) const;

  OptimizerOptions options_;
  std::int64_t iterations_ = 0;
  std::vector<std::vector<Tensor>> state_;
  std::vector<Shape> shapes_;  // of the parameters the state was made for
};
using OptimizerPtr = std::shared_ptr<Optimizer>;

/// p -= lr * g
class SGD : public Optimizer {
 public:
  explicit SGD(OptimizerOptions options = {}) : Optimizer(options) {}
  std::string name() const override { return "SGD"; }

 protected:
  void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) override;
};

/// v = momentum * v - lr * g; p += v
class Momentum : public Optimizer {
 public:
  explicit Momentum(double momentum = 0.9, OptimizerOptions options = {});
  std::string name() const override { return "Momentum"; }

 protected:
  void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) override;
  int state_slots() const override { return 1; }
  double momentum_;
};

/// v = momentum * v - lr * g; p += momentum * v - lr * g
class NesterovMomentum : public Momentum {
 public:
  explicit NesterovMomentum(double momentum = 0.9, OptimizerOptions options = {})
      : Momentum(momentum, options) {}
  std::string name() const override { return "NesterovMomentum"; }

 protected:
  void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) override;
};

/// c += g^2; p -= lr * g / (sqrt(c) + epsilon)
class Adagrad : public Optimizer {
 public:
  explicit Adagrad(double epsilon = 1e-6, OptimizerOptions options = {});
  std::string name() const override { return "Adagrad"; }

 protected:
  void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) override;
  int state_slots() const override { return 1; }

 private:
  double epsilon_;
};

/// c = rho * c + (1 - rho) * g^2; p -= lr * g / sqrt(c + epsilon)
class RMSprop : public Optimizer {
 public:
  explicit RMSprop(double rho = 0.9, double epsilon = 1e-6, OptimizerOptions options = {});
  std::string name() const override { return "RMSprop"; }

 protected:
  void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) override;
  int state_slots() const override { return 1; }

 private:
  double rho_, epsilon_;
};

/// c = rho * c + (1 - rho) * g^2; u = g * sqrt(d + epsilon) / sqrt(c + epsilon);
/// p -= lr * u; d = rho * d + (1 - rho) * u^2
class Adadelta : public Optimizer {
 public:
  explicit Adadelta(double rho = 0.9, double epsilon = 1e-6, OptimizerOptions options = {});
  std::string name() const override { return "Adadelta"; }

 protected:
  void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) override;
  int state_slots() const override { return 2; }

 private:
  double rho_, epsilon_;
};

/// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
/// p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon)
class Adam : public Optimizer {
 public:
  explicit Adam(double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8,
                OptimizerOptions options = {});
  std::string name() const override { return "Adam"; }

 protected:
  void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) override;
  int state_slots() const override { return 2; }

 private:
  double beta1_, beta2_, epsilon_;
};

/// m = b1 m + (1 - b1) g; u = max(b2 u, |g|); p -= lr / (1 - b1^t) * m / (u + epsilon)
class Adamax : public Optimizer {
 public:
  explicit Adamax(double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8,
                  OptimizerOptions options = {});
  std::string name() const override { return "Adamax"; }

 protected:
  void step(std::size_t i, Tensor& value, const Tensor& g, double lr, std::int64_t t) override;
  int state_slots() const override { return 2; }

 private:
  double beta1_, beta2_, epsilon_;
};

/// The optimiser of a name, with npdl's defaults ("sgd", "SGD", "momentum",
/// "nesterov_momentum", "NesterovMomentum", "adagrad", "rmsprop",
/// "adadelta", "adam", "adamax" and their CamelCase); throws ValueError
/// listing the valid names. `options` sets the common ones (lr, clip...).
OptimizerPtr get_optimizer(const std::string& name, const OptimizerOptions& options = {});
const std::vector<std::string>& optimizer_names();

}  // namespace npdl::model
