// Optimisers: the first steps of each against values worked out by hand
// from npdl's update rules, on one parameter [1, -2] with the gradient
// [0.5, -1] at every step; npdl's names and defaults; bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "npdl.hpp"

namespace npdl::model {
namespace {

const std::vector<double> kGrad{0.5, -1.0};

ParameterPtr start() {
  ParameterPtr p = make_parameter(Tensor::from_vector({2}, {1.0, -2.0}, DType::Float64), "w");
  p->grad = Tensor::from_vector({2}, kGrad, DType::Float64);
  return p;
}

/// Runs the optimiser and checks the parameter after each step.
void expect_steps(Optimizer& opt, const std::vector<std::vector<double>>& expected,
                  double tol = 1e-12) {
  ParameterPtr p = start();
  for (std::size_t s = 0; s < expected.size(); ++s) {
    opt.update({p});
    const std::vector<double> got = p->value.to_vector();
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], expected[s][i], tol)
          << opt.name() << " step " << s + 1 << " element " << i;
    }
  }
}

OptimizerOptions with_lr(double lr) {
  OptimizerOptions o;
  o.lr = lr;
  return o;
}

TEST(SGD, StepsByHand) {
  SGD sgd(with_lr(0.1));
  expect_steps(sgd, {{0.95, -1.9}, {0.9, -1.8}, {0.85, -1.7}});
}

TEST(SGD, ClipsEachGradientElement) {
  OptimizerOptions o = with_lr(0.1);
  o.clip = 0.6;  // -1 becomes -0.6
  SGD sgd(o);
  expect_steps(sgd, {{0.95, -1.94}, {0.9, -1.88}});
}

TEST(SGD, DecaysTheLearningRateWithinItsBounds) {
  OptimizerOptions o = with_lr(0.1);
  o.decay = 0.5;  // lr_t = 0.1 / (1 + 0.5 t): 0.1, 0.0666..., 0.05
  SGD sgd(o);
  const double lr2 = 0.1 / 1.5;
  expect_steps(sgd, {{0.95, -1.9},
                     {0.95 - 0.5 * lr2, -1.9 + lr2},
                     {0.95 - 0.5 * lr2 - 0.025, -1.9 + lr2 + 0.05}});
  o.lr_min = 0.08;  // 0.0666... is raised to 0.08
  SGD floored(o);
  expect_steps(floored, {{0.95, -1.9}, {0.91, -1.82}});
}

TEST(Momentum, StepsByHand) {
  // v1 = -0.1 g = [-0.05, 0.1]; v2 = 0.9 v1 - 0.1 g = [-0.095, 0.19];
  // v3 = 0.9 v2 - 0.1 g = [-0.1355, 0.271]; p += v each step.
  Momentum m(0.9, with_lr(0.1));
  expect_steps(m, {{0.95, -1.9}, {0.855, -1.71}, {0.7195, -1.439}});
}

TEST(NesterovMomentum, StepsByHand) {
  // p += 0.9 v - 0.1 g with the new v: 1 - 0.045 - 0.05, then
  // 0.905 - 0.0855 - 0.05.
  NesterovMomentum n(0.9, with_lr(0.1));
  expect_steps(n, {{0.905, -1.81}, {0.7695, -1.539}});
}

TEST(Adagrad, StepsByHand) {
  // c1 = [0.25, 1], c2 = [0.5, 2]; p -= 0.1 g / (sqrt(c) + 1e-6)
  Adagrad a(1e-6, with_lr(0.1));
  const double p1a = 1 - 0.05 / (0.5 + 1e-6), p1b = -2 + 0.1 / (1 + 1e-6);
  expect_steps(
      a, {{p1a, p1b}, {p1a - 0.05 / (std::sqrt(0.5) + 1e-6), p1b + 0.1 / (std::sqrt(2.0) + 1e-6)}});
}

TEST(RMSprop, StepsByHand) {
  // c1 = 0.1 g^2 = [0.025, 0.1]; c2 = 0.9 c1 + 0.1 g^2 = [0.0475, 0.19]
  RMSprop r(0.9, 1e-6, with_lr(0.1));
  const double p1a = 1 - 0.05 / std::sqrt(0.025 + 1e-6), p1b = -2 + 0.1 / std::sqrt(0.1 + 1e-6);
  expect_steps(
      r, {{p1a, p1b}, {p1a - 0.05 / std::sqrt(0.0475 + 1e-6), p1b + 0.1 / std::sqrt(0.19 + 1e-6)}});
}

TEST(Adadelta, StepsByHand) {
  // c1 = [0.025, 0.1]; u1 = g sqrt(0 + eps) / sqrt(c1 + eps); d1 = 0.1 u1^2
  // c2 = [0.0475, 0.19]; u2 = g sqrt(d1 + eps) / sqrt(c2 + eps)
  const double eps = 1e-6;
  Adadelta a(0.9, eps, with_lr(1.0));
  const double u1a = 0.5 * std::sqrt(eps) / std::sqrt(0.025 + eps);
  const double u1b = -1.0 * std::sqrt(eps) / std::sqrt(0.1 + eps);
  const double u2a = 0.5 * std::sqrt(0.1 * u1a * u1a + eps) / std::sqrt(0.0475 + eps);
  const double u2b = -1.0 * std::sqrt(0.1 * u1b * u1b + eps) / std::sqrt(0.19 + eps);
  expect_steps(a, {{1 - u1a, -2 - u1b}, {1 - u1a - u2a, -2 - u1b - u2b}});
}

TEST(Adam, StepsByHand) {
  // t = 1: m = 0.1 g, v = 0.001 g^2, a_1 = 0.1 sqrt(0.001) / 0.1
  // t = 2: m = 0.19 g, v = 0.001999 g^2, a_2 = 0.1 sqrt(1 - 0.999^2) / (1 - 0.81)
  Adam adam(0.9, 0.999, 1e-8, with_lr(0.1));
  auto step = [](double t, double m_scale, double v_scale, double g) {
    const double a = 0.1 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
    return a * (m_scale * g) / (std::sqrt(v_scale * g * g) + 1e-8);
  };
  const double p1a = 1 - step(1, 0.1, 0.001, 0.5), p1b = -2 - step(1, 0.1, 0.001, -1.0);
  expect_steps(adam, {{p1a, p1b},
                      {p1a - step(2, 0.19, 0.001999, 0.5), p1b - step(2, 0.19, 0.001999, -1.0)}});
  // Adam's first step is lr * sign(g), up to epsilon.
  EXPECT_NEAR(p1a, 0.9, 1e-6);
}

TEST(Adamax, StepsByHand) {
  // t = 1: m = 0.1 g, u = |g|, p -= 0.1 / 0.1 * m / (u + eps)
  // t = 2: m = 0.19 g, u = max(0.999 |g|, |g|) = |g|, p -= 0.1 / 0.19 * m / (u + eps)
  Adamax a(0.9, 0.999, 1e-8, with_lr(0.1));
  const double p1a = 1 - 0.05 / (0.5 + 1e-8), p1b = -2 + 0.1 / (1 + 1e-8);
  expect_steps(a,
               {{p1a, p1b},
                {p1a - 0.1 / 0.19 * 0.095 / (0.5 + 1e-8), p1b + 0.1 / 0.19 * 0.19 / (1 + 1e-8)}});
}

TEST(Optimizers, NpdlNamesAndDefaults) {
  for (const char* name : {"sgd", "SGD", "momentum", "Momentum", "nesterov_momentum",
                           "NesterovMomentum", "adagrad", "Adagrad", "rmsprop", "RMSprop",
                           "adadelta", "Adadelta", "adam", "Adam", "adamax", "Adamax"}) {
    const OptimizerPtr opt = get_optimizer(name);
    EXPECT_DOUBLE_EQ(opt->options().lr, 0.001) << name;
    EXPECT_DOUBLE_EQ(opt->options().clip, -1.0) << name;
    EXPECT_DOUBLE_EQ(opt->options().decay, 0.0) << name;
    EXPECT_DOUBLE_EQ(opt->options().lr_min, 0.0) << name;
    EXPECT_TRUE(std::isinf(opt->options().lr_max)) << name;
  }
  EXPECT_EQ(get_optimizer("nesterov_momentum")->name(), "NesterovMomentum");
}

TEST(Optimizers, UnknownNameListsTheValidOnes) {
  try {
    get_optimizer("lbfgs");
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'lbfgs'"), std::string::npos) << message;
    for (const char* valid : {"sgd", "Adam", "adamax", "NesterovMomentum", "RMSprop"}) {
      EXPECT_NE(message.find(valid), std::string::npos) << message;
    }
  }
}

TEST(Optimizers, BadHyperParametersAreValueErrors) {
  EXPECT_THROW(SGD(with_lr(-1.0)), ValueError);
  EXPECT_THROW(SGD(with_lr(std::nan(""))), ValueError);
  EXPECT_THROW(Momentum(1.5), ValueError);
  EXPECT_THROW(Adam(1.0), ValueError);
  EXPECT_THROW(Adam(0.9, 0.999, 0.0), ValueError);
  EXPECT_THROW(RMSprop(-0.1), ValueError);
  OptimizerOptions o;
  o.lr_min = 1.0;
  o.lr_max = 0.5;
  EXPECT_THROW(SGD{o}, ValueError);
}

TEST(Optimizers, MissingOrMisfitGradientsChangeNothing) {
  Adam adam;
  ParameterPtr p = start();
  p->grad = Tensor::zeros({3}, DType::Float64);
  EXPECT_THROW(adam.update({p}), ShapeError);
  p->grad = Tensor();
  EXPECT_THROW(adam.update({p}), ShapeError);
  EXPECT_EQ(p->value.to_vector(), (std::vector<double>{1.0, -2.0}));
  EXPECT_EQ(adam.iterations(), 0);
  // State made for one parameter list does not silently serve another.
  ParameterPtr q = start();
  adam.update({q});
  ParameterPtr other = make_parameter(Tensor::zeros({4}, DType::Float64), "other");
  other->grad = Tensor::zeros({4}, DType::Float64);
  const std::vector<double> before = q->value.to_vector();
  EXPECT_THROW(adam.update({other}), ShapeError);
  EXPECT_THROW(adam.update({q, other}), ShapeError);
  EXPECT_EQ(q->value.to_vector(), before);
}

TEST(Optimizers, DoNotWriteThroughSharedBuffers) {
  SGD sgd(with_lr(0.1));
  ParameterPtr p = start();
  const Tensor held = p->value;  // someone else holds the same buffer
  sgd.update({p});
  EXPECT_EQ(held.to_vector(), (std::vector<double>{1.0, -2.0}));
  EXPECT_EQ(p->value.to_vector(), (std::vector<double>{0.95, -1.9}));
}

}  // namespace
}  // namespace npdl::model
