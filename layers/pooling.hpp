#pragma once
// npdl's pooling layers on NCHW inputs, or (N, H, W) ones as npdl also
// takes: MeanPooling and MaxPooling. npdl's
// windows do not overlap (the stride is the pool size); rows and columns at
// the end that do not fill a window are dropped. An optional stride makes
// them overlap or skip.
#include <optional>
#include <string>

#include "layers/layer.hpp"
#include "ops/conv.hpp"

namespace npdl::layers {

using ops::Size2;

/// What MeanPooling and MaxPooling share: sizing from the input shape.
class Pooling : public Layer {
 public:
  Size2 pool_size() const { return pool_size_; }
  Size2 stride() const { return stride_; }
  Shape output_shape() const override { return output_shape_; }

 protected:
  /// Throws ValueError for pool sizes or strides < 1. No stride: the pool size.
  Pooling(Size2 pool_size, std::optional<Size2> stride);
  void build(const Shape& input_shape) override;
  /// `pool2d` over the input's last two axes: (N, C, H, W), or npdl's
  /// (N, H, W) as one channel.
  Var pool(const Var& input, Var (*pool2d)(const Var&, Size2, Size2));

 private:
  Size2 pool_size_, stride_;
  Shape output_shape_;
};

/// npdl's MeanPooling(pool_size): the mean of each window.
class MeanPooling : public Pooling {
 public:
  explicit MeanPooling(Size2 pool_size, std::optional<Size2> stride = std::nullopt)
      : Pooling(pool_size, stride) {}
  std::string name() const override { return "MeanPooling"; }
  Var apply(const Var& input, bool training) override;
};

/// npdl's MaxPooling(pool_size): the maximum of each window (its gradient
/// goes to the first maximum on ties, and to the first NaN of a window
/// holding several: see ops::max_pool2d).
class MaxPooling : public Pooling {
 public:
  explicit MaxPooling(Size2 pool_size, std::optional<Size2> stride = std::nullopt)
      : Pooling(pool_size, stride) {}
  std::string name() const override { return "MaxPooling"; }
  Var apply(const Var& input, bool training) override;
};

}  // namespace npdl::layers
