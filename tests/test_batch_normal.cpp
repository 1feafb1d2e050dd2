// BatchNormal: autodiff vs fused vs float64 finite differences for every
// feature-axis case (0, 1, the last, negative), npdl's layer API, running statistics,
// numerics at the edges, and every bad input (state compared bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl::layers {
namespace {

struct AxisCase {
  Shape shape;
  int axis;
  Shape param_shape;
  Axes reduced;
};

const AxisCase kSpecTable[] = {
    {{6, 4}, 0, {4}, {0}},
    {{6, 4}, 1, {4}, {0}},
    {{6, 4}, -1, {4}, {0}},
    {{3, 4, 2, 3}, 1, {4}, {0, 2, 3}},
    {{3, 4, 2, 3}, 0, {4, 2, 3}, {0}},
    {{3, 5, 4}, -1, {4}, {0, 1}},
    // Axes of size 1 are axes like any other (more in test_batch_norm_size_one.cpp).
    {{5, 3, 1, 1}, 1, {3}, {0, 2, 3}},
    {{5, 3, 1}, -2, {3}, {0, 2}},
    {{3, 2, 1, 3}, 2, {1}, {0, 1, 3}},
    {{5, 3, 1, 1}, 0, {3, 1, 1}, {0}},
};

std::string case_name(const ::testing::TestParamInfo<AxisCase>& info) {
  std::string n = "shape";
  for (auto d : info.param.shape) n += "_" + std::to_string(d);
  return n + "_axis_" +
         (info.param.axis < 0 ? "m" + std::to_string(-info.param.axis)
                              : std::to_string(info.param.axis));
}

struct Inputs {
  Tensor x, gamma, beta, dy;
};

Inputs make_inputs(const AxisCase& c, DType dtype, std::uint64_t seed) {
  const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
  return {Tensor::randn(c.shape, seed, dtype, 2.0, 3.0),
          Tensor::uniform(L.param_shape, seed + 1, dtype, 0.5, 1.5),
          Tensor::randn(L.param_shape, seed + 2, dtype),
          Tensor::randn(c.shape, seed + 3, dtype)};  // random, never all-ones
}

GraphFunction composite(const BatchNormLayout& L, double eps) {
  return [L, eps](const std::vector<Var>& v) {
    return batchnorm_composite_train(v[0], v[1], v[2], L, eps);
  };
}
GraphFunction fused(const BatchNormLayout& L, double eps, Variant variant = Variant::Correct) {
  FusedOptions options;
  options.variant = variant;
  return [L, eps, options](const std::vector<Var>& v) {
    return batchnorm_fused_train(v[0], v[1], v[2], L, eps, options);
  };
}

class SpecTable : public ::testing::TestWithParam<AxisCase> {};

TEST_P(SpecTable, LayoutReducesTheRightAxes) {
  const AxisCase& c = GetParam();
  const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
  EXPECT_EQ(L.param_shape, c.param_shape);
  EXPECT_EQ(L.reduced_axes, c.reduced);
  EXPECT_EQ(L.M * L.features, numel(c.shape));
}

TEST_P(SpecTable, FusedForwardEqualsCompositeForward) {
  const AxisCase& c = GetParam();
  const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
  const Inputs in = make_inputs(c, DType::Float64, 10);
  NoGradGuard values_only;
  BatchNormStats sf, sc;
  FusedOptions filling;
  filling.stats = &sf;
  const Var yf = batchnorm_fused_train(Var(in.x), Var(in.gamma), Var(in.beta), L, 1e-5, filling);
  const Var yc = batchnorm_composite_train(Var(in.x), Var(in.gamma), Var(in.beta), L, 1e-5,
                                           Variant::Correct, &sc);
  EXPECT_LT(math::max_abs_diff(yf.value(), yc.value()).abs, 1e-12);
  EXPECT_LT(math::max_abs_diff(sf.var, sc.var).abs, 1e-12);
}

TEST_P(SpecTable, AutodiffFusedAndFiniteDifferencesAgreeInFloat64) {
  const AxisCase& c = GetParam();
  const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
  const Inputs in = make_inputs(c, DType::Float64, 20);
  const std::vector<Tensor> ad =
      reverse_mode_gradients(composite(L, 1e-5), {in.x, in.gamma, in.beta}, in.dy);
  const std::vector<Tensor> fu =
      reverse_mode_gradients(fused(L, 1e-5), {in.x, in.gamma, in.beta}, in.dy);
  const std::vector<Tensor> fd =
      finite_difference_gradients(fused(L, 1e-5), {in.x, in.gamma, in.beta}, in.dy, 1e-6);
  const char* names[] = {"dx", "dgamma", "dbeta"};
  for (int i = 0; i < 3; ++i) {
    const TensorComparison exact = compare_tensors(names[i], ad[i], fu[i], 1e-12, 1e-10);
    EXPECT_TRUE(exact.ok) << "autodiff vs fused: " << exact.describe();
    const TensorComparison numeric = compare_tensors(names[i], fu[i], fd[i], 1e-7, 1e-5);
    EXPECT_TRUE(numeric.ok) << "fused vs finite differences: " << numeric.describe();
  }
}

TEST_P(SpecTable, AutodiffAndFusedAgreeInFloat32) {
  const AxisCase& c = GetParam();
  const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
  const Inputs in = make_inputs(c, DType::Float32, 30);
  const std::vector<Tensor> ad =
      reverse_mode_gradients(composite(L, 1e-5), {in.x, in.gamma, in.beta}, in.dy);
  const std::vector<Tensor> fu =
      reverse_mode_gradients(fused(L, 1e-5), {in.x, in.gamma, in.beta}, in.dy);
  // float64 finite differences of the float64 function, as the reference.
  const Inputs in64{in.x.astype(DType::Float64), in.gamma.astype(DType::Float64),
                    in.beta.astype(DType::Float64), in.dy.astype(DType::Float64)};
  const std::vector<Tensor> fd =
      finite_difference_gradients(fused(L, 1e-5), {in64.x, in64.gamma, in64.beta}, in64.dy, 1e-6);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(fu[i].dtype(), DType::Float32);
    const TensorComparison a = compare_tensors("grad", ad[i], fu[i], 1e-5, 1e-4);
    EXPECT_TRUE(a.ok) << "autodiff vs fused: " << a.describe();
    const TensorComparison n = compare_tensors("grad", fu[i], fd[i], 1e-5, 1e-4);
    EXPECT_TRUE(n.ok) << "fused vs finite differences: " << n.describe();
  }
}

TEST_P(SpecTable, InferenceModeGradientsMatchFiniteDifferences) {
  const AxisCase& c = GetParam();
  const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
  const Inputs in = make_inputs(c, DType::Float64, 40);
  const Tensor rm = Tensor::randn(L.param_shape, 41, DType::Float64);
  const Tensor rv = Tensor::uniform(L.param_shape, 42, DType::Float64, 0.5, 2.0);
  GraphFunction comp = [&](const std::vector<Var>& v) {
    return batchnorm_composite_infer(v[0], v[1], v[2], L, 1e-5, rm, rv);
  };
  GraphFunction fuse = [&](const std::vector<Var>& v) {
    return batchnorm_fused_infer(v[0], v[1], v[2], L, 1e-5, rm, rv);
  };
  EXPECT_GRADCHECK(fuse, {in.x, in.gamma, in.beta});
  EXPECT_GRADIENTS_MATCH(check_against_analytic(
      comp,
      [&](const std::vector<Tensor>& x, const Tensor& u) {
        return reverse_mode_gradients(fuse, x, u);
      },
      {in.x, in.gamma, in.beta}, tolerances_for(DType::Float64)));
}

TEST_P(SpecTable, CheckedModePassesOnTheCorrectLayer) {
  const AxisCase& c = GetParam();
  for (DType dtype : {DType::Float32, DType::Float64}) {
    BatchNormal bn(1e-5, 0.9, c.axis);
    bn.set_backward_mode(BackwardMode::Checked);
    const Inputs in = make_inputs(c, dtype, 50);
    const Tensor y = bn.forward(in.x);
    EXPECT_EQ(y.shape(), c.shape);
    EXPECT_NO_THROW(bn.backward(in.dy));
  }
}

INSTANTIATE_TEST_SUITE_P(Spec, SpecTable, ::testing::ValuesIn(kSpecTable), case_name);

TEST(BatchNormal, RanksTwoToSix) {
  for (int rank = 2; rank <= 6; ++rank) {
    Shape shape(rank, 2);
    shape[0] = 3;
    for (int axis : {0, 1, -1}) {
      const BatchNormLayout L = batchnorm_layout(shape, axis);
      const Tensor x = Tensor::randn(shape, 60 + rank, DType::Float64);
      const Tensor g = Tensor::uniform(L.param_shape, 1, DType::Float64, 0.5, 1.5);
      const Tensor b = Tensor::randn(L.param_shape, 2, DType::Float64);
      EXPECT_GRADCHECK(fused(L, 1e-5), {x, g, b});
    }
  }
}

TEST(BatchNormal, NpdlApiParamsAndGradsInNpdlOrder) {
  BatchNormal bn;
  bn.connect_to(Shape{5});
  ASSERT_EQ(bn.params().size(), 2u);
  EXPECT_EQ(bn.params().size(), bn.grads().size());
  EXPECT_EQ(bn.params()[0]->name, "beta");
  EXPECT_EQ(bn.params()[1]->name, "gamma");
  const Tensor x = Tensor::randn({8, 5}, 1, DType::Float32, 1.0, 2.0);
  const Tensor dy = Tensor::randn({8, 5}, 2, DType::Float32);
  const std::vector<double> dbeta_before = bn.grads()[0].to_vector();
  const std::vector<double> dgamma_before = bn.grads()[1].to_vector();
  bn.forward(x);
  const Tensor dx = bn.backward(dy);
  EXPECT_EQ(dx.shape(), x.shape());
  EXPECT_NE(bn.grads()[0].to_vector(), dbeta_before);  // the Python original lost these
  EXPECT_NE(bn.grads()[1].to_vector(), dgamma_before);
  EXPECT_NEAR(bn.grads()[0].at(2), math::sum(dy, {0}).at(2), 1e-5);
}

TEST(BatchNormal, ConnectToSizesFromThePreviousLayer) {
  BatchNormal first(1e-6, 0.9, 1), second(1e-6, 0.9, 1);
  first.connect_to(Shape{3, 4, 4});
  second.connect_to(first);
  EXPECT_EQ(second.gamma()->value.shape(), (Shape{3}));
  EXPECT_EQ(second.output_shape(), (Shape{3, 4, 4}));
}

TEST(BatchNormal, LazySizingOnFirstForward) {
  BatchNormal bn(1e-6, 0.9, 1);
  EXPECT_FALSE(bn.connected());
  bn.forward(Tensor::randn({4, 3, 2, 2}, 1));
  EXPECT_TRUE(bn.connected());
  EXPECT_EQ(bn.gamma()->value.shape(), (Shape{3}));
}

TEST(BatchNormal, RunningStatisticsAfterSeveralStepsMatchHandValues) {
  // Feature values chosen so that batch means and variances are easy by hand.
  BatchNormal bn(1e-6, 0.9, 0);
  const Tensor b1 = Tensor::from_vector({4, 1}, {1, 2, 3, 6});    // mean 3, var 3.5
  const Tensor b2 = Tensor::from_vector({4, 1}, {-1, -1, 1, 1});  // mean 0, var 1
  bn.forward(b1);
  // rm = 0.9 * 0 + 0.1 * 3 = 0.3; rv = 0.9 * 1 + 0.1 * 3.5 * 4/3 = 1.0666...
  EXPECT_NEAR(bn.running_mean().at(0), 0.3, 1e-6);
  EXPECT_NEAR(bn.running_var().at(0), 0.9 + 0.1 * 3.5 * 4.0 / 3.0, 1e-6);
  bn.forward(b2);
  // rm = 0.9 * 0.3 + 0.1 * 0 = 0.27; rv = 0.9 * 1.04666.. + 0.1 * 1 * 4/3
  EXPECT_NEAR(bn.running_mean().at(0), 0.27, 1e-6);
  EXPECT_NEAR(bn.running_var().at(0), 0.9 * (0.9 + 0.1 * 3.5 * 4.0 / 3.0) + 0.1 * 4.0 / 3.0, 1e-6);
  // Inference uses them and leaves them as they are.
  const Tensor rm = bn.running_mean().clone(), rv = bn.running_var().clone();
  const Tensor y = bn.forward(Tensor::from_vector({1, 1}, {2.0}), /*training=*/false);
  EXPECT_NEAR(y.item(), (2.0 - rm.item()) / std::sqrt(rv.item() + 1e-6), 1e-5);
  EXPECT_EQ(bn.running_mean().to_vector(), rm.to_vector());
  EXPECT_EQ(bn.running_var().to_vector(), rv.to_vector());
}

TEST(BatchNormal, AllThreeModesGiveTheSameResults) {
  const Tensor x = Tensor::randn({16, 3, 5, 5}, 3, DType::Float64, 0.5, 2.0);
  const Tensor dy = Tensor::randn({16, 3, 5, 5}, 4, DType::Float64);
  std::vector<std::vector<double>> results;
  for (BackwardMode mode : {BackwardMode::Autodiff, BackwardMode::Fused, BackwardMode::Checked}) {
    BatchNormal bn(1e-5, 0.9, 1);
    bn.set_backward_mode(mode);
    const Tensor y = bn.forward(x);
    const Tensor dx = bn.backward(dy);
    std::vector<double> all = y.to_vector();
    for (const Tensor& t : {dx, bn.grads()[0], bn.grads()[1], bn.running_var()}) {
      const auto v = t.to_vector();
      all.insert(all.end(), v.begin(), v.end());
    }
    results.push_back(all);
  }
  for (std::size_t i = 0; i < results[0].size(); ++i) {
    EXPECT_NEAR(results[0][i], results[1][i], 1e-10);
    EXPECT_EQ(results[1][i], results[2][i]);  // checked returns the fused result
  }
}

TEST(BatchNormal, LargeOffsetsInFloat32) {
  // x = 1e4 + N(0, 1): E[x^2] - E[x]^2 would lose every digit in float32.
  const Tensor noise = Tensor::randn({512, 8}, 5, DType::Float32);
  const Tensor x = math::add_scalar(noise, 1e4);
  BatchNormal bn(1e-6, 0.9, 1);
  const Tensor y = bn.forward(x);
  const Tensor mean = math::mean(y, {0});
  const Tensor var = math::mean(math::square(math::sub(y, mean)), {0});
  for (int f = 0; f < 8; ++f) {
    EXPECT_NEAR(mean.at(f), 0.0, 1e-3);
    EXPECT_NEAR(var.at(f), 1.0, 1e-3);
  }
  EXPECT_TRUE(math::all_finite(bn.backward(Tensor::randn({512, 8}, 6, DType::Float32))));
}

TEST(BatchNormal, ConstantFeatureGivesBetaAndFiniteGradients) {
  Tensor x = Tensor::randn({6, 3}, 7, DType::Float64);
  for (int i = 0; i < 6; ++i) x.data<double>()[i * 3 + 1] = 4.25;  // feature 1 constant
  for (BackwardMode mode : {BackwardMode::Autodiff, BackwardMode::Fused}) {
    BatchNormal bn(1e-6, 0.9, 0, "zero", "one");
    bn.set_backward_mode(mode);
    bn.connect_to(Shape{3});
    bn.set_beta(Tensor::from_vector({3}, {0.5, -0.75, 2.0}, DType::Float64));
    const Tensor y = bn.forward(x);
    for (int i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(y.at({i, 1}), -0.75);
    const Tensor dx = bn.backward(Tensor::randn({6, 3}, 8, DType::Float64));
    EXPECT_TRUE(math::all_finite(dx));
  }
}

TEST(BatchNormal, TwoSamplesPerFeature) {
  const BatchNormLayout L = batchnorm_layout({2, 3}, 0);
  EXPECT_EQ(L.M, 2);
  const Tensor x = Tensor::randn({2, 3}, 9, DType::Float64);
  EXPECT_GRADCHECK(fused(L, 1e-3),
                   {x, Tensor::ones({3}, DType::Float64), Tensor::zeros({3}, DType::Float64)});
  EXPECT_GRADIENTS_MATCH(check_against_analytic(
      composite(L, 1e-3),
      [&](const std::vector<Tensor>& in, const Tensor& u) {
        return reverse_mode_gradients(fused(L, 1e-3), in, u);
      },
      {x, Tensor::ones({3}, DType::Float64), Tensor::zeros({3}, DType::Float64)},
      tolerances_for(DType::Float64)));
}

TEST(BatchNormal, NpdlStdBugIsFlaggedByCheckedModeAndByTheGradientCheck) {
  const Tensor x = Tensor::randn({8, 4}, 10, DType::Float64, 1.0, 3.0);
  const Tensor dy = Tensor::randn({8, 4}, 11, DType::Float64);
  BatchNormal bn(1e-5, 0.9, 1);
  bn.set_variant(Variant::NpdlStd);
  bn.set_backward_mode(BackwardMode::Checked);
  bn.forward(x);
  EXPECT_THROW(bn.backward(dy), GradientMismatch);
  try {
    bn.backward(dy);
  } catch (const GradientMismatch& e) {
    EXPECT_NE(std::string(e.what()).find("dx"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("worst element"), std::string::npos) << e.what();
  }
  const BatchNormLayout L = batchnorm_layout(x.shape(), 1);
  const GradCheckReport report =
      gradcheck(fused(L, 1e-5, Variant::NpdlStd),
                {x, Tensor::ones({4}, DType::Float64), Tensor::zeros({4}, DType::Float64)});
  EXPECT_FALSE(report.ok());
  // Reverse mode through the buggy composite is right for the buggy forward:
  // the bug is the hand-derived backward's, not autodiff's.
  EXPECT_GRADCHECK(
      [&L](const std::vector<Var>& v) {
        return batchnorm_composite_train(v[0], v[1], v[2], L, 1e-5, Variant::NpdlStd);
      },
      {x, Tensor::ones({4}, DType::Float64), Tensor::zeros({4}, DType::Float64)});
}

TEST(BatchNormal, InGraphItIsOneCompositeNode) {
  for (BackwardMode mode : {BackwardMode::Autodiff, BackwardMode::Fused}) {
    Graph g;
    BatchNormal bn(1e-5, 0.9, 1);
    bn.set_backward_mode(mode);
    Var x = g.input(Tensor::randn({4, 3}, 12), "x");
    Var y = ops::sum(ops::square(bn.apply(x, true)));
    y.backward();
    ASSERT_EQ(g.composites().size(), 1u);
    EXPECT_EQ(g.composites()[0].name, "BatchNormal");
    int inside = 0;
    for (Vertex v : boost::make_iterator_range(boost::vertices(g.impl()))) {
      inside += g.impl()[v].composite == 0;
    }
    EXPECT_EQ(inside, mode == BackwardMode::Autodiff ? 11 : 3);  // params are inside too
    EXPECT_TRUE(bn.gamma()->grad.defined());
    EXPECT_NE(to_dot(g).find("cluster_0"), std::string::npos);
  }
}

TEST(BatchNormal, InitialisersByNameObjectAndFunction) {
  set_seed(3);
  BatchNormal by_name(1e-6, 0.9, 0, "Zero", "normal");
  by_name.connect_to(Shape{50});
  EXPECT_NE(by_name.gamma()->value.at(7), 1.0);
  BatchNormal by_object(
      1e-6, 0.9, 0, std::make_shared<initializers::Uniform>(0.1),
      initializers::InitFunction([](const Shape& s, DType d) { return Tensor::full(s, 2.5, d); }));
  by_object.connect_to(Shape{4});
  EXPECT_EQ(by_object.gamma()->value.at(3), 2.5);
  EXPECT_LE(std::fabs(by_object.beta()->value.at(0)), 0.1);
  try {
    BatchNormal bad(1e-6, 0.9, 0, "zeros");
    FAIL() << "an unknown initialiser name must throw";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("glorot_uniform"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'zeros'"), std::string::npos) << e.what();
  }
}

// Bad input: a typed error, and every piece of state exactly as it was.
struct Snapshot {
  std::vector<double> gamma, beta, dgamma, dbeta, rm, rv;
  explicit Snapshot(const BatchNormal& bn)
      : gamma(bn.gamma()->value.to_vector()),
        beta(bn.beta()->value.to_vector()),
        dgamma(bn.gamma()->grad.to_vector()),
        dbeta(bn.beta()->grad.to_vector()),
        rm(bn.running_mean().to_vector()),
        rv(bn.running_var().to_vector()) {}
  bool operator==(const Snapshot& o) const {
    return gamma == o.gamma && beta == o.beta && dgamma == o.dgamma && dbeta == o.dbeta &&
           rm == o.rm && rv == o.rv;
  }
};

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    bn.set_backward_mode(BackwardMode::Checked);
    bn.forward(Tensor::randn({8, 3, 2, 2}, 1, DType::Float64, 1.0, 2.0));
    bn.backward(Tensor::randn({8, 3, 2, 2}, 2, DType::Float64));
  }
  BatchNormal bn{1e-5, 0.8, 1};
};

TEST(BatchNormalArguments, BadConstructorArgumentsAreValueErrors) {
  EXPECT_THROW(BatchNormal(0.0), ValueError);
  EXPECT_THROW(BatchNormal(-1e-5), ValueError);
  EXPECT_THROW(BatchNormal(std::nan("")), ValueError);
  EXPECT_THROW(BatchNormal(std::numeric_limits<double>::infinity()), ValueError);
  EXPECT_THROW(BatchNormal(1e-5, -0.1), ValueError);
  EXPECT_THROW(BatchNormal(1e-5, 1.5), ValueError);
  EXPECT_THROW(BatchNormal(1e-5, std::nan("")), ValueError);
  EXPECT_NO_THROW(BatchNormal(1e-5, 0.0));
  EXPECT_NO_THROW(BatchNormal(1e-5, 1.0));
  EXPECT_THROW(parse_backward_mode("reverse"), ValueError);
}

TEST(BatchNormalArguments, BackwardBeforeForwardIsAGraphError) {
  BatchNormal bn;
  EXPECT_THROW(bn.backward(Tensor::zeros({2, 2})), GraphError);
}

TEST(BatchNormalArguments, AxisOutOfRangeLeavesTheLayerUnconnected) {
  BatchNormal bn(1e-5, 0.9, 4);
  EXPECT_THROW(bn.forward(Tensor::randn({4, 3, 2, 2}, 1)), AxisError);
  EXPECT_FALSE(bn.connected());
  BatchNormal neg(1e-5, 0.9, -5);
  EXPECT_THROW(neg.connect_to(Shape{3, 2, 2}), AxisError);
  EXPECT_FALSE(neg.connected());
}

TEST_F(BadInput, InputThatDoesNotFitTheParameters) {
  const Snapshot before(bn);
  EXPECT_THROW(bn.forward(Tensor::randn({8, 4, 2, 2}, 3, DType::Float64)), ShapeError);
  EXPECT_THROW(bn.forward(Tensor::randn({8, 3}, 3, DType::Float64)), ShapeError);
  EXPECT_TRUE(Snapshot(bn) == before);
}

TEST_F(BadInput, PreGradOfTheWrongShapeOrDtype) {
  const Snapshot before(bn);
  EXPECT_THROW(bn.backward(Tensor::randn({8, 3, 2, 1}, 4, DType::Float64)), ShapeError);
  EXPECT_THROW(bn.backward(Tensor::randn({8, 3, 2, 2}, 4, DType::Float32)), DTypeError);
  EXPECT_TRUE(Snapshot(bn) == before);
}

TEST_F(BadInput, OneElementPerFeatureInTraining) {
  const Snapshot before(bn);
  // Any spatial size fits per-channel parameters; one element per channel does not train.
  EXPECT_THROW(bn.forward(Tensor::randn({1, 3, 1, 1}, 5, DType::Float64)), ValueError);
  EXPECT_NO_THROW(bn.forward(Tensor::randn({2, 3, 5, 1}, 5, DType::Float64), false));
  BatchNormal single(1e-5, 0.9, 1);
  single.connect_to(Shape{3});
  const Snapshot fresh(single);
  EXPECT_THROW(single.forward(Tensor::randn({1, 3}, 5)), ValueError);
  EXPECT_TRUE(Snapshot(single) == fresh);
  EXPECT_NO_THROW(single.forward(Tensor::randn({1, 3}, 5), /*training=*/false));
  EXPECT_TRUE(Snapshot(bn) == before);
}

TEST_F(BadInput, NanOrInfInATrainingBatch) {
  bn.forward(Tensor::randn({8, 3, 2, 2}, 3, DType::Float64, 1.0, 2.0));
  const Snapshot before(bn);
  for (double bad : {std::nan(""), double(INFINITY), -double(INFINITY)}) {
    Tensor x = Tensor::randn({8, 3, 2, 2}, 6, DType::Float64);
    x.data<double>()[17] = bad;
    EXPECT_THROW(bn.forward(x), ValueError);
  }
  EXPECT_TRUE(Snapshot(bn) == before);
  // The last good forward is still the one backward differentiates.
  EXPECT_NO_THROW(bn.backward(Tensor::randn({8, 3, 2, 2}, 2, DType::Float64)));
}

TEST_F(BadInput, SecondBackwardOfOneForwardIsAGraphError) {
  // The first backward freed what the sweep no longer needed (lean graph).
  const Snapshot before(bn);
  EXPECT_THROW(bn.backward(Tensor::randn({8, 3, 2, 2}, 2, DType::Float64)), GraphError);
  EXPECT_TRUE(Snapshot(bn) == before);
}

TEST_F(BadInput, DtypeChangeAfterTheFirstForward) {
  const Snapshot before(bn);
  EXPECT_THROW(bn.forward(Tensor::randn({8, 3, 2, 2}, 7, DType::Float32)), DTypeError);
  EXPECT_TRUE(Snapshot(bn) == before);
}

TEST_F(BadInput, SettersCheckShapes) {
  const Snapshot before(bn);
  EXPECT_THROW(bn.set_gamma(Tensor::ones({4}, DType::Float64)), ShapeError);
  EXPECT_THROW(
      bn.set_running_stats(Tensor::zeros({3}, DType::Float64), Tensor::ones({2}, DType::Float64)),
      ShapeError);
  EXPECT_TRUE(Snapshot(bn) == before);
}

// A running variance below zero (or a running statistic that is NaN or
// Inf) would make every inference output NaN. The setter refuses it, naming
// the layer, the feature and the value.
TEST_F(BadInput, RunningStatisticsThatAreNegativeOrNotFinite) {
  const Snapshot before(bn);
  const Tensor mean = Tensor::zeros({3}, DType::Float64);
  const std::pair<double, std::string> bad[] = {
      {-1e-3, "-0.001"}, {std::nan(""), "nan"}, {double(INFINITY), "inf"}};
  for (const auto& [value, text] : bad) {
    const Tensor var = Tensor::from_vector({3}, {1.0, value, 2.0}, DType::Float64);
    try {
      bn.set_running_stats(mean, var);
      ADD_FAILURE() << "accepted a running variance of " << text;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("BatchNormal: running variance of feature 1 is " + text),
                std::string::npos)
          << e.what();
    }
  }
  const Tensor nan_mean = Tensor::from_vector({3}, {0.0, 0.0, std::nan("")}, DType::Float64);
  try {
    bn.set_running_stats(nan_mean, Tensor::ones({3}, DType::Float64));
    ADD_FAILURE() << "accepted a NaN running mean";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("running mean of feature 2 is nan"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(Snapshot(bn) == before);
  // A variance of zero is legal: epsilon keeps the scale finite.
  EXPECT_NO_THROW(bn.set_running_stats(mean, Tensor::zeros({3}, DType::Float64)));
}

// Running statistics that reach the layer past the setters (restore() takes
// a snapshot as it is) are refused at inference too.
TEST_F(BadInput, InferenceRefusesANegativeRunningVariance) {
  Layer::Snapshot edited = bn.snapshot();
  ASSERT_EQ(edited.state.size(), 2u);
  edited.state[1].second = Tensor::from_vector({3}, {1.0, 1.0, -4.0}, DType::Float64);
  bn.restore(edited);
  const Snapshot before(bn);
  for (BackwardMode mode : {BackwardMode::Autodiff, BackwardMode::Fused, BackwardMode::Checked}) {
    bn.set_backward_mode(mode);
    try {
      bn.forward(Tensor::randn({4, 3, 2, 2}, 9, DType::Float64), /*training=*/false);
      ADD_FAILURE() << "inference ran with a running variance of -4";
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("BatchNormal: running variance of feature 2 is -4"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_TRUE(Snapshot(bn) == before);
}

// Checked mode without false alarms. Features far from
// zero next to their spread make the float32 composite's own dx inaccurate;
// checked mode's reference runs in float64 (Note [Checked mode's reference])
// and the fused kernel folds the mean's rounding into its constants (Note
// [Rounded mean]), so both conditioned and ill-conditioned batches pass in
// both dtypes, and the buggy sqrt(std + eps) forward is still caught.
struct Conditioning {
  Shape shape;
  int axis;
  double offset;  // added to N(0, 1)
};

void PrintTo(const Conditioning& c, std::ostream* os) {
  *os << to_string(c.shape) << " axis " << c.axis << " offset " << c.offset;
}

class CheckedModeConditioning : public ::testing::TestWithParam<Conditioning> {};

Tensor offset_batch(const Conditioning& c, DType dtype) {
  return Tensor::randn(c.shape, 11, dtype, c.offset, 1.0);
}

TEST_P(CheckedModeConditioning, PassesInBothDtypes) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    BatchNormal bn(1e-6, 0.9, GetParam().axis);
    bn.set_backward_mode(BackwardMode::Checked);
    const Tensor x = offset_batch(GetParam(), dtype);
    bn.forward(x);
    EXPECT_NO_THROW(bn.backward(Tensor::randn(x.shape(), 12, dtype))) << to_string(dtype);
  }
}

TEST_P(CheckedModeConditioning, FusedIsCloseToTheFloat64CompositeInFloat32) {
  const Conditioning& c = GetParam();
  const Tensor x32 = offset_batch(c, DType::Float32);
  const BatchNormLayout L = batchnorm_layout(x32.shape(), c.axis);
  const Tensor gamma = Tensor::uniform(L.param_shape, 13, DType::Float32, 0.5, 1.5);
  const Tensor beta = Tensor::uniform(L.param_shape, 14, DType::Float32, -0.5, 0.5);
  const Tensor dy = Tensor::randn(x32.shape(), 15, DType::Float32);
  BatchNormStats stats;
  const Tensor y = batchnorm_forward_train(x32, gamma, beta, L, 1e-6, stats);
  const BatchNormGrads g = batchnorm_backward_train(dy, x32, gamma, stats, L);
  const auto f64 = [](const Tensor& t) { return t.astype(DType::Float64); };
  const GraphFunction composite = [&](const std::vector<Var>& v) {
    return batchnorm_composite_train(v[0], v[1], v[2], L, 1e-6);
  };
  const std::vector<Tensor> reference =
      reverse_mode_gradients(composite, {f64(x32), f64(gamma), f64(beta)}, f64(dy));
  const Tensor y64 = [&] {
    NoGradGuard no_grad;
    return composite({Var(f64(x32)), Var(f64(gamma)), Var(f64(beta))}).value();
  }();
  EXPECT_LT(math::max_abs_diff(f64(y), y64).abs, 1e-5);
  EXPECT_LT(math::max_abs_diff(f64(g.dx), reference[0]).abs, 2e-5);
  EXPECT_LT(math::max_abs_diff(f64(g.dgamma), reference[1]).abs, 1e-4);
}

TEST_P(CheckedModeConditioning, StillCatchesTheBuggyStd) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    BatchNormal bn(1e-6, 0.9, GetParam().axis);
    bn.set_backward_mode(BackwardMode::Checked);
    bn.set_variant(Variant::NpdlStd);
    const Tensor x = offset_batch(GetParam(), dtype);
    bn.forward(x);
    EXPECT_THROW(bn.backward(Tensor::randn(x.shape(), 12, dtype)), GradientMismatch)
        << to_string(dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(WellAndIllConditioned, CheckedModeConditioning,
                         ::testing::Values(Conditioning{{64, 16}, 0, 0.0},
                                           Conditioning{{64, 16}, 0, 1e4},
                                           Conditioning{{8, 3, 4, 4}, 1, 0.0},
                                           Conditioning{{8, 3, 4, 4}, 1, 1e4},
                                           Conditioning{{6, 5, 4}, -1, 3e3}),
                         [](const ::testing::TestParamInfo<Conditioning>& info) {
                           std::string n = "shape";
                           for (auto d : info.param.shape) n += "_" + std::to_string(d);
                           return n + "_axis_" +
                                  (info.param.axis < 0 ? "m1" : std::to_string(info.param.axis)) +
                                  "_offset_" + std::to_string(static_cast<long>(info.param.offset));
                         });

}  // namespace
}  // namespace npdl::layers
