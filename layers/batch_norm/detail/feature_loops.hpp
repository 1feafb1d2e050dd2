#pragma once
// Internal to layers/batch_norm/, not part of npdl's API: the array
// aliases, the loops over the (outer, features, inner) view and the
// per-feature helpers that the batch-norm kernels share.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

#include "layers/batch_norm/detail/runs.hpp"
#include "layers/batch_norm/layout.hpp"
#include "tensor/parallel.hpp"
#include "tensor/tensor.hpp"

namespace npdl::layers::bn_internal {

template <class T>
using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using CMap = Eigen::Map<const Arr<T>>;
template <class T>
using MMap = Eigen::Map<Arr<T>>;
using ArrD = Arr<double>;

// Note [Feature groups]
// With inner > 1, feature c's elements lie in `outer` segments of `inner`
// contiguous elements, features * inner apart. The kernels walk groups of
// adjacent features, [c0, c1), whose data (about kGroupBytes per tensor)
// stays in L2 or L3 between the passes over it, visiting the group's
// segments in memory order: the forward reads x from memory once (the
// mean), then from cache (squared deviations, then y); the backward reads dy
// and x from memory once (its two sums), then from cache (dx). Measured on
// workload (b), 64x64x56x56, this is a quarter faster than a pass over the
// whole tensor per step. Segments are reduced in blocks of at most
// kSegmentBlock elements in the input's dtype (vectorised, in registers),
// whose sums join float64 accumulators. Each feature's sums run in one
// order (segment by segment, block by block) that depends on neither the
// grouping nor the thread count: results are the same bit for bit with any
// number of threads. The double backward walks the same way (dy, x and
// ggx from memory for its five sums, then from cache for dx and ddy).
constexpr std::int64_t kGroupBytes = std::int64_t{2} << 20;

struct Grouping {
  std::int64_t size = 1;   // features per group
  std::int64_t count = 0;  // groups
};

// Note [Feature groups]: about kGroupBytes of each tensor per group, and a
// multiple of the thread count of groups (equal shares; the grouping
// changes no result).
inline Grouping grouping(const BatchNormLayout& L, std::size_t elem) {
  Grouping g;
  const std::int64_t C = std::max<std::int64_t>(L.features, 1);
  const std::int64_t per_feature = std::max<std::int64_t>(L.M, 1) * std::int64_t(elem);
  const std::int64_t want = std::clamp<std::int64_t>(kGroupBytes / per_feature, 1, C);
  std::int64_t count = (C + want - 1) / want;
  const std::int64_t threads = get_num_threads();
  if (L.features * L.M >= kElementGrain) count = (count + threads - 1) / threads * threads;
  count = std::min(count, C);
  g.size = (C + count - 1) / count;
  g.count = (C + g.size - 1) / g.size;
  return g;
}

// Runs fn(c0, c1) for each group, split between threads.
template <class Fn>
void for_each_group(const BatchNormLayout& L, const Grouping& g, Fn&& fn) {
  parallel_for(g.count,
               std::max<std::int64_t>(1, kElementGrain / (g.size * std::max<std::int64_t>(L.M, 1))),
               [&](std::int64_t lo, std::int64_t hi) {
                 for (std::int64_t k = lo; k < hi; ++k) {
                   fn(k * g.size, std::min(L.features, (k + 1) * g.size));
                 }
               });
}

// The inner == 1 case (each row of the (outer, features) view holds every
// feature once): elementwise passes run over rows, reductions over columns.
// Runs fn(r0, r1) on ranges of rows, split between threads.
template <class RangeFn>
void for_each_row_range(const BatchNormLayout& L, RangeFn&& fn) {
  parallel_for(L.outer,
               std::max<std::int64_t>(1, kElementGrain / std::max<std::int64_t>(L.features, 1)),
               fn);
}

// Runs fn(lo, hi) on ranges of columns (features), split between threads.
template <class RangeFn>
void for_each_column_range(const BatchNormLayout& L, RangeFn&& fn) {
  parallel_for(L.features,
               std::max<std::int64_t>(16, kElementGrain / std::max<std::int64_t>(L.outer, 1)), fn);
}

// Calls row(offset) for each row of the (outer, features) view.
template <class RowFn>
void for_each_row_of_features(const BatchNormLayout& L, RowFn row) {
  for_each_row_range(L, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t r = lo; r < hi; ++r) row(r * L.features);
  });
}

// Note [Rounded mean]
// The kernels subtract the mean in T: with m = T(mean), x - m is exact for x
// near m, but m differs from the float64 mean by delta = mean - m, up to
// half an ulp of the mean. Where features sit far from zero next to their
// spread (float32 x = 1e4 + N(0, 1): delta up to 5e-4, a two-thousandth of
// the spread) that constant shift would move every xhat and dx by as much.
// Each kernel folds delta into its per-feature constants, in float64:
//   y = s (x - m) + (beta - s delta)
//   sum(dy xmu) = sum(dy (x - m)) - delta sum(dy)
//   dx = A dy + B (x - m) + (C - B delta)
template <class T>
ArrD rounding_of(const ArrD& mean) {
  return mean - mean.template cast<T>().template cast<double>();
}

template <class T>
Arr<T> features_of(const Tensor& t) {
  return CMap<T>(t.data<T>(), t.size());
}

template <class T>
Arr<T> narrowed(const ArrD& a) {
  return a.template cast<T>();
}

inline Tensor param_tensor(const ArrD& a, const BatchNormLayout& L, DType dtype) {
  Tensor t(L.param_shape, DType::Float64);
  MMap<double>(t.data<double>(), a.size()) = a;
  return dtype == DType::Float64 ? t : t.astype(dtype);
}

inline ArrD as_double(const Tensor& t) {
  return dispatch(t.dtype(), [&](auto zero) -> ArrD {
    using T = decltype(zero);
    return CMap<T>(t.data<T>(), t.size()).template cast<double>();
  });
}

}  // namespace npdl::layers::bn_internal
