// conv2d and the two halves of its VJP: forward, VJP and formula text. The
// matrix-product lowering and its derivation are in tensor/conv_math.cpp
// (Note [Convolution as matrix products]).
#include "ops/conv.hpp"

#include "ops/detail/record.hpp"
#include "ops/info.hpp"
#include "tensor/conv_math.hpp"

namespace npdl::ops {
using detail::record;

namespace info {
const OpInfo kConv2d{"conv2d",
                     "y[n,f,oh,ow] = sum over c,i,j of w[f,c,i,j] * xpad[n,c,oh*sh+i,ow*sw+j]",
                     "gx = conv2d_input_grad(g, w) = col2im(w^T @ g) (full correlation with w, "
                     "cropped to x); gw = conv2d_weight_grad(x, g) = sum over n of g @ im2col(x)^T",
                     false, 0b11};
const OpInfo kConv2dInputGrad{
    "conv2d_input_grad",
    "gx = col2im(w^T @ g): conv2d's gradient in x, the adjoint of x -> conv2d(x, w)",
    "gg = conv2d(u, w), gw = conv2d_weight_grad(u, g)   (u the upstream gradient, x's shape)",
    false, 0b11};
const OpInfo kConv2dWeightGrad{
    "conv2d_weight_grad",
    "gw = sum over n of g @ im2col(x)^T: conv2d's gradient in w, the adjoint of w -> conv2d(x, w)",
    "gx = conv2d_input_grad(g, u), gg = conv2d(x, u)   (u the upstream gradient, w's shape)", false,
    0b11};
}  // namespace info

// Note [Convolution's VJPs are convolutions]
// conv2d is bilinear: y = A_w x = B_x w. Its VJP is the pair of adjoints,
//   gx = A_w^T g = conv2d_input_grad(g, w),  gw = B_x^T g = conv2d_weight_grad(x, g),
// each bilinear again. Differentiating <u, A_w^T g> = <A_w u, g> = <B_u w, g>
// gives conv2d_input_grad's VJP, d/dg = A_w u = conv2d(u, w) and
// d/dw = B_u^T g = conv2d_weight_grad(u, g); likewise <u, B_x^T g> =
// <B_x u, g> = <A_u x, g> gives conv2d_weight_grad's, d/dg = conv2d(x, u) and
// d/dx = A_u^T g = conv2d_input_grad(g, u). The three ops' VJPs are written
// with the three ops, so derivatives of any order stay convolutions. A
// first-order VJP of conv2d, where nothing records, runs the kernel that
// computes gx and gw in one pass (math::conv2d_backward) instead.

namespace {}  // namespace

Var conv2d(const Var& x, const Var& w, Size2 stride, Padding2d padding) {
  // The kernel validates everything before computing: on bad input nothing is recorded.
  Tensor y = math::conv2d(x.value(), w.value(), stride, padding);
  return record(
      info::kConv2d, {&x, &w}, std::move(y), {}, [stride, padding](const VjpArgs& c) -> Vars {
        const Var x = c.input(0), w = c.input(1);
        // The gradient of an input that wants none (a network's data) is
        // not computed: an undefined Var.
        const bool want_x = c.needs_input_grad(0), want_w = c.needs_input_grad(1);
        if (!detail::records({&c.grad, &x, &w}) && want_x && want_w) {
          math::Conv2dGrads g =
              math::conv2d_backward(c.grad.value(), x.value(), w.value(), stride, padding);
          return {Var(std::move(g.gx)), Var(std::move(g.gw))};
        }
        return {want_x ? conv2d_input_grad(c.grad, w, x.shape(), stride, padding) : Var(),
                want_w ? conv2d_weight_grad(x, c.grad, w.shape(), stride, padding) : Var()};
      });
}

Var conv2d_input_grad(const Var& g, const Var& w, const Shape& x_shape, Size2 stride,
                      Padding2d padding) {
  Tensor gx = math::conv2d_input_grad(g.value(), w.value(), x_shape, stride, padding);
  return record(info::kConv2dInputGrad, {&g, &w}, std::move(gx), {},
                [stride, padding](const VjpArgs& c) -> Vars {
                  const Var g = c.input(0), w = c.input(1);
                  return {c.needs_input_grad(0) ? conv2d(c.grad, w, stride, padding) : Var(),
                          c.needs_input_grad(1)
                              ? conv2d_weight_grad(c.grad, g, w.shape(), stride, padding)
                              : Var()};
                });
}

Var conv2d_weight_grad(const Var& x, const Var& g, const Shape& w_shape, Size2 stride,
                       Padding2d padding) {
  Tensor gw = math::conv2d_weight_grad(x.value(), g.value(), w_shape, stride, padding);
  return record(info::kConv2dWeightGrad, {&x, &g}, std::move(gw), {},
                [stride, padding](const VjpArgs& c) -> Vars {
                  const Var x = c.input(0), g = c.input(1);
                  return {c.needs_input_grad(0)
                              ? conv2d_input_grad(g, c.grad, x.shape(), stride, padding)
                              : Var(),
                          c.needs_input_grad(1) ? conv2d(x, c.grad, stride, padding) : Var()};
                });
}

}  // namespace npdl::ops
