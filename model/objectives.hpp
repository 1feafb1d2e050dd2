#pragma once
// npdl's objectives (loss functions), on graph values. Each loss is the mean
// over the samples (axis 0) of a per-sample loss summed over the other axes,
// as in npdl. The eager forward/backward give its value and its gradient
// with respect to the outputs (through reverse mode, so backward is the
// exact derivative of forward; npdl's own backwards drop the 1/N).
#include <memory>
#include <string>
#include <vector>

#include "autodiff/graph.hpp"

namespace npdl::model {

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string name() const = 0;

  /// The loss of a batch (a one-element value). Throws ShapeError when the
  /// outputs and targets differ in shape or have no samples axis.
  Var loss(const Var& outputs, const Var& targets) const;

  /// The activation ("softmax", "sigmoid") whose input this objective can
  /// take instead of its output, for a stabler loss; empty for none.
  /// See Note [Final activation] in layers/activation.hpp.
  virtual std::string fuses_with() const { return ""; }
  /// The loss computed from the final activation's input (see fuses_with).
  Var loss_from_pre_activation(const Var& pre_activation, const Var& targets) const;

  /// npdl's eager API: the loss value, and d loss / d outputs.
  double forward(const Tensor& outputs, const Tensor& targets) const;
  Tensor backward(const Tensor& outputs, const Tensor& targets) const;

 protected:
  virtual Var per_batch(const Var& outputs, const Var& targets) const = 0;
  virtual Var per_batch_from_pre_activation(const Var& pre_activation, const Var& targets) const;
};
using ObjectivePtr = std::shared_ptr<const Objective>;

/// 0.5 * mean over samples of sum((p - t)^2)   (npdl's MeanSquaredError)
class MeanSquaredError : public Objective {
 public:
  std::string name() const override { return "MeanSquaredError"; }

 protected:
  Var per_batch(const Var& p, const Var& t) const override;
};

/// mean over samples of sum((sqrt(p) - sqrt(t))^2) / sqrt(2)
class HellingerDistance : public Objective {
 public:
  std::string name() const override { return "HellingerDistance"; }

 protected:
  Var per_batch(const Var& p, const Var& t) const override;
};

/// -mean over samples of sum(t log(p + eps) + (1 - t) log(1 - p + eps)) for
/// probabilities p; after a sigmoid, computed from its input z as
/// sum(softplus(z) - t z), which neither overflows nor takes log(0).
class BinaryCrossEntropy : public Objective {
 public:
  explicit BinaryCrossEntropy(double epsilon = 1e-11) : epsilon_(epsilon) {}
  std::string name() const override { return "BinaryCrossEntropy"; }
  std::string fuses_with() const override { return "sigmoid"; }

 protected:
  Var per_batch(const Var& p, const Var& t) const override;
  Var per_batch_from_pre_activation(const Var& z, const Var& t) const override;

 private:
  double epsilon_;
};

/// -mean over samples of sum(t * log_softmax(z)) along the last axis.
/// Its outputs are the scores before the softmax (logits): the softmax is
/// part of the loss, computed stably through log_softmax. A Model whose last
/// layer ends in a softmax hands it that softmax's input.
class SoftmaxCategoricalCrossEntropy : public Objective {
 public:
  /// npdl's SCCE(epsilon=1e-11), the floor npdl meant for a probability
  /// before its log (its clipping line is commented out). The loss here is
  /// computed from scores with log_softmax, which never takes the log of a
  /// rounded-off zero, so no floor is applied; the value is kept for
  /// npdl's signature. ValueError unless finite and > 0.
  explicit SoftmaxCategoricalCrossEntropy(double epsilon = 1e-11);
  double epsilon() const { return epsilon_; }
  std::string name() const override { return "SoftmaxCategoricalCrossEntropy"; }
  std::string fuses_with() const override { return "softmax"; }

 protected:
  Var per_batch(const Var& z, const Var& t) const override;
  Var per_batch_from_pre_activation(const Var& z, const Var& t) const override;

 private:
  double epsilon_;
};

/// The objective of a name (npdl's: "mse", "MSE", "mean_squared_error",
/// "MeanSquaredError", "bce", "BCE", "binary_cross_entropy", "scce", "SCCE",
/// "softmax_categorical_cross_entropy", "hed", ...); throws ValueError
/// listing the valid names.
ObjectivePtr get_objective(const std::string& name);
const std::vector<std::string>& objective_names();

}  // namespace npdl::model
