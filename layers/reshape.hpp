#pragma once
// Layout layers: Flatten (npdl's) and Reshape. Neither has parameters; the
// samples axis is never touched.
#include <string>

#include "layers/layer.hpp"

namespace npdl::layers {

/// npdl's Flatten(outdim=2): keeps the first outdim - 1 axes (the samples
/// axis among them) and merges the rest into one. Throws ValueError for
/// outdim < 2 (the samples axis must stay its own).
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
