// Batch normalisation: fused kernels and the derivation of the backward.
//
// Note [Batch-norm backward derivation]
// The composite graph of the training forward, per feature, over the M
// reduced elements (sums run over those M elements):
//
//   mean   = sum(x) / M                      (mean)
//   xmu    = x - mean                        (sub)
//   var    = sum(xmu * xmu) / M              (mul, mean)
//   invstd = rsqrt(var + epsilon)            (add, rsqrt)
//   xhat   = xmu * invstd                    (mul)
//   y      = gamma * xhat + beta             (mul, add)
//
// Reverse mode walks it backwards with dy arriving at y:
//   1. dbeta  = sum(dy)              add's VJP, summed over the broadcast axes
//   2. dgamma = sum(dy * xhat)       mul's VJP, summed over the broadcast axes
//   3. dxhat  = dy * gamma
//   4. dinvstd = sum(dxhat * xmu)    mul's VJP for the broadcast invstd
//   5. dvar   = -1/2 * invstd^3 * dinvstd              rsqrt's VJP
//   6. dxmu   = dxhat * invstd + dvar * 2 * xmu / M    two branches add up:
//              xmu feeds both xhat and var
//   7. dmean  = -sum(dxmu)
//             = -invstd * sum(dxhat) - dvar * 2 * sum(xmu) / M
//      and sum(xmu) = sum(x - mean) = 0, so the path from var back through
//      mean contributes nothing: dmean = -invstd * sum(dxhat)
//   8. dx     = dxmu + dmean / M     sub's VJP plus mean's (broadcast 1/M)
// Substituting xmu = xhat / invstd and dxhat = gamma * dy:
//   dvar * 2 * xmu / M = -invstd * xhat * sum(gamma dy xhat) / M
//   dx = gamma * invstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)
//      = (gamma * invstd / M) * (M * dy - sum(dy) - xhat * sum(dy * xhat))
// Two reductions (sum(dy), sum(dy * xhat)) and one elementwise pass. In the
// kernel, with d = x - mean, xhat = d * invstd, it is evaluated per feature as
//   dx = A * dy + B * d + C,  A = gamma * invstd,
//   B = -A * invstd^2 * sum(dy * d) / M,  C = -A * sum(dy) / M.
#include "layers/batch_norm/kernels.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "layers/batch_norm/detail/feature_loops.hpp"
#include "layers/batch_norm/detail/level.hpp"
#include "tensor/kernels/per_level.hpp"
#include "tensor/parallel.hpp"

// Each level's table() is defined by detail/level.cpp compiled for that
// level (Note [Kernels per instruction set] in tensor/kernels/kernels.hpp).
NPDL_PER_LEVEL_TABLES(npdl::layers::bn_level, ::npdl::layers::bn_level::BatchNormKernelTable)

namespace npdl::layers {
namespace {

using namespace bn_internal;
using bn_level::TypedBatchNormKernels;

// The loops over memory of the calling thread's level (detail/level.hpp):
// resolved once per call, before the work is split between threads.
template <class T>
const TypedBatchNormKernels<T>& level_kernels() {
  const bn_level::BatchNormKernelTable& table = bn_level::kLevelTables.for_this_thread();
  if constexpr (std::is_same_v<T, float>) {
    return table.f32;
  } else {
    return table.f64;
  }
}

bn_level::View view_of(const BatchNormLayout& L) { return {L.outer, L.features, L.inner}; }

// Outputs from this size on are written with streaming stores (Note
// [Streaming stores] in tensor/detail/stream_store.hpp): half the last-level
// cache of the machines this was tuned on (32 MiB). A batch norm's y and dx
// are written in a pass that also reads x (and dy) from cache, so
// write-allocate traffic is what is left to save.
constexpr std::int64_t kStreamBytes = std::int64_t{16} << 20;

template <class T>
bool streams(const BatchNormLayout& L) {
  return L.outer * L.features * L.inner * std::int64_t(sizeof(T)) > kStreamBytes;
}

// Statistics for inner == 1: columns are split between threads; each
// column's sums run in one order whatever the thread count. Gives the mean
// and M2, the sum of squared deviations from it (>= 0; the variance is
// M2 / M).
template <class T>
void moments_columns(const T* x, const BatchNormLayout& L, ArrD& mean, ArrD& m2) {
  const TypedBatchNormKernels<T>& k = level_kernels<T>();
  mean.resize(L.features);
  m2.resize(L.features);
  for_each_column_range(L, [&](std::int64_t lo, std::int64_t hi) {
    k.column_moments(x, view_of(L), lo, hi, mean.data(), m2.data());
  });
}

// The moments alone for inner > 1 (Note [Feature groups]): one read of x
// from memory.
template <class T>
void moments_groups(const T* x, const BatchNormLayout& L, ArrD& mean, ArrD& m2) {
  const TypedBatchNormKernels<T>& k = level_kernels<T>();
  mean.resize(L.features);
  m2.resize(L.features);
  for_each_group(L, grouping(L, sizeof(T)), [&](std::int64_t c0, std::int64_t c1) {
    k.group_moments(x, view_of(L), c0, c1, mean.data(), m2.data());
  });
}

// The training forward for inner > 1 (Note [Feature groups]): per group,
// the moments, then y while the group is still in cache.
template <class T>
void forward_groups(const T* x, T* y, const BatchNormLayout& L, const ArrD& gamma,
                    const Arr<T>& beta, double epsilon, bool npdl_std_bug, ArrD& mean, ArrD& var,
                    ArrD& invstd) {
  const TypedBatchNormKernels<T>& k = level_kernels<T>();
  const std::int64_t C = L.features;
  mean.resize(C);
  var.resize(C);
  invstd.resize(C);
  ArrD m2(C);
  Arr<T> m(C), sc(C), bs(C);
  const double M = double(L.M);
  const bool stream = streams<T>(L);
  for_each_group(L, grouping(L, sizeof(T)), [&](std::int64_t c0, std::int64_t c1) {
    k.group_moments(x, view_of(L), c0, c1, mean.data(), m2.data());
    for (std::int64_t c = c0; c < c1; ++c) {
      var[c] = m2[c] / M;
      // npdl's bug: it keeps np.std (the square root of the variance) where
      // the variance belongs.
      const double denom = npdl_std_bug ? std::sqrt(var[c]) : var[c];
      invstd[c] = 1.0 / std::sqrt(denom + epsilon);
      m[c] = T(mean[c]);
      sc[c] = T(gamma[c] * invstd[c]);
      // Note [Rounded mean]
      bs[c] = T(double(beta[c]) - gamma[c] * invstd[c] * (mean[c] - double(m[c])));
    }
    k.group_affine(x, y, view_of(L), c0, c1, m.data(), sc.data(), bs.data(), stream);
  });
}

// What a backward kernel call computes: both passes (BatchNormal), or one of
// them for SyncBatchNormal, whose sums are all-reduced in between.
enum class BackwardPasses {
  Both,      // the local sums, then dx from them
  SumsOnly,  // sum(dy) and sum(dy * (x - mean)); no dx
  DxOnly,    // dx from given sums (sum_dy and sum_dy_d are inputs)
};

// The backward for inner > 1 (Note [Feature groups]): per group, sum(dy)
// and sum(dy * (x - mean)), then dx = A * dy + B * (x - mean) + C with
// A = gamma * invstd and, in training, B = -A * invstd^2 * sum(dy * d) / M,
// C = -A * sum(dy) / M (zero for the inference forward's affine map), where
// M = `count` elements per feature contributed to the sums.
template <class T>
void backward_groups(const T* dy, const T* x, T* dx, const BatchNormLayout& L, const ArrD& mean,
                     const ArrD& A, const ArrD& invstd, bool training, double count,
                     BackwardPasses passes, ArrD& sum_dy, ArrD& sum_dy_d) {
  const TypedBatchNormKernels<T>& k = level_kernels<T>();
  const std::int64_t C = L.features;
  const bool sums = passes != BackwardPasses::DxOnly, dx_pass = passes != BackwardPasses::SumsOnly;
  if (sums) {
    sum_dy = ArrD::Zero(C);
    sum_dy_d = ArrD::Zero(C);
  }
  const Arr<T> m = mean.template cast<T>();
  Arr<T> a(C), b(C), cc(C);
  const double inv_m = 1.0 / count;
  const bool stream = streams<T>(L);
  for_each_group(L, grouping(L, sizeof(T)), [&](std::int64_t c0, std::int64_t c1) {
    if (sums) {
      k.group_backward_sums(dy, x, view_of(L), c0, c1, m.data(), sum_dy.data(), sum_dy_d.data());
    }
    for (std::int64_t c = c0; c < c1; ++c) {
      const double delta = mean[c] - double(m[c]);  // Note [Rounded mean]
      if (sums) sum_dy_d[c] -= delta * sum_dy[c];
      if (!dx_pass) continue;
      const double B = training ? -A[c] * invstd[c] * invstd[c] * sum_dy_d[c] * inv_m : 0.0;
      const double Cc = training ? -A[c] * sum_dy[c] * inv_m : 0.0;
      a[c] = T(A[c]);
      b[c] = T(B);
      cc[c] = T(Cc - B * delta);
    }
    if (!dx_pass) return;
    k.group_dx(dy, x, dx, view_of(L), c0, c1, m.data(), a.data(), b.data(), cc.data(), stream);
  });
}

// y = (x - m) * s + b per feature (inner == 1).
template <class T>
void affine_rows(const T* x, T* y, const Arr<T>& m, const Arr<T>& s, const Arr<T>& b,
                 const BatchNormLayout& L) {
  const TypedBatchNormKernels<T>& k = level_kernels<T>();
  for_each_row_range(L, [&](std::int64_t lo, std::int64_t hi) {
    k.rows_affine(x, y, view_of(L), lo, hi, m.data(), s.data(), b.data());
  });
}

// y = (x - m) * s + b per feature (inner > 1), segment by segment in memory
// order: the inference forward, which needs no statistics.
template <class T>
void affine_segments(const T* x, T* y, const Arr<T>& m, const Arr<T>& s, const Arr<T>& b,
                     const BatchNormLayout& L) {
  const TypedBatchNormKernels<T>& k = level_kernels<T>();
  parallel_for(L.outer * L.features, std::max<std::int64_t>(1, kElementGrain / L.inner),
               [&](std::int64_t lo, std::int64_t hi) {
                 k.segments_affine(x, y, view_of(L), lo, hi, m.data(), s.data(), b.data());
               });
}

// Per-feature sums of dy and of dy * (x - m), in double, in one pass
// (inner == 1).
template <class T>
void backward_sums_columns(const T* dy, const T* x, const Arr<T>& m, const BatchNormLayout& L,
                           ArrD& sum_dy, ArrD& sum_dy_d) {
  const TypedBatchNormKernels<T>& k = level_kernels<T>();
  sum_dy = ArrD::Zero(L.features);
  sum_dy_d = ArrD::Zero(L.features);
  for_each_column_range(L, [&](std::int64_t lo, std::int64_t hi) {
    k.column_backward_sums(dy, x, view_of(L), lo, hi, m.data(), sum_dy.data(), sum_dy_d.data());
  });
}

// dx = A * dy + B * (x - m) + C per feature, the fused formula's one pass
// (inner == 1).
template <class T>
void dx_rows(const T* dy, const T* x, T* out, const Arr<T>& m, const Arr<T>& A, const Arr<T>& B,
             const Arr<T>& Cc, const BatchNormLayout& L) {
  const TypedBatchNormKernels<T>& k = level_kernels<T>();
  for_each_row_range(L, [&](std::int64_t lo, std::int64_t hi) {
    k.rows_dx(dy, x, out, view_of(L), lo, hi, m.data(), A.data(), B.data(), Cc.data());
  });
}

// The backward's passes (BackwardPasses) for either layout: the sums
// sum(dy) and sum(dy * (x - mean)) over this tensor's elements, and dx from
// sums over `count` elements per feature (this tensor's, or every rank's).
// Training uses B and C of the fused formula; the inference forward's affine
// map has dx = A * dy.
template <class T>
void backward_passes(const Tensor& dy, const Tensor& x, const ArrD& mean, const ArrD& A,
                     const ArrD& invstd, const BatchNormLayout& L, bool training, double count,
                     BackwardPasses passes, ArrD& sum_dy, ArrD& sum_dy_d, Tensor* dx) {
  T* out = dx != nullptr ? dx->data<T>() : nullptr;
  if (L.inner > 1) {
    backward_groups<T>(dy.data<T>(), x.data<T>(), out, L, mean, A, invstd, training, count, passes,
                       sum_dy, sum_dy_d);
    return;
  }
  const Arr<T> m = narrowed<T>(mean);
  const ArrD delta = rounding_of<T>(mean);  // Note [Rounded mean]
  if (passes != BackwardPasses::DxOnly) {
    backward_sums_columns<T>(dy.data<T>(), x.data<T>(), m, L, sum_dy, sum_dy_d);
    sum_dy_d -= delta * sum_dy;
  }
  if (passes == BackwardPasses::SumsOnly) return;
  const double inv_m = 1.0 / count;
  const ArrD zeros = ArrD::Zero(L.features);
  const ArrD B = training ? ArrD(-A * invstd.square() * sum_dy_d * inv_m) : zeros;
  const ArrD Cc = training ? ArrD(-A * sum_dy * inv_m) : zeros;
  dx_rows<T>(dy.data<T>(), x.data<T>(), out, m, narrowed<T>(A), narrowed<T>(B),
             narrowed<T>(ArrD(Cc - B * delta)), L);
}

// The backward of both forwards, both passes in one call: training or
// inference (the affine map's dx = A * dy).
template <class T>
BatchNormGrads backward_impl(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                             const ArrD& mean, const ArrD& invstd, const BatchNormLayout& L,
                             bool training) {
  const ArrD A = as_double(gamma) * invstd;
  ArrD sum_dy, sum_dy_d;
  BatchNormGrads g;
  g.dx = Tensor(x.shape(), x.dtype());
  backward_passes<T>(dy, x, mean, A, invstd, L, training, double(L.M), BackwardPasses::Both, sum_dy,
                     sum_dy_d, &g.dx);
  g.dgamma = param_tensor(sum_dy_d * invstd, L, gamma.dtype());
  g.dbeta = param_tensor(sum_dy, L, gamma.dtype());
  return g;
}

}  // namespace

Tensor batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               const BatchNormLayout& L, double epsilon, BatchNormStats& stats,
                               bool npdl_std_bug) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    ArrD mean, var, invstd;
    Tensor y(x.shape(), x.dtype());
    if (L.inner > 1) {
      forward_groups<T>(x.data<T>(), y.data<T>(), L, as_double(gamma), features_of<T>(beta),
                        epsilon, npdl_std_bug, mean, var, invstd);
    } else {
      ArrD m2;
      moments_columns(x.data<T>(), L, mean, m2);
      var = m2 / double(L.M);
      // npdl's bug: it keeps np.std (the square root of the variance) where
      // the variance belongs.
      const ArrD denom = npdl_std_bug ? ArrD(var.sqrt()) : var;
      invstd = (denom + epsilon).rsqrt();
      const ArrD scale = as_double(gamma) * invstd;
      const ArrD shifted_beta =
          as_double(beta) - scale * rounding_of<T>(mean);  // Note [Rounded mean]
      affine_rows<T>(x.data<T>(), y.data<T>(), narrowed<T>(mean), narrowed<T>(scale),
                     narrowed<T>(shifted_beta), L);
    }
    stats.mean = param_tensor(mean, L, DType::Float64);
    stats.var = param_tensor(var, L, DType::Float64);
    stats.invstd = param_tensor(invstd, L, DType::Float64);
    return y;
  });
}

Tensor batchnorm_forward_infer(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               const Tensor& mean, const Tensor& var, const BatchNormLayout& L,
                               double epsilon) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ArrD scale = as_double(gamma) * (as_double(var) + epsilon).rsqrt();
    Tensor y(x.shape(), x.dtype());
    const ArrD mean64 = as_double(mean);
    // Note [Rounded mean] (a float32 running mean is exact in T: delta = 0)
    const Arr<T> m = narrowed<T>(mean64), sc = narrowed<T>(scale),
                 b = narrowed<T>(ArrD(as_double(beta) - scale * rounding_of<T>(mean64)));
    if (L.inner > 1) {
      affine_segments<T>(x.data<T>(), y.data<T>(), m, sc, b, L);
    } else {
      affine_rows<T>(x.data<T>(), y.data<T>(), m, sc, b, L);
    }
    return y;
  });
}

BatchNormGrads batchnorm_backward_train(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                        const BatchNormStats& stats, const BatchNormLayout& L) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return backward_impl<T>(dy, x, gamma, as_double(stats.mean), as_double(stats.invstd), L,
                            /*training=*/true);
  });
}

BatchNormGrads batchnorm_backward_infer(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                        const Tensor& mean, const Tensor& var,
                                        const BatchNormLayout& L, double epsilon) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ArrD invstd = (as_double(var) + epsilon).rsqrt();
    return backward_impl<T>(dy, x, gamma, as_double(mean), invstd, L, /*training=*/false);
  });
}

BatchNormMoments batchnorm_moments(const Tensor& x, const BatchNormLayout& L) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    ArrD mean, m2;
    if (L.inner > 1) {
      moments_groups<T>(x.data<T>(), L, mean, m2);
    } else {
      moments_columns(x.data<T>(), L, mean, m2);
    }
    return BatchNormMoments{param_tensor(mean, L, DType::Float64),
                            param_tensor(m2, L, DType::Float64)};
  });
}

BatchNormSums batchnorm_backward_sums(const Tensor& dy, const Tensor& x,
                                      const BatchNormStats& stats, const BatchNormLayout& L) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ArrD invstd = as_double(stats.invstd);
    ArrD sum_dy, sum_dy_d;
    backward_passes<T>(dy, x, as_double(stats.mean), ArrD(), invstd, L, /*training=*/true,
                       double(L.M), BackwardPasses::SumsOnly, sum_dy, sum_dy_d, nullptr);
    return BatchNormSums{param_tensor(sum_dy, L, DType::Float64),
                         param_tensor(sum_dy_d * invstd, L, DType::Float64)};
  });
}

Tensor batchnorm_backward_dx(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                             const BatchNormStats& stats, const BatchNormSums& sums,
                             std::int64_t count, const BatchNormLayout& L) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ArrD invstd = as_double(stats.invstd);
    const ArrD A = as_double(gamma) * invstd;
    // The kernels take sum(dy * (x - mean)) = sum(dy * xhat) / invstd.
    ArrD sum_dy = as_double(sums.sum_dy), sum_dy_d = as_double(sums.sum_dy_xhat) / invstd;
    Tensor dx(x.shape(), x.dtype());
    backward_passes<T>(dy, x, as_double(stats.mean), A, invstd, L, /*training=*/true, double(count),
                       BackwardPasses::DxOnly, sum_dy, sum_dy_d, &dx);
    return dx;
  });
}

const std::vector<DerivationStep>& batchnorm_derivation() {
  static const std::vector<DerivationStep> steps{
      {"dbeta", "dbeta = sum(dy)",
       "y = gamma * xhat + beta adds beta broadcast over the reduced axes; add's VJP "
       "passes dy through and unbroadcast sums it back to beta's shape"},
      {"dgamma", "dgamma = sum(dy * xhat)",
       "mul's VJP gives dy * xhat for the broadcast gamma; unbroadcast sums it"},
      {"dxhat", "dxhat = gamma * dy", "mul's VJP for the other operand"},
      {"dinvstd", "dinvstd = sum(dxhat * xmu)",
       "xhat = xmu * invstd with invstd broadcast: mul's VJP, summed over the reduced axes"},
      {"dvar", "dvar = -1/2 * invstd^3 * dinvstd",
       "invstd = rsqrt(var + epsilon); rsqrt's VJP is -1/2 g rsqrt(.)^3, add's passes g"},
      {"dxmu (two branches)", "dxmu = dxhat * invstd + dvar * 2 * xmu / M",
       "xmu feeds both xhat and var = mean(xmu * xmu): their gradients add up"},
      {"dmean vanishes in part", "dmean = -sum(dxmu) = -invstd * sum(dxhat)",
       "the var branch contributes -dvar * 2 * sum(xmu) / M, and sum(xmu) = sum(x - mean) = 0"},
      {"dx", "dx = dxmu + dmean / M",
       "xmu = x - mean: sub's VJP gives dxmu to x and -sum(dxmu) to mean; mean's VJP "
       "spreads dmean / M over the M reduced elements"},
      {"substitute", "dx = gamma * invstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)",
       "use xmu = xhat / invstd and dxhat = gamma * dy in steps 5 to 8"},
      {"fused formula", "dx = (gamma * invstd / M) * (M * dy - sum(dy) - xhat * sum(dy * xhat))",
       "two reductions, sum(dy) and sum(dy * xhat), and one elementwise pass"},
  };
  return steps;
}

}  // namespace npdl::layers
