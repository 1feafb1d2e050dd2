#include "layers/batch_norm/layout.hpp"

#include <limits>

namespace npdl::layers {

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
  // M saturates: with no features, outer * inner may exceed 2^63.
  if (__builtin_mul_overflow(L.outer, L.inner, &L.M))
    L.M = std::numeric_limits<std::int64_t>::max();
  // A batch with no elements (a size 0 anywhere) gives every loop nothing
  // to do: outer = 0 ends them at once, however large the other sizes (a
  // (2^40, 0) batch would otherwise walk 2^40 empty rows). M stays what the
  // shape says, for the checks that name it; with features > 0 it is 0.
  if (numel(s) == 0) L.outer = 0;
  return L;
}

}  // namespace npdl::layers
