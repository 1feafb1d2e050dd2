// Every primitive's VJP against float64 central differences, over several
// shapes, broadcasting included (one shared gradient-check assertion).
#include <gtest/gtest.h>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl {
namespace {

Tensor rnd(Shape s, std::uint64_t seed) {
  return Tensor::randn(std::move(s), seed, DType::Float64);
}
// Positive inputs for log, sqrt, rsqrt, div's denominator.
Tensor positive(Shape s, std::uint64_t seed) {
  return Tensor::uniform(std::move(s), seed, DType::Float64, 0.5, 2.0);
}

struct BinaryCase {
  Shape a, b;
};
class BinaryOps : public ::testing::TestWithParam<BinaryCase> {};

TEST_P(BinaryOps, VjpsMatchFiniteDifferences) {
  const auto& c = GetParam();
  const Tensor a = rnd(c.a, 1), b = rnd(c.b, 2), bp = positive(c.b, 3);
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return v[0] + v[1]; }, {a, b});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return v[0] - v[1]; }, {a, b});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return v[0] * v[1]; }, {a, b});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return v[0] / v[1]; }, {a, bp});
}

INSTANTIATE_TEST_SUITE_P(Shapes, BinaryOps,
                         ::testing::Values(BinaryCase{{3}, {3}}, BinaryCase{{2, 3}, {2, 3}},
                                           BinaryCase{{2, 3}, {3}}, BinaryCase{{2, 3}, {2, 1}},
                                           BinaryCase{{4, 1, 3}, {2, 1}}, BinaryCase{{2, 3, 4}, {}},
                                           BinaryCase{{1, 3, 1}, {2, 1, 4}}),
                         [](const auto& info) {
                           auto name = [](const Shape& s) {
                             std::string n = "s";
                             for (auto d : s) n += "_" + std::to_string(d);
                             return n;
                           };
                           return name(info.param.a) + "_with_" + name(info.param.b);
                         });

class UnaryOps : public ::testing::TestWithParam<Shape> {};

TEST_P(UnaryOps, VjpsMatchFiniteDifferences) {
  const Shape s = GetParam();
  const Tensor x = rnd(s, 4), p = positive(s, 5);
  using Fn = Var (*)(const Var&);
  for (Fn f :
       {static_cast<Fn>(ops::neg), static_cast<Fn>(ops::square), static_cast<Fn>(ops::exp),
        static_cast<Fn>(ops::sigmoid), static_cast<Fn>(ops::tanh), static_cast<Fn>(ops::relu)}) {
    EXPECT_GRADCHECK([f](const std::vector<Var>& v) { return f(v[0]); }, {x});
  }
  for (Fn f :
       {static_cast<Fn>(ops::sqrt), static_cast<Fn>(ops::rsqrt), static_cast<Fn>(ops::log)}) {
    EXPECT_GRADCHECK([f](const std::vector<Var>& v) { return f(v[0]); }, {p});
  }
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return v[0] * 3.0 + 2.0; }, {x});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return 1.0 - v[0] / 4.0; }, {x});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return 2.0 / v[0]; }, {p});
}

INSTANTIATE_TEST_SUITE_P(Shapes, UnaryOps,
                         ::testing::Values(Shape{}, Shape{5}, Shape{2, 3}, Shape{2, 1, 3, 2}),
                         [](const auto& info) {
                           std::string n = "rank" + std::to_string(info.param.size());
                           for (auto d : info.param) n += "_" + std::to_string(d);
                           return n;
                         });

TEST(ReductionOps, SumAndMeanOverAnyAxes) {
  const Tensor x = rnd({2, 3, 4}, 6);
  for (const Axes& axes : {Axes{}, Axes{0}, Axes{1}, Axes{2}, Axes{0, 2}, Axes{-1, 0}}) {
    for (bool keep : {false, true}) {
      EXPECT_GRADCHECK([&](const std::vector<Var>& v) { return ops::sum(v[0], axes, keep); }, {x});
      EXPECT_GRADCHECK([&](const std::vector<Var>& v) { return ops::mean(v[0], axes, keep); }, {x});
    }
  }
}

TEST(ShapeOps, ReshapeBroadcastTranspose) {
  const Tensor x = rnd({2, 3, 4}, 7);
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return ops::reshape(v[0], {4, 6}); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return ops::transpose(v[0]); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return ops::transpose(v[0], {1, 2, 0}); }, {x});
  const Tensor b = rnd({3, 1}, 8);
  EXPECT_GRADCHECK(
      [](const std::vector<Var>& v) {
        return ops::broadcast_to(v[0], {2, 3, 4});
      },
      {b});
}

TEST(LinalgOps, Matmul) {
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return ops::matmul(v[0], v[1]); },
                   {rnd({3, 4}, 9), rnd({4, 2}, 10)});
  EXPECT_GRADCHECK([](const std::vector<Var>& v) { return ops::matmul(v[0], v[1]); },
                   {rnd({1, 5}, 11), rnd({5, 1}, 12)});
}

TEST(ActivationOps, SoftmaxAndLogSoftmaxAlongEveryAxis) {
  const Tensor x = rnd({2, 3, 4}, 13);
  for (int axis : {0, 1, 2, -1}) {
    EXPECT_GRADCHECK([axis](const std::vector<Var>& v) { return ops::softmax(v[0], axis); }, {x});
    EXPECT_GRADCHECK([axis](const std::vector<Var>& v) { return ops::log_softmax(v[0], axis); },
                     {x});
  }
}

TEST(GradCheck, FlagsAWrongVjp) {
  // A deliberately wrong op: forward x^2, VJP claims 3 x g.
  static const OpInfo wrong{"wrong_square", "a^2", "ga = 3 a g (wrong)", false, 0b1};
  auto f = [](const std::vector<Var>& v) {
    return v[0].graph()->record(wrong, {&v[0]}, math::square(v[0].value()), {},
                                [](const VjpArgs& c) -> Vars {
                                  return {ops::mul_scalar(ops::mul(c.grad, c.input(0)), 3.0)};
                                });
  };
  const GradCheckReport report = gradcheck(f, {rnd({4}, 14)});
  EXPECT_FALSE(report.ok());
  EXPECT_NE(report.describe().find("MISMATCH"), std::string::npos);
  EXPECT_NE(report.describe().find("worst element"), std::string::npos);
}

TEST(GradCheck, ComparesReverseModeWithAnAnalyticGradient) {
  auto f = [](const std::vector<Var>& v) { return ops::sum(v[0] * v[0], {1}); };
  auto right = [](const std::vector<Tensor>& x, const Tensor& u) {
    return std::vector<Tensor>{math::mul(math::scale(x[0], 2.0), u.reshape({2, 1}))};
  };
  auto wrong = [](const std::vector<Tensor>& x, const Tensor& u) {
    return std::vector<Tensor>{math::mul(x[0], u.reshape({2, 1}))};
  };
  const Tensor x = rnd({2, 3}, 15);
  EXPECT_GRADIENTS_MATCH(check_against_analytic(f, right, {x}));
  EXPECT_FALSE(check_against_analytic(f, wrong, {x}).ok());
}

}  // namespace
}  // namespace npdl
