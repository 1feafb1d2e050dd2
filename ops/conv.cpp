// conv2d: forward, VJP and formula text. The matrix-product lowering and its
// derivation are in autodiff/conv_math.cpp (Note [Convolution as matrix products]).
#include "ops/conv.hpp"

#include "autodiff/conv_math.hpp"
#include "ops/info.hpp"
#include "ops/record.hpp"

namespace npdl::ops {
using detail::record;

namespace info {
const OpInfo kConv2d{"conv2d",
                     "y[n,f,oh,ow] = sum over c,i,j of w[f,c,i,j] * xpad[n,c,oh*sh+i,ow*sw+j]",
                     "gx = col2im(w^T @ g) (full correlation with w, cropped to x); "
                     "gw = sum over n of g @ im2col(x)^T",
                     false,
                     0b11,
                     /*twice_differentiable=*/false};
}  // namespace info

Var conv2d(const Var& x, const Var& w, Size2 stride, Padding2d padding) {
  // The kernel validates everything before computing: on bad input nothing is recorded.
  Tensor y = math::conv2d(x.value(), w.value(), stride, padding);
  return record(info::kConv2d, {&x, &w}, std::move(y), {},
                [stride, padding](const VjpArgs& c) -> Vars {
                  math::Conv2dGrads g = math::conv2d_backward(c.grad.value(), c.input(0).value(),
                                                              c.input(1).value(), stride, padding);
                  return {Var(std::move(g.gx)), Var(std::move(g.gw))};
                });
}

}  // namespace npdl::ops
