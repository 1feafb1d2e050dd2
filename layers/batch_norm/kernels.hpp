#pragma once
// Batch normalisation's fused kernels and the hand-derived backward, on
// the (outer, features, inner) view of layout.hpp.
#include <string>
#include <vector>

#include "layers/batch_norm/layout.hpp"
#include "tensor/tensor.hpp"

namespace npdl::layers {

/// Training forward: y = gamma * (x - mean) * invstd + beta. Statistics are
/// two-pass (the mean, then the squared deviations from it) but read x from
/// memory once: per group of features that stays in cache (Note [Feature
/// groups] in layers/batch_norm/detail/feature_loops.hpp), or per block of
/// rows merged with Chan's formula when every position is a feature (inner == 1). Results
/// are the same bit for bit at any thread count.
/// `npdl_std_bug` normalises by 1 / sqrt(std + epsilon) instead.
Tensor batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               const BatchNormLayout& layout, double epsilon, BatchNormStats& stats,
                               bool npdl_std_bug = false);

/// Inference forward with given statistics (running mean and variance).
Tensor batchnorm_forward_infer(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               const Tensor& mean, const Tensor& var, const BatchNormLayout& layout,
                               double epsilon);

struct BatchNormGrads {
  Tensor dx, dgamma, dbeta;
};

/// The hand-derived backward of the training forward (derivation in
/// kernels.cpp): two reductions and one elementwise pass.
BatchNormGrads batchnorm_backward_train(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                        const BatchNormStats& stats, const BatchNormLayout& layout);

/// Backward of the inference forward, an affine map:
/// dx = dy * gamma * invstd, dgamma = sum(dy * xhat), dbeta = sum(dy).
BatchNormGrads batchnorm_backward_infer(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                        const Tensor& mean, const Tensor& var,
                                        const BatchNormLayout& layout, double epsilon);

// The local parts of SyncBatchNormal (layers/batch_norm/sync_batch_normal.hpp), whose
// statistics and backward sums are reduced across ranks between them: the
// same passes as the kernels above, split where the communication goes.

/// Per-feature moments of x, float64, shape (features): the mean and M2, the
/// sum of squared deviations from it (>= 0), over the M reduced elements.
/// The statistics pass of batchnorm_forward_train (the same sums; x read from
/// memory once); merged across ranks with Chan's formula.
struct BatchNormMoments {
  Tensor mean;
  Tensor m2;
};
BatchNormMoments batchnorm_moments(const Tensor& x, const BatchNormLayout& layout);

/// The training backward's two per-feature sums, float64, shape (features).
struct BatchNormSums {
  Tensor sum_dy;       // sum(dy)
  Tensor sum_dy_xhat;  // sum(dy * xhat), xhat = (x - mean) * invstd
};
/// The sums over this tensor's elements, with the statistics `stats` (mean,
/// invstd): the reduction pass of batchnorm_backward_train (dy and x read once).
BatchNormSums batchnorm_backward_sums(const Tensor& dy, const Tensor& x,
                                      const BatchNormStats& stats, const BatchNormLayout& layout);
/// dx of the training backward from given sums over `count` elements per
/// feature (for SyncBatchNormal: every rank's sums all-reduced, count the
/// global M): dx = (gamma * invstd / count) * (count * dy - sum_dy -
/// xhat * sum_dy_xhat), the elementwise pass of batchnorm_backward_train.
Tensor batchnorm_backward_dx(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                             const BatchNormStats& stats, const BatchNormSums& sums,
                             std::int64_t count, const BatchNormLayout& layout);

/// One step of the derivation from the composite graph to the fused formula,
/// as the teaching tools print it.
struct DerivationStep {
  std::string title;
  std::string formula;
  std::string why;
};
const std::vector<DerivationStep>& batchnorm_derivation();

}  // namespace npdl::layers
