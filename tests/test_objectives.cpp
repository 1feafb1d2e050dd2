// Objectives: values and gradients worked out by hand, reverse mode against
// finite differences, the stable forms, npdl's names and bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl::model {
namespace {

Tensor f64(Shape shape, std::vector<double> values) {
  return Tensor::from_vector(std::move(shape), values, DType::Float64);
}

void expect_near(const Tensor& actual, const std::vector<double>& expected, double tol) {
  const std::vector<double> a = actual.to_vector();
  ASSERT_EQ(a.size(), expected.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], expected[i], tol) << "element " << i;
}

TEST(MeanSquaredError, ValueAndGradientByHand) {
  MeanSquaredError mse;
  const Tensor p = f64({2, 2}, {1, 2, 3, 4}), t = f64({2, 2}, {0, 2, 3, 1});
  // 0.5 * mean over 2 samples of (1 + 0) and (0 + 9) = 0.5 * 5 = 2.5
  EXPECT_DOUBLE_EQ(mse.forward(p, t), 2.5);
  // d/dp = (p - t) / N
  expect_near(mse.backward(p, t), {0.5, 0.0, 0.0, 1.5}, 1e-15);
}

TEST(BinaryCrossEntropy, ValueAndGradientByHand) {
  BinaryCrossEntropy bce;
  const Tensor p = f64({1, 2}, {0.8, 0.3}), t = f64({1, 2}, {1, 0});
  EXPECT_NEAR(bce.forward(p, t), -(std::log(0.8) + std::log(0.7)), 1e-9);
  // d/dp = -t / p + (1 - t) / (1 - p)
  expect_near(bce.backward(p, t), {-1.0 / 0.8, 1.0 / 0.7}, 1e-9);
}

TEST(BinaryCrossEntropy, PreActivationFormMatchesTheSigmoidOneAndStaysFinite) {
  BinaryCrossEntropy bce;
  const Tensor z = f64({2, 2}, {0.3, -1.2, 2.0, 0.0}), t = f64({2, 2}, {1, 0, 0, 1});
  NoGradGuard no_grad;
  const double via_sigmoid = bce.loss(ops::sigmoid(Var(z)), Var(t)).value().item();
  const double via_logits = bce.loss_from_pre_activation(Var(z), Var(t)).value().item();
  EXPECT_NEAR(via_logits, via_sigmoid, 1e-9);
  // Saturated logits: sigmoid(+-100) is exactly 1 or 0 in float64.
  const Tensor far = f64({1, 2}, {100.0, -100.0}), wrong = f64({1, 2}, {0, 1});
  EXPECT_NEAR(bce.loss_from_pre_activation(Var(far), Var(wrong)).value().item(), 200.0, 1e-9);
}

TEST(SoftmaxCategoricalCrossEntropy, ValueAndGradientByHand) {
  SoftmaxCategoricalCrossEntropy scce;
  const Tensor z = f64({1, 3}, {1, 2, 3}), t = f64({1, 3}, {0, 0, 1});
  const double norm = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(scce.forward(z, t), std::log(norm) - 3.0, 1e-12);
  // d/dz = softmax(z) - t
  expect_near(scce.backward(z, t),
              {std::exp(1.0) / norm, std::exp(2.0) / norm, std::exp(3.0) / norm - 1.0}, 1e-12);
}

TEST(SoftmaxCategoricalCrossEntropy, IsStableForLargeScores) {
  SoftmaxCategoricalCrossEntropy scce;
  const Tensor z = Tensor::from_vector({2, 2}, {1000, 0, 0, -1000}, DType::Float32);
  const Tensor t = Tensor::from_vector({2, 2}, {0, 1, 1, 0}, DType::Float32);
  // Rows lose 1000 and 0: a naive log(softmax) gives inf for the first.
  EXPECT_NEAR(scce.forward(z, t), 500.0, 1e-3);
  EXPECT_TRUE(math::all_finite(scce.backward(z, t)));
}

class EveryObjective : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryObjective, GradientMatchesFiniteDifferences) {
  const ObjectivePtr objective = get_objective(GetParam());
  // Outputs in (0, 1) suit every objective (probabilities for BCE and HeD).
  const Tensor p = Tensor::uniform({4, 3}, 5, DType::Float64, 0.1, 0.9);
  const Tensor t = Tensor::uniform({4, 3}, 6, DType::Float64, 0.0, 1.0);
  EXPECT_GRADCHECK([&](const std::vector<Var>& v) { return objective->loss(v[0], Var(t)); }, {p});
  if (!objective->fuses_with().empty()) {
    EXPECT_GRADCHECK(
        [&](const std::vector<Var>& v) {
          return objective->loss_from_pre_activation(v[0], Var(t));
        },
        {Tensor::randn({4, 3}, 7, DType::Float64, 0.0, 3.0)});
  }
}

INSTANTIATE_TEST_SUITE_P(Npdl, EveryObjective,
                         ::testing::Values("MeanSquaredError", "BinaryCrossEntropy",
                                           "SoftmaxCategoricalCrossEntropy", "HellingerDistance"));

TEST(Objectives, NpdlNamesAndAliases) {
  EXPECT_EQ(get_objective("mse")->name(), "MeanSquaredError");
  EXPECT_EQ(get_objective("MSE")->name(), "MeanSquaredError");
  EXPECT_EQ(get_objective("MeanSquaredError")->name(), "MeanSquaredError");
  EXPECT_EQ(get_objective("bce")->name(), "BinaryCrossEntropy");
  EXPECT_EQ(get_objective("binary_cross_entropy")->name(), "BinaryCrossEntropy");
  EXPECT_EQ(get_objective("scce")->name(), "SoftmaxCategoricalCrossEntropy");
  EXPECT_EQ(get_objective("SCCE")->name(), "SoftmaxCategoricalCrossEntropy");
  EXPECT_EQ(get_objective("SoftmaxCategoricalCrossEntropy")->name(),
            "SoftmaxCategoricalCrossEntropy");
  EXPECT_EQ(get_objective("HeD")->name(), "HellingerDistance");
}

TEST(Objectives, UnknownNameListsTheValidOnes) {
  try {
    get_objective("cross_entropy");
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'cross_entropy'"), std::string::npos) << message;
    for (const char* valid : {"mse", "bce", "scce", "SoftmaxCategoricalCrossEntropy"}) {
      EXPECT_NE(message.find(valid), std::string::npos) << message;
    }
  }
}

TEST(Objectives, ShapesThatDifferAreAShapeError) {
  MeanSquaredError mse;
  EXPECT_THROW(mse.forward(Tensor::zeros({3, 2}), Tensor::zeros({3, 3})), ShapeError);
  EXPECT_THROW(mse.forward(Tensor::scalar(1.0), Tensor::scalar(1.0)), ShapeError);
  SoftmaxCategoricalCrossEntropy scce;
  EXPECT_THROW(scce.forward(Tensor::zeros({3}), Tensor::zeros({3})), ShapeError);
  // MSE has no stable pre-activation form to take.
  EXPECT_THROW(mse.loss_from_pre_activation(Var(Tensor::zeros({2, 2})), Var(Tensor::zeros({2, 2}))),
               ValueError);
}

}  // namespace
}  // namespace npdl::model
