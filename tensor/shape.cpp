#include "tensor/shape.hpp"

#include <algorithm>
#include <sstream>

#include "tensor/error.hpp"

namespace npdl {

std::int64_t numel(const Shape& shape) {
  std::int64_t nonzero = 1;
  bool empty = false;
  for (auto d : shape) {
    if (d < 0) {
      throw ShapeError("negative size " + std::to_string(d) + " in shape " + to_string(shape) +
                       ": expected sizes >= 0");
    }
    if (d == 0) {
      empty = true;
    } else if (__builtin_mul_overflow(nonzero, d, &nonzero)) {
      throw ShapeError("shape " + to_string(shape) +
                       " has too many elements: the product of its sizes overflows a 64-bit "
                       "count");
    }
  }
  return empty ? 0 : nonzero;
}

Shape infer_shape(const Shape& target, std::int64_t size) {
  Shape out = target;
  int inferred = -1;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] != -1) continue;
    if (inferred >= 0) {
      throw ShapeError("cannot reshape to " + to_string(target) +
                       ": only one size may be -1 (inferred)");
    }
    inferred = static_cast<int>(i);
    out[i] = 1;
  }
  const std::int64_t known = numel(out);  // throws on other negative sizes
  if (inferred >= 0) {
    if (known == 0 || size % known != 0) {
      throw ShapeError("cannot reshape " + std::to_string(size) + " elements to " +
                       to_string(target) + ": no size for -1 makes " + std::to_string(size) +
                       " elements");
    }
    out[inferred] = size / known;
  } else if (known != size) {
    throw ShapeError("cannot reshape " + std::to_string(size) + " elements to " +
                     to_string(target) + " (" + std::to_string(known) + " elements)");
  }
  return out;
}

std::string to_string(const Shape& shape) {
  std::ostringstream os;
  os << '(';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ',';
  os << ')';
  return os.str();
}

std::string to_string(const Axes& axes) {
  std::ostringstream os;
  os << '(';
  for (std::size_t i = 0; i < axes.size(); ++i) os << (i ? ", " : "") << axes[i];
  if (axes.size() == 1) os << ',';
  os << ')';
  return os.str();
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const std::size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    const std::int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const std::int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      throw ShapeError("shapes " + to_string(a) + " and " + to_string(b) +
                       " cannot be broadcast: expected equal sizes or 1 in every "
                       "aligned axis, got " +
                       std::to_string(da) + " and " + std::to_string(db) + " in axis " +
                       std::to_string(i) + " of the result");
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int normalize_axis(int axis, int rank) {
  if (axis < -rank || axis >= rank) {
    throw AxisError("axis " + std::to_string(axis) + " is out of range: expected an axis in [" +
                    std::to_string(-rank) + ", " + std::to_string(rank) +
                    ") for a tensor of rank " + std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

Axes all_axes(int rank) {
  Axes axes(rank);
  for (int i = 0; i < rank; ++i) axes[i] = i;
  return axes;
}

Axes normalize_axes(const Axes& axes, int rank) {
  if (axes.empty()) return all_axes(rank);
  Axes out;
  for (int a : axes) out.push_back(normalize_axis(a, rank));
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end()) {
    throw AxisError("repeated axis in " + to_string(axes) + ": expected distinct axes");
  }
  return out;
}

Shape reduced_shape(const Shape& shape, const Axes& axes, bool keepdims) {
  Shape out;
  for (int i = 0; i < static_cast<int>(shape.size()); ++i) {
    const bool reduced = std::find(axes.begin(), axes.end(), i) != axes.end();
    if (!reduced) {
      out.push_back(shape[i]);
    } else if (keepdims) {
      out.push_back(1);
    }
  }
  return out;
}

}  // namespace npdl
