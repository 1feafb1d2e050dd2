#include "model/objectives.hpp"

#include <cmath>
#include <functional>
#include <map>

#include "layers/registry.hpp"
#include "ops/ops.hpp"

namespace npdl::model {
namespace {

void check_pair(const std::string& objective, const Shape& outputs, const Shape& targets) {
  if (outputs.empty()) {
    throw ShapeError(objective + " expects outputs with a samples axis, got a scalar");
  }
  check_same_shape(outputs, targets, objective + ": targets (expected the outputs' shape)");
}

double samples(const Var& v) { return static_cast<double>(v.shape()[0]); }

Var targets_like(const Var& targets, const Var& outputs) {
  // Targets given in another dtype (labels as float64) follow the outputs'.
  if (targets.dtype() == outputs.dtype()) return targets;
  return Var(targets.value().astype(outputs.dtype()));
}

}  // namespace

Var Objective::loss(const Var& outputs, const Var& targets) const {
  check_pair(name(), outputs.shape(), targets.shape());
  return per_batch(outputs, targets_like(targets, outputs));
}

Var Objective::loss_from_pre_activation(const Var& pre_activation, const Var& targets) const {
  check_pair(name(), pre_activation.shape(), targets.shape());
  return per_batch_from_pre_activation(pre_activation, targets_like(targets, pre_activation));
}

Var Objective::per_batch_from_pre_activation(const Var&, const Var&) const {
  throw ValueError(name() + " has no form that takes the input of a final activation");
}

double Objective::forward(const Tensor& outputs, const Tensor& targets) const {
  NoGradGuard no_grad;
  return loss(Var(outputs), Var(targets)).value().item();
}

Tensor Objective::backward(const Tensor& outputs, const Tensor& targets) const {
  Graph graph(GraphOptions{/*keep_intermediates=*/false});
  const Var p = graph.variable(outputs, "outputs");
  const Var value = loss(p, graph.input(targets, "targets"));
  value.backward();
  return p.grad();
}

Var MeanSquaredError::per_batch(const Var& p, const Var& t) const {
  return ops::sum(ops::square(p - t)) * (0.5 / samples(p));
}

Var HellingerDistance::per_batch(const Var& p, const Var& t) const {
  return ops::sum(ops::square(ops::sqrt(p) - ops::sqrt(t))) * (1.0 / (std::sqrt(2.0) * samples(p)));
}

Var BinaryCrossEntropy::per_batch(const Var& p, const Var& t) const {
  const Var log_p = ops::log(p + epsilon_);
  const Var log_not_p = ops::log((1.0 - p) + epsilon_);
  return ops::sum(t * log_p + (1.0 - t) * log_not_p) * (-1.0 / samples(p));
}

Var BinaryCrossEntropy::per_batch_from_pre_activation(const Var& z, const Var& t) const {
  // -[t log s(z) + (1 - t) log(1 - s(z))] = softplus(z) - t z
  return ops::sum(ops::softplus(z) - t * z) * (1.0 / samples(z));
}

SoftmaxCategoricalCrossEntropy::SoftmaxCategoricalCrossEntropy(double epsilon) : epsilon_(epsilon) {
  if (!(std::isfinite(epsilon) && epsilon > 0)) {
    throw ValueError("SoftmaxCategoricalCrossEntropy: epsilon must be a finite number > 0, got " +
                     std::to_string(epsilon));
  }
}

Var SoftmaxCategoricalCrossEntropy::per_batch(const Var& z, const Var& t) const {
  if (z.rank() != 2) {
    throw ShapeError(name() + " expects scores of shape (N, classes), got " + to_string(z.shape()));
  }
  return ops::sum(t * ops::log_softmax(z, -1)) * (-1.0 / samples(z));
}

Var SoftmaxCategoricalCrossEntropy::per_batch_from_pre_activation(const Var& z,
                                                                  const Var& t) const {
  return per_batch(z, t);  // its outputs are already the softmax's input
}

namespace {

using Factory = std::function<ObjectivePtr()>;

const layers::Registry<Factory>& registry() {
  static const layers::Registry<Factory> r = [] {
    layers::Registry<Factory> m("objective");
    m.add({"mse", "MSE", "mean_squared_error", "MeanSquaredError"},
          [] { return std::make_shared<MeanSquaredError>(); });
    m.add({"hed", "HeD", "hellinger_distance", "HellingerDistance"},
          [] { return std::make_shared<HellingerDistance>(); });
    m.add({"bce", "BCE", "binary_cross_entropy", "BinaryCrossEntropy"},
          [] { return std::make_shared<BinaryCrossEntropy>(); });
    m.add({"scce", "SCCE", "softmax_categorical_cross_entropy", "SoftmaxCategoricalCrossEntropy"},
          [] { return std::make_shared<SoftmaxCategoricalCrossEntropy>(); });
    return m;
  }();
  return r;
}

}  // namespace

const std::vector<std::string>& objective_names() { return registry().names(); }

ObjectivePtr get_objective(const std::string& name) { return registry().get(name)(); }

}  // namespace npdl::model
