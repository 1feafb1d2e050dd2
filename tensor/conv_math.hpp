#pragma once
// Eager kernels of 2-D convolution and pooling on NCHW tensors: what the
// conv2d and pooling ops (ops/conv.cpp, ops/pool.cpp) compute their values
// and VJPs with. Nothing here records on a graph.
//
// Every function checks its arguments first and throws (ShapeError for
// shapes that do not fit, ValueError for a stride, window or padding out of
// range) before it computes anything.
#include <cstdint>
#include <vector>

#include "tensor/tensor.hpp"

namespace npdl::math {

/// A pair of sizes along (height, width). An integer means both.
struct Size2 {
  Size2(std::int64_t both) : h(both), w(both) {}  // NOLINT: an int is a square size
  Size2(std::int64_t height, std::int64_t width) : h(height), w(width) {}
  std::int64_t h, w;
  bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
};

/// Zeros added around each (height, width) plane, per side.
struct Padding2d {
  std::int64_t top = 0, bottom = 0, left = 0, right = 0;
  bool operator==(const Padding2d& o) const {
    return top == o.top && bottom == o.bottom && left == o.left && right == o.right;
  }
};

/// Output (height, width) of a window of `window` moved by `stride` over an
/// input of (height, width) `input` padded by `padding`:
/// out = (in + pad_before + pad_after - window) / stride + 1.
/// Throws ValueError for window or stride < 1 or padding < 0, ShapeError
/// when the padded input's size overflows 64 bits or the window is larger
/// than it. `what` names the caller.
Size2 window_output_size(Size2 input, Size2 window, Size2 stride, const Padding2d& padding,
                         const char* what);

/// y[n, f, oh, ow] = sum over c, i, j of
///   w[f, c, i, j] * xpad[n, c, oh * stride.h + i, ow * stride.w + j],
/// xpad being x with zeros added around each plane by `padding`.
/// x is (N, C, H, W), w is (F, C, KH, KW), y is (N, F, OH, OW).
Tensor conv2d(const Tensor& x, const Tensor& w, Size2 stride, const Padding2d& padding);
/// conv2d(x, w) + bias[f] on every output of filter f, bias of shape (F),
/// the bias added to each sample's output as soon as it is computed (the
/// same bits as adding it in a pass of its own after). Throws as conv2d,
/// and ShapeError when bias is not (F), DTypeError when its dtype is not x's.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, Size2 stride,
              const Padding2d& padding);
/// relu(conv2d(x, w, bias)), relu applied to each sample's outputs as soon
/// as they are computed (the same bits as relu in a pass of its own after).
/// Throws as conv2d with a bias.
Tensor conv2d_relu(const Tensor& x, const Tensor& w, const Tensor& bias, Size2 stride,
                   const Padding2d& padding);

/// Gradients of conv2d for the upstream gradient gy (the output's shape):
/// gx (x's shape) and gw (w's shape).
struct Conv2dGrads {
  Tensor gx, gw;
};
Conv2dGrads conv2d_backward(const Tensor& gy, const Tensor& x, const Tensor& w, Size2 stride,
                            const Padding2d& padding);
/// gx alone: the adjoint of conv2d in x (a transposed convolution of gy with
/// w), for an input of shape x_shape. The input's size is a parameter: with
/// a stride > 1 several input sizes give the same output size.
Tensor conv2d_input_grad(const Tensor& gy, const Tensor& w, const Shape& x_shape, Size2 stride,
                         const Padding2d& padding);
/// gw alone: the adjoint of conv2d in w, for filters of shape w_shape.
Tensor conv2d_weight_grad(const Tensor& x, const Tensor& gy, const Shape& w_shape, Size2 stride,
                          const Padding2d& padding);

/// Maximum of each window; `argmax` (when given) receives, per output
/// element, the flat offset within its (height, width) plane of the input
/// element chosen: the first maximum in row-major window order.
Tensor max_pool2d(const Tensor& x, Size2 window, Size2 stride,
                  std::vector<std::int32_t>* argmax = nullptr);
/// Routes each upstream gradient to the input element `argmax` recorded
/// (summed where windows overlap). The offsets must lie within a plane of
/// x_shape, as max_pool2d makes them: they are not checked here.
Tensor max_pool2d_backward(const Tensor& gy, const std::vector<std::int32_t>& argmax,
                           const Shape& x_shape);
/// The adjoint of max_pool2d_backward: y[n, c, o] = a[n, c, argmax[o]], of
/// shape y_shape (a has the input's shape; offsets as above, unchecked).
Tensor max_pool2d_gather(const Tensor& a, const std::vector<std::int32_t>& argmax,
                         const Shape& y_shape);

/// Mean of each window.
Tensor mean_pool2d(const Tensor& x, Size2 window, Size2 stride);
/// Spreads each upstream gradient evenly over its window: the adjoint of
/// mean_pool2d (rows and columns no window covers get zero).
Tensor mean_pool2d_backward(const Tensor& gy, const Shape& x_shape, Size2 window, Size2 stride);

}  // namespace npdl::math
