// conv2d, max_pool2d and mean_pool2d: values against direct nested-loop
// references, VJPs against float64 central differences, ties, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

#include "npdl.hpp"
#include "tests/conv_reference.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl {
namespace {

using ops::Padding2d;
using ops::Size2;

Tensor rnd(Shape s, std::uint64_t seed, DType dtype = DType::Float64) {
  return Tensor::randn(std::move(s), seed, dtype);
}

using testing::reference_conv2d;
using testing::reference_conv2d_backward;

struct ConvCase {
  const char* name;
  Shape x, w;
  Size2 stride;
  Padding2d padding;
};

const ConvCase kConvCases[] = {
    {"stride1_valid", {2, 3, 6, 5}, {4, 3, 3, 3}, 1, {}},
    {"stride2_valid", {2, 2, 7, 8}, {3, 2, 3, 2}, 2, {}},
    {"stride_2x1_padded", {2, 2, 5, 6}, {3, 2, 3, 3}, {2, 1}, {1, 1, 1, 1}},
    {"asymmetric_padding", {1, 2, 4, 5}, {2, 2, 2, 3}, 1, {0, 2, 1, 0}},
    {"padding_wider_than_filter_offset", {2, 1, 3, 3}, {2, 1, 2, 2}, 2, {2, 2, 2, 2}},
    {"one_by_one", {2, 4, 5, 3}, {3, 4, 1, 1}, 1, {}},
    {"one_by_one_stride2", {1, 3, 5, 5}, {2, 3, 1, 1}, 2, {}},
    {"filter_is_input", {3, 2, 4, 3}, {5, 2, 4, 3}, 1, {}},
    {"one_channel", {2, 1, 6, 6}, {2, 1, 3, 3}, 1, {1, 1, 1, 1}},
    {"batch_one", {1, 3, 5, 5}, {2, 3, 3, 3}, 2, {1, 1, 1, 1}},
    // Filters wider (taller) than the input and its far padding: the first
    // filter columns (rows) see only padding at every output position.
    {"filter_columns_only_in_padding", {2, 2, 7, 1}, {3, 2, 5, 5}, 1, {2, 2, 2, 2}},
    {"filter_rows_only_in_padding", {2, 2, 1, 7}, {3, 2, 5, 5}, 1, {2, 2, 2, 2}},
    {"left_padding_only", {1, 1, 1, 2}, {1, 1, 1, 4}, 1, {0, 0, 3, 0}},
    {"strided_filter_columns_only_in_padding", {1, 2, 3, 1}, {2, 2, 2, 6}, {1, 2}, {0, 1, 5, 0}},
    {"right_padding_only", {1, 2, 2, 1}, {2, 2, 1, 4}, 1, {0, 0, 0, 3}},
    {"one_pixel_map_filter_larger", {2, 2, 1, 1}, {2, 2, 3, 4}, 1, {1, 1, 2, 1}},
    {"one_pixel_map_stride_beyond", {1, 1, 1, 1}, {2, 1, 2, 3}, {3, 5}, {4, 2, 6, 5}},
    {"stride_larger_than_filter", {2, 1, 5, 7}, {2, 1, 2, 3}, {4, 5}, {3, 1, 4, 2}},
    {"padding_beyond_filter_non_square", {1, 3, 2, 3}, {2, 3, 3, 2}, {2, 1}, {5, 4, 0, 3}},
    // More samples than groups: groups of two and a last group of one, each
    // sample's products taken on their own (Note [Products per sample]).
    {"groups_of_several_samples", {11, 2, 5, 4}, {3, 2, 3, 3}, 1, {1, 1, 1, 1}},
    // 3x3 at stride 1 with 16 channels and filters: Winograd (Note
    // [Winograd convolution]); outputs that are not a multiple of the tile
    // leave partly used tiles. F(2x2, 3x3) on 6x5, 1x1 and 3x2 outputs:
    {"winograd_padded_odd_width", {2, 16, 6, 5}, {16, 16, 3, 3}, 1, {1, 1, 1, 1}},
    {"winograd_one_pixel_maps", {2, 16, 1, 1}, {17, 16, 3, 3}, 1, {1, 1, 1, 1}},
    {"winograd_groups_of_samples", {11, 18, 4, 3}, {16, 18, 3, 3}, 1, {0, 1, 1, 0}},
    // F(4x4, 3x3) on 4x4, 9x7 and 8x5 outputs:
    {"winograd_padding_beyond_filter", {1, 16, 3, 2}, {16, 16, 3, 3}, 1, {3, 0, 0, 4}},
    {"winograd_4x4_tiles_partly_used", {3, 16, 9, 7}, {17, 16, 3, 3}, 1, {1, 1, 1, 1}},
    {"winograd_4x4_tiles_groups_of_samples", {11, 18, 9, 6}, {16, 18, 3, 3}, 1, {0, 1, 1, 0}},
};

// float32 tolerance: elementwise for direct sums; for the Winograd cases
// relative to the largest |expected| as well, since a Winograd output's
// rounding comes from its whole tile (Note [Winograd convolution]): an
// output whose own terms are all zero (only padding under the filter)
// still carries its neighbours' roundings.
double float32_atol(const ConvCase& c, const Tensor& expected) {
  if (std::string_view(c.name).rfind("winograd", 0) != 0) return 1e-5;
  double largest = 0;
  for (std::int64_t i = 0; i < expected.size(); ++i) {
    largest = std::max(largest, std::abs(expected.at(i)));
  }
  return 1e-5 * std::max(1.0, largest);
}

class Conv2dCases : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2dCases, ValuesMatchNestedLoopsInBothDTypes) {
  const ConvCase& c = GetParam();
  const Tensor x = rnd(c.x, 1), w = rnd(c.w, 2);
  const Tensor expected = reference_conv2d(x, w, c.stride, c.padding);
  const Tensor y64 = math::conv2d(x, w, c.stride, c.padding);
  EXPECT_TRUE(compare_tensors("y64", y64, expected, 1e-12, 1e-12).ok);
  const Tensor y32 =
      math::conv2d(x.astype(DType::Float32), w.astype(DType::Float32), c.stride, c.padding);
  EXPECT_EQ(y32.dtype(), DType::Float32);
  const auto cmp = compare_tensors("y32", y32, expected, float32_atol(c, expected), 1e-5);
  EXPECT_TRUE(cmp.ok) << cmp.describe();
}

TEST_P(Conv2dCases, GradsMatchNestedLoopsInBothDTypes) {
  const ConvCase& c = GetParam();
  const Tensor x = rnd(c.x, 20), w = rnd(c.w, 21);
  const Tensor g = rnd(reference_conv2d(x, w, c.stride, c.padding).shape(), 22);
  const math::Conv2dGrads expected = reference_conv2d_backward(g, x, w, c.stride, c.padding);
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const bool f64 = dtype == DType::Float64;
    const double tol = f64 ? 1e-12 : 1e-5;
    const math::Conv2dGrads got = math::conv2d_backward(g.astype(dtype), x.astype(dtype),
                                                        w.astype(dtype), c.stride, c.padding);
    const auto gx =
        compare_tensors("gx", got.gx, expected.gx, f64 ? tol : float32_atol(c, expected.gx), tol);
    const auto gw =
        compare_tensors("gw", got.gw, expected.gw, f64 ? tol : float32_atol(c, expected.gw), tol);
    EXPECT_TRUE(gx.ok) << to_string(dtype) << " " << gx.describe();
    EXPECT_TRUE(gw.ok) << to_string(dtype) << " " << gw.describe();
  }
}

TEST_P(Conv2dCases, VjpMatchesFiniteDifferences) {
  const ConvCase& c = GetParam();
  const Size2 stride = c.stride;
  const Padding2d padding = c.padding;
  EXPECT_GRADCHECK(
      [&](const std::vector<Var>& v) { return ops::conv2d(v[0], v[1], stride, padding); },
      {rnd(c.x, 3), rnd(c.w, 4)});
}

TEST_P(Conv2dCases, InputAndWeightGradsMatchFiniteDifferences) {
  const ConvCase& c = GetParam();
  const Size2 stride = c.stride;
  const Padding2d padding = c.padding;
  const Shape x_shape = c.x, w_shape = c.w;
  const Shape y_shape = math::conv2d(rnd(c.x, 3), rnd(c.w, 4), stride, padding).shape();
  EXPECT_GRADCHECK(
      [&](const std::vector<Var>& v) {
        return ops::conv2d_input_grad(v[0], v[1], x_shape, stride, padding);
      },
      {rnd(y_shape, 5), rnd(c.w, 6)});
  EXPECT_GRADCHECK(
      [&](const std::vector<Var>& v) {
        return ops::conv2d_weight_grad(v[0], v[1], w_shape, stride, padding);
      },
      {rnd(c.x, 7), rnd(y_shape, 8)});
}

// <conv2d(x, w), g> = <x, conv2d_input_grad(g, w)> = <w, conv2d_weight_grad(x, g)>.
double dot(const Tensor& a, const Tensor& b) { return math::sum(math::mul(a, b)).item(); }

TEST_P(Conv2dCases, InputAndWeightGradsAreConv2dsAdjointsAndTheFusedKernelsHalves) {
  const ConvCase& c = GetParam();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const Tensor x = rnd(c.x, 9, dtype), w = rnd(c.w, 10, dtype);
    const Tensor y = math::conv2d(x, w, c.stride, c.padding);
    const Tensor g = rnd(y.shape(), 11, dtype);
    const Tensor gx = math::conv2d_input_grad(g, w, c.x, c.stride, c.padding);
    const Tensor gw = math::conv2d_weight_grad(x, g, c.w, c.stride, c.padding);
    const double tol = dtype == DType::Float64 ? 1e-12 : 1e-4;
    const double yg = dot(y, g);
    EXPECT_NEAR(dot(x, gx), yg, tol * (1 + std::abs(yg)));
    EXPECT_NEAR(dot(w, gw), yg, tol * (1 + std::abs(yg)));
    // Each alone is the same bit for bit as computed together at first order.
    const math::Conv2dGrads both = math::conv2d_backward(g, x, w, c.stride, c.padding);
    EXPECT_EQ(gx.dtype(), dtype);
    EXPECT_EQ(gx.to_vector(), both.gx.to_vector());
    EXPECT_EQ(gw.to_vector(), both.gw.to_vector());
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv2dCases, ::testing::ValuesIn(kConvCases),
                         [](const auto& info) { return std::string(info.param.name); });

// Samples whose unrolled input (C*KH*KW x OH*OW) is larger than a slab's
// budget are unrolled a slab of output rows at a time (Note [Slabs of output
// rows] in tensor/conv_math.cpp): the budget is in bytes, so float64 cuts
// these into more slabs than float32, and the last slab may be shorter.
const ConvCase kSlabbedCases[] = {
    // 100 x 2,500 per sample: slabs of 13 rows (the last 11) in float32, of
    // 6 (the last 2) in float64.
    {"resnet_stem_like", {3, 4, 99, 99}, {5, 4, 5, 5}, 2, {2, 2, 2, 2}},
    // 45 x 3,965: 21 + 21 + 19 rows, or 11 x 5 + 6; padding on every side.
    {"uneven_last_slab", {2, 3, 60, 130}, {3, 3, 3, 5}, {1, 2}, {2, 1, 0, 3}},
    // 9 x 12,000: one output row (18,000 elements) per slab in float64.
    {"one_row_per_slab", {2, 1, 6, 2000}, {2, 1, 3, 3}, 1, {1, 1, 1, 1}},
    // Nine samples: groups of two, each sample's slabs in turn.
    {"groups_of_slabbed_samples", {9, 2, 40, 300}, {2, 2, 3, 3}, 1, {0, 0, 0, 0}},
};

TEST(Conv2d, SlabsOfOutputRowsMatchNestedLoopsInBothDTypes) {
  for (const ConvCase& c : kSlabbedCases) {
    SCOPED_TRACE(c.name);
    const Tensor x = rnd(c.x, 30), w = rnd(c.w, 31);
    const Tensor expected = reference_conv2d(x, w, c.stride, c.padding);
    const Tensor g = rnd(expected.shape(), 32);
    const math::Conv2dGrads grads = reference_conv2d_backward(g, x, w, c.stride, c.padding);
    for (DType dtype : {DType::Float64, DType::Float32}) {
      const double tol = dtype == DType::Float64 ? 1e-12 : 1e-4;
      const Tensor y = math::conv2d(x.astype(dtype), w.astype(dtype), c.stride, c.padding);
      const math::Conv2dGrads got = math::conv2d_backward(g.astype(dtype), x.astype(dtype),
                                                          w.astype(dtype), c.stride, c.padding);
      for (const auto& cmp : {compare_tensors("y", y, expected, tol, tol),
                              compare_tensors("gx", got.gx, grads.gx, tol, tol),
                              compare_tensors("gw", got.gw, grads.gw, tol, tol)}) {
        EXPECT_TRUE(cmp.ok) << to_string(dtype) << " " << cmp.describe();
      }
    }
  }
}

TEST(Conv2d, SameBitsAtAnyThreadCount) {
  // Enough samples for several groups of columns (see conv_math.cpp), and a
  // layer whose samples are unrolled in slabs.
  const ConvCase grouped{"grouped", {19, 3, 9, 9}, {4, 3, 3, 3}, 1, {1, 1, 1, 1}};
  for (const ConvCase& c : {grouped, kSlabbedCases[0], kSlabbedCases[3]}) {
    SCOPED_TRACE(c.name);
    const Tensor x = rnd(c.x, 5, DType::Float32), w = rnd(c.w, 6, DType::Float32);
    const Tensor gy = rnd(math::conv2d(x, w, c.stride, c.padding).shape(), 7, DType::Float32);
    const int before = get_num_threads();
    std::vector<std::vector<double>> runs;
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      const Tensor y = math::conv2d(x, w, c.stride, c.padding);
      const auto g = math::conv2d_backward(gy, x, w, c.stride, c.padding);
      const Tensor gx = math::conv2d_input_grad(gy, w, x.shape(), c.stride, c.padding);
      const Tensor gw = math::conv2d_weight_grad(x, gy, w.shape(), c.stride, c.padding);
      std::vector<double> all = y.to_vector();
      for (const Tensor* t : {&g.gx, &g.gw, &gx, &gw}) {
        const auto v = t->to_vector();
        all.insert(all.end(), v.begin(), v.end());
      }
      runs.push_back(all);
    }
    set_num_threads(before);
    EXPECT_EQ(runs[0], runs[1]);
    EXPECT_EQ(runs[0], runs[2]);
  }
}

// One case for each of conv2d's paths that write outputs: one sample (its
// product shared by the threads), several (a product per sample),
// Winograd's, and slabs of output rows.
const ConvCase kEveryForwardPath[] = {
    {"one sample", {1, 3, 9, 9}, {4, 3, 3, 3}, 2, {1, 1, 1, 1}},
    {"groups of samples", {19, 3, 9, 9}, {4, 3, 3, 3}, 1, {1, 0, 0, 1}},
    {"winograd", {3, 16, 8, 7}, {17, 16, 3, 3}, 1, {1, 1, 0, 1}},
    kSlabbedCases[0],
    kSlabbedCases[3]};

// A fused op f(x, w, b) and its composition from ops: on every path, in
// both dtypes, the same bits in the value and in the gradients of x, w and
// b for a random upstream (first order), and in the gradients of a
// gradient (<grad of x, v> differentiated again under create_graph).
using ConvWithBias = Var (*)(const Var& x, const Var& w, const Var& b, Size2 stride,
                             Padding2d padding);

void expect_fused_same_bits(ConvWithBias fused, ConvWithBias composed,
                            const std::vector<ConvCase>& cases, bool nan_in_input = false) {
  for (const ConvCase& c : cases) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
      SCOPED_TRACE(std::string(c.name) + " " + to_string(dtype));
      Tensor x0 = rnd(c.x, 40, dtype);
      if (nan_in_input) {
        std::vector<double> values = x0.to_vector();
        values[values.size() / 2] = std::numeric_limits<double>::quiet_NaN();
        x0 = Tensor::from_vector(c.x, values, dtype);
      }
      const Tensor w0 = rnd(c.w, 41, dtype), b0 = rnd({c.w[0]}, 42, dtype);
      const Tensor g = rnd(math::conv2d(x0, w0, c.stride, c.padding).shape(), 43, dtype);
      const Tensor v = rnd(c.x, 44, dtype);
      std::vector<std::vector<double>> runs;
      for (ConvWithBias op : {fused, composed}) {
        std::vector<double> all;
        auto keep = [&](const Tensor& t) {
          const auto values = t.to_vector();
          all.insert(all.end(), values.begin(), values.end());
        };
        Graph graph;
        const Var x = graph.variable(x0), w = graph.variable(w0), b = graph.variable(b0);
        const Var y = op(x, w, b, c.stride, c.padding);
        y.backward(g);
        for (const Tensor& t : {y.value(), x.grad(), w.grad(), b.grad()}) keep(t);
        Graph second;
        const Var x2 = second.variable(x0), w2 = second.variable(w0), b2 = second.variable(b0);
        const Var y2 = op(x2, w2, b2, c.stride, c.padding);
        const Var gx = npdl::grad({y2}, {x2}, {second.input(g)}, /*create_graph=*/true)[0];
        const std::vector<Var> gg = npdl::grad({ops::sum(gx * second.input(v))}, {w2, b2});
        for (const Tensor& t : {gx.value(), gg[0].value(), gg[1].value()}) keep(t);
        runs.push_back(all);
      }
      // EXPECT_EQ on doubles compares NaNs as different: compare the bits.
      ASSERT_EQ(runs[0].size(), runs[1].size());
      EXPECT_EQ(0, std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(double)));
    }
  }
}

// conv2d with a bias adds it to each sample's output as soon as it is
// computed: the bits of the composition it replaces (conv2d, then an add of
// the bias reshaped to (1, F, 1, 1)) on every path.
TEST(Conv2dBias, SameBitsAsConv2dPlusTheReshapedBiasOnEveryPath) {
  expect_fused_same_bits(
      [](const Var& x, const Var& w, const Var& b, Size2 stride, Padding2d padding) {
        return ops::conv2d(x, w, b, stride, padding);
      },
      [](const Var& x, const Var& w, const Var& b, Size2 stride, Padding2d padding) {
        return ops::conv2d(x, w, stride, padding) + ops::reshape(b, {1, w.shape()[0], 1, 1});
      },
      {std::begin(kEveryForwardPath), std::end(kEveryForwardPath)});
}

// conv2d_relu is relu applied to conv2d with a bias, on the same paths: the
// forward's relu on each sample's output, the VJP's mask (first order, and
// composed under create_graph), NaNs included (relu and its mask treat
// them alike in both).
Var conv2d_then_relu(const Var& x, const Var& w, const Var& b, Size2 stride, Padding2d padding) {
  return ops::relu(ops::conv2d(x, w, b, stride, padding));
}

TEST(Conv2dRelu, SameBitsAsReluOfConv2dOnEveryPath) {
  const std::vector<ConvCase> cases(std::begin(kEveryForwardPath), std::end(kEveryForwardPath));
  expect_fused_same_bits(ops::conv2d_relu, conv2d_then_relu, cases);
  expect_fused_same_bits(ops::conv2d_relu, conv2d_then_relu, {cases[0], cases[2]},
                         /*nan_in_input=*/true);
}

TEST(Conv2dRelu, RecordsOneVertexWithItsCatalogueEntry) {
  Graph graph;
  const Var x = graph.variable(rnd({2, 2, 5, 5}, 50)), w = graph.variable(rnd({3, 2, 3, 3}, 51));
  const Var b = graph.variable(rnd({3}, 52));
  const std::size_t before = graph.size();
  const Var y = ops::conv2d_relu(x, w, b);
  EXPECT_EQ(graph.size(), before + 1);
  EXPECT_STREQ(graph.impl()[y.vertex()].op->name, "conv2d_bias_relu");
  const std::vector<double> values = y.value().to_vector();
  EXPECT_GT(std::count(values.begin(), values.end(), 0.0), 0);  // outputs were cut
  EXPECT_EQ(*std::min_element(values.begin(), values.end()), 0.0);
}

// Bad operands are refused as conv2d with a bias refuses them, the message
// naming conv2d_relu, and nothing is recorded.
TEST(Conv2dRelu, BadOperandsAreTypedErrorsAndRecordNothing) {
  Graph graph;
  const Var x = graph.variable(rnd({1, 3, 5, 5}, 1)), w = graph.variable(rnd({4, 3, 3, 3}, 2));
  const Var b5 = graph.variable(rnd({5}, 3)), b4 = graph.variable(rnd({4}, 4));
  const Var b32 = graph.variable(rnd({4}, 5, DType::Float32));
  const Var x2 = graph.variable(rnd({1, 2, 5, 5}, 6));
  const std::size_t before = graph.size();
  auto message = [&](const Var& in, const Var& b, Size2 stride) {
    try {
      ops::conv2d_relu(in, w, b, stride);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_THROW(ops::conv2d_relu(x, w, b5), ShapeError);
  EXPECT_NE(message(x, b5, 1).find("conv2d_relu: the bias (one per filter): expected shape (4"),
            std::string::npos)
      << message(x, b5, 1);
  EXPECT_THROW(ops::conv2d_relu(x, w, b32), DTypeError);
  EXPECT_NE(message(x, b32, 1).find("float64 and float32"), std::string::npos)
      << message(x, b32, 1);
  EXPECT_THROW(ops::conv2d_relu(x2, w, b4), ShapeError);
  EXPECT_NE(message(x2, b4, 1).find("expect 3 input channels"), std::string::npos)
      << message(x2, b4, 1);
  EXPECT_THROW(ops::conv2d_relu(x, w, b4, 0), ValueError);
  EXPECT_EQ(graph.size(), before);
}

TEST(Conv2dBias, ABiasThatDoesNotFitIsATypedErrorAndRecordsNothing) {
  Graph graph;
  const Var x = graph.variable(rnd({1, 3, 5, 5}, 1)), w = graph.variable(rnd({4, 3, 3, 3}, 2));
  const Var b5 = graph.variable(rnd({5}, 3)), b14 = graph.variable(rnd({1, 4}, 4));
  const Var b32 = graph.variable(rnd({4}, 5, DType::Float32));
  const std::size_t before = graph.size();
  auto message = [&](const Var& b) {
    try {
      ops::conv2d(x, w, b);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_THROW(ops::conv2d(x, w, b5), ShapeError);
  EXPECT_NE(message(b5).find("bias (one per filter): expected shape (4"), std::string::npos)
      << message(b5);
  EXPECT_THROW(ops::conv2d(x, w, b14), ShapeError);
  EXPECT_NE(message(b14).find("got (1, 4)"), std::string::npos) << message(b14);
  EXPECT_THROW(ops::conv2d(x, w, b32), DTypeError);
  EXPECT_NE(message(b32).find("float64 and float32"), std::string::npos) << message(b32);
  // The bias is checked after the geometry: a bad input is reported as by conv2d.
  const Var x2 = graph.variable(rnd({1, 2, 5, 5}, 6));
  try {
    ops::conv2d(x2, w, b5);
    ADD_FAILURE() << "two input channels against filters of three were accepted";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("expect 3 input channels"), std::string::npos) << e.what();
  }
  EXPECT_EQ(graph.size(), before + 1);  // x2 only
}

TEST(Conv2d, RecordsOneVertexWithItsCatalogueEntry) {
  Graph graph;
  const Var x = graph.variable(rnd({1, 2, 4, 4}, 8));
  const Var w = graph.variable(rnd({3, 2, 3, 3}, 9));
  const std::size_t before = graph.size();
  const Var y = ops::conv2d(x, w);
  EXPECT_EQ(graph.size(), before + 1);
  EXPECT_STREQ(graph.impl()[y.vertex()].op->name, "conv2d");
  for (const char* name : {"conv2d", "max_pool2d", "mean_pool2d"}) {
    EXPECT_NE(catalogue::find(name), nullptr) << name;
  }
}

TEST(Conv2d, FirstOrderVjpRunsTheFusedKernelAndRecordsNothing) {
  Graph graph;
  const Tensor x0 = rnd({2, 2, 5, 5}, 12), w0 = rnd({3, 2, 3, 3}, 13);
  const Var x = graph.variable(x0), w = graph.variable(w0);
  const Var y = ops::conv2d(x, w, 2, {1, 1, 1, 1});
  const Tensor g = rnd(y.shape(), 14);
  const std::size_t before = graph.size();
  y.backward(g);
  EXPECT_EQ(graph.size(), before);
  const math::Conv2dGrads fused = math::conv2d_backward(g, x0, w0, 2, {1, 1, 1, 1});
  EXPECT_EQ(x.grad().to_vector(), fused.gx.to_vector());
  EXPECT_EQ(w.grad().to_vector(), fused.gw.to_vector());
}

TEST(Conv2d, DataThatWantsNoGradientGetsNoneAndTheFiltersTheSameBits) {
  // A network's first layer: the input is data, only the filters want a
  // gradient, and the VJP computes gw alone.
  Graph graph;
  const Tensor x0 = rnd({2, 2, 5, 5}, 17), w0 = rnd({3, 2, 3, 3}, 18);
  const Var x = graph.input(x0), w = graph.variable(w0);
  const Var y = ops::conv2d(x, w, 1, {1, 1, 1, 1});
  const Tensor g = rnd(y.shape(), 19);
  y.backward(g);
  EXPECT_FALSE(x.grad().defined());
  const math::Conv2dGrads fused = math::conv2d_backward(g, x0, w0, 1, {1, 1, 1, 1});
  EXPECT_EQ(w.grad().to_vector(), fused.gw.to_vector());
}

TEST(Conv2d, InputGradTakesTheInputShape) {
  // A 3x3 filter with stride 2 gives 3x3 outputs from 7x7 and 8x8 inputs:
  // the 8x8 gradient is the 7x7 one with a zero last row and column.
  const Tensor w = rnd({2, 1, 3, 3}, 15), g = rnd({1, 2, 3, 3}, 16);
  const Tensor g7 = math::conv2d_input_grad(g, w, {1, 1, 7, 7}, 2, {});
  const Tensor g8 = math::conv2d_input_grad(g, w, {1, 1, 8, 8}, 2, {});
  ASSERT_EQ(g8.shape(), (Shape{1, 1, 8, 8}));
  for (std::int64_t i = 0; i < 8; ++i) {
    for (std::int64_t j = 0; j < 8; ++j) {
      EXPECT_EQ(g8.at({0, 0, i, j}), i < 7 && j < 7 ? g7.at({0, 0, i, j}) : 0.0) << i << ", " << j;
    }
  }
}

TEST(Conv2d, TheGradientPrimitivesAreInTheCatalogue) {
  for (const char* name : {"conv2d_input_grad", "conv2d_weight_grad", "max_pool2d_backward",
                           "max_pool2d_gather", "mean_pool2d_backward"}) {
    const catalogue::Primitive* p = catalogue::find(name);
    ASSERT_NE(p, nullptr) << name;
    EXPECT_TRUE(p->info->twice_differentiable) << name;
    EXPECT_GT(std::string(p->info->vjp).size(), 0u) << name;
  }
}

// Bad input: a typed error naming what was expected and given, and nothing
// recorded on the graph.
template <class Error, class Fn>
void expect_rejected(Fn fn, const std::string& fragment) {
  Graph graph;
  const std::size_t leaves_before = graph.size();
  try {
    fn(graph);
    ADD_FAILURE() << "expected an error mentioning " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
  // fn creates its leaves (two at most) and must record nothing else.
  EXPECT_LE(graph.size(), leaves_before + 2);
  for (std::size_t v = 0; v < graph.size(); ++v) EXPECT_EQ(graph.impl()[v].node, nullptr);
}

TEST(Conv2d, BadInputIsATypedErrorAndRecordsNothing) {
  auto conv = [](Shape xs, Shape ws, Size2 stride = 1, Padding2d pad = {}) {
    return
        [=](Graph& g) { ops::conv2d(g.variable(rnd(xs, 1)), g.variable(rnd(ws, 2)), stride, pad); };
  };
  expect_rejected<ShapeError>(conv({2, 3, 5}, {4, 3, 3, 3}), "(2, 3, 5)");
  expect_rejected<ShapeError>(conv({1, 2, 5, 5}, {4, 3, 3, 3}), "expect 3 input channels");
  expect_rejected<ShapeError>(conv({1, 3, 4, 4}, {4, 3, 5, 3}), "padded to (4, 4)");
  expect_rejected<ShapeError>(conv({1, 3, 4, 4}, {4, 3, 3}), "(4, 3, 3)");
  expect_rejected<ValueError>(conv({1, 3, 5, 5}, {4, 3, 3, 3}, {0, 1}), "strides must be >= 1");
  expect_rejected<ValueError>(conv({1, 3, 5, 5}, {4, 3, 3, 3}, 1, {0, -1, 0, 0}),
                              "padding must be >= 0");
  // A filter larger than the input fits once padded.
  Graph graph;
  EXPECT_EQ(ops::conv2d(graph.input(rnd({1, 1, 2, 2}, 1)), graph.input(rnd({1, 1, 3, 3}, 2)), 1,
                        {1, 0, 1, 0})
                .shape(),
            (Shape{1, 1, 1, 1}));
}

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kHalfMax = std::int64_t{1} << 62;

TEST(Conv2d, PaddingWhoseSumOverflowsIsAShapeErrorNamingIt) {
  // 2 + 2^62 + 2^62 is one past 2^63 - 1 (it wrapped to -2^63 + 2).
  const Padding2d tall{kHalfMax, kHalfMax, 0, 0}, wide{0, 0, 1, kMax};
  auto conv = [](Shape xs, Shape ws, Size2 stride, Padding2d pad) {
    return
        [=](Graph& g) { ops::conv2d(g.variable(rnd(xs, 1)), g.variable(rnd(ws, 2)), stride, pad); };
  };
  expect_rejected<ShapeError>(conv({1, 1, 2, 3}, {1, 1, 1, 1}, 1, tall),
                              "padding (top 4611686018427387904, bottom 4611686018427387904, "
                              "left 0, right 0) of an input of (2, 3) overflows the padded height");
  expect_rejected<ShapeError>(conv({1, 1, 2, 3}, {1, 1, 1, 1}, 1, wide), "the padded width");
  expect_rejected<ShapeError>(conv({1, 1, 2, 3}, {1, 1, 1, 1}, kMax, wide),
                              "expected input + padding <= 9223372036854775807");
  expect_rejected<ShapeError>(
      [&](Graph& g) {
        ops::conv2d_input_grad(g.variable(rnd({1, 1, 1, 1}, 1)), g.variable(rnd({1, 1, 1, 1}, 2)),
                               {1, 1, 2, 3}, 1, tall);
      },
      "conv2d_input_grad: padding (top 4611686018427387904");
  expect_rejected<ShapeError>(
      [&](Graph& g) {
        ops::conv2d_weight_grad(g.variable(rnd({1, 1, 2, 3}, 1)), g.variable(rnd({1, 1, 1, 1}, 2)),
                                {1, 1, 1, 1}, 1, wide);
      },
      "conv2d_weight_grad: padding (top 0, bottom 0, left 1, right 9223372036854775807)");
}

TEST(Conv2d, ShapesGivenAsArgumentsAreCheckedLikeATensors) {
  // The gradient primitives take x's or w's shape as a value: a negative size
  // or an element count beyond 2^63 - 1 is refused before any arithmetic.
  auto input_grad = [](Shape x_shape, Padding2d pad) {
    return [=](Graph& g) {
      ops::conv2d_input_grad(g.variable(rnd({1, 1, 1, 1}, 1)), g.variable(rnd({1, 1, 1, 1}, 2)),
                             x_shape, 1, pad);
    };
  };
  expect_rejected<ShapeError>(input_grad({1, 1, -3, 1}, {4, 0, 0, 0}), "(1, 1, -3, 1)");
  auto weight_grad = [](Shape w_shape, Size2 stride, Padding2d pad) {
    return [=](Graph& g) {
      ops::conv2d_weight_grad(g.variable(rnd({1, 1, 1, 1}, 1)), g.variable(rnd({1, 1, 1, 1}, 2)),
                              w_shape, stride, pad);
    };
  };
  // Filters of 2^40 x 2^40 fit an input padded by 2^41 per side: the
  // geometry is valid, the filters' element count is not.
  const std::int64_t big = std::int64_t{1} << 40;
  expect_rejected<ShapeError>(
      weight_grad({1, 1, big, big}, kHalfMax, {2 * big, 2 * big, 2 * big, 2 * big}),
      "(1, 1, 1099511627776, 1099511627776)");
}

TEST(Conv2d, HugeStridesAndPaddingThatFitAreComputed) {
  // One output column with a stride of 2^63 - 1: it reads input column
  // -2^61, which is padding. A window start rounded up with
  // (first + stride - 1) / stride overflowed here.
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const Tensor x = rnd({1, 1, 1, 1}, 1, dtype), w = rnd({1, 1, 1, 1}, 2, dtype);
    const Size2 stride{1, kMax};
    const Padding2d pad{0, 0, std::int64_t{1} << 61, std::int64_t{1} << 61};
    const Tensor y = math::conv2d(x, w, stride, pad);
    EXPECT_EQ(y.shape(), (Shape{1, 1, 1, 1}));
    EXPECT_EQ(y.to_vector(), (std::vector<double>{0.0}));
    const math::Conv2dGrads g =
        math::conv2d_backward(rnd({1, 1, 1, 1}, 3, dtype), x, w, stride, pad);
    EXPECT_EQ(g.gx.to_vector(), (std::vector<double>{0.0}));
    EXPECT_EQ(g.gw.to_vector(), (std::vector<double>{0.0}));
    // Two rows 2^62 apart, both in the padding.
    const Tensor y2 =
        math::conv2d(x, w, {kHalfMax, 1}, {std::int64_t{1} << 61, std::int64_t{1} << 61, 0, 0});
    EXPECT_EQ(y2.to_vector(), (std::vector<double>{0.0, 0.0}));
    // A tap that reads only padding while the next row's does not: the
    // position its output would read, row 1 plus column 2^63 - 3, is not
    // countable and must not be computed (a fuzzer found im2col doing so).
    const Tensor x3 = rnd({1, 1, 2, 7}, 4, dtype), w3 = rnd({1, 1, 2, 2}, 5, dtype);
    const Tensor g3 = rnd({1, 1, 1, 1}, 6, dtype);
    const Size2 stride3{1, kMax - 2};
    const Padding2d pad3{0, 0, 1, 0};
    const auto xv = x3.to_vector(), wv = w3.to_vector();
    const double gv = g3.to_vector()[0];
    // Only tap column 1 reaches the input (its column 0); tap column 0 sees the padding.
    EXPECT_NEAR(math::conv2d(x3, w3, stride3, pad3).to_vector()[0], wv[1] * xv[0] + wv[3] * xv[7],
                1e-6);
    const math::Conv2dGrads grads3 = math::conv2d_backward(g3, x3, w3, stride3, pad3);
    std::vector<double> want_gx(14, 0.0), want_gw{0.0, gv * xv[0], 0.0, gv * xv[7]};
    want_gx[0] = gv * wv[1];
    want_gx[7] = gv * wv[3];
    const auto gx = grads3.gx.to_vector(), gw = grads3.gw.to_vector();
    for (std::size_t k = 0; k < 14; ++k) EXPECT_NEAR(gx[k], want_gx[k], 1e-6) << k;
    for (std::size_t k = 0; k < 4; ++k) EXPECT_NEAR(gw[k], want_gw[k], 1e-6) << k;
  }
}

TEST(Conv2d, BadInputToTheGradientPrimitivesIsATypedError) {
  // conv2d_input_grad(g, w, x_shape) and conv2d_weight_grad(x, g, w_shape)
  // on shapes whose conv2d gives y_shape.
  auto input_grad = [](Shape gs, Shape ws, Shape x_shape, Size2 stride = 1, Padding2d pad = {},
                       DType w_dtype = DType::Float64) {
    return [=](Graph& g) {
      ops::conv2d_input_grad(g.variable(rnd(gs, 1)), g.variable(rnd(ws, 2, w_dtype)), x_shape,
                             stride, pad);
    };
  };
  expect_rejected<ShapeError>(input_grad({1, 4, 3, 3}, {4, 3, 3, 3}, {1, 3, 5}), "(1, 3, 5)");
  expect_rejected<ShapeError>(input_grad({1, 4, 3, 3}, {4, 3, 3}, {1, 3, 5, 5}), "(4, 3, 3)");
  expect_rejected<ShapeError>(input_grad({1, 4, 3, 3}, {4, 3, 3, 3}, {1, 2, 5, 5}),
                              "expect 3 input channels");
  expect_rejected<ShapeError>(input_grad({1, 4, 4, 3}, {4, 3, 3, 3}, {1, 3, 5, 5}),
                              "conv2d_input_grad: the upstream gradient");
  expect_rejected<ShapeError>(input_grad({2, 4, 3, 3}, {4, 3, 3, 3}, {1, 3, 5, 5}),
                              "expected shape (1, 4, 3, 3), got (2, 4, 3, 3)");
  expect_rejected<ShapeError>(input_grad({1, 4, 3, 3}, {4, 3, 6, 3}, {1, 3, 5, 5}),
                              "padded to (5, 5)");
  expect_rejected<ValueError>(input_grad({1, 4, 3, 3}, {4, 3, 3, 3}, {1, 3, 5, 5}, {1, 0}),
                              "strides must be >= 1");
  expect_rejected<ValueError>(
      input_grad({1, 4, 3, 3}, {4, 3, 3, 3}, {1, 3, 5, 5}, 1, {0, 0, -1, 0}),
      "padding must be >= 0");
  expect_rejected<DTypeError>(
      input_grad({1, 4, 3, 3}, {4, 3, 3, 3}, {1, 3, 5, 5}, 1, {}, DType::Float32), "one dtype");

  auto weight_grad = [](Shape xs, Shape gs, Shape w_shape, Size2 stride = 1, Padding2d pad = {},
                        DType g_dtype = DType::Float64) {
    return [=](Graph& g) {
      ops::conv2d_weight_grad(g.variable(rnd(xs, 1)), g.variable(rnd(gs, 2, g_dtype)), w_shape,
                              stride, pad);
    };
  };
  expect_rejected<ShapeError>(weight_grad({3, 5, 5}, {1, 4, 3, 3}, {4, 3, 3, 3}), "(3, 5, 5)");
  expect_rejected<ShapeError>(weight_grad({1, 3, 5, 5}, {1, 4, 3, 3}, {4, 3, 3}), "(4, 3, 3)");
  expect_rejected<ShapeError>(weight_grad({1, 3, 5, 5}, {1, 4, 3, 3}, {4, 2, 3, 3}),
                              "expect 2 input channels");
  expect_rejected<ShapeError>(weight_grad({1, 3, 5, 5}, {1, 5, 3, 3}, {4, 3, 3, 3}),
                              "conv2d_weight_grad: the upstream gradient");
  expect_rejected<ValueError>(weight_grad({1, 3, 5, 5}, {1, 4, 3, 3}, {4, 3, 0, 3}),
                              "sizes must be >= 1");
  expect_rejected<ValueError>(weight_grad({1, 3, 5, 5}, {1, 4, 3, 3}, {4, 3, 3, 3}, {1, -1}),
                              "strides must be >= 1");
  expect_rejected<DTypeError>(
      weight_grad({1, 3, 5, 5}, {1, 4, 3, 3}, {4, 3, 3, 3}, 1, {}, DType::Float32), "one dtype");
}

// The definition of pooling, loop by loop (no padding, trailing rows dropped).
Tensor reference_pool(const Tensor& x, Size2 k, Size2 s, bool max) {
  const auto N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const auto OH = (H - k.h) / s.h + 1, OW = (W - k.w) / s.w + 1;
  std::vector<double> out;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t oh = 0; oh < OH; ++oh)
        for (std::int64_t ow = 0; ow < OW; ++ow) {
          double acc = max ? -std::numeric_limits<double>::infinity() : 0.0;
          for (std::int64_t i = 0; i < k.h; ++i)
            for (std::int64_t j = 0; j < k.w; ++j) {
              const double v = x.at({n, c, oh * s.h + i, ow * s.w + j});
              acc = max ? std::max(acc, v) : acc + v;
            }
          out.push_back(max ? acc : acc / double(k.h * k.w));
        }
  return Tensor::from_vector({N, C, OH, OW}, out, DType::Float64);
}

struct PoolCase {
  const char* name;
  Shape x;
  Size2 window, stride;
};

const PoolCase kPoolCases[] = {
    {"window2_stride2", {2, 3, 6, 4}, 2, 2},      {"trailing_rows_dropped", {2, 2, 7, 5}, 2, 2},
    {"overlapping", {1, 2, 5, 5}, 3, 1},          {"rectangular", {2, 1, 6, 7}, {3, 2}, {2, 3}},
    {"window_is_input", {3, 2, 4, 3}, {4, 3}, 1}, {"one_by_one_stride2", {1, 2, 5, 4}, 1, 2},
};

class PoolCases : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolCases, ValuesMatchNestedLoops) {
  const PoolCase& c = GetParam();
  const Tensor x = rnd(c.x, 11);
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const Tensor xd = x.astype(dtype);
    const double tol = dtype == DType::Float64 ? 1e-14 : 1e-6;
    EXPECT_TRUE(compare_tensors("max", math::max_pool2d(xd, c.window, c.stride),
                                reference_pool(x, c.window, c.stride, true), tol, tol)
                    .ok);
    EXPECT_TRUE(compare_tensors("mean", math::mean_pool2d(xd, c.window, c.stride),
                                reference_pool(x, c.window, c.stride, false), tol, tol)
                    .ok);
  }
}

TEST_P(PoolCases, VjpsMatchFiniteDifferences) {
  const PoolCase& c = GetParam();
  const Size2 window = c.window, stride = c.stride;
  // Random normal values: no two equal in a window, so max is differentiable.
  const Tensor x = rnd(c.x, 12);
  EXPECT_GRADCHECK([&](const std::vector<Var>& v) { return ops::max_pool2d(v[0], window, stride); },
                   {x});
  EXPECT_GRADCHECK(
      [&](const std::vector<Var>& v) { return ops::mean_pool2d(v[0], window, stride); }, {x});
}

TEST_P(PoolCases, BackwardPrimitivesMatchFiniteDifferences) {
  const PoolCase& c = GetParam();
  const Size2 window = c.window, stride = c.stride;
  const Shape x_shape = c.x;
  const ops::MaxPoolSelectionPtr selection =
      ops::max_pool2d_selection(rnd(c.x, 13), window, stride);
  const Shape y_shape = selection->output;
  EXPECT_GRADCHECK(
      [&](const std::vector<Var>& v) { return ops::max_pool2d_backward(v[0], selection); },
      {rnd(y_shape, 14)});
  EXPECT_GRADCHECK(
      [&](const std::vector<Var>& v) { return ops::max_pool2d_gather(v[0], selection); },
      {rnd(x_shape, 15)});
  EXPECT_GRADCHECK(
      [&](const std::vector<Var>& v) {
        return ops::mean_pool2d_backward(v[0], x_shape, window, stride);
      },
      {rnd(y_shape, 16)});
}

TEST_P(PoolCases, BackwardPrimitivesAreAdjointsAndTheFirstOrderVjps) {
  const PoolCase& c = GetParam();
  const Tensor x = rnd(c.x, 17);
  const ops::MaxPoolSelectionPtr selection = ops::max_pool2d_selection(x, c.window, c.stride);
  const Tensor g = rnd(selection->output, 18), a = rnd(c.x, 19);
  const Tensor scattered = ops::max_pool2d_backward(Var(g), selection).value();
  const Tensor gathered = ops::max_pool2d_gather(Var(a), selection).value();
  EXPECT_NEAR(dot(scattered, a), dot(g, gathered), 1e-12);
  // Mean pooling and its backward are adjoint, rows no window reaches included.
  const Tensor spread = ops::mean_pool2d_backward(Var(g), c.x, c.window, c.stride).value();
  EXPECT_NEAR(dot(spread, a), dot(g, math::mean_pool2d(a, c.window, c.stride)), 1e-12);
  // The gather at max_pool2d's own selection is max_pool2d.
  EXPECT_EQ(ops::max_pool2d_gather(Var(x), selection).value().to_vector(),
            math::max_pool2d(x, c.window, c.stride).to_vector());
  // What the first-order VJPs send, with nothing recorded.
  for (bool max : {true, false}) {
    Graph graph;
    const Var v = graph.variable(x);
    const Var y =
        max ? ops::max_pool2d(v, c.window, c.stride) : ops::mean_pool2d(v, c.window, c.stride);
    const std::size_t before = graph.size();
    y.backward(g);
    EXPECT_EQ(graph.size(), before);
    EXPECT_EQ(v.grad().to_vector(), (max ? scattered : spread).to_vector());
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PoolCases, ::testing::ValuesIn(kPoolCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(MaxPool2d, TiesSendTheGradientToTheFirstMaximum) {
  // Window 2x2, stride 2: the left window is all 5s; the right has 7 at
  // (0, 3) and at (1, 2), the first in row-major order being (0, 3).
  const Tensor x = Tensor::from_vector({1, 1, 2, 4}, {5, 5, 1, 7, 5, 5, 7, 2}, DType::Float64);
  Graph graph;
  const Var v = graph.variable(x);
  const Var y = ops::max_pool2d(v, 2, 2);
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{5, 7}));
  y.backward(Tensor::from_vector({1, 1, 1, 2}, {10, 20}, DType::Float64));
  EXPECT_EQ(v.grad().to_vector(), (std::vector<double>{10, 0, 0, 20, 0, 0, 0, 0}));
}

TEST(MaxPool2d, OverlappingWindowsAddTheirGradients) {
  // Window 2, stride 1 over one row of 3: the middle maximum wins both windows.
  const Tensor x = Tensor::from_vector({1, 1, 1, 3}, {1, 9, 2}, DType::Float64);
  Graph graph;
  const Var v = graph.variable(x);
  ops::max_pool2d(v, {1, 2}, 1).backward(Tensor::from_vector({1, 1, 1, 2}, {3, 4}, DType::Float64));
  EXPECT_EQ(v.grad().to_vector(), (std::vector<double>{0, 7, 0}));
}

TEST(Pooling, BadInputIsATypedErrorAndRecordsNothing) {
  using PoolFn = Var (*)(const Var&, Size2, Size2);
  for (PoolFn pool :
       {static_cast<PoolFn>(ops::max_pool2d), static_cast<PoolFn>(ops::mean_pool2d)}) {
    auto call = [pool](Shape xs, Size2 k, Size2 s) {
      return [=](Graph& g) { pool(g.variable(rnd(xs, 1)), k, s); };
    };
    expect_rejected<ShapeError>(call({2, 4, 4}, 2, 2), "(2, 4, 4)");
    expect_rejected<ShapeError>(call({1, 1, 3, 4}, {4, 2}, 2), "at least that large");
    expect_rejected<ValueError>(call({1, 1, 4, 4}, 0, 1), "sizes must be >= 1");
    expect_rejected<ValueError>(call({1, 1, 4, 4}, 2, {1, -2}), "strides must be >= 1");
  }
}

TEST(MaxPool2d, TheSelectionIsWhereTheMaximaAre) {
  const Tensor x = Tensor::from_vector({1, 1, 2, 4}, {5, 5, 1, 7, 5, 5, 7, 2}, DType::Float64);
  const ops::MaxPoolSelectionPtr selection = ops::max_pool2d_selection(x, 2, 2);
  EXPECT_EQ(selection->input, (Shape{1, 1, 2, 4}));
  EXPECT_EQ(selection->output, (Shape{1, 1, 1, 2}));
  EXPECT_EQ(selection->argmax, (std::vector<std::int32_t>{0, 3}));  // ties: the first
}

TEST(MaxPool2d, ANaNWinsAndTheFirstNaNStays) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Windows (2 x 2, stride 2): {1, nan, 3, 2}, {nan, 4, nan, 9}, {-1, -3, -2, -1}.
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const Tensor x =
        Tensor::from_vector({1, 1, 2, 6}, {1, nan, nan, 4, -1, -3, 3, 2, nan, 9, -2, -1},
                            DType::Float64)
            .astype(dtype);
    const ops::MaxPoolSelectionPtr selection = ops::max_pool2d_selection(x, 2, 2);
    EXPECT_EQ(selection->argmax, (std::vector<std::int32_t>{1, 2, 4})) << to_string(dtype);
    const Tensor y = math::max_pool2d(x, 2, 2);
    EXPECT_TRUE(std::isnan(y.at(0)) && std::isnan(y.at(1))) << to_string(dtype);
    EXPECT_EQ(y.at(2), -1.0) << to_string(dtype);
  }
}

TEST(MaxPool2d, TwoNaNsInAWindowSendTheGradientToTheFirst) {
  // NumPy's argmax rule, at every stride the kernel specialises (1, 2 and
  // any other): one row of 7 with NaNs at 2 and 3, windows of 1 x 4.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> row{1, 8, nan, nan, 9, 2, 3};
  for (DType dtype : {DType::Float64, DType::Float32}) {
    for (std::int64_t stride : {1, 2, 3}) {
      Graph graph;
      const Var x =
          graph.variable(Tensor::from_vector({1, 1, 1, 7}, row, DType::Float64).astype(dtype));
      const Var y = ops::max_pool2d(x, {1, 4}, {1, stride});
      y.backward(Tensor::ones(y.shape(), dtype));
      // Windows start at 0, stride, ... and those holding index 2 send their
      // gradient there; the one starting at 3 holds only the second NaN.
      std::vector<double> expected(7, 0.0);
      for (std::int64_t start = 0; start + 4 <= 7; start += stride) {
        expected[static_cast<std::size_t>(start <= 2 ? 2 : start == 3 ? 3 : 4)] += 1;
      }
      EXPECT_EQ(x.grad().to_vector(), expected) << to_string(dtype) << " stride " << stride;
    }
  }
}

TEST(Pooling, BadInputToTheBackwardPrimitivesIsATypedError) {
  const Shape x_shape{1, 2, 4, 4};
  const ops::MaxPoolSelectionPtr good = ops::max_pool2d_selection(rnd(x_shape, 20), 2, 2);
  auto with = [](Shape in, Shape out, std::vector<std::int32_t> argmax) {
    return std::make_shared<const ops::MaxPoolSelection>(
        ops::MaxPoolSelection{std::move(in), std::move(out), std::move(argmax)});
  };
  auto scatter = [](Shape gs, ops::MaxPoolSelectionPtr selection) {
    return [=](Graph& g) { ops::max_pool2d_backward(g.variable(rnd(gs, 1)), selection); };
  };
  auto gather = [](Shape as, ops::MaxPoolSelectionPtr selection) {
    return [=](Graph& g) { ops::max_pool2d_gather(g.variable(rnd(as, 1)), selection); };
  };
  expect_rejected<ValueError>(scatter({1, 2, 2, 2}, nullptr), "expects a max-pooling selection");
  expect_rejected<ValueError>(gather(x_shape, nullptr), "expects a max-pooling selection");
  expect_rejected<ShapeError>(scatter({1, 2, 2, 3}, good), "expected shape (1, 2, 2, 2)");
  expect_rejected<ShapeError>(gather({1, 2, 4, 5}, good), "expected shape (1, 2, 4, 4)");
  expect_rejected<ShapeError>(scatter({1, 1, 2}, with({1, 1, 4}, {1, 1, 2}, {0, 1})), "4-D");
  expect_rejected<ShapeError>(scatter({1, 1, 1, 2}, with({1, 1, 2, 2}, {1, 1, 1, 2}, {0})),
                              "got 1 offsets");
  expect_rejected<ShapeError>(gather({2, 1, 2, 2}, with({2, 1, 2, 2}, {1, 1, 1, 1}, {0})),
                              "the same (N, C)");
  expect_rejected<ValueError>(scatter({1, 1, 1, 2}, with({1, 1, 2, 2}, {1, 1, 1, 2}, {0, 4})),
                              "must lie in [0, 4)");
  expect_rejected<ValueError>(gather({1, 1, 2, 2}, with({1, 1, 2, 2}, {1, 1, 1, 2}, {-1, 0})),
                              "got -1");

  auto spread = [](Shape gs, Shape xs, Size2 k, Size2 s) {
    return [=](Graph& g) { ops::mean_pool2d_backward(g.variable(rnd(gs, 1)), xs, k, s); };
  };
  expect_rejected<ShapeError>(spread({1, 2, 2, 2}, {2, 4, 4}, 2, 2), "(2, 4, 4)");
  expect_rejected<ShapeError>(spread({1, 2, 2, 3}, x_shape, 2, 2), "expected shape (1, 2, 2, 2)");
  expect_rejected<ShapeError>(spread({1, 2, 2, 2}, x_shape, 5, 2), "at least that large");
  expect_rejected<ValueError>(spread({1, 2, 2, 2}, x_shape, 0, 2), "sizes must be >= 1");
  expect_rejected<ValueError>(spread({1, 2, 2, 2}, x_shape, 2, {2, 0}), "strides must be >= 1");
}

}  // namespace
}  // namespace npdl
