// The gradient check itself: that it flags a wrong VJP and compares with an
// analytic gradient. Each primitive's VJP is checked from its catalogue
// entry (tests/test_primitives.cpp).
#include <gtest/gtest.h>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl {
namespace {

Tensor rnd(Shape s, std::uint64_t seed) {
  return Tensor::randn(std::move(s), seed, DType::Float64);
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
