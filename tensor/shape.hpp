#pragma once
// Shapes, axes and NumPy broadcasting rules.
#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace npdl {

/// A tensor shape. Small-buffer storage: recording an op must not allocate
/// for its shape (see the op-recording benchmark).
using Shape = boost::container::small_vector<std::int64_t, 6>;
/// A set of axes, possibly negative before normalisation.
using Axes = boost::container::small_vector<int, 6>;

/// Number of elements. Throws ShapeError, naming the shape, for a negative
/// size or when the product of its non-zero sizes overflows int64: every
/// partial product of a shape that passed is then safe to form.
std::int64_t numel(const Shape& shape);
/// `target` with its one -1 (if any) replaced by the size that makes it hold
/// `size` elements. Throws ShapeError when sizes are negative other than one
/// -1, when -1 appears twice, or when no size fits.
Shape infer_shape(const Shape& target, std::int64_t size);
std::string to_string(const Shape& shape);
std::string to_string(const Axes& axes);

/// NumPy broadcasting of two shapes; throws ShapeError naming both.
Shape broadcast_shapes(const Shape& a, const Shape& b);

/// Maps a possibly negative axis into [0, rank); throws AxisError.
int normalize_axis(int axis, int rank);
/// Normalises, sorts and checks for repeats. Empty `axes` means all axes.
Axes normalize_axes(const Axes& axes, int rank);
/// The axes 0..rank-1 in order.
Axes all_axes(int rank);

/// Shape after reducing `axes` (normalised) with or without keepdims.
Shape reduced_shape(const Shape& shape, const Axes& axes, bool keepdims);

}  // namespace npdl
