#pragma once
// npdl's BatchNormal layer, on the graph.
//
// Applied to a graph value it records one composite node named
// "BatchNormal". What is inside depends on the backward mode:
//   autodiff  the primitives of the forward (mean, sub, square, mean, add,
//             rsqrt, mul, mul by gamma, add beta): reverse mode through them
//             is the backward;
//   fused     one node whose forward makes the statistics in one pass and
//             whose VJP is the hand-derived formula (kernels.hpp);
//   checked   the fused node, whose VJP also runs reverse mode through the
//             primitives and throws GradientMismatch naming the largest
//             difference when the two disagree beyond the dtype's tolerance.
#include <functional>
#include <optional>
#include <string>

#include "layers/backward_mode.hpp"
#include "layers/batch_norm/composite.hpp"
#include "layers/batch_norm/kernels.hpp"
#include "layers/batch_norm/second_order.hpp"
#include "layers/initializers.hpp"
#include "layers/layer.hpp"

namespace npdl::layers {

/// How the fused training node behaves; the defaults are the layer's fused
/// mode without its input checks.
struct FusedOptions {
  /// The VJP also runs reverse mode through the composite and throws
  /// GradientMismatch on disagreement (the checked mode).
  bool checked = false;
  Variant variant = Variant::Correct;
  /// A batch with NaN or Inf (seen in its statistics, which any of them
  /// poisons) throws ValueError before anything is recorded.
  bool require_finite = false;
  /// How the node's gradients are differentiated under create_graph.
  DoubleBackward double_backward = DoubleBackward::Hand;
  /// Filled with the batch statistics (float64, parameter shape) when given.
  BatchNormStats* stats = nullptr;
};

/// The fused training forward as one recorded node whose VJP is the
/// hand-derived formula.
Var batchnorm_fused_train(const Var& x, const Var& gamma, const Var& beta,
                          const BatchNormLayout& layout, double epsilon,
                          const FusedOptions& options = {});
/// The fused inference forward (an affine map per feature) as one node.
Var batchnorm_fused_infer(const Var& x, const Var& gamma, const Var& beta,
                          const BatchNormLayout& layout, double epsilon, const Tensor& running_mean,
                          const Tensor& running_var, bool checked = false);

/// What a failed statistics check names (check_statistics): the layer, the
/// batch ("the training batch of shape (4, 2)"), and whether the input holds
/// NaN or Inf: std::nullopt when it is finite (then the variance overflowed),
/// else a detail appended to the message ("" for none).
struct StatisticsFailure {
  std::string layer;
  std::string batch;
  std::optional<std::string> non_finite;
};
/// Note [Statistics overflow] (batch_normal.cpp): throws ValueError unless the
/// float64 training statistics `stats` (mean, var) of a batch of `dtype` fit
/// that dtype. `describe` is called only when they do not, to name the batch
/// and tell NaN or Inf in the input from a variance that overflowed.
void check_statistics(const BatchNormStats& stats, DType dtype,
                      const std::function<StatisticsFailure()>& describe);

/// Note [Running statistics from outside] (batch_normal.cpp): ValueError
/// unless every running mean is finite (check_running_mean), or every running
/// variance finite and >= 0 (check_running_var); the message names `layer`,
/// the first feature that fails and its value.
void check_running_mean(const Tensor& mean, const std::string& layer);
void check_running_var(const Tensor& var, const std::string& layer);

/// Running statistics after one training batch of M elements per feature:
/// momentum weighs the old value (npdl's convention); the batch variance is
/// biased (divided by M), so it is scaled by M / (M - 1) to estimate the
/// population's. New tensors in the running ones' dtype replace them.
void update_running_statistics(Tensor& running_mean, Tensor& running_var,
                               const BatchNormStats& stats, std::int64_t M, double momentum);

class BatchNormal : public Layer {
 public:
  /// npdl's signature. Throws ValueError for epsilon <= 0 or not finite and
  /// momentum outside [0, 1].
  explicit BatchNormal(double epsilon = 1e-6, double momentum = 0.9, int axis = 0,
                       initializers::InitSpec beta_init = "zero",
                       initializers::InitSpec gamma_init = "one");

  std::string name() const override { return "BatchNormal"; }
  Var apply(const Var& input, bool training) override;
  /// npdl's order: {beta, gamma}; grads() is {dbeta, dgamma}.
  std::vector<ParameterPtr> params() const override { return {beta_, gamma_}; }

  void set_backward_mode(BackwardMode mode) { mode_ = mode; }
  BackwardMode backward_mode() const { return mode_; }
  void set_variant(Variant variant) { variant_ = variant; }
  /// How the fused backward is differentiated again under create_graph
  /// (layers/batch_norm/second_order.hpp); checked mode checks Hand.
  void set_double_backward(DoubleBackward how) { double_backward_ = how; }
  DoubleBackward double_backward() const { return double_backward_; }
  Variant variant() const { return variant_; }

  double epsilon() const { return epsilon_; }
  double momentum() const { return momentum_; }
  int axis() const { return axis_; }
  /// The layout for inputs of the connected shape.
  const BatchNormLayout& layout() const;

  const ParameterPtr& gamma() const { return gamma_; }
  const ParameterPtr& beta() const { return beta_; }
  const Tensor& running_mean() const { return running_mean_; }
  const Tensor& running_var() const { return running_var_; }
  /// Replace parameters or running statistics; ShapeError unless they have
  /// the parameter shape (the layer must be connected); ValueError for
  /// running statistics that check_running_mean or check_running_var refuse.
  /// Inference checks the running statistics again.
  void set_gamma(const Tensor& gamma);
  void set_beta(const Tensor& beta);
  void set_running_stats(const Tensor& mean, const Tensor& var);
  /// State 0 is the running mean, 1 the running variance:
  /// check_running_mean or check_running_var.
  void check_state(std::size_t index, const Tensor& value, const std::string& who) const override;

 protected:
  void build(const Shape& input_shape) override;
  std::vector<Tensor*> state_tensors() override { return {&running_mean_, &running_var_}; }
  std::vector<std::string> state_names() const override { return {"running_mean", "running_var"}; }
  // Shared with SyncBatchNormal (layers/batch_norm/sync_batch_normal.hpp), which
  // validates on every rank and reduces the statistics across ranks.
  void check_input(const Tensor& x, bool training, bool scan_values) const;

  /// How one pass records the layer, decided once every check that can fail
  /// before recording has passed: `record` records the normalisation of x
  /// with the given gamma and beta leaves and fills the batch statistics (in
  /// training), which update the running ones as from `count` elements per
  /// feature.
  struct Recording {
    std::function<Var(const Var& x, const Var& gamma, const Var& beta, BatchNormStats& stats)>
        record;
    std::int64_t count = 0;
  };
  /// The skeleton BatchNormal and SyncBatchNormal share (Note [No change on
  /// failure]): connects on first use, follows the input's dtype, calls
  /// `plan` with the input's layout (its checks may throw: nothing is
  /// recorded yet), records inside the layer's composite scope, updates the
  /// running statistics in training, and restores everything if any of it
  /// throws.
  Var apply_with(const Var& x, bool training,
                 const std::function<Recording(const BatchNormLayout& layout)>& plan);

 private:
  void update_running_stats(const BatchNormStats& stats, std::int64_t M);
  Var record_composite(const Var& x, const Var& gamma, const Var& beta, const BatchNormLayout& L,
                       bool training, BatchNormStats& stats) const;
  Var record_fused(const Var& x, const Var& gamma, const Var& beta, const BatchNormLayout& L,
                   bool training, BatchNormStats& stats) const;
  Tensor checked_param(const Tensor& t, const char* what) const;

  double epsilon_, momentum_;
  int axis_;
  initializers::InitSpec beta_init_, gamma_init_;
  BackwardMode mode_ = BackwardMode::Fused;
  Variant variant_ = Variant::Correct;
  DoubleBackward double_backward_ = DoubleBackward::Hand;
  BatchNormLayout layout_;
  ParameterPtr beta_, gamma_;
  Tensor running_mean_, running_var_;
};

}  // namespace npdl::layers
