#pragma once
// Layout layers: Flatten and DimShuffle (npdl's) and Reshape. Neither has parameters; the
// samples axis is never touched.
#include <string>

#include "layers/layer.hpp"

namespace npdl::layers {

/// npdl's Flatten(outdim=2): keeps the first outdim - 1 axes (the samples
/// axis among them) and merges the rest into one. outdim = 1 merges the
/// samples axis too, into one axis of N * (sample size) values, as npdl's
/// does (its output has no samples axis left). ValueError for outdim < 1.
class Flatten : public Layer {
 public:
  explicit Flatten(int outdim = 2);
  std::string name() const override { return "Flatten"; }
  Var apply(const Var& input, bool training) override;
  Shape output_shape() const override { return output_shape_; }

 protected:
  void build(const Shape& input_shape) override;

 private:
  int outdim_;
  Shape output_shape_;
};

/// npdl's DimShuffle(axis=1): a new axis of size 1 at position `axis` of
/// the batch (numpy's expand_dims); axis 1 puts it right after the samples
/// axis. ValueError for axis < 1 (npdl allows 0, which would move the
/// samples axis), AxisError past the input's rank.
class DimShuffle : public Layer {
 public:
  explicit DimShuffle(int axis = 1);
  std::string name() const override { return "DimShuffle"; }
  Var apply(const Var& input, bool training) override;
  Shape output_shape() const override { return output_shape_; }

 protected:
  void build(const Shape& input_shape) override;

 private:
  int axis_;
  Shape output_shape_;
};

/// Reshapes each sample to `shape` (without the samples axis); one entry may
/// be -1 and is then inferred. Throws ShapeError when the sizes do not fit.
class Reshape : public Layer {
 public:
  explicit Reshape(Shape shape);
  std::string name() const override { return "Reshape"; }
  Var apply(const Var& input, bool training) override;
  Shape output_shape() const override { return output_shape_; }

 protected:
  void build(const Shape& input_shape) override;

 private:
  Shape target_;
  Shape output_shape_;
};

}  // namespace npdl::layers
