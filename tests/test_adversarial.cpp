// Defects found by adversarial use, one regression test or more
// per item: gradient checks that passed on NaN, derivatives at kinks, weight
// tying, exp underflow, empty and undefined tensors, shape overflow,
// bounded readers and thread counts, state left unchanged on failure, and
// the errors users see.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"
#include "tests/temp_dir_test.hpp"

namespace npdl {
namespace {

using layers::BatchNormal;
using layers::Dense;
using layers::Linear;
constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::nan("");

Tensor f64(Shape shape, std::vector<double> v) {
  return Tensor::from_vector(std::move(shape), v, DType::Float64);
}

// ---------------------------------------------------------------- item 1

TEST(NonFiniteComparison, NaNOrInfinityOnOneSideIsAMismatch) {
  const auto cmp = [](std::vector<double> a, std::vector<double> e) {
    const Shape s{static_cast<std::int64_t>(a.size())};
    return compare_tensors("t", f64(s, a), f64(s, e), 1e-6, 1e-4);
  };
  EXPECT_FALSE(cmp({1}, {kNaN}).ok);
  EXPECT_FALSE(cmp({kNaN}, {1}).ok);
  EXPECT_FALSE(cmp({5, 2}, {kInf, 2}).ok);
  EXPECT_FALSE(cmp({-kInf}, {kInf}).ok);
  EXPECT_FALSE(cmp({kNaN}, {kInf}).ok);
  const TensorComparison c = cmp({1, 2}, {kNaN, 2});
  EXPECT_EQ(c.worst_index, 0);
  EXPECT_NE(c.describe().find("MISMATCH"), std::string::npos) << c.describe();
  EXPECT_NE(c.describe().find("non-finite"), std::string::npos) << c.describe();
}

TEST(NonFiniteComparison, TheSameNonFiniteValueInTheSamePlaceAgrees) {
  const Shape s{3};
  EXPECT_TRUE(
      compare_tensors("t", f64(s, {kNaN, kInf, -kInf}), f64(s, {kNaN, kInf, -kInf}), 1e-6, 1e-4)
          .ok);
  EXPECT_EQ(math::max_abs_diff(f64(s, {kNaN, kInf, 1}), f64(s, {kNaN, kInf, 1})).abs, 0.0);
  EXPECT_EQ(math::max_abs_diff(f64(s, {1, kInf, 1}), f64(s, {1, -kInf, 1})).abs, kInf);
}

TEST(NonFiniteComparison, AnAnalyticGradientOfNaNFailsTheCheck) {
  const GradCheckReport report = check_against_analytic(
      [](const std::vector<Var>& v) { return ops::square(v[0]); },
      [](const std::vector<Tensor>& in, const Tensor&) {
        return std::vector<Tensor>{Tensor::full(in[0].shape(), kNaN, DType::Float64)};
      },
      {Tensor::randn({3}, 1, DType::Float64)});
  EXPECT_FALSE(report.ok()) << report.describe();
}

// ---------------------------------------------------------------- item 2

// d/dx at x of the activation, by reverse mode and by one-sided differences.
struct Slopes {
  double reverse, left, right;
};
Slopes slopes_at(const std::string& activation, double x) {
  Graph g;
  const Var v = g.variable(Tensor::scalar(x, DType::Float64));
  layers::activate(layers::activation_kind(activation), v).backward();
  NoGradGuard no_grad;
  const auto f = [&](double at) {
    return layers::activate(layers::activation_kind(activation),
                            Var(Tensor::scalar(at, DType::Float64)))
        .value()
        .item();
  };
  const double h = 1e-7;
  return {v.grad().item(), (f(x) - f(x - h)) / h, (f(x + h) - f(x)) / h};
}

TEST(Kinks, SmoothActivationsHaveTheirTrueDerivativeAtZero) {
  EXPECT_NEAR(slopes_at("softplus", 0.0).reverse, 0.5, 1e-12);
  EXPECT_NEAR(slopes_at("elu", 0.0).reverse, 1.0, 1e-12);
  for (const char* name : {"sigmoid", "tanh", "softplus", "softsign", "elliot", "elu"}) {
    for (double x : {-3.0, -1e-3, 0.0, 1e-3, 2.5}) {
      const Slopes s = slopes_at(name, x);
      EXPECT_NEAR(s.reverse, 0.5 * (s.left + s.right), 1e-5) << name << " at " << x;
    }
  }
}

TEST(Kinks, AtAKinkTheDerivativeLiesBetweenTheOneSidedSlopes) {
  for (const char* name : {"relu", "leaky_relu"}) {
    const Slopes s = slopes_at(name, 0.0);
    EXPECT_GE(s.reverse, std::min(s.left, s.right) - 1e-9) << name;
    EXPECT_LE(s.reverse, std::max(s.left, s.right) + 1e-9) << name;
  }
  EXPECT_DOUBLE_EQ(slopes_at("leaky_relu", 0.0).reverse, 0.01);
}

TEST(Kinks, ActivationOpsPassGradcheckOnEitherSideOfZero) {
  const Tensor x = f64({6}, {-2.0, -0.7, -1e-3, 1e-3, 0.4, 3.0});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return ops::softplus(v[0]); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return ops::leaky_relu(v[0], 0.2); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return ops::elu(v[0], 0.5); }, {x});
}

TEST(Kinks, ObjectivesAtZeroLogitsMatchCentralDifferences) {
  const Tensor z = f64({2, 3}, {0, 0, 0, 0.5, -1, 0});
  const Tensor t = f64({2, 3}, {1, 0, 0, 0, 1, 0});
  for (const char* name : {"mse", "bce", "scce"}) {
    const auto objective = model::get_objective(name);
    EXPECT_GRADCHECK(
        [&](const std::vector<Var>& v) {
          return objective->fuses_with().empty()
                     ? objective->loss(v[0], Var(t))
                     : objective->loss_from_pre_activation(v[0], Var(t));
        },
        {z});
  }
}

TEST(Kinks, FusedSigmoidCrossEntropyStepsWithGradientOneHalfAtZero) {
  model::Model m;
  m.add<Dense>(1, 2, "zero", "sigmoid");
  model::OptimizerOptions o;
  o.lr = 1.0;
  m.compile(model::get_objective("bce"), std::make_shared<model::SGD>(o));
  m.train_on_batch(Tensor::from_vector({2, 2}, {1, 2, 3, 4}), Tensor::from_vector({2, 1}, {1, 1}));
  const auto& dense = dynamic_cast<const Dense&>(*m.layers()[0]);
  EXPECT_NEAR(dense.b()->value.item(), 0.5, 1e-6);
  EXPECT_NEAR(dense.W()->value.at(0), 1.0, 1e-6);
  EXPECT_NEAR(dense.W()->value.at(1), 1.5, 1e-6);
}

// ---------------------------------------------------------------- item 3

TEST(WeightTying, ALayerAddedTwiceIsSteppedOnceWithItsAccumulatedGradient) {
  model::Model m;
  auto shared = std::make_shared<Linear>(3, 3);
  m.add(shared);
  m.add(shared);
  model::OptimizerOptions o;
  o.lr = 0.1;
  m.compile(model::get_objective("mse"), std::make_shared<model::SGD>(o));
  ASSERT_EQ(m.params().size(), 2u);
  const Tensor W0 = shared->W()->value.clone();
  m.train_on_batch(Tensor::randn({4, 3}, 1), Tensor::randn({4, 3}, 2));
  const Tensor expected = math::sub(W0, math::scale(shared->W()->grad, 0.1));
  EXPECT_LT(math::max_abs_diff(shared->W()->value, expected).abs, 1e-7);
}

// ---------------------------------------------------------------- item 4

TEST(ExpUnderflow, ResultsDoNotDependOnAnElementsPosition) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const double deep = dtype == DType::Float32 ? -200.0 : -1000.0;
    for (double x : {deep, -kInf}) {
      const Tensor e = math::exp(Tensor::full({19}, x, dtype));
      for (std::int64_t i = 0; i < e.size(); ++i) EXPECT_EQ(e.at(i), 0.0) << i << " " << x;
    }
  }
  // Subnormal results agree with libm in every lane.
  std::vector<double> args;
  for (int i = 0; i < 37; ++i) args.push_back(-700.0 - 1.25 * i);
  const Tensor e = math::exp(Tensor::from_vector({37}, args, DType::Float64));
  for (int i = 0; i < 37; ++i) EXPECT_EQ(e.at(i), std::exp(args[i])) << args[i];
}

TEST(ExpUnderflow, SoftmaxAndLogOfExpOfMinusInfinity) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const Tensor p = math::softmax(Tensor::from_vector({1, 3}, {0, -kInf, -kInf}, dtype));
    EXPECT_EQ(p.to_vector(), (std::vector<double>{1, 0, 0}));
    const Tensor l = math::log(math::exp(Tensor::full({5}, -kInf, dtype)));
    for (double v : l.to_vector()) EXPECT_EQ(v, -kInf);
  }
}

// ---------------------------------------------------------------- item 5

TEST(EmptyTensors, FollowNumPysRules) {
  const Tensor s = math::sum(Tensor::zeros({0, 3}), {0});
  EXPECT_EQ(s.shape(), (Shape{3}));
  EXPECT_EQ(s.to_vector(), (std::vector<double>{0, 0, 0}));
  for (double v : math::mean(Tensor::zeros({0, 3}), {0}).to_vector()) EXPECT_TRUE(std::isnan(v));
  EXPECT_EQ(math::add(Tensor::ones({0}), Tensor::ones({1})).shape(), (Shape{0}));
  EXPECT_EQ(math::mul(Tensor::ones({2, 0}), Tensor::ones({2, 1})).shape(), (Shape{2, 0}));
  EXPECT_EQ(math::unbroadcast(Tensor::ones({0, 3}), {1, 3}).to_vector(),
            (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(math::matmul(Tensor::ones({2, 0}), Tensor::ones({0, 3})).to_vector(),
            std::vector<double>(6, 0.0));
  EXPECT_EQ(math::transpose(Tensor::ones({0, 3})).shape(), (Shape{3, 0}));
  EXPECT_EQ(math::softmax(Tensor::ones({0, 3})).shape(), (Shape{0, 3}));
  EXPECT_EQ(math::exp(Tensor::ones({0})).shape(), (Shape{0}));
  EXPECT_EQ(math::broadcast_to(Tensor::ones({1, 3}), {0, 3}).shape(), (Shape{0, 3}));
}

TEST(EmptyTensors, LayersObjectivesAndInitialisersTakeZeroRows) {
  Linear linear(3, 4);
  const Tensor y = linear.forward(Tensor::zeros({0, 4}));
  EXPECT_EQ(y.shape(), (Shape{0, 3}));
  EXPECT_EQ(linear.backward(Tensor::zeros({0, 3})).shape(), (Shape{0, 4}));
  EXPECT_EQ(linear.grads()[0].to_vector(), std::vector<double>(12, 0.0));
  const Tensor g = model::MeanSquaredError().backward(Tensor::zeros({0, 2}), Tensor::zeros({0, 2}));
  EXPECT_EQ(g.shape(), (Shape{0, 2}));
  EXPECT_EQ(initializers::Orthogonal()({0, 3}, DType::Float32).shape(), (Shape{0, 3}));
}

TEST(EmptyTensors, BatchNormalWithNothingToNormaliseIsAShapeError) {
  BatchNormal bn;
  EXPECT_THROW(bn.forward(Tensor::zeros({4, 0})), ShapeError);
  EXPECT_THROW(bn.forward(Tensor::zeros({0, 3})), ShapeError);
  EXPECT_FALSE(bn.connected());
}

// ---------------------------------------------------------------- item 6

TEST(UndefinedTensors, AreATypedErrorWhereverTheyEnter) {
  EXPECT_THROW(math::add(Tensor(), Tensor()), ValueError);
  EXPECT_THROW(Tensor().astype(DType::Float64), ValueError);
  EXPECT_THROW(Tensor().clone(), ValueError);
  EXPECT_THROW(Tensor().reshape({1}), ValueError);
  EXPECT_THROW(ops::sum(Var()), ValueError);
  Graph g;
  EXPECT_THROW(g.variable(Tensor()), ValueError);
  EXPECT_THROW(g.input(Tensor()), ValueError);
  EXPECT_EQ(g.size(), 0u);
  // The realistic case: the gradient of a leaf that no gradient reached.
  const Var used = g.variable(Tensor::ones({2}));
  const Var unused = g.variable(Tensor::ones({2}));
  ops::sum(used).backward();
  EXPECT_FALSE(unused.grad().defined());
  EXPECT_THROW(math::scale(unused.grad(), 2.0), ValueError);
}

// ---------------------------------------------------------------- item 7

TEST(ShapeOverflow, ElementCountsAndByteSizesAreChecked) {
  EXPECT_THROW(Tensor::zeros({std::int64_t{1} << 61}, DType::Float64), ShapeError);
  EXPECT_THROW(Tensor::zeros({std::int64_t{1} << 62, std::int64_t{1} << 62}), ShapeError);
  EXPECT_THROW(Tensor::zeros({0, std::int64_t{1} << 62, std::int64_t{1} << 62}), ShapeError);
  EXPECT_THROW(numel({3, -1}), ShapeError);
  try {
    Tensor::zeros({std::int64_t{1} << 40, std::int64_t{1} << 40});
    FAIL() << "no ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("(1099511627776, 1099511627776)"), std::string::npos)
        << e.what();
  }
}

TEST(ShapeOverflow, ATensorTooLargeToAllocateIsAMemoryError) {
  // 2^60 bytes is a valid size that no machine has.
  EXPECT_THROW(Tensor::empty({std::int64_t{1} << 57}, DType::Float64), MemoryError);
}

// ---------------------------------------------------------------- item 8

class BoundedReaders : public testing::TempDirTest {};

TEST_F(BoundedReaders, AnIdxHeaderClaimingGigabytesOnATinyFileIsTruncatedNotAllocated) {
  const std::string file = path("lie.gz");
  const unsigned char header[] = {0, 0, 0x08, 2, 0, 1, 0, 0, 0, 1, 0, 0, 7, 7, 7};
  gzFile gz = gzopen(file.c_str(), "wb");
  gzwrite(gz, header, sizeof header);
  gzclose(gz);
  try {
    io::read_idx(file);
    FAIL() << "no IOError";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST_F(BoundedReaders, AZeroSizeDoesNotHideOverflowingOtherSizes) {
  // Found by the idx_reader fuzzer: 0 x 3004297121 x 4236181504 images.
  const std::string file = path("zero.gz");
  const unsigned char header[] = {0,    0,    0x08, 3,    0,    0,    0, 0,
                                  0xb3, 0x11, 0xef, 0xa1, 0xfc, 0x7f, 0, 0};
  gzFile gz = gzopen(file.c_str(), "wb");
  gzwrite(gz, header, sizeof header);
  gzclose(gz);
  EXPECT_THROW(io::read_idx_images(file), IOError);
}

// ---------------------------------------------------------------- item 9

TEST(ThreadCounts, AreBoundedAndParsedStrictly) {
  const int limit = 4 * std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  EXPECT_THROW(set_num_threads(200000), ValueError);
  EXPECT_THROW(set_num_threads(limit + 1), ValueError);
  EXPECT_THROW(set_num_threads(0), ValueError);
  EXPECT_EQ(get_num_threads(), 1);
  set_num_threads(limit);
  EXPECT_EQ(get_num_threads(), limit);
  set_num_threads(1);
}

// The variable is read once per process, so each value runs in a fresh one.
TEST(ThreadCountsDeathTest, TheEnvironmentVariableIsParsedStrictly) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const char* bad : {"3junk", "4294967298", "99999999999", "0", "-2", "2.5"}) {
    ::setenv("NPDL_NUM_THREADS", bad, 1);
    EXPECT_EXIT(
        {
          try {
            get_num_threads();
          } catch (const ValueError& e) {
            std::fprintf(stderr, "%s\n", e.what());
            std::exit(7);
          }
          std::exit(0);
        },
        ::testing::ExitedWithCode(7), "NPDL_NUM_THREADS")
        << bad;
  }
  ::unsetenv("NPDL_NUM_THREADS");
}

// ---------------------------------------------------------------- item 10

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && math::max_abs_diff(a, b).abs == 0.0;
}

TEST(NoChangeOnFailure, AFailedTrainingStepLeavesEveryLayersDtypeAndValues) {
  model::Model m;
  auto& linear = m.add<Linear>(3, 4);
  auto& bn = m.add<BatchNormal>();
  m.compile("mse", "sgd");
  const Tensor W = linear.W()->value;
  EXPECT_THROW(m.train_on_batch(Tensor::randn({1, 4}, 1, DType::Float64),
                                Tensor::randn({1, 3}, 2, DType::Float64)),
               ValueError);
  EXPECT_TRUE(same_bits(linear.W()->value, W));
  EXPECT_EQ(bn.gamma()->value.dtype(), DType::Float32);
  // Float32 batches still train.
  EXPECT_NO_THROW(m.train_on_batch(Tensor::randn({5, 4}, 3), Tensor::randn({5, 3}, 4)));
}

TEST(NoChangeOnFailure, FusedBatchNormalKeepsItsDtypeWhenTheBatchHoldsNaN) {
  BatchNormal bn;
  bn.connect_to(Shape{3});
  Tensor x = Tensor::randn({4, 3}, 5, DType::Float64);
  static_cast<double*>(x.raw_data())[4] = kNaN;
  EXPECT_THROW(bn.forward(x), ValueError);
  EXPECT_EQ(bn.gamma()->value.dtype(), DType::Float32);
  EXPECT_EQ(bn.beta()->value.dtype(), DType::Float32);
  EXPECT_EQ(bn.running_mean().dtype(), DType::Float32);
  EXPECT_EQ(bn.running_var().dtype(), DType::Float32);
}

// ---------------------------------------------------------------- item 11

class LoadErrors : public testing::TempDirTest {};

TEST_F(LoadErrors, LoadingADirectoryIsAnIOError) {
  model::Model m;
  m.add<Dense>(2, 3);
  m.build({3});
  EXPECT_THROW(m.load(dir_.string()), IOError);
}

// ---------------------------------------------------------------- item 12

TEST(StatisticsOverflow, BothModesSayTheVarianceOverflowed) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const double big = dtype == DType::Float32 ? 3e37 : 1e300;
    const Tensor x =
        Tensor::from_vector({4, 2}, {big, -big, -big, big, big, big, -big, -big}, dtype);
    for (const char* mode : {"fused", "autodiff", "checked"}) {
      BatchNormal bn;
      bn.set_backward_mode(layers::parse_backward_mode(mode));
      try {
        bn.forward(x);
        FAIL() << mode << " accepted a batch whose variance overflows";
      } catch (const ValueError& e) {
        EXPECT_NE(std::string(e.what()).find("variance"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("overflowed"), std::string::npos) << e.what();
      }
      EXPECT_FALSE(bn.connected()) << mode;
    }
  }
}

TEST(StatisticsOverflow, NaNInTheInputIsStillNamedAsSuch) {
  BatchNormal bn;
  try {
    bn.forward(Tensor::from_vector({2, 1}, {1.0, kNaN}));
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("NaN or Inf"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- item 13

TEST(Reshape, OnlyOneMinusOneIsInferredAndOtherNegativeSizesFail) {
  const Tensor t = Tensor::ones({2, 3});
  EXPECT_THROW(t.reshape({-2, -3}), ShapeError);
  EXPECT_THROW(t.reshape({-1, -1}), ShapeError);
  EXPECT_THROW(t.reshape({-1, 4}), ShapeError);
  EXPECT_EQ(t.reshape({-1, 2}).shape(), (Shape{3, 2}));
  EXPECT_EQ(ops::reshape(Var(t), {6, -1}).shape(), (Shape{6, 1}));
  EXPECT_THROW(ops::reshape(Var(t), {-2, -3}), ShapeError);
}

// ---------------------------------------------------------------- item 14

TEST(Messages, NameWhatWentWrong) {
  const auto message_of = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  Linear linear(3, 2);
  {
    NoGradGuard no_grad;
    linear.forward(Tensor::ones({4, 2}));
  }
  EXPECT_NE(message_of([&] {
              linear.backward(Tensor::ones({4, 3}));
            }).find("no graph was recorded"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              linear.forward(Tensor::ones({4, 5}));
            }).find("(N, 2)"),
            std::string::npos);

  model::Model m;
  m.add<Dense>(2, 3, "glorot_uniform", "softmax");
  m.compile("scce", "sgd");
  const Tensor none = Tensor::zeros({0, 3}), none_y = Tensor::zeros({0, 2});
  model::FitOptions quiet;
  quiet.log = nullptr;
  const std::string fit = message_of([&] { m.fit(none, none_y, quiet); });
  EXPECT_NE(fit.find("no samples"), std::string::npos) << fit;
  EXPECT_EQ(fit.find("validation"), std::string::npos) << fit;
  EXPECT_NE(message_of([&] { m.evaluate(none, none_y); }).find("no samples"), std::string::npos);
  const std::string scalar = message_of([&] { m.predict(Tensor::scalar(1)); });
  EXPECT_NE(scalar.find("scalar"), std::string::npos) << scalar;
}

// ---------------------------------------------------------------- item 15

TEST(SecondBackward, IsAGraphErrorForEveryLayerIncludingIdentities) {
  layers::Dropout dropout(0.0);
  layers::Activation linear("linear");
  for (layers::Layer* layer : std::initializer_list<layers::Layer*>{&dropout, &linear}) {
    const Tensor x = Tensor::randn({3, 2}, 1);
    const Tensor y = layer->forward(x);
    EXPECT_FALSE(y.same_storage(x)) << layer->name();
    layer->backward(Tensor::ones({3, 2}));
    EXPECT_THROW(layer->backward(Tensor::ones({3, 2})), GraphError) << layer->name();
    layer->forward(x);
    EXPECT_NO_THROW(layer->backward(Tensor::ones({3, 2}))) << layer->name();
  }
}

}  // namespace
}  // namespace npdl
