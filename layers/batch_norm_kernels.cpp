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
#include "layers/batch_norm_kernels.hpp"

#include <Eigen/Core>
#include <cmath>

#include "autodiff/parallel.hpp"

namespace npdl::layers {
namespace {

template <class T>
using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using CMap = Eigen::Map<const Arr<T>>;
template <class T>
using MMap = Eigen::Map<Arr<T>>;
using ArrD = Arr<double>;

// Statistics: per block, a mean and a sum of squared deviations from it
// (two reads of a block that stays in cache), merged across blocks with
// Chan et al.'s pairwise update. One pass over memory, and never
// E[x^2] - E[x]^2, which cancels catastrophically on large offsets.
template <class E>
auto evaluated(const E& e) {
  if constexpr (std::is_arithmetic_v<E>) {
    return e;
  } else {
    return e.eval();
  }
}

struct Moments {
  double n = 0;
  // Merges a block of `count` elements with mean `bmean` and squared
  // deviations `bm2` into (mean, m2), which hold this->n elements.
  template <class A, class B, class C, class D>
  void merge(double count, const A& bmean, const B& bm2, C&& mean, D&& m2) {
    const double total = n + count;
    const auto delta = evaluated(bmean - mean);
    mean += delta * (count / total);
    m2 += bm2 + delta * delta * (n * count / total);
    n = total;
  }
};

// Rows of the (outer, features) view processed per block when inner == 1:
// a block of rows stays in cache between the two reads.
constexpr std::int64_t kRowBlock = 32;

template <class T>
void moments_columns(const T* x, const BatchNormLayout& L, ArrD& mean, ArrD& var) {
  const std::int64_t C = L.features, N = L.outer;
  mean.resize(C);
  var.resize(C);
  parallel_for(C, std::max<std::int64_t>(16, kElementGrain / std::max<std::int64_t>(N, 1)),
               [&](std::int64_t lo, std::int64_t hi) {
                 const std::int64_t w = hi - lo;
                 Moments acc;
                 ArrD m = ArrD::Zero(w), m2 = ArrD::Zero(w), bsum(w), bm2(w), bmean(w);
                 for (std::int64_t r0 = 0; r0 < N; r0 += kRowBlock) {
                   const std::int64_t r1 = std::min(N, r0 + kRowBlock);
                   bsum.setZero();
                   for (std::int64_t r = r0; r < r1; ++r)
                     bsum += CMap<T>(x + r * C + lo, w).template cast<double>();
                   bmean = bsum / double(r1 - r0);
                   bm2.setZero();
                   for (std::int64_t r = r0; r < r1; ++r) {
                     bm2 += (CMap<T>(x + r * C + lo, w).template cast<double>() - bmean).square();
                   }
                   acc.merge(double(r1 - r0), bmean, bm2, m, m2);
                 }
                 mean.segment(lo, w) = m;
                 var.segment(lo, w) = m2 / double(N);
               });
}

// Elements of a segment reduced in the input's own dtype before the result
// joins the float64 accumulators: short enough that float32 sums keep their
// digits, long enough that the vectorised sum dominates.
constexpr std::int64_t kSegmentBlock = 4096;

// Calls fn(pointer, length) for the blocks of feature c's segments.
template <class T, class Fn>
void for_each_block(const T* base, const BatchNormLayout& L, std::int64_t c, Fn&& fn) {
  for (std::int64_t o = 0; o < L.outer; ++o) {
    const T* seg = base + (o * L.features + c) * L.inner;
    for (std::int64_t b = 0; b < L.inner; b += kSegmentBlock) {
      fn(seg + b, std::min(kSegmentBlock, L.inner - b), (o * L.features + c) * L.inner + b);
    }
  }
}

template <class T>
void moments_segments(const T* x, const BatchNormLayout& L, ArrD& mean, ArrD& var) {
  const std::int64_t C = L.features;
  mean.resize(C);
  var.resize(C);
  parallel_for(C, std::max<std::int64_t>(1, kElementGrain / std::max<std::int64_t>(L.M, 1)),
               [&](std::int64_t lo, std::int64_t hi) {
                 for (std::int64_t c = lo; c < hi; ++c) {
                   Moments acc;
                   double m = 0, m2 = 0;
                   for_each_block(x, L, c, [&](const T* p, std::int64_t n, std::int64_t) {
                     const CMap<T> block(p, n);
                     const T bmean = block.sum() / T(n);
                     // Two-pass in the block, with the rounding of bmean
                     // corrected by the (tiny) sum of deviations.
                     const auto d = (block - bmean);
                     const double dsum = double(d.sum());
                     const double bm2 = double(d.square().sum()) - dsum * dsum / double(n);
                     acc.merge(double(n), double(bmean) + dsum / double(n), bm2, m, m2);
                   });
                   mean[c] = m;
                   var[c] = m2 / acc.n;
                 }
               });
}

// Runs an elementwise pass in which every element of feature c uses the
// per-feature coefficients: seg(offset, length, c) for inner > 1 (one
// contiguous segment per (outer, feature)), row(offset) for inner == 1 (one
// row of all features).
template <class SegFn, class RowFn>
void elementwise_per_feature(const BatchNormLayout& L, SegFn seg, RowFn row) {
  const std::int64_t C = L.features;
  if (L.inner > 1) {
    parallel_for(L.outer * C, std::max<std::int64_t>(1, kElementGrain / L.inner),
                 [&](std::int64_t lo, std::int64_t hi) {
                   for (std::int64_t s = lo; s < hi; ++s) seg(s * L.inner, L.inner, s % C);
                 });
  } else {
    parallel_for(L.outer, std::max<std::int64_t>(1, kElementGrain / std::max<std::int64_t>(C, 1)),
                 [&](std::int64_t lo, std::int64_t hi) {
                   for (std::int64_t r = lo; r < hi; ++r) row(r * C);
                 });
  }
}

// y = (x - m) * s + b per feature.
template <class T>
void affine(const T* x, T* y, const Arr<T>& m, const Arr<T>& s, const Arr<T>& b,
            const BatchNormLayout& L) {
  const std::int64_t C = L.features;
  elementwise_per_feature(
      L,
      [&](std::int64_t off, std::int64_t n, std::int64_t c) {
        MMap<T>(y + off, n) = (CMap<T>(x + off, n) - m[c]) * s[c] + b[c];
      },
      [&](std::int64_t off) { MMap<T>(y + off, C) = (CMap<T>(x + off, C) - m) * s + b; });
}

// Per-feature sums of dy and of dy * (x - m), in double, in one pass.
template <class T>
void backward_sums(const T* dy, const T* x, const Arr<T>& m, const BatchNormLayout& L, ArrD& sum_dy,
                   ArrD& sum_dy_d) {
  const std::int64_t C = L.features;
  sum_dy = ArrD::Zero(C);
  sum_dy_d = ArrD::Zero(C);
  if (L.inner > 1) {
    parallel_for(C, std::max<std::int64_t>(1, kElementGrain / std::max<std::int64_t>(L.M, 1)),
                 [&](std::int64_t lo, std::int64_t hi) {
                   for (std::int64_t c = lo; c < hi; ++c) {
                     for_each_block(dy, L, c, [&](const T* g, std::int64_t n, std::int64_t off) {
                       const CMap<T> gb(g, n), xb(x + off, n);
                       sum_dy[c] += double(gb.sum());
                       sum_dy_d[c] += double((gb * (xb - m[c])).sum());
                     });
                   }
                 });
  } else {
    parallel_for(C, std::max<std::int64_t>(16, kElementGrain / std::max<std::int64_t>(L.outer, 1)),
                 [&](std::int64_t lo, std::int64_t hi) {
                   const std::int64_t w = hi - lo;
                   for (std::int64_t r = 0; r < L.outer; ++r) {
                     const CMap<T> g(dy + r * C + lo, w), v(x + r * C + lo, w);
                     sum_dy.segment(lo, w) += g.template cast<double>();
                     sum_dy_d.segment(lo, w) +=
                         (g * (v - m.segment(lo, w))).template cast<double>();
                   }
                 });
  }
}

template <class T>
Arr<T> features_of(const Tensor& t) {
  return CMap<T>(t.data<T>(), t.size());
}

template <class T>
Arr<T> narrowed(const ArrD& a) {
  return a.template cast<T>();
}

Tensor param_tensor(const ArrD& a, const BatchNormLayout& L, DType dtype) {
  Tensor t(L.param_shape, DType::Float64);
  MMap<double>(t.data<double>(), a.size()) = a;
  return dtype == DType::Float64 ? t : t.astype(dtype);
}

ArrD as_double(const Tensor& t) {
  return dispatch(t.dtype(), [&](auto zero) -> ArrD {
    using T = decltype(zero);
    return CMap<T>(t.data<T>(), t.size()).template cast<double>();
  });
}

// dx = A * dy + B * (x - m) + C per feature, the fused formula's one pass.
template <class T>
Tensor dx_pass(const Tensor& dy_t, const Tensor& x_t, const Arr<T>& m, const Arr<T>& A,
               const Arr<T>& B, const Arr<T>& Cc, const BatchNormLayout& L) {
  Tensor dx(x_t.shape(), x_t.dtype());
  const T* dy = dy_t.data<T>();
  const T* x = x_t.data<T>();
  T* out = dx.data<T>();
  const std::int64_t C = L.features;
  elementwise_per_feature(
      L,
      [&](std::int64_t off, std::int64_t n, std::int64_t c) {
        MMap<T>(out + off, n) =
            CMap<T>(dy + off, n) * A[c] + (CMap<T>(x + off, n) - m[c]) * B[c] + Cc[c];
      },
      [&](std::int64_t off) {
        MMap<T>(out + off, C) = CMap<T>(dy + off, C) * A + (CMap<T>(x + off, C) - m) * B + Cc;
      });
  return dx;
}

}  // namespace

BatchNormLayout batchnorm_layout(const Shape& s, int axis) {
  const int rank = static_cast<int>(s.size());
  if (rank < 2) {
    throw ShapeError(
        "BatchNormal expects inputs of rank >= 2 (samples, features, ...), got shape " +
        to_string(s));
  }
  BatchNormLayout L;
  L.feature_axis = normalize_axis(axis, rank);
  L.broadcast_shape = Shape(rank, 1);
  if (L.feature_axis == 0) {
    L.param_shape.assign(s.begin() + 1, s.end());
    for (int i = 1; i < rank; ++i) L.broadcast_shape[i] = s[i];
    L.reduced_axes = {0};
    L.outer = s[0];
    L.features = numel(L.param_shape);
    L.inner = 1;
  } else {
    const int a = L.feature_axis;
    L.param_shape = {s[a]};
    L.broadcast_shape[a] = s[a];
    for (int i = 0; i < rank; ++i) {
      if (i != a) L.reduced_axes.push_back(i);
    }
    L.outer = numel(Shape(s.begin(), s.begin() + a));
    L.features = s[a];
    L.inner = numel(Shape(s.begin() + a + 1, s.end()));
  }
  L.M = L.outer * L.inner;
  return L;
}

Tensor batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               const BatchNormLayout& L, double epsilon, BatchNormStats& stats,
                               bool npdl_std_bug) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    ArrD mean, var;
    if (L.inner > 1) {
      moments_segments(x.data<T>(), L, mean, var);
    } else {
      moments_columns(x.data<T>(), L, mean, var);
    }
    // npdl's bug: it keeps np.std (the square root of the variance) where
    // the variance belongs.
    const ArrD denom = npdl_std_bug ? ArrD(var.sqrt()) : var;
    const ArrD invstd = (denom + epsilon).rsqrt();
    const ArrD scale = as_double(gamma) * invstd;
    Tensor y(x.shape(), x.dtype());
    affine<T>(x.data<T>(), y.data<T>(), narrowed<T>(mean), narrowed<T>(scale), features_of<T>(beta),
              L);
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
    affine<T>(x.data<T>(), y.data<T>(), narrowed<T>(as_double(mean)), narrowed<T>(scale),
              features_of<T>(beta), L);
    return y;
  });
}

BatchNormGrads batchnorm_backward_train(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                        const BatchNormStats& stats, const BatchNormLayout& L) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const Arr<T> m = narrowed<T>(as_double(stats.mean));
    ArrD sum_dy, sum_dy_d;
    backward_sums<T>(dy.data<T>(), x.data<T>(), m, L, sum_dy, sum_dy_d);
    const ArrD invstd = as_double(stats.invstd);
    const ArrD A = as_double(gamma) * invstd;
    const double inv_m = 1.0 / double(L.M);
    const ArrD B = -A * invstd.square() * sum_dy_d * inv_m;
    const ArrD Cc = -A * sum_dy * inv_m;
    BatchNormGrads g;
    g.dx = dx_pass<T>(dy, x, m, narrowed<T>(A), narrowed<T>(B), narrowed<T>(Cc), L);
    g.dgamma = param_tensor(sum_dy_d * invstd, L, gamma.dtype());
    g.dbeta = param_tensor(sum_dy, L, gamma.dtype());
    return g;
  });
}

BatchNormGrads batchnorm_backward_infer(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                        const Tensor& mean, const Tensor& var,
                                        const BatchNormLayout& L, double epsilon) {
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const Arr<T> m = narrowed<T>(as_double(mean));
    ArrD sum_dy, sum_dy_d;
    backward_sums<T>(dy.data<T>(), x.data<T>(), m, L, sum_dy, sum_dy_d);
    const ArrD invstd = (as_double(var) + epsilon).rsqrt();
    const ArrD A = as_double(gamma) * invstd;
    const ArrD zeros = ArrD::Zero(L.features);
    BatchNormGrads g;
    g.dx = dx_pass<T>(dy, x, m, narrowed<T>(A), narrowed<T>(zeros), narrowed<T>(zeros), L);
    g.dgamma = param_tensor(sum_dy_d * invstd, L, gamma.dtype());
    g.dbeta = param_tensor(sum_dy, L, gamma.dtype());
    return g;
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
