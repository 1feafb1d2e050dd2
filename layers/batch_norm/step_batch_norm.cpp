#include "layers/batch_norm/step_batch_norm.hpp"

#include <algorithm>
#include <utility>

#include "layers/batch_norm/batch_normal.hpp"
#include "layers/batch_norm/composite.hpp"
#include "ops/ops.hpp"
#include "ops/sequence.hpp"

namespace npdl::layers {

StepBatchNorm::StepBatchNorm(std::string name, bool with_beta, RecurrentBatchNorm options)
    : name_(std::move(name)), with_beta_(with_beta), options_(options) {}

void StepBatchNorm::build(std::int64_t features) {
  gamma_ =
      make_parameter(Tensor::full({features}, options_.gamma, DType::Float32), name_ + ".gamma");
  gamma_->grad = Tensor::zeros({features}, DType::Float32);
  if (with_beta_) {
    beta_ = make_parameter(Tensor::zeros({features}, DType::Float32), name_ + ".beta");
    beta_->grad = Tensor::zeros({features}, DType::Float32);
  }
  running_mean_ = Tensor::zeros({0, features}, DType::Float32);
  running_var_ = Tensor::zeros({0, features}, DType::Float32);
}

std::vector<ParameterPtr> StepBatchNorm::params() const {
  if (with_beta_) return {gamma_, beta_};
  return {gamma_};
}

std::vector<std::string> StepBatchNorm::state_names() const {
  return {name_ + ".running_mean", name_ + ".running_var"};
}

// Step t's row of a running statistic (the last row beyond the steps seen;
// `fill`, BatchNormal's starting value, before any training).
Tensor StepBatchNorm::statistics_row(const Tensor& running, std::int64_t step, double fill) const {
  const std::int64_t seen = steps(), features = running.shape()[1];
  if (seen == 0) return Tensor::full({features}, fill, running.dtype());
  const std::int64_t row = std::min(step, seen - 1);
  return ops::select(Var(running), 0, row).value();
}

namespace {

// `running` with row `step` replaced by `row`, or `row` appended when
// `step` is one past the last (steps arrive in order). A new tensor: the
// old one stays intact for a restore (Note [No change on failure]).
Tensor with_row(const Tensor& running, std::int64_t step, const Tensor& row) {
  const std::int64_t seen = running.shape()[0];
  const Var r = ops::reshape(Var(row), {1, row.shape()[0]});
  if (step == seen) return ops::concat({Var(running), r}, 0).value();
  return ops::concat(
             {ops::slice(Var(running), 0, 0, step), r, ops::slice(Var(running), 0, step + 1, seen)},
             0)
      .value();
}

}  // namespace

void StepBatchNorm::update(std::int64_t step, const BatchNormStats& stats, std::int64_t M) {
  const bool seen = step < steps();
  const std::int64_t features = running_mean_.shape()[1];
  const DType dtype = running_mean_.dtype();
  // A step never seen starts where BatchNormal's statistics start.
  Tensor mean = seen ? statistics_row(running_mean_, step, 0.0) : Tensor::zeros({features}, dtype);
  Tensor var =
      seen ? statistics_row(running_var_, step, 1.0) : Tensor::full({features}, 1.0, dtype);
  update_running_statistics(mean, var, stats, M, options_.momentum);
  Tensor new_mean = with_row(running_mean_, step, mean);
  running_var_ = with_row(running_var_, step, var);
  running_mean_ = std::move(new_mean);
}

Var StepBatchNorm::apply(const Var& v, std::int64_t step, bool training, BackwardMode mode) {
  const BatchNormLayout L = batchnorm_layout(v.shape(), 0);
  Graph* graph = v.graph();
  const auto leaf = [graph](const ParameterPtr& p) {
    return graph != nullptr ? graph->param(p) : Var(p->value);
  };
  const Var gamma = leaf(gamma_);
  const Var beta = with_beta_ ? leaf(beta_) : Var(Tensor::zeros(gamma.shape(), v.dtype()));
  const double eps = options_.epsilon;
  const bool checked = mode == BackwardMode::Checked;
  if (!training) {
    const Tensor mean = statistics_row(running_mean_, step, 0.0);
    const Tensor var = statistics_row(running_var_, step, 1.0);
    return mode == BackwardMode::Autodiff
               ? batchnorm_composite_infer(v, gamma, beta, L, eps, mean, var)
               : batchnorm_fused_infer(v, gamma, beta, L, eps, mean, var, checked);
  }
  if (L.M < 2) {
    throw ShapeError(name_ + " at step " + std::to_string(step) +
                     ": training normalises over the batch, which needs at least 2 sequences, "
                     "got " +
                     std::to_string(L.M));
  }
  BatchNormStats stats;
  Var y;
  if (mode == BackwardMode::Autodiff) {
    y = batchnorm_composite_train(v, gamma, beta, L, eps, Variant::Correct, &stats);
  } else {
    FusedOptions o;
    o.checked = checked;
    o.require_finite = true;
    o.stats = &stats;
    y = batchnorm_fused_train(v, gamma, beta, L, eps, o);
  }
  update(step, stats, L.M);
  return y;
}

}  // namespace npdl::layers
