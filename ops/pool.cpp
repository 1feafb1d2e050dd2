// Pooling ops and the primitives their VJPs are made of: forward, VJP and
// formula text.
#include <memory>
#include <string>
#include <vector>

#include "autodiff/catalogue.hpp"
#include "ops/conv.hpp"
#include "ops/detail/record.hpp"
#include "ops/ops.hpp"
#include "tensor/conv_math.hpp"

namespace npdl::ops {
using detail::record;

namespace info {
const OpInfo kMaxPool2d{"max_pool2d", "y[n,c,oh,ow] = max of x over the window at (oh*sh, ow*sw)",
                        "ga = max_pool2d_backward(g): g routed to each window's maximum (ties: "
                        "the first in row-major window order), summed where windows overlap"};
const OpInfo kMaxPool2dBackward{
    "max_pool2d_backward",
    "gx = g scattered to the maxima max_pool2d selected (a constant), summed where windows overlap",
    "gg = max_pool2d_gather(u): the upstream read at the same maxima"};
const OpInfo kMaxPool2dGather{"max_pool2d_gather",
                              "y[n,c,o] = a[n,c,argmax[o]] at the maxima max_pool2d selected",
                              "ga = max_pool2d_backward(g): g scattered to the same maxima"};
const OpInfo kMeanPool2d{"mean_pool2d",
                         "y[n,c,oh,ow] = mean of x over the window at (oh*sh, ow*sw)",
                         "ga = mean_pool2d_backward(g): g / (kh*kw) spread over each window, "
                         "summed where windows overlap"};
const OpInfo kMeanPool2dBackward{
    "mean_pool2d_backward",
    "gx = g / (kh*kw) spread over each window, summed where windows overlap (zero where no window "
    "reaches)",
    "gg = mean_pool2d(u): the two are adjoint"};
}  // namespace info

// Note [Pooling's VJPs are linear]
// Both poolings are linear in x once max pooling's selection (which element
// of each window is the maximum) is fixed, and it is fixed almost
// everywhere: a constant of the VJP. Each VJP is then a linear map of g
// whose own VJP is its adjoint: the scatter to the selected elements and the
// gather from them for max pooling, the spread over windows and mean pooling
// itself for mean pooling. Recorded under create_graph they differentiate
// again to any order; the second derivative of max pooling in x is zero, as
// it is for any piecewise linear function.

namespace {

// The ops without the checks of a selection a user made: max_pool2d's VJP
// and these two's pass the selection max_pool2d made.
Var scatter_to_maxima(const Var& g, const MaxPoolSelectionPtr& selection);

Var gather_from_maxima(const Var& a, const MaxPoolSelectionPtr& selection) {
  Tensor y = math::max_pool2d_gather(a.value(), selection->argmax, selection->output);
  return record(
      info::kMaxPool2dGather, {&a}, std::move(y), {},
      [selection](const VjpArgs& c) -> Vars { return {scatter_to_maxima(c.grad, selection)}; });
}

Var scatter_to_maxima(const Var& g, const MaxPoolSelectionPtr& selection) {
  Tensor gx = math::max_pool2d_backward(g.value(), selection->argmax, selection->input);
  return record(
      info::kMaxPool2dBackward, {&g}, std::move(gx), {},
      [selection](const VjpArgs& c) -> Vars { return {gather_from_maxima(c.grad, selection)}; });
}

// A selection made outside max_pool2d: shapes that fit each other and
// offsets inside the plane, before a kernel indexes with them.
void check_selection(const MaxPoolSelectionPtr& selection, const char* what) {
  if (!selection) {
    throw ValueError(std::string(what) + " expects a max-pooling selection, got none");
  }
  const Shape& in = selection->input;
  const Shape& out = selection->output;
  if (in.size() != 4 || out.size() != 4 || in[0] != out[0] || in[1] != out[1] ||
      static_cast<std::int64_t>(selection->argmax.size()) != numel(out)) {
    throw ShapeError(std::string(what) + ": a selection from an input of shape " + to_string(in) +
                     " to an output of shape " + to_string(out) +
                     " expects 4-D shapes with the same (N, C) and one offset per output "
                     "element, got " +
                     std::to_string(selection->argmax.size()) + " offsets");
  }
  numel(in);  // sizes >= 0 whose product fits: the plane size below is safe
  const std::int64_t plane = in[2] * in[3];
  for (std::int32_t offset : selection->argmax) {
    if (offset < 0 || offset >= plane) {
      throw ValueError(std::string(what) + ": selection offsets must lie in [0, " +
                       std::to_string(plane) + ") (a plane of " + to_string(in) + "), got " +
                       std::to_string(offset));
    }
  }
}

}  // namespace

Var max_pool2d(const Var& x, Size2 window, Size2 stride) {
  // The VJP needs only where each maximum was, not x itself.
  auto selection = std::make_shared<MaxPoolSelection>();
  Tensor y = math::max_pool2d(x.value(), window, stride, &selection->argmax);
  selection->input = x.shape();
  selection->output = y.shape();
  return record(info::kMaxPool2d, {&x}, std::move(y), {},
                [selection = MaxPoolSelectionPtr(std::move(selection))](const VjpArgs& c) -> Vars {
                  return {scatter_to_maxima(c.grad, selection)};
                });
}

MaxPoolSelectionPtr max_pool2d_selection(const Tensor& x, Size2 window, Size2 stride) {
  auto selection = std::make_shared<MaxPoolSelection>();
  selection->output = math::max_pool2d(x, window, stride, &selection->argmax).shape();
  selection->input = x.shape();
  return selection;
}

Var max_pool2d_backward(const Var& g, const MaxPoolSelectionPtr& selection) {
  check_selection(selection, "max_pool2d_backward");
  check_same_shape(selection->output, g.shape(),
                   "max_pool2d_backward: the upstream gradient (the selection's output shape)");
  return scatter_to_maxima(g, selection);
}

Var max_pool2d_gather(const Var& a, const MaxPoolSelectionPtr& selection) {
  check_selection(selection, "max_pool2d_gather");
  check_same_shape(selection->input, a.shape(),
                   "max_pool2d_gather: the tensor read (the selection's input shape)");
  return gather_from_maxima(a, selection);
}

Var mean_pool2d(const Var& x, Size2 window, Size2 stride) {
  Tensor y = math::mean_pool2d(x.value(), window, stride);
  return record(info::kMeanPool2d, {&x}, std::move(y), {},
                [window, stride](const VjpArgs& c) -> Vars {
                  return {mean_pool2d_backward(c.grad, c.input_shapes[0], window, stride)};
                });
}

Var mean_pool2d_backward(const Var& g, const Shape& x_shape, Size2 window, Size2 stride) {
  Tensor gx = math::mean_pool2d_backward(g.value(), x_shape, window, stride);
  return record(
      info::kMeanPool2dBackward, {&g}, std::move(gx), {},
      [window, stride](const VjpArgs& c) -> Vars { return {mean_pool2d(c.grad, window, stride)}; });
}

// Catalogue entries (Note [One entry per primitive] in autodiff/catalogue.hpp).
// Random normal inputs: no two values of a window are equal, so max pooling
// is differentiable there (and its second derivative in x is zero). The
// pooling ops are linear (max pooling once its selection is fixed), so most
// samples square the result.
namespace {
using namespace catalogue;  // NOLINT: the entries below are written in its words
constexpr const char* kFile = "ops/pool.cpp";
constexpr const char* kGeometryFuzzer = "conv_geometry";
using V = const std::vector<Var>&;

Sample pooled(const char* what, Var (*pool)(const Var&, Size2, Size2), Size2 window, Size2 stride,
              bool squared, Shape x, std::uint64_t seed) {
  return {what,
          [=](V v) {
            const Var y = pool(v[0], window, stride);
            return squared ? square(y) : y;
          },
          {sample::normal(std::move(x), seed)}};
}

// Selections max_pool2d made on one input: overlapping windows, and
// windows with gaps between them.
std::vector<MaxPoolSelectionPtr> sample_selections() {
  const Tensor x = sample::normal({2, 2, 5, 5}, 126);
  return {max_pool2d_selection(x, 3, 1), max_pool2d_selection(x, {2, 3}, {3, 2})};
}

Samples max_pool2d_backward_samples() {
  Samples s;
  for (const MaxPoolSelectionPtr& selection : sample_selections()) {
    s.push_back({"window " + std::to_string(selection->output[2]) + " rows out",
                 [selection](V v) { return square(max_pool2d_backward(v[0], selection)); },
                 {sample::normal(selection->output, 127)}});
  }
  return s;
}

Samples max_pool2d_gather_samples() {
  Samples s;
  for (const MaxPoolSelectionPtr& selection : sample_selections()) {
    s.push_back({"window " + std::to_string(selection->output[2]) + " rows out",
                 [selection](V v) { return square(max_pool2d_gather(v[0], selection)); },
                 {sample::normal(selection->input, 128)}});
  }
  return s;
}

Samples mean_pool2d_backward_samples() {
  auto spread = [](Shape x_shape, Size2 window, Size2 stride) {
    return [=](V v) { return square(mean_pool2d_backward(v[0], x_shape, window, stride)); };
  };
  return {{"3x3 windows, stride 2", spread({1, 2, 6, 6}, 3, 2), {sample::normal({1, 2, 2, 2}, 133)}},
          {"gaps between windows", spread({2, 1, 7, 6}, {2, 1}, {3, 2}),
           {sample::normal({2, 1, 2, 3}, 134)}}};
}

const Primitive kEntries[] = {
    Primitive(info::kMaxPool2d, kFile)
        .with_samples([] {
          return Samples{pooled("2x2", max_pool2d, 2, 2, false, {2, 2, 4, 5}, 123),
                         pooled("2x2, squared", max_pool2d, 2, 2, true, {2, 2, 5, 4}, 124),
                         pooled("3x3 overlapping", max_pool2d, 3, 1, true, {1, 2, 5, 5}, 125)};
        })
        .with_own_fuzzer(kGeometryFuzzer),
    Primitive(info::kMaxPool2dBackward, kFile)
        .with_samples(max_pool2d_backward_samples)
        .with_own_fuzzer(kGeometryFuzzer),
    Primitive(info::kMaxPool2dGather, kFile)
        .with_samples(max_pool2d_gather_samples)
        .with_own_fuzzer(kGeometryFuzzer),
    Primitive(info::kMeanPool2d, kFile)
        .with_samples([] {
          return Samples{
              pooled("2x2", mean_pool2d, 2, 2, false, {2, 2, 4, 4}, 130),
              pooled("3x3 overlapping, squared", mean_pool2d, 3, 2, true, {1, 2, 6, 6}, 131),
              pooled("gaps between windows, squared", mean_pool2d, {2, 1}, {3, 2}, true,
                     {2, 1, 7, 6}, 132)};
        })
        .with_own_fuzzer(kGeometryFuzzer),
    Primitive(info::kMeanPool2dBackward, kFile)
        .with_samples(mean_pool2d_backward_samples)
        .with_own_fuzzer(kGeometryFuzzer),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
