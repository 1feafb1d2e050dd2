// conv2d (alone, with a bias, with a bias and relu) and the two halves of
// its VJP: forward, VJP and formula text. The matrix-product lowering and
// its derivation are in tensor/conv_math.cpp
// (Note [Convolution as matrix products]).
#include "ops/conv.hpp"

#include "autodiff/catalogue.hpp"
#include "ops/detail/entries.hpp"
#include "ops/detail/record.hpp"
#include "ops/detail/relu_grad.hpp"
#include "ops/ops.hpp"
#include "tensor/conv_math.hpp"

namespace npdl::ops {
using detail::record;

namespace info {
const OpInfo kConv2d{"conv2d",
                     "y[n,f,oh,ow] = sum over c,i,j of w[f,c,i,j] * xpad[n,c,oh*sh+i,ow*sw+j]",
                     "gx = conv2d_input_grad(g, w) = col2im(w^T @ g) (full correlation with w, "
                     "cropped to x); gw = conv2d_weight_grad(x, g) = sum over n of g @ im2col(x)^T",
                     false, 0b11};
const OpInfo kConv2dBias{"conv2d_bias", "y[n,f,oh,ow] = conv2d(x, w)[n,f,oh,ow] + b[f]",
                         "gx, gw as conv2d's; gb[f] = sum over n,oh,ow of g[n,f,oh,ow]", false,
                         0b11};
const OpInfo kConv2dBiasRelu{
    "conv2d_bias_relu", "y = relu(conv2d(x, w)[n,f,oh,ow] + b[f])",
    "u = g * (y > 0)   ((y > 0) a constant mask); gx, gw, gb as conv2d_bias's for u", true, 0b11};
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

namespace {
// conv2d's VJP in x and w (inputs 0 and 1 of conv2d and the biased ops) for
// the upstream gradient g.
Vars conv2d_vjp(const VjpArgs& c, const Var& g, Size2 stride, Padding2d padding) {
  const Var x = c.input(0), w = c.input(1);
  // The gradient of an input that wants none (a network's data) is not
  // computed: an undefined Var.
  const bool want_x = c.needs_input_grad(0), want_w = c.needs_input_grad(1);
  if (!detail::records({&g, &x, &w}) && want_x && want_w) {
    math::Conv2dGrads grads =
        math::conv2d_backward(g.value(), x.value(), w.value(), stride, padding);
    return {Var(std::move(grads.gx)), Var(std::move(grads.gw))};
  }
  return {want_x ? conv2d_input_grad(g, w, x.shape(), stride, padding) : Var(),
          want_w ? conv2d_weight_grad(x, g, w.shape(), stride, padding) : Var()};
}

// conv2d_bias's VJP in x, w and b for the upstream gradient g.
Vars conv2d_bias_vjp(const VjpArgs& c, const Var& g, Size2 stride, Padding2d padding) {
  Vars grads = conv2d_vjp(c, g, stride, padding);
  // What add's VJP gives a bias broadcast as (1, F, 1, 1): the same sum, so
  // the same bits.
  const std::int64_t filters = c.input_shapes[2][0];
  grads.push_back(c.needs_input_grad(2) ? reshape(sum_to(g, {1, filters, 1, 1}), {filters})
                                        : Var());
  return grads;
}
}  // namespace

Var conv2d(const Var& x, const Var& w, Size2 stride, Padding2d padding) {
  // The kernel validates everything before computing: on bad input nothing is recorded.
  Tensor y = math::conv2d(x.value(), w.value(), stride, padding);
  return record(info::kConv2d, {&x, &w}, std::move(y), {}, [stride, padding](const VjpArgs& c) {
    return conv2d_vjp(c, c.grad, stride, padding);
  });
}

Var conv2d(const Var& x, const Var& w, const Var& b, Size2 stride, Padding2d padding) {
  Tensor y = math::conv2d(x.value(), w.value(), b.value(), stride, padding);
  return record(
      info::kConv2dBias, {&x, &w, &b}, std::move(y), {},
      [stride, padding](const VjpArgs& c) { return conv2d_bias_vjp(c, c.grad, stride, padding); });
}

Var conv2d_relu(const Var& x, const Var& w, const Var& b, Size2 stride, Padding2d padding) {
  Tensor y = math::conv2d_relu(x.value(), w.value(), b.value(), stride, padding);
  return record(info::kConv2dBiasRelu, {&x, &w, &b}, std::move(y), {},
                [stride, padding](const VjpArgs& c) {
                  return conv2d_bias_vjp(c, detail::relu_grad(c.grad, c.output()), stride, padding);
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

// Catalogue entries (Note [One entry per primitive] in autodiff/catalogue.hpp).
// The ops are bilinear, so most samples square the result: then the second
// derivative in the inputs is not zero, and the sample checks the VJP of
// the VJP (in the upstream gradient) as well.
namespace {
using namespace catalogue;  // NOLINT: the entries below are written in its words
constexpr const char* kFile = "ops/conv.cpp";
constexpr const char* kGeometryFuzzer = "conv_geometry";
using V = const std::vector<Var>&;

GraphFunction maybe_squared(GraphFunction f, bool squared) {
  return squared ? detail::squared(std::move(f)) : f;
}

Sample conv_sample(const char* what, Size2 stride, Padding2d padding, bool squared, Shape x,
                   Shape w, std::uint64_t seed) {
  return {what,
          maybe_squared([=](V v) { return conv2d(v[0], v[1], stride, padding); }, squared),
          {sample::normal(std::move(x), seed), sample::normal(std::move(w), seed + 1)}};
}

Samples conv2d_samples() {
  return {conv_sample("3x3", 1, {}, false, {2, 2, 5, 5}, {3, 2, 3, 3}, 101),
          conv_sample("2x3, squared", 1, {}, true, {1, 2, 4, 5}, {2, 2, 2, 3}, 103),
          conv_sample("stride 2, padded; last row and column in no window", 2, {1, 1, 1, 1}, true,
                      {2, 2, 6, 6}, {2, 2, 3, 3}, 105),
          conv_sample("a stride per axis, asymmetric padding", {2, 1}, {0, 1, 2, 0}, false,
                      {1, 2, 5, 4}, {3, 2, 2, 3}, 107),
          conv_sample("1x1 filter", 1, {}, true, {2, 3, 4, 4}, {2, 3, 1, 1}, 109),
          conv_sample("1x1 filter, stride 2", 2, {}, true, {1, 2, 5, 5}, {3, 2, 1, 1}, 111),
          conv_sample("one channel", 1, {1, 1, 1, 1}, true, {2, 1, 4, 4}, {2, 1, 3, 3}, 113),
          conv_sample("filter wider than input and padding: columns that see only padding", {1, 2},
                      {0, 0, 3, 0}, true, {1, 2, 1, 2}, {2, 2, 1, 4}, 152),
          conv_sample("5x5 filter, padding 2, on a 3x1 input", 1, {2, 2, 2, 2}, true, {2, 2, 3, 1},
                      {3, 2, 5, 5}, 154)};
}

// conv_sample's input and filters and a bias (one per filter), through
// conv2d with the bias.
Sample conv_bias_sample(const char* what, Size2 stride, Padding2d padding, bool squared, Shape x,
                        Shape w, std::uint64_t seed) {
  const std::int64_t filters = w[0];
  Sample s = conv_sample(what, stride, padding, squared, std::move(x), std::move(w), seed);
  s.f = maybe_squared([=](V v) { return conv2d(v[0], v[1], v[2], stride, padding); }, squared);
  s.inputs.push_back(sample::normal({filters}, seed + 2));
  return s;
}

Samples conv2d_bias_samples() {
  return {conv_bias_sample("3x3", 1, {}, false, {2, 2, 5, 5}, {3, 2, 3, 3}, 161),
          conv_bias_sample("stride 2, padded, squared", 2, {1, 1, 1, 1}, true, {2, 2, 6, 6},
                           {2, 2, 3, 3}, 164),
          conv_bias_sample("one filter, 1x1 output, squared", 1, {}, true, {3, 2, 2, 2},
                           {1, 2, 2, 2}, 167)};
}

// conv_bias_sample's operands through conv2d_relu: roughly half the
// outputs are cut, so the mask matters; none lies within the differences'
// step of the kink.
Sample conv_relu_sample(const char* what, Size2 stride, Padding2d padding, bool squared, Shape x,
                        Shape w, std::uint64_t seed) {
  Sample s = conv_bias_sample(what, stride, padding, squared, std::move(x), std::move(w), seed);
  s.f = maybe_squared([=](V v) { return conv2d_relu(v[0], v[1], v[2], stride, padding); }, squared);
  return s;
}

Samples conv2d_bias_relu_samples() {
  return {conv_relu_sample("3x3", 1, {}, false, {2, 2, 5, 5}, {3, 2, 3, 3}, 171),
          conv_relu_sample("stride 2, padded, squared", 2, {1, 1, 1, 1}, true, {2, 2, 6, 6},
                           {2, 2, 3, 3}, 174),
          conv_relu_sample("1x1 filter, squared", 1, {}, true, {2, 3, 3, 4}, {2, 3, 1, 1}, 177),
          conv_relu_sample("one filter, 1x1 output, squared", 1, {}, true, {3, 2, 2, 2},
                           {1, 2, 2, 2}, 179)};
}

// The input's size is an argument: 8 x 7 and 7 x 7 both give 3 x 3 with a
// 3 x 3 filter and stride 2, and the last row of 8 gets no gradient.
Samples conv2d_input_grad_samples() {
  auto input_grad = [](Shape x_shape, Size2 stride, Padding2d padding, bool squared) {
    return maybe_squared(
        [=](V v) { return conv2d_input_grad(v[0], v[1], x_shape, stride, padding); }, squared);
  };
  return {{"8x7 input, stride 2",
           input_grad({1, 2, 8, 7}, 2, {}, false),
           {sample::normal({1, 3, 3, 3}, 115), sample::normal({3, 2, 3, 3}, 116)}},
          {"asymmetric padding, squared",
           input_grad({2, 2, 5, 4}, 1, {1, 0, 0, 1}, true),
           {sample::normal({2, 3, 4, 4}, 117), sample::normal({3, 2, 3, 2}, 118)}}};
}

Samples conv2d_weight_grad_samples() {
  auto weight_grad = [](Shape w_shape, Size2 stride, Padding2d padding, bool squared) {
    return maybe_squared(
        [=](V v) { return conv2d_weight_grad(v[0], v[1], w_shape, stride, padding); }, squared);
  };
  return {{"8x7 input, stride 2",
           weight_grad({3, 2, 3, 3}, 2, {}, false),
           {sample::normal({1, 2, 8, 7}, 119), sample::normal({1, 3, 3, 3}, 120)}},
          {"asymmetric padding, squared",
           weight_grad({3, 2, 3, 2}, 1, {1, 0, 0, 1}, true),
           {sample::normal({2, 2, 5, 4}, 121), sample::normal({2, 3, 4, 4}, 122)}}};
}

const Primitive kEntries[] = {
    Primitive(info::kConv2d, kFile)
        .with_inputs({{}, {}})
        .with_samples(conv2d_samples)
        .with_own_fuzzer(kGeometryFuzzer),
    Primitive(info::kConv2dBias, kFile)
        .with_inputs({{}, {}, {}})
        .with_samples(conv2d_bias_samples)
        .with_own_fuzzer(kGeometryFuzzer),
    Primitive(info::kConv2dBiasRelu, kFile)
        .with_inputs({{}, {}, {}})
        .with_samples(conv2d_bias_relu_samples)
        .with_own_fuzzer(kGeometryFuzzer),
    Primitive(info::kConv2dInputGrad, kFile)
        .with_inputs({{}, {}})
        .with_samples(conv2d_input_grad_samples)
        .with_own_fuzzer(kGeometryFuzzer),
    Primitive(info::kConv2dWeightGrad, kFile)
        .with_inputs({{}, {}})
        .with_samples(conv2d_weight_grad_samples)
        .with_own_fuzzer(kGeometryFuzzer),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
