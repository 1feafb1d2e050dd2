#pragma once
// Batch norm inside a recurrent layer (Cooijmans et al., "Recurrent Batch
// Normalization", 2016): one quantity of the cell (the input term W_x x_t,
// the hidden term W_h h_{t-1}, or the cell state c_t), normalised over the
// batch at every step with statistics of that step, while gamma and beta
// are shared by all steps. Training normalises by the batch's statistics
// and updates step t's running ones; inference uses step t's running
// statistics, or the last step's for steps beyond the longest training
// sequence seen.
#include <cstdint>
#include <string>
#include <vector>

#include "autodiff/graph.hpp"
#include "layers/backward_mode.hpp"
#include "layers/batch_norm/layout.hpp"

namespace npdl::layers {

/// A recurrent layer's batch-norm settings.
struct RecurrentBatchNorm {
  bool enabled = false;
  /// gamma's initial value: the paper's 0.1 keeps tanh and the sigmoids out
  /// of saturation at the start.
  double gamma = 0.1;
  double epsilon = 1e-5;
  double momentum = 0.9;  // npdl's convention: the weight of the old value
};

class StepBatchNorm {
 public:
  /// `name` prefixes the parameters and statistics ("bn_x" gives
  /// "bn_x.gamma", "bn_x.running_mean"); without `with_beta` the shift is 0
  /// (the layer's bias takes its place).
  StepBatchNorm(std::string name, bool with_beta, RecurrentBatchNorm options);

  /// Creates gamma (options.gamma), beta (0) and empty statistics for
  /// `features` features.
  void build(std::int64_t features);
  /// v (N, features) at time step t, as a value on v's graph: the fused
  /// nodes (fused, checked) or the primitives (autodiff) of BatchNormal.
  /// Training needs N >= 2 (a ShapeError otherwise) and updates step t's
  /// running statistics.
  Var apply(const Var& v, std::int64_t step, bool training, BackwardMode mode);

  std::vector<ParameterPtr> params() const;
  /// The running statistics, (steps seen, features): mean, variance.
  std::vector<Tensor*> state() { return {&running_mean_, &running_var_}; }
  std::vector<std::string> state_names() const;
  /// Steps whose statistics training has seen.
  std::int64_t steps() const { return running_mean_.defined() ? running_mean_.shape()[0] : 0; }

 private:
  Tensor statistics_row(const Tensor& running, std::int64_t step, double fill) const;
  void update(std::int64_t step, const BatchNormStats& stats, std::int64_t M);

  std::string name_;
  bool with_beta_;
  RecurrentBatchNorm options_;
  ParameterPtr gamma_, beta_;
  Tensor running_mean_, running_var_;
};

}  // namespace npdl::layers
