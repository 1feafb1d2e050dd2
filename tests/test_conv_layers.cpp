// Convolution, MeanPooling and MaxPooling: backward against float64 central
// differences, npdl's defaults and sizing, bad input (parameters unchanged),
// and CNN models: overfitting 100 samples, save/load bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "npdl.hpp"
#include "tests/conv_reference.hpp"
#include "tests/gradcheck_gtest.hpp"
#include "tests/layer_gradcheck.hpp"
#include "tests/temp_dir_test.hpp"

namespace npdl::layers {
namespace {

struct ConvLayerCase {
  const char* name;
  Shape x;  // with the samples axis
  std::int64_t filters;
  Size2 filter, stride;
  ConvPadding padding;
  const char* activation;
  bool training;
};

const ConvLayerCase kConvLayerCases[] = {
    {"stride1_valid_relu", {2, 2, 5, 6}, 3, 3, 1, "valid", "relu", true},
    {"stride2_same_tanh", {2, 2, 7, 6}, 3, 3, 2, "same", "tanh", true},
    {"explicit_padding", {2, 3, 4, 4}, 2, {2, 3}, {1, 2}, Padding2d{1, 0, 2, 1}, "linear", true},
    {"one_by_one", {2, 4, 3, 3}, 3, 1, 1, "valid", "sigmoid", true},
    {"filter_is_input", {3, 2, 4, 5}, 4, {4, 5}, 1, "valid", "tanh", true},
    {"one_channel", {2, 1, 6, 5}, 2, 3, 1, 1, "tanh", true},
    {"batch1_inference", {1, 3, 5, 5}, 2, 3, 2, "same", "tanh", false},
    // "same" pads the one column by 2 on each side: the 5 x 5 filter's first
    // two columns see only padding.
    {"same_filter_wider_than_input", {2, 3, 6, 1}, 2, 5, 1, "same", "tanh", true},
    {"zero_padding", {2, 2, 4, 3}, 2, {2, 3}, {1, 2}, 0, "linear", true},
};

class ConvolutionLayer : public ::testing::TestWithParam<ConvLayerCase> {};

TEST_P(ConvolutionLayer, BackwardMatchesFiniteDifferences) {
  const ConvLayerCase& c = GetParam();
  set_seed(3);
  Convolution layer(c.filters, c.filter, {}, c.stride, "glorot_uniform", c.activation, c.padding);
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(layer, Tensor::randn(c.x, 4), c.training));
  // The bias has had an effect: its gradient is not zero.
  EXPECT_GT(
      math::max_abs_diff(layer.b()->grad, Tensor::zeros(layer.b()->grad.shape(), DType::Float64))
          .abs,
      0.0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvolutionLayer, ::testing::ValuesIn(kConvLayerCases),
                         [](const auto& info) { return std::string(info.param.name); });

// The layer's forward and backward in float32 and float64 against the
// nested-loop definition of conv2d plus the bias (activation "linear").
void expect_layer_matches_reference(const Shape& x_shape, std::int64_t filters, Size2 filter,
                                    Size2 stride, const ConvPadding& padding) {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    set_seed(11);
    Convolution layer(filters, filter, {}, stride, "glorot_uniform", "linear", padding);
    const Tensor x = Tensor::randn(x_shape, 12, dtype);
    const Tensor y = layer.forward(x);
    const Tensor w = layer.W()->value.astype(DType::Float64), b = layer.b()->value;
    const Tensor conv =
        testing::reference_conv2d(x.astype(DType::Float64), w, stride, layer.padding());
    const double tol = dtype == DType::Float64 ? 1e-12 : 1e-5;
    auto expect_close = [&](const char* name, const Tensor& got, const Tensor& want) {
      const auto cmp = compare_tensors(name, got, want, tol, tol);
      EXPECT_TRUE(cmp.ok) << to_string(dtype) << " " << cmp.describe();
    };
    expect_close("y", y, math::add(conv, b.astype(DType::Float64).reshape({1, filters, 1, 1})));
    const Tensor g = Tensor::randn(y.shape(), 13, dtype);
    const Tensor gx = layer.backward(g);
    const Tensor g64 = g.astype(DType::Float64);
    const math::Conv2dGrads ref = testing::reference_conv2d_backward(g64, x.astype(DType::Float64),
                                                                     w, stride, layer.padding());
    expect_close("gx", gx, ref.gx);
    expect_close("gW", layer.W()->grad, ref.gw);
    expect_close("gb", layer.b()->grad, math::sum(g64, {0, 2, 3}));
  }
}

TEST(Convolution, SamePaddingWithAFilterWiderThanTheInputMatchesTheReference) {
  expect_layer_matches_reference({2, 3, 6, 1}, 2, 5, 1, "same");
  expect_layer_matches_reference({1, 2, 1, 2}, 3, {3, 6}, {1, 2}, "same");
}

TEST(Convolution, ZeroPaddingIsAnInteger) {
  // 0 converts to an integer and to a null const char*: the integer wins,
  // and a char pointer never stands for a padding.
  static_assert(std::is_convertible_v<int, ConvPadding>);
  static_assert(!std::is_convertible_v<std::nullptr_t, ConvPadding>);
  static_assert(!std::is_convertible_v<bool, ConvPadding>);
  set_seed(14);
  Convolution zero(2, 3, {}, 1, "glorot_uniform", "relu", 0);
  zero.connect_to(Shape{1, 5, 4});
  EXPECT_EQ(zero.padding(), Padding2d{});
  EXPECT_EQ(zero.output_shape(), (Shape{2, 3, 2}));
  expect_layer_matches_reference({2, 1, 5, 4}, 2, 3, 1, 0);
  const char* no_mode = nullptr;
  try {
    Convolution(2, 3, {}, 1, "glorot_uniform", "relu", no_mode);
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("got a null pointer"), std::string::npos) << e.what();
  }
}

TEST(Convolution, SamePaddingWithAHugeStrideGivesOneOutput) {
  // ceil(input / stride) is 1: (input + stride - 1) / stride overflowed.
  const std::int64_t huge = std::numeric_limits<std::int64_t>::max();
  set_seed(15);
  Convolution conv(2, {3, 2}, {}, huge, "glorot_uniform", "relu", "same");
  conv.connect_to(Shape{1, 5, 1});
  EXPECT_EQ(conv.output_shape(), (Shape{2, 1, 1}));
  EXPECT_EQ(conv.padding(), (Padding2d{0, 0, 0, 1}));
  expect_layer_matches_reference({2, 1, 5, 1}, 2, {3, 2}, huge, "same");
}

TEST(Convolution, GeometryThatOverflowsIsAShapeErrorAndTheLayerStaysUnconnected) {
  const std::int64_t huge = std::numeric_limits<std::int64_t>::max();
  struct Case {
    Size2 filter, stride;
    ConvPadding padding;
    const char* fragment;
  };
  const Case cases[] = {
      // 4 * 1 + (2^63 - 1) rows of padded input for 5 outputs.
      {{huge, 3},
       1,
       "same",
       "'same' padding with filter_size (9223372036854775807, 3) and stride (1, 1) on an input of "
       "(5, 5): expected a padded height"},
      {{3, huge}, {1, 2}, "same", "filter_size (3, 9223372036854775807)"},
      {3, 1, Padding2d{std::int64_t{1} << 62, std::int64_t{1} << 62, 0, 0},
       "Convolution: padding (top 4611686018427387904, bottom 4611686018427387904, left 0, right "
       "0) of an input of (5, 5) overflows the padded height"},
      // Fits, but (2^62 - 1)^2 output positions per sample cannot be counted:
      // refused when connecting, not by the forward's conv2d after it.
      {3, 1, std::int64_t{1} << 61, "one sample's receptive fields (C, fh, fw, OH, OW)"},
  };
  for (const Case& c : cases) {
    Convolution conv(2, c.filter, {}, c.stride, "glorot_uniform", "relu", c.padding);
    try {
      conv.forward(Tensor::randn({1, 1, 5, 5}, 16));
      ADD_FAILURE() << "expected a ShapeError mentioning " << c.fragment;
    } catch (const ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find(c.fragment), std::string::npos) << e.what();
    }
    EXPECT_FALSE(conv.connected());
    EXPECT_EQ(conv.W(), nullptr);
    EXPECT_EQ(conv.output_shape(), Shape{});
  }
  // Filters whose element count overflows although the geometry fits (one
  // row of input, "same" pads it to the filter's height).
  Convolution tall(2, {huge, 2}, {}, 1, "glorot_uniform", "relu", "same");
  EXPECT_THROW(tall.forward(Tensor::randn({1, 3, 1, 4}, 17)), ShapeError);
  EXPECT_FALSE(tall.connected());
}

TEST(PoolingLayers, BackwardMatchesFiniteDifferences) {
  const Tensor x = Tensor::randn({2, 3, 7, 6}, 5);
  MaxPooling max_pool(2);
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(max_pool, x));
  MeanPooling mean_pool(2);
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(mean_pool, x));
  MaxPooling overlapping(3, Size2{2, 1});
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(overlapping, x));
  MeanPooling rectangular({2, 3}, Size2{1, 3});
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(rectangular, x, /*training=*/false));
}

TEST(PoolingLayers, NpdlWindowsDropTrailingRowsAndColumns) {
  MaxPooling pool(2);
  EXPECT_EQ(pool.forward(Tensor::randn({2, 3, 7, 5}, 1)).shape(), (Shape{2, 3, 3, 2}));
  EXPECT_EQ(pool.stride(), Size2(2));
  EXPECT_TRUE(pool.params().empty());
  MeanPooling strided(3, Size2{1, 2});
  strided.connect_to(Shape{1, 5, 5});
  EXPECT_EQ(strided.output_shape(), (Shape{1, 3, 2}));
}

TEST(Convolution, DefaultsAndParametersFollowNpdl) {
  set_seed(1);
  Convolution conv(32, 3);
  EXPECT_EQ(conv.final_activation().name, "relu");
  EXPECT_EQ(conv.stride(), Size2(1));
  conv.connect_to(Shape{1, 28, 28});
  EXPECT_EQ(conv.output_shape(), (Shape{32, 26, 26}));
  const auto params = conv.params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0]->name, "W");
  EXPECT_EQ(params[0]->value.shape(), (Shape{32, 1, 3, 3}));
  EXPECT_EQ(params[1]->name, "b");
  EXPECT_EQ(params[1]->value.shape(), (Shape{32}));
  // glorot_uniform with npdl's conv fans: limit sqrt(6 / (1*9 + 32*9)).
  const double limit = std::sqrt(6.0 / (9 + 32 * 9));
  for (double w : params[0]->value.to_vector()) EXPECT_LE(std::abs(w), limit);
  Convolution rect(4, {3, 5}, {}, {2, 1}, "glorot_uniform", "relu", "same");
  rect.connect_to(Shape{2, 9, 8});
  EXPECT_EQ(rect.output_shape(), (Shape{4, 5, 8}));
  EXPECT_EQ(rect.padding(), (Padding2d{1, 1, 2, 2}));
}

TEST(Convolution, ConnectsThroughPoolingAndFlattenToDense) {
  set_seed(2);
  model::Model m;
  m.add<Convolution>(4, 3, Shape{1, 10, 9});
  m.add<MaxPooling>(2);
  m.add<Convolution>(5, 2, Shape{}, 1, "glorot_uniform", "relu", 1);
  m.add<MeanPooling>(2);
  m.add<Flatten>();
  m.add<Dense>(3, 0, "glorot_uniform", "softmax");
  m.compile("scce", "sgd");  // sized from Convolution's input_shape
  EXPECT_EQ(m.layers()[1]->output_shape(), (Shape{4, 4, 3}));
  EXPECT_EQ(m.layers()[2]->output_shape(), (Shape{5, 5, 4}));
  EXPECT_EQ(m.layers()[4]->output_shape(), (Shape{5 * 2 * 2}));
  EXPECT_EQ(m.predict(Tensor::randn({6, 1, 10, 9}, 3)).shape(), (Shape{6, 3}));
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

TEST(Convolution, BadInputIsATypedErrorAndLeavesTheLayerAsItWas) {
  set_seed(4);
  Convolution too_big(2, 5);
  EXPECT_THROW(too_big.forward(Tensor::randn({1, 1, 4, 6}, 1)), ShapeError);
  EXPECT_FALSE(too_big.connected());
  EXPECT_THROW(Convolution(2, 3, Shape{1, 4, 4}).forward(Tensor::randn({1, 2, 4, 4}, 1)),
               ShapeError);

  Convolution conv(2, 3);
  conv.forward(Tensor::randn({2, 3, 5, 5}, 1));
  const Tensor W = conv.W()->value.clone(), b = conv.b()->value.clone();
  try {
    conv.forward(Tensor::randn({2, 4, 5, 5}, 2));
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("(2, 4, 5, 5)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(conv.forward(Tensor::randn({3, 5, 5}, 2)), ShapeError);
  EXPECT_TRUE(same_bits(conv.W()->value, W));
  EXPECT_TRUE(same_bits(conv.b()->value, b));

  EXPECT_THROW(Convolution(0, 3), ValueError);
  EXPECT_THROW(Convolution(2, {3, 0}), ValueError);
  EXPECT_THROW(Convolution(2, 3, {}, {0, 1}), ValueError);
  EXPECT_THROW(Convolution(2, 3, {}, 1, "glorot_uniform", "relu", -1), ValueError);
  EXPECT_THROW(Convolution(2, 3, {}, 1, "glorot_uniform", "relu", "full"), ValueError);
  EXPECT_THROW(Convolution(2, 3, Shape{4, 4}), ShapeError);
  EXPECT_THROW(MaxPooling(0), ValueError);
  EXPECT_THROW(MeanPooling(2, Size2{2, 0}), ValueError);
  MaxPooling pool(3);
  EXPECT_THROW(pool.forward(Tensor::randn({1, 1, 2, 5}, 1)), ShapeError);
  EXPECT_FALSE(pool.connected());
}

// The ops a Convolution records inside its composite, for an activation.
std::vector<std::string> ops_recorded(const std::string& activation) {
  set_seed(5);
  Convolution conv(2, 3, {}, 1, "glorot_uniform", activation);
  Graph g;
  const Var y = conv.apply(g.input(Tensor::randn({1, 1, 5, 5}, 1)), true);
  EXPECT_EQ(y.shape(), (Shape{1, 2, 3, 3}));
  std::vector<std::string> ops;
  for (std::size_t v = 0; v < g.size(); ++v) {
    const auto& data = g.impl()[v];
    if (data.op == nullptr || data.composite < 0) continue;
    ops.emplace_back(data.op->name);
    EXPECT_EQ(g.composites()[data.composite].name, "Convolution");
  }
  EXPECT_NE(to_dot(g).find("conv2d_bias"), std::string::npos);
  return ops;
}

// The filters and the bias, then one conv2d_bias node (the bias added
// inside the convolution, not by an add of its own) with its activation:
// relu (the default) fused into it, any other recorded after it.
TEST(Convolution, RecordsConv2dBiasOnTheGraphInsideItsComposite) {
  EXPECT_EQ(ops_recorded("relu"),
            (std::vector<std::string>{"parameter", "parameter", "conv2d_bias_relu"}));
  EXPECT_EQ(ops_recorded("tanh"),
            (std::vector<std::string>{"parameter", "parameter", "conv2d_bias", "tanh"}));
  EXPECT_EQ(ops_recorded("linear"),
            (std::vector<std::string>{"parameter", "parameter", "conv2d_bias"}));
}

// A small CNN with per-channel BatchNormal (axis 1), as in the example.
void build_cnn(model::Model& m) {
  m.add<Convolution>(8, 3, Shape{1, 10, 10}, 1, "glorot_uniform", "linear");
  m.add<BatchNormal>(1e-6, 0.9, 1);
  m.add<Activation>("relu");
  m.add<MaxPooling>(2);
  m.add<Flatten>();
  m.add<Dense>(10, 0, "glorot_uniform", "softmax");
}

struct Images {
  Tensor x, y;
};
/// Random images with random labels: only memorising fits them.
Images random_images(std::int64_t n, std::uint64_t seed) {
  Images d;
  d.x = Tensor::randn({n, 1, 10, 10}, seed);
  std::vector<int> labels;
  std::mt19937_64 rng(seed);
  for (std::int64_t i = 0; i < n; ++i) labels.push_back(int(rng() % 10));
  d.y = model::one_hot(labels, 10);
  return d;
}

model::FitOptions quiet(int epochs, std::int64_t batch_size) {
  model::FitOptions o;
  o.epochs = epochs;
  o.batch_size = batch_size;
  o.log = nullptr;
  return o;
}

TEST(CnnModel, OverfitsOneHundredSamples) {
  set_seed(6);
  const Images d = random_images(100, 7);
  model::Model m;
  build_cnn(m);
  model::OptimizerOptions o;
  o.lr = 0.01;
  m.compile(model::get_objective("scce"), std::make_shared<model::Adam>(0.9, 0.999, 1e-8, o));
  const double before = m.evaluate(d.x, d.y).accuracy;
  m.fit(d.x, d.y, quiet(60, 25));
  EXPECT_LT(before, 0.3);
  EXPECT_DOUBLE_EQ(m.evaluate(d.x, d.y).accuracy, 1.0);
}

// A Convolution with relu (fused into the convolution) trains to the same
// bits as the same Convolution without an activation followed by an
// Activation("relu") layer, on the im2col path and on Winograd's.
TEST(CnnModel, ReluFusedIntoTheConvolutionTrainsToTheSameBits) {
  const Images d = random_images(12, 10);
  auto train = [&](bool fused) {
    set_seed(11);
    model::Model m;
    m.add<Convolution>(16, 3, Shape{1, 10, 10}, 1, "glorot_uniform", fused ? "relu" : "linear");
    if (!fused) m.add<Activation>("relu");
    m.add<Convolution>(16, 3, Shape{}, 1, "glorot_uniform", fused ? "relu" : "linear");
    if (!fused) m.add<Activation>("relu");
    m.add<MaxPooling>(2);
    m.add<Flatten>();
    m.add<Dense>(10, 0, "glorot_uniform", "softmax");
    m.compile("scce", "momentum");
    m.fit(d.x, d.y, quiet(3, 4));
    std::vector<Tensor> state;
    for (const auto& p : m.params()) state.push_back(p->value);
    state.push_back(m.predict(d.x));
    return state;
  };
  const std::vector<Tensor> fused = train(true), composed = train(false);
  ASSERT_EQ(fused.size(), composed.size());
  for (std::size_t i = 0; i < fused.size(); ++i) {
    EXPECT_TRUE(same_bits(fused[i], composed[i])) << "tensor " << i;
  }
}

class CnnFiles : public npdl::testing::TempDirTest {};

TEST_F(CnnFiles, SaveLoadGivesBitIdenticalPredictions) {
  set_seed(8);
  const Images d = random_images(20, 9);
  model::Model trained;
  build_cnn(trained);
  trained.compile("scce", "momentum");
  trained.fit(d.x, d.y, quiet(2, 10));
  const Tensor expected = trained.predict(d.x);
  trained.save(path("cnn.bin"));
  set_seed(99);  // different initial weights
  model::Model restored;
  build_cnn(restored);
  restored.compile("scce", "momentum");
  EXPECT_FALSE(same_bits(restored.predict(d.x), expected));
  restored.load(path("cnn.bin"));
  EXPECT_TRUE(same_bits(restored.predict(d.x), expected));
  // Batch 1 inference gives each sample's row of the batch prediction.
  const Tensor one = restored.predict(model::slice_rows(d.x, 3, 4));
  const Tensor row = model::slice_rows(expected, 3, 4);
  EXPECT_LT(math::max_abs_diff(one, row).abs, 1e-6);
}

}  // namespace
}  // namespace npdl::layers
