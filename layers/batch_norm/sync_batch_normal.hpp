#pragma once
// SyncBatchNormal: BatchNormal whose training statistics cover the global
// batch, the union of every rank's shard (data-parallel training).
//
// Same constructor arguments, axes, modes and API as BatchNormal (it is
// one, for save/load and the model's bookkeeping), plus the communicator.
// Inference is BatchNormal's: running statistics only, no communication.
//
// Training forward, per feature:
//   each rank: its count m_r, mean_r and M2_r = sum((x - mean_r)^2), float64,
//   by the fused kernel's statistics pass (batchnorm_moments: x read once)
//   one allgather of (m_r, mean_r, M2_r); every rank merges them in rank
//   order with Chan's formula (never E[x^2] - E[x]^2), so every rank gets
//   the same bits: M = sum m_r, mean, var = M2 / M;
//   y = gamma * (x - mean) * rsqrt(var + epsilon) + beta on the local shard;
//   running statistics updated from the global mean and var (with M), the
//   same on every rank. The global statistics are checked as BatchNormal's
//   (Note [Statistics overflow]): NaN or Inf on any rank, or a variance
//   beyond the dtype's range, makes every rank throw the same ValueError.
// Fused backward: the two local sums sum(dy) and sum(dy * xhat) (float64,
// batchnorm_backward_sums) are all-reduced in one call, then
//   dx = (gamma * invstd / M) * (M * dy - SUM(dy) - xhat * SUM(dy * xhat))
// with the global sums (batchnorm_backward_dx). Both forward and backward
// run the fused kernels' passes; what they cannot share with BatchNormal is
// the cache: the forward reads x once for the statistics and once for y, the
// backward dy and x once for the sums and once for dx (BatchNormal does each
// pair while a group of features is still in cache). dgamma and dbeta stay
// the rank's own (local) sums, as for every other parameter: the
// data-parallel step all-reduces all parameter gradients together.
// Autodiff: the composite of primitives with two dist::all_reduce_sum ops
// (the sums behind the mean and the variance); reverse mode through it,
// whose all-reduce VJPs do the cross-rank part. Checked: fused, compared
// with that reverse mode; a mismatch on any rank throws GradientMismatch
// on every rank.
//
// Before any statistic is reduced, the ranks agree that their inputs fit:
// a rank whose input does not fit the parameters, or whose features or
// dtype differ from the others', makes every rank throw (ShapeError or
// DTypeError), the message naming each rank and its input's shape.
#include "distributed/communicator.hpp"
#include "layers/batch_norm/batch_normal.hpp"

namespace npdl::layers {

/// The training composite with all-reduces: reverse mode through it is the
/// distributed backward. `global_count` is M over all ranks.
Var sync_batchnorm_composite_train(const Var& x, const Var& gamma, const Var& beta,
                                   const BatchNormLayout& layout, double epsilon,
                                   std::int64_t global_count, const dist::CommunicatorPtr& comm);

/// Per-feature statistics of the global batch (float64, parameter shape),
/// merged with Chan's formula from every rank's (count, mean, M2).
struct GlobalStats {
  BatchNormStats stats;  // mean, var (biased, / M), invstd (with epsilon)
  std::int64_t count = 0;
};
GlobalStats sync_batchnorm_statistics(const Tensor& x, const BatchNormLayout& layout,
                                      double epsilon, dist::Communicator& comm);

class SyncBatchNormal : public BatchNormal {
 public:
  explicit SyncBatchNormal(double epsilon = 1e-6, double momentum = 0.9, int axis = 0,
                           initializers::InitSpec beta_init = "zero",
                           initializers::InitSpec gamma_init = "one",
                           dist::CommunicatorPtr comm = dist::world());

  std::string name() const override { return "SyncBatchNormal"; }
  Var apply(const Var& input, bool training) override;
  const dist::CommunicatorPtr& communicator() const { return comm_; }

 private:
  void agree_on_input(const Tensor& x);
  /// ValueError on every rank alike when the global batch is too small or
  /// its statistics do not fit x's dtype.
  void check_global_statistics(const Tensor& x, const GlobalStats& global) const;
  /// The training forward with the global statistics, as the backward mode
  /// says.
  Var record(const Var& x, const Var& gamma, const Var& beta, const BatchNormLayout& layout,
             const GlobalStats& global) const;
  dist::CommunicatorPtr comm_;
};

}  // namespace npdl::layers
