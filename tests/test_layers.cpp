// Linear, Dense, Activation, Dropout, Flatten and Reshape: each backward
// (npdl's eager API, which runs reverse mode on the layer's graph) against
// float64 central differences of its forward, with random upstream
// gradients; the activations as graph functions through EXPECT_GRADCHECK;
// and every bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"
#include "tests/layer_gradcheck.hpp"

namespace npdl::layers {
namespace {

TEST(Linear, BackwardMatchesFiniteDifferences) {
  set_seed(1);
  Linear layer(3);
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(layer, Tensor::randn({5, 4}, 2)));
  EXPECT_EQ(layer.W()->value.shape(), (Shape{4, 3}));
  EXPECT_EQ(layer.b()->value.shape(), (Shape{3}));
  EXPECT_EQ(layer.output_shape(), (Shape{3}));
}

TEST(Linear, ComputesXWPlusB) {
  set_seed(1);
  Linear layer(2, 3);
  layer.connect_to(Shape{3});
  layer.W()->value = Tensor::from_vector({3, 2}, {1, 2, 3, 4, 5, 6});
  layer.b()->value = Tensor::from_vector({2}, {0.5, -0.5});
  const Tensor y = layer.forward(Tensor::from_vector({1, 3}, {1, 0, -1}), false);
  // [1, 0, -1] @ W = [1 - 5, 2 - 6] = [-4, -4], plus b.
  EXPECT_EQ(y.to_vector(), (std::vector<double>{-3.5, -4.5}));
}

class DenseActivation : public ::testing::TestWithParam<std::string> {};

TEST_P(DenseActivation, BackwardMatchesFiniteDifferences) {
  set_seed(3);
  Dense layer(4, 0, "glorot_uniform", GetParam());
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(layer, Tensor::randn({6, 5}, 4)));
}

INSTANTIATE_TEST_SUITE_P(NpdlActivations, DenseActivation,
                         ::testing::Values("sigmoid", "tanh", "relu", "linear", "softmax"));

TEST(Dense, DefaultsFollowNpdl) {
  Dense layer(7);
  EXPECT_EQ(layer.final_activation().name, "tanh");
  EXPECT_EQ(layer.n_in(), 0);
  EXPECT_EQ(layer.params().size(), 2u);
}

class EveryActivation : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryActivation, GradientMatchesFiniteDifferences) {
  const std::string name = GetParam();
  EXPECT_GRADCHECK([name](const std::vector<Var>& v) { return activate(name, v[0]); },
                   {Tensor::randn({4, 5}, 11, DType::Float64, 0.0, 2.0)});
}

TEST_P(EveryActivation, LayerBackwardMatchesFiniteDifferences) {
  Activation layer(GetParam());
  EXPECT_GRADIENTS_MATCH(
      layer_gradcheck(layer, Tensor::randn({3, 4}, 12, DType::Float32, 0.0, 2.0)));
  EXPECT_TRUE(layer.params().empty());
}

INSTANTIATE_TEST_SUITE_P(All, EveryActivation,
                         ::testing::Values("sigmoid", "tanh", "relu", "linear", "softmax",
                                           "softplus", "softsign", "elliot", "symmetric_elliot",
                                           "leaky_relu", "elu"));

TEST(Activation, ValuesAtKnownPoints) {
  NoGradGuard no_grad;
  const Var x(Tensor::from_vector({1, 3}, {-2.0, 0.5, 3.0}, DType::Float64));
  auto values = [&](const char* name) { return activate(name, x).value().to_vector(); };
  const std::vector<double> softplus = values("softplus");
  EXPECT_NEAR(softplus[0], std::log1p(std::exp(-2.0)), 1e-12);
  EXPECT_NEAR(softplus[2], std::log1p(std::exp(3.0)), 1e-12);
  EXPECT_NEAR(values("leaky_relu")[0], -0.02, 1e-12);
  EXPECT_NEAR(values("elu")[0], std::exp(-2.0) - 1.0, 1e-12);
  EXPECT_NEAR(values("elu")[1], 0.5, 1e-12);
  EXPECT_NEAR(values("softsign")[0], -2.0 / 3.0, 1e-12);
  EXPECT_NEAR(values("elliot")[1], 0.5 * 0.5 / 1.5 + 0.5, 1e-12);
  // Large inputs stay finite where a naive log(1 + exp(x)) overflows.
  const Var big(Tensor::from_vector({1, 2}, {1000.0, -1000.0}, DType::Float64));
  EXPECT_EQ(activate("softplus", big).value().to_vector(), (std::vector<double>{1000.0, 0.0}));
}

TEST(Activation, NpdlSpellingsAreAccepted) {
  EXPECT_EQ(activation_kind("Tanh").name, "tanh");
  EXPECT_EQ(activation_kind("tan").name, "tanh");
  EXPECT_EQ(activation_kind("ReLU").name, "relu");
  EXPECT_EQ(activation_kind("RELU").name, "relu");
  EXPECT_EQ(activation_kind("SoftPlus").name, "softplus");
  EXPECT_EQ(activation_kind("SymmetricElliot").name, "symmetric_elliot");
}

TEST(Activation, UnknownNameListsTheValidOnes) {
  try {
    Activation layer("swishy");
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'swishy'"), std::string::npos) << message;
    for (const char* valid : {"sigmoid", "tanh", "relu", "linear", "softmax", "elu"}) {
      EXPECT_NE(message.find(valid), std::string::npos) << message;
    }
  }
  EXPECT_THROW(Dense(3, 0, "glorot_uniform", "nope"), ValueError);
}

TEST(Dropout, BackwardMatchesFiniteDifferencesForOneMask) {
  Dropout layer(0.4);
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(layer, Tensor::randn({6, 5}, 21), true, /*reseed=*/77));
}

TEST(Dropout, TrainingDropsAFractionAndScalesTheRest) {
  set_seed(5);
  Dropout layer(0.25);
  const Tensor x = Tensor::ones({200, 100});
  const std::vector<double> y = layer.forward(x, true).to_vector();
  std::int64_t dropped = 0;
  for (double v : y) {
    if (v == 0.0) {
      ++dropped;
    } else {
      EXPECT_FLOAT_EQ(v, 1.0 / 0.75);  // inverted scaling keeps the expected value
    }
  }
  EXPECT_NEAR(double(dropped) / double(y.size()), 0.25, 0.01);
}

TEST(Dropout, InferenceIsTheIdentity) {
  Dropout layer(0.5);
  const Tensor x = Tensor::randn({4, 3}, 8);
  EXPECT_EQ(layer.forward(x, false).to_vector(), x.to_vector());
}

TEST(Dropout, SeededMasksRepeat) {
  const Tensor x = Tensor::ones({8, 8});
  Dropout a(0.5, 99), b(0.5, 99);
  EXPECT_EQ(a.forward(x).to_vector(), b.forward(x).to_vector());
  set_seed(3);
  Dropout global(0.5);
  const std::vector<double> first = global.forward(x).to_vector();
  set_seed(3);
  EXPECT_EQ(global.forward(x).to_vector(), first);
  EXPECT_NE(global.forward(x).to_vector(), first);  // the generator moved on
}

TEST(Dropout, RejectsPOutsideItsRange) {
  EXPECT_THROW(Dropout(1.0), ValueError);
  EXPECT_THROW(Dropout(-0.1), ValueError);
  EXPECT_THROW(Dropout(std::nan("")), ValueError);
}

TEST(Flatten, MergesTheSampleAxesAndBacksOut) {
  Flatten layer;
  const Tensor y = layer.forward(Tensor::randn({2, 3, 4}, 1));
  EXPECT_EQ(y.shape(), (Shape{2, 12}));
  EXPECT_EQ(layer.output_shape(), (Shape{12}));
  Flatten again;
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(again, Tensor::randn({2, 3, 4}, 2)));
  Flatten keep_one(3);
  EXPECT_EQ(keep_one.forward(Tensor::randn({2, 3, 4, 5}, 1)).shape(), (Shape{2, 3, 20}));
  EXPECT_THROW(Flatten(0), ValueError);  // outdim 1 is npdl's, merging the samples too
}

TEST(Reshape, InfersOneSizeAndChecksTheRest) {
  Reshape layer({4, -1});
  EXPECT_EQ(layer.forward(Tensor::randn({3, 2, 6}, 1)).shape(), (Shape{3, 4, 3}));
  Reshape checked({6, 2});
  EXPECT_GRADIENTS_MATCH(layer_gradcheck(checked, Tensor::randn({2, 12}, 3)));
  Reshape wrong({5, -1});
  EXPECT_THROW(wrong.forward(Tensor::randn({3, 12}, 1)), ShapeError);
  EXPECT_FALSE(wrong.connected());
  EXPECT_THROW(Reshape({-1, -1}), ValueError);
  EXPECT_THROW(Reshape({0, 3}), ValueError);
}

TEST(Linear, InputThatDoesNotFitIsAShapeError) {
  Linear declared(3, 5);
  try {
    declared.forward(Tensor::randn({2, 4}, 1));
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("n_in = 5"), std::string::npos) << message;
    EXPECT_NE(message.find("4 features"), std::string::npos) << message;
  }
  EXPECT_FALSE(declared.connected());
  Linear lazy(3);
  lazy.forward(Tensor::randn({2, 4}, 1));
  EXPECT_THROW(lazy.forward(Tensor::randn({2, 6}, 1)), ShapeError);
  Linear flat_only(3);
  EXPECT_THROW(flat_only.forward(Tensor::randn({2, 2, 2}, 1)), ShapeError);
  EXPECT_THROW(Linear(0), ValueError);
  EXPECT_THROW(Linear(3, -1), ValueError);
  EXPECT_THROW(Linear(3, 0, "no_such_init"), ValueError);
}

TEST(Linear, RecordsOnTheGraphWithItsParametersAsParams) {
  set_seed(2);
  Linear layer(2);
  Graph g(GraphOptions{false});
  const Var y = layer.apply(g.input(Tensor::randn({3, 4}, 1)), true);
  ops::sum(ops::square(y)).backward();
  // Reverse mode wrote the parameters' gradients: d sum(y^2)/db = 2 sum_rows(y).
  const Tensor expected_db = math::scale(math::sum(y.value(), {0}), 2.0);
  const math::MaxDiff d = math::max_abs_diff(layer.b()->grad, expected_db);
  EXPECT_LT(d.abs, 1e-5);
}

// The layer state API that model/ uses without knowing layer types: a
// BatchNormal's running statistics by name, replaced one at a time with
// every check, and nothing changed by a refused value.
TEST(LayerState, NamesChecksAndReplacesStateWithoutKnowingTheLayer) {
  Linear dense(2, 3);
  dense.connect_to(Shape{3});
  EXPECT_TRUE(dense.state().empty());

  BatchNormal bn(1e-5, 0.9, 1);
  bn.connect_to(Shape{3, 2, 2});
  Layer& layer = bn;
  const std::vector<Layer::NamedState> state = layer.state();
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state[0].name, "running_mean");
  EXPECT_EQ(state[1].name, "running_var");
  EXPECT_EQ(state[1].value.shape(), (Shape{3}));

  const Tensor var = Tensor::from_vector({3}, {0.5, 2.0, 0.0}, state[1].value.dtype());
  layer.set_state(1, var, "bn");
  EXPECT_EQ(bn.running_var().to_vector(), var.to_vector());

  const Tensor before = bn.running_var().clone();
  const Tensor negative = Tensor::from_vector({3}, {1.0, -2.0, 1.0}, var.dtype());
  EXPECT_THROW(layer.check_state(1, negative, "bn"), ValueError);
  EXPECT_THROW(layer.set_state(1, negative, "bn"), ValueError);
  EXPECT_THROW(layer.set_state(1, Tensor::ones({4}, var.dtype()), "bn"), ShapeError);
  EXPECT_THROW(layer.set_state(1, Tensor::ones({3}, DType::Float64), "bn"), DTypeError);
  EXPECT_THROW(layer.set_state(2, var, "bn"), ValueError);
  EXPECT_EQ(bn.running_var().to_vector(), before.to_vector());
  try {
    layer.set_state(1, negative, "model.bin: 1.BatchNormal");
    ADD_FAILURE() << "accepted a negative running variance";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("model.bin: 1.BatchNormal: running variance of feature 1"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace npdl::layers
