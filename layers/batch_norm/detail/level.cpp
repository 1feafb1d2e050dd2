// Batch norm's loops over memory for one instruction-set level
// (layers/batch_norm/detail/level.hpp). CMake compiles this file once per level
// with -DNPDL_KERNEL_LEVEL=level_<name> -DEigen=Eigen_<name> and the level's
// flags (npdl_compile_per_level). As in tensor/kernels/level.cpp, include
// nothing that instantiates a template outside this level's namespaces
// (tensors, the thread pool, std containers): threads, per-feature constants
// and tensors stay in kernels.cpp. The loops and the order of
// their sums are the ones Note [Feature groups] and Note [Rounded mean] in
// feature_loops.hpp describe.
#include "layers/batch_norm/detail/level.hpp"

#include <Eigen/Core>
#include <type_traits>

#include "layers/batch_norm/detail/runs.hpp"
#include "tensor/detail/stream_store.hpp"

#ifndef NPDL_KERNEL_LEVEL
#error "compile detail/level.cpp with -DNPDL_KERNEL_LEVEL=level_<name> (see CMakeLists.txt)"
#endif

namespace npdl::layers::bn_level::NPDL_KERNEL_LEVEL {
namespace {

using bn_internal::for_each_run;
using bn_internal::kRowBlock;
using detail::store;
using detail::stream_fence;

template <class T>
using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using CMap = Eigen::Map<const Arr<T>>;
template <class T>
using MMap = Eigen::Map<Arr<T>>;
using ArrD = Arr<double>;

template <class E>
auto evaluated(const E& e) {
  if constexpr (std::is_arithmetic_v<E>) {
    return e;
  } else {
    return e.eval();
  }
}

// Chan et al.'s pairwise update: one pass over memory, and never
// E[x^2] - E[x]^2, which cancels catastrophically on large offsets.
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

// Per block of kRowBlock rows: sums of x and of the squared deviations from
// the block's mean in T (the rounding of that mean corrected by the sum of
// deviations), merged into float64 once per block.
template <class T>
void column_moments(const T* x, View v, std::int64_t lo, std::int64_t hi, double* mean_out,
                    double* m2_out) {
  const std::int64_t C = v.features, N = v.outer, w = hi - lo;
  Moments acc;
  ArrD m = ArrD::Zero(w), m2 = ArrD::Zero(w);
  Arr<T> bsum(w), bdev(w), bsq(w), bmean(w);
  for (std::int64_t r0 = 0; r0 < N; r0 += kRowBlock) {
    const std::int64_t r1 = N < r0 + kRowBlock ? N : r0 + kRowBlock;
    const double n = double(r1 - r0);
    bsum.setZero();
    for (std::int64_t r = r0; r < r1; ++r) bsum += CMap<T>(x + r * C + lo, w);
    bmean = (bsum.template cast<double>() / n).template cast<T>();
    bdev.setZero();
    bsq.setZero();
    for (std::int64_t r = r0; r < r1; ++r) {
      const auto d = CMap<T>(x + r * C + lo, w) - bmean;
      bdev += d;
      bsq += d.square();
    }
    const ArrD dev = bdev.template cast<double>();
    acc.merge(n, ArrD(bmean.template cast<double>() + dev / n),
              ArrD(bsq.template cast<double>() - dev.square() / n), m, m2);
  }
  MMap<double>(mean_out + lo, w) = m;
  MMap<double>(m2_out + lo, w) = m2.max(0.0);
}

// The mean, then the squared deviations from it rounded to T (the block is
// in L1 between the two sums), the rounding corrected by their small sum.
template <class T>
void group_moments(const T* x, View v, std::int64_t c0, std::int64_t c1, double* mean, double* m2) {
  const double M = double(v.outer * v.inner);
  const std::int64_t w = c1 - c0;
  ArrD dsum = ArrD::Zero(w), ssq = ArrD::Zero(w);
  Arr<T> m(w);
  for (std::int64_t c = c0; c < c1; ++c) mean[c] = 0.0;
  for_each_run(v, c0, c1, [&](std::int64_t c, std::int64_t off, std::int64_t n) {
    mean[c] += double(CMap<T>(x + off, n).sum());
  });
  for (std::int64_t c = c0; c < c1; ++c) m[c - c0] = T(mean[c] / M);
  for_each_run(v, c0, c1, [&](std::int64_t c, std::int64_t off, std::int64_t n) {
    const auto d = CMap<T>(x + off, n) - m[c - c0];
    dsum[c - c0] += double(d.sum());
    ssq[c - c0] += double(d.square().sum());
  });
  for (std::int64_t c = c0; c < c1; ++c) {
    const double ds = dsum[c - c0], deviation = ssq[c - c0] - ds * ds / M;
    mean[c] = double(m[c - c0]) + ds / M;
    m2[c] = deviation > 0.0 ? deviation : 0.0;
  }
}

template <class T>
void group_affine(const T* x, T* y, View v, std::int64_t c0, std::int64_t c1, const T* m,
                  const T* s, const T* b, bool stream) {
  for_each_run(v, c0, c1, [&](std::int64_t c, std::int64_t off, std::int64_t n) {
    const T mc = m[c], sc = s[c], bc = b[c];
    store(y + off, n, stream, [&](std::int64_t i, std::int64_t len) {
      return (CMap<T>(x + off + i, len) - mc) * sc + bc;
    });
  });
  if (stream) stream_fence();
}

template <class T>
void group_backward_sums(const T* dy, const T* x, View v, std::int64_t c0, std::int64_t c1,
                         const T* m, double* sum_dy, double* sum_dy_d) {
  for_each_run(v, c0, c1, [&](std::int64_t c, std::int64_t off, std::int64_t n) {
    const CMap<T> g(dy + off, n);
    sum_dy[c] += double(g.sum());
    sum_dy_d[c] += double((g * (CMap<T>(x + off, n) - m[c])).sum());
  });
}

template <class T>
void group_dx(const T* dy, const T* x, T* dx, View v, std::int64_t c0, std::int64_t c1, const T* m,
              const T* a, const T* b, const T* k, bool stream) {
  for_each_run(v, c0, c1, [&](std::int64_t c, std::int64_t off, std::int64_t n) {
    const T ac = a[c], bc = b[c], kc = k[c], mc = m[c];
    store(dx + off, n, stream, [&](std::int64_t i, std::int64_t len) {
      return CMap<T>(dy + off + i, len) * ac + (CMap<T>(x + off + i, len) - mc) * bc + kc;
    });
  });
  if (stream) stream_fence();
}

// Sums over kRowBlock rows in T, then joined in float64 (as column_moments).
template <class T>
void column_backward_sums(const T* dy, const T* x, View v, std::int64_t lo, std::int64_t hi,
                          const T* m, double* sum_dy, double* sum_dy_d) {
  const std::int64_t C = v.features, N = v.outer, w = hi - lo;
  const CMap<T> mw(m + lo, w);
  Arr<T> s(w), sd(w);
  for (std::int64_t r0 = 0; r0 < N; r0 += kRowBlock) {
    const std::int64_t r1 = N < r0 + kRowBlock ? N : r0 + kRowBlock;
    s.setZero();
    sd.setZero();
    for (std::int64_t r = r0; r < r1; ++r) {
      const CMap<T> g(dy + r * C + lo, w), xr(x + r * C + lo, w);
      s += g;
      sd += g * (xr - mw);
    }
    MMap<double>(sum_dy + lo, w) += s.template cast<double>();
    MMap<double>(sum_dy_d + lo, w) += sd.template cast<double>();
  }
}

template <class T>
void rows_affine(const T* x, T* y, View v, std::int64_t r0, std::int64_t r1, const T* m, const T* s,
                 const T* b) {
  const std::int64_t C = v.features;
  const CMap<T> mv(m, C), sv(s, C), bv(b, C);
  for (std::int64_t r = r0; r < r1; ++r) {
    MMap<T>(y + r * C, C) = (CMap<T>(x + r * C, C) - mv) * sv + bv;
  }
}

template <class T>
void rows_dx(const T* dy, const T* x, T* dx, View v, std::int64_t r0, std::int64_t r1, const T* m,
             const T* a, const T* b, const T* k) {
  const std::int64_t C = v.features;
  const CMap<T> mv(m, C), av(a, C), bv(b, C), kv(k, C);
  for (std::int64_t r = r0; r < r1; ++r) {
    MMap<T>(dx + r * C, C) = CMap<T>(dy + r * C, C) * av + (CMap<T>(x + r * C, C) - mv) * bv + kv;
  }
}

template <class T>
void segments_affine(const T* x, T* y, View v, std::int64_t lo, std::int64_t hi, const T* m,
                     const T* s, const T* b) {
  const std::int64_t n = v.inner;
  for (std::int64_t seg = lo; seg < hi; ++seg) {
    const std::int64_t c = seg % v.features;
    MMap<T>(y + seg * n, n) = (CMap<T>(x + seg * n, n) - m[c]) * s[c] + b[c];
  }
}

template <class T>
TypedBatchNormKernels<T> typed() {
  return {group_moments<T>, group_affine<T>,   group_backward_sums<T>,
          group_dx<T>,      column_moments<T>, column_backward_sums<T>,
          rows_affine<T>,   rows_dx<T>,        segments_affine<T>};
}

}  // namespace

const BatchNormKernelTable& table() {
  static const BatchNormKernelTable kTable{typed<float>(), typed<double>()};
  return kTable;
}

}  // namespace npdl::layers::bn_level::NPDL_KERNEL_LEVEL
