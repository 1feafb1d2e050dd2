// Batch normalisation written by hand from primitives (the
// training forward): reverse mode through it must equal the fused formula
//   dx = (gamma * invstd / M) * (M dy - sum(dy) - xhat * sum(dy * xhat)).
#include <gtest/gtest.h>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl {
namespace {

Var batchnorm_by_hand(const Var& x, const Var& gamma, const Var& beta, double eps) {
  const Var mean = ops::mean(x, {0}, true);
  const Var xmu = x - mean;
  const Var var = ops::mean(xmu * xmu, {0}, true);
  const Var invstd = ops::rsqrt(var + eps);
  const Var xhat = xmu * invstd;
  return gamma * xhat + beta;
}

TEST(BatchNormByHand, ReverseModeEqualsTheFusedFormula) {
  const std::int64_t M = 6, D = 4;
  const double eps = 1e-5;
  const Tensor x = Tensor::randn({M, D}, 1, DType::Float64, 3.0, 2.0);
  const Tensor gamma = Tensor::randn({D}, 2, DType::Float64);
  const Tensor beta = Tensor::randn({D}, 3, DType::Float64);
  auto f = [eps](const std::vector<Var>& v) { return batchnorm_by_hand(v[0], v[1], v[2], eps); };
  auto fused = [&](const std::vector<Tensor>& in, const Tensor& dy) {
    namespace m = math;
    const Tensor mean = m::mean(in[0], {0}, true);
    const Tensor xmu = m::sub(in[0], mean);
    const Tensor invstd = m::rsqrt(m::add_scalar(m::mean(m::square(xmu), {0}, true), eps));
    const Tensor xhat = m::mul(xmu, invstd);
    const Tensor sum_dy = m::sum(dy, {0}, true);
    const Tensor sum_dy_xhat = m::sum(m::mul(dy, xhat), {0}, true);
    const Tensor inner = m::sub(m::sub(m::scale(dy, double(M)), sum_dy), m::mul(xhat, sum_dy_xhat));
    const Tensor dx = m::mul(m::scale(m::mul(in[1], invstd), 1.0 / double(M)), inner);
    return std::vector<Tensor>{dx, sum_dy_xhat.reshape({D}), sum_dy.reshape({D})};
  };
  GradCheckOptions tight = tolerances_for(DType::Float64);
  EXPECT_GRADIENTS_MATCH(
      check_against_analytic(f, fused, {x, gamma, beta}, tight, {"x", "gamma", "beta"}));
  EXPECT_GRADCHECK(f, {x, gamma, beta});
}

}  // namespace
}  // namespace npdl
