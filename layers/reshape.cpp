#include "layers/reshape.hpp"

#include <algorithm>

#include "ops/ops.hpp"

namespace npdl::layers {
namespace {

Shape with_samples(std::int64_t n, const Shape& sample) {
  Shape out{n};
  out.insert(out.end(), sample.begin(), sample.end());
  return out;
}

}  // namespace

Flatten::Flatten(int outdim) : outdim_(outdim) {
  if (outdim < 1) {
    throw ValueError("Flatten: outdim must be at least 1, got " + std::to_string(outdim));
  }
}

void Flatten::build(const Shape& input_shape) {
  if (outdim_ == 1) {  // the samples axis merges too: no sample shape is left
    output_shape_ = {};
    return;
  }
  // Sample axes kept: outdim - 2; the rest merges into the last output axis.
  const std::size_t kept = static_cast<std::size_t>(outdim_ - 2);
  if (input_shape.size() < kept + 1) {
    throw ShapeError("Flatten(outdim=" + std::to_string(outdim_) + ") expects samples of rank >= " +
                     std::to_string(kept + 1) + ", got samples of shape " + to_string(input_shape));
  }
  Shape out(input_shape.begin(), input_shape.begin() + kept);
  out.push_back(numel(Shape(input_shape.begin() + kept, input_shape.end())));
  output_shape_ = out;
}

Var Flatten::apply(const Var& input, bool /*training*/) {
  ensure_connected(input.shape());
  if (outdim_ == 1) return ops::reshape(input, {input.value().size()});
  return ops::reshape(input, with_samples(input.shape()[0], output_shape_));
}

DimShuffle::DimShuffle(int axis) : axis_(axis) {
  if (axis < 1) {
    throw ValueError("DimShuffle: axis must be at least 1 (axis 0 holds the samples), got " +
                     std::to_string(axis));
  }
}

void DimShuffle::build(const Shape& input_shape) {
  // The axis counts the samples axis: sample position axis - 1.
  const std::size_t at = static_cast<std::size_t>(axis_ - 1);
  if (at > input_shape.size()) {
    throw AxisError("DimShuffle(axis=" + std::to_string(axis_) + ") needs inputs of rank >= " +
                    std::to_string(axis_) + ", got samples of shape " + to_string(input_shape));
  }
  output_shape_ = input_shape;
  output_shape_.insert(output_shape_.begin() + static_cast<std::ptrdiff_t>(at), 1);
}

Var DimShuffle::apply(const Var& input, bool /*training*/) {
  ensure_connected(input.shape());
  return ops::reshape(input, with_samples(input.shape()[0], output_shape_));
}

Reshape::Reshape(Shape shape) : target_(std::move(shape)) {
  int inferred = 0;
  for (std::int64_t d : target_) {
    if (d == -1) {
      ++inferred;
    } else if (d < 1) {
      throw ValueError("Reshape: sizes must be positive or -1, got " + to_string(target_));
    }
  }
  if (inferred > 1) {
    throw ValueError("Reshape: at most one size may be -1, got " + to_string(target_));
  }
}

void Reshape::build(const Shape& input_shape) {
  const std::int64_t size = numel(input_shape);
  try {
    output_shape_ = infer_shape(target_, size);
  } catch (const ShapeError&) {
    throw ShapeError("Reshape to " + to_string(target_) + " needs samples of a fitting size, got " +
                     "samples of shape " + to_string(input_shape) + " (" + std::to_string(size) +
                     " elements)");
  }
}

Var Reshape::apply(const Var& input, bool /*training*/) {
  ensure_connected(input.shape());
  return ops::reshape(input, with_samples(input.shape()[0], output_shape_));
}

}  // namespace npdl::layers
