#pragma once
// How batch norm views its input: the feature axis, the parameters' shape
// and the (outer, features, inner) view that every batch-norm kernel walks,
// and the per-feature statistics they share. The input is viewed as
// (outer, features, inner): the feature axis in the middle, everything
// before it and after it reduced. axis = 0 (every position of a sample is
// its own feature) is the case inner = 1, outer = N. M = outer * inner
// elements are reduced per feature.
#include "tensor/tensor.hpp"

namespace npdl::layers {

/// The forward a BatchNormal computes. NpdlStd reproduces the Python
/// original's bug (it normalises by sqrt(std + epsilon) while its backward
/// assumes the variance); it exists to show that the checks catch it.
enum class Variant { Correct, NpdlStd };

struct BatchNormLayout {
  int feature_axis = 0;   // normalised; 0: all positions of a sample are features
  Shape param_shape;      // shape of gamma, beta and the running statistics
  Shape broadcast_shape;  // param_shape aligned with the input (1 on reduced axes)
  Axes reduced_axes;
  std::int64_t outer = 0, features = 0, inner = 0;
  std::int64_t M = 0;  // elements reduced per feature
};

/// The layout of BatchNormal(axis) for inputs of `input_shape` (with the
/// samples axis). Throws AxisError for an axis out of range and ShapeError
/// for inputs of rank < 2.
BatchNormLayout batchnorm_layout(const Shape& input_shape, int axis);

/// Per-feature batch statistics, float64, shape (features).
struct BatchNormStats {
  Tensor mean;
  Tensor var;     // biased (divided by M)
  Tensor invstd;  // 1 / sqrt(var + epsilon)
};

}  // namespace npdl::layers
