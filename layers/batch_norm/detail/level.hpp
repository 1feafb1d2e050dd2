#pragma once
// Batch norm's loops over memory, compiled once per instruction-set level
// (layers/batch_norm/detail/level.cpp; Note [Kernels per instruction set] in
// tensor/kernels/kernels.hpp). layers/batch_norm/kernels.cpp splits the
// work between threads, computes the per-feature constants in float64 and
// calls these on its share; the table is chosen per call by
// kernels::level_for_this_thread(). Raw pointers and counts only, so that
// nothing here instantiates a template in a level's object.
#include <cstdint>

namespace npdl::layers::bn_level {

/// The input viewed as (outer, features, inner), row-major (BatchNormLayout).
struct View {
  std::int64_t outer, features, inner;
};

/// Per-feature arrays are indexed by feature, `features` entries long; a
/// call on features [c0, c1) (or columns [lo, hi)) reads and writes only
/// their entries, so that calls on disjoint ranges may run on different
/// threads. The order of every sum depends only on the view, never on the
/// range a call gets: results are the same at any thread count.
template <class T>
struct TypedBatchNormKernels {
  // inner > 1 (Note [Feature groups] in feature_loops.hpp): a group
  // of features whose data stays in cache between passes.

  /// mean[c] and m2[c] (the sum of squared deviations from the mean, >= 0)
  /// of each feature's M = outer * inner elements, two-pass.
  void (*group_moments)(const T* x, View v, std::int64_t c0, std::int64_t c1, double* mean,
                        double* m2);
  /// y = (x - m[c]) * s[c] + b[c]; `stream`: with streaming stores.
  void (*group_affine)(const T* x, T* y, View v, std::int64_t c0, std::int64_t c1, const T* m,
                       const T* s, const T* b, bool stream);
  /// sum_dy[c] += sum(dy), sum_dy_d[c] += sum(dy * (x - m[c])).
  void (*group_backward_sums)(const T* dy, const T* x, View v, std::int64_t c0, std::int64_t c1,
                              const T* m, double* sum_dy, double* sum_dy_d);
  /// dx = a[c] * dy + b[c] * (x - m[c]) + k[c]; `stream` as group_affine.
  void (*group_dx)(const T* dy, const T* x, T* dx, View v, std::int64_t c0, std::int64_t c1,
                   const T* m, const T* a, const T* b, const T* k, bool stream);

  // inner == 1: the (outer, features) view; reductions run down columns
  // [lo, hi), elementwise passes along rows [r0, r1).

  /// mean and m2 as group_moments, per block of kRowBlock rows merged with
  /// Chan's formula.
  void (*column_moments)(const T* x, View v, std::int64_t lo, std::int64_t hi, double* mean,
                         double* m2);
  /// sum_dy[c] += sum(dy), sum_dy_d[c] += sum(dy * (x - m[c])).
  void (*column_backward_sums)(const T* dy, const T* x, View v, std::int64_t lo, std::int64_t hi,
                               const T* m, double* sum_dy, double* sum_dy_d);
  /// y = (x - m) * s + b along rows.
  void (*rows_affine)(const T* x, T* y, View v, std::int64_t r0, std::int64_t r1, const T* m,
                      const T* s, const T* b);
  /// dx = a * dy + b * (x - m) + k along rows.
  void (*rows_dx)(const T* dy, const T* x, T* dx, View v, std::int64_t r0, std::int64_t r1,
                  const T* m, const T* a, const T* b, const T* k);

  /// y = (x - m[c]) * s[c] + b[c] over segments [lo, hi) of `inner`
  /// elements (segment i holds feature i % features), in memory order.
  void (*segments_affine)(const T* x, T* y, View v, std::int64_t lo, std::int64_t hi, const T* m,
                          const T* s, const T* b);
};

struct BatchNormKernelTable {
  TypedBatchNormKernels<float> f32;
  TypedBatchNormKernels<double> f64;
};

}  // namespace npdl::layers::bn_level
