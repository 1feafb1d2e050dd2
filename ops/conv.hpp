#pragma once
// Convolution and pooling ops on NCHW graph values (ops/conv.cpp,
// ops/pool.cpp). Their kernels are in tensor/conv_math.hpp.
#include <cstdint>
#include <memory>
#include <vector>

#include "autodiff/graph.hpp"
#include "tensor/conv_math.hpp"

namespace npdl::ops {

using math::Padding2d;
using math::Size2;

/// 2-D cross-correlation (what deep-learning libraries call convolution):
/// x (N, C, H, W), w (F, C, KH, KW) -> (N, F, OH, OW) with
/// OH = (H + top + bottom - KH) / stride.h + 1 (likewise OW). Throws
/// ShapeError for a non-4-D x or w, channels that differ, a filter larger
/// than the padded input, or sizes whose sums or products overflow 64 bits
/// (the padded input, the output, one sample's receptive fields);
/// ValueError for stride < 1 or padding < 0.
Var conv2d(const Var& x, const Var& w, Size2 stride = 1, Padding2d padding = {});
/// conv2d(x, w) + b[f] on every output of filter f, b of shape (F): a
/// convolution layer's pre-activation as one op. The same values, bit for
/// bit, as conv2d(x, w, ...) + reshape(b, {1, F, 1, 1}), without that add's
/// pass over the whole output: the bias is added to each sample's output
/// while it is in cache. The VJP is conv2d's in x and w and, in b, the
/// upstream gradient summed over (N, OH, OW). Throws as conv2d, and
/// ShapeError when b is not (F), DTypeError when b's dtype is not x's.
Var conv2d(const Var& x, const Var& w, const Var& b, Size2 stride = 1, Padding2d padding = {});
/// relu(conv2d(x, w, b)): a convolution layer with relu as one op. The same
/// values and gradients, bit for bit, as relu(conv2d(x, w, b, ...)), without
/// relu's pass over the whole output (it is applied to each sample's output
/// while it is in cache), and one node where a graph that keeps every value
/// kept two outputs. The VJP is conv2d with a bias's for g * (y > 0). Throws
/// as conv2d with a bias.
Var conv2d_relu(const Var& x, const Var& w, const Var& b, Size2 stride = 1, Padding2d padding = {});

// The two halves of conv2d's VJP as primitives, so that a gradient recorded
// under create_graph can be differentiated again, to any order. Both are
// bilinear and adjoint to conv2d, so their own VJPs are conv2d and each other.

/// gx = d<conv2d(x, w), g>/dx for an input of shape x_shape (a transposed
/// convolution). The input's shape is a parameter: with a stride > 1 it is
/// not determined by g's. Throws ShapeError when g is not conv2d's output
/// shape for x_shape and w (and as conv2d for the rest).
Var conv2d_input_grad(const Var& g, const Var& w, const Shape& x_shape, Size2 stride = 1,
                      Padding2d padding = {});
/// gw = d<conv2d(x, w), g>/dw for filters of shape w_shape. Throws as
/// conv2d_input_grad.
Var conv2d_weight_grad(const Var& x, const Var& g, const Shape& w_shape, Size2 stride = 1,
                       Padding2d padding = {});

/// Maximum over each window of `window` moved by `stride` (no padding;
/// trailing rows and columns that do not fill a window are dropped). Its VJP
/// routes each gradient to the window's maximum; on ties, to the first one
/// in row-major window order. A NaN is larger than every number (the
/// maximum of a window holding one is NaN, as NumPy's max), and of several
/// NaNs in one window the first in row-major order gets the gradient: NumPy's
/// argmax rule, which npdl's Python follows (PyTorch's CPU kernel picks the
/// last NaN instead).
Var max_pool2d(const Var& x, Size2 window, Size2 stride);
/// Mean over each window (as max_pool2d, without padding).
Var mean_pool2d(const Var& x, Size2 window, Size2 stride);

/// Where max_pool2d found each window's maximum: per output element, the
/// flat offset within its (height, width) plane of the input element chosen.
/// To max_pool2d's VJP it is a constant: max pooling is piecewise linear.
struct MaxPoolSelection {
  Shape input, output;  // x's and y's shapes
  std::vector<std::int32_t> argmax;
};
using MaxPoolSelectionPtr = std::shared_ptr<const MaxPoolSelection>;

/// The selection max_pool2d(x, window, stride) makes (and its VJP uses).
MaxPoolSelectionPtr max_pool2d_selection(const Tensor& x, Size2 window, Size2 stride);

/// max_pool2d's VJP as a primitive: g (the pooled shape) routed to the
/// selected input elements, summed where windows overlap; zero elsewhere.
/// Its VJP is max_pool2d_gather, and the gather's is this scatter again.
/// Throws ShapeError when g or the selection do not fit, ValueError for an
/// offset outside the plane or no selection.
Var max_pool2d_backward(const Var& g, const MaxPoolSelectionPtr& selection);
/// The adjoint of max_pool2d_backward: a (the input's shape) read at the
/// selected elements, giving the pooled shape. Throws as max_pool2d_backward.
Var max_pool2d_gather(const Var& a, const MaxPoolSelectionPtr& selection);

/// mean_pool2d's VJP as a primitive: g / (kh * kw) spread over each window
/// of an input of shape x_shape, summed where windows overlap (trailing rows
/// and columns no window covers get zero). Its VJP is mean_pool2d: the two
/// are adjoint. Throws as mean_pool2d, and ShapeError when g is not the
/// pooled shape.
Var mean_pool2d_backward(const Var& g, const Shape& x_shape, Size2 window, Size2 stride);

}  // namespace npdl::ops
