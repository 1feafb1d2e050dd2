// The hand-derived double backward of batch normalisation (Note [Batch-norm
// double backward] in layers/batch_norm/double_backward.cpp) against float64
// central differences of the first backward itself:
//   L2(x, gamma, dy) = <ggx, dx> + <gggamma, dgamma> + <ggbeta, dbeta>,
//   (dx, dgamma, dbeta) = batchnorm_backward_train(dy, x, gamma, stats(x)).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "layers/batch_norm/double_backward.hpp"
#include "npdl.hpp"

namespace npdl::layers {
namespace {

struct Upstream {
  Tensor ggx, gggamma, ggbeta;  // undefined: zero
};

struct Problem {
  BatchNormLayout L;
  double eps = 1e-5;
  Tensor x, gamma, dy;
  Upstream up;
};

// Random float64 inputs for x of `shape`, normalised along `axis`: x =
// offset + N(0, spread), gamma and every upstream gradient random (never
// ones), all three upstream gradients defined.
Problem make_problem(const Shape& shape, int axis, std::uint64_t seed, double offset = 0.5,
                     double spread = 1.5) {
  Problem p;
  p.L = batchnorm_layout(shape, axis);
  const DType f64 = DType::Float64;
  p.x = Tensor::randn(shape, seed, f64, offset, spread);
  p.gamma = Tensor::randn(p.L.param_shape, seed + 1, f64, 0.7, 1.0);
  p.dy = Tensor::randn(shape, seed + 2, f64, 0.3, 1.0);
  p.up.ggx = Tensor::randn(shape, seed + 3, f64, -0.2, 1.0);
  p.up.gggamma = Tensor::randn(p.L.param_shape, seed + 4, f64, 0.4, 1.0);
  p.up.ggbeta = Tensor::randn(p.L.param_shape, seed + 5, f64, -0.6, 1.0);
  return p;
}

double dot(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return 0.0;
  const std::vector<double> u = a.to_vector(), v = b.to_vector();
  double s = 0.0;
  for (std::size_t i = 0; i < u.size(); ++i) s += u[i] * v[i];
  return s;
}

// L2 through the library's own training forward (for the statistics) and
// first backward, in float64.
double second_order_loss(const Problem& p, const Tensor& x, const Tensor& gamma, const Tensor& dy) {
  BatchNormStats stats;
  const Tensor beta = Tensor::zeros(p.L.param_shape, DType::Float64);
  batchnorm_forward_train(x, gamma, beta, p.L, p.eps, stats);
  const BatchNormGrads g = batchnorm_backward_train(dy, x, gamma, stats, p.L);
  return dot(p.up.ggx, g.dx) + dot(p.up.gggamma, g.dgamma) + dot(p.up.ggbeta, g.dbeta);
}

// Central differences of L2 along every element of input `which` (0: x,
// 1: gamma, 2: dy), dividing by the step actually taken ((v + h) - (v - h)
// as rounded, which matters next to a large offset).
Tensor numeric_gradient(const Problem& p, int which, double step = 1e-6) {
  Tensor in[3] = {p.x.clone(), p.gamma.clone(), p.dy.clone()};
  Tensor grad(in[which].shape(), DType::Float64);
  double* v = in[which].data<double>();
  for (std::int64_t i = 0; i < in[which].size(); ++i) {
    const double keep = v[i];
    const double hi = keep + step, lo = keep - step;
    v[i] = hi;
    const double f_hi = second_order_loss(p, in[0], in[1], in[2]);
    v[i] = lo;
    const double f_lo = second_order_loss(p, in[0], in[1], in[2]);
    v[i] = keep;
    grad.data<double>()[i] = (f_hi - f_lo) / (hi - lo);
  }
  return grad;
}

BatchNormDoubleGrads analytic(const Problem& p, DType dtype = DType::Float64) {
  auto as = [dtype](const Tensor& t) { return t.defined() ? t.astype(dtype) : Tensor(); };
  const Tensor x = as(p.x), gamma = as(p.gamma);
  BatchNormStats stats;
  batchnorm_forward_train(x, gamma, Tensor::zeros(p.L.param_shape, dtype), p.L, p.eps, stats);
  return batchnorm_double_backward_train(as(p.up.ggx), as(p.up.gggamma), as(p.up.ggbeta), as(p.dy),
                                         x, gamma, stats, p.L);
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

// `actual` (undefined: zero) against `expected`, element by element within
// max(tol * max|expected|, atol) + tol * |expected|; the failure names the
// worst element. Records the largest error over max|expected| (see
// --gtest_output=xml).
void expect_close(const std::string& name, const Tensor& actual, const Tensor& expected, double tol,
                  double atol = 0.0) {
  const Tensor a = actual.defined() ? actual : Tensor::zeros(expected.shape(), DType::Float64);
  const double scale = std::max(max_abs(expected), 1e-300);
  const TensorComparison c = compare_tensors(name, a, expected, std::max(tol * scale, atol), tol);
  static int comparisons = 0;  // one property per comparison (a key is kept once per test)
  std::ostringstream err;
  err << c.max_abs_error / scale;
  ::testing::Test::RecordProperty(name + "_error_over_scale_" + std::to_string(++comparisons),
                                  err.str());
  EXPECT_TRUE(c.ok) << c.describe() << " (scale max|expected| = " << scale << ")";
}

// Every gradient of the double backward against central differences.
void expect_matches_finite_differences(const Problem& p, double tol = 1e-6, double atol = 0.0) {
  const BatchNormDoubleGrads g = analytic(p);
  expect_close("dx", g.dx, numeric_gradient(p, 0), tol, atol);
  expect_close("dgamma", g.dgamma, numeric_gradient(p, 1), tol, atol);
  expect_close("ddy", g.ddy, numeric_gradient(p, 2), tol, atol);
}

TEST(BatchNormDoubleBackward, Axis0OnND) {
  expect_matches_finite_differences(make_problem({5, 4}, 0, 10));
}

TEST(BatchNormDoubleBackward, Axis1OnNCHW) {
  expect_matches_finite_differences(make_problem({3, 2, 3, 2}, 1, 20));
}

TEST(BatchNormDoubleBackward, Axis0OnNCHWEveryPositionAFeature) {
  expect_matches_finite_differences(make_problem({4, 2, 2, 3}, 0, 25));
}

TEST(BatchNormDoubleBackward, LastAxisOnRank3) {
  expect_matches_finite_differences(make_problem({3, 4, 2}, -1, 30));
}

TEST(BatchNormDoubleBackward, MiddleAxisOnRank3) {
  expect_matches_finite_differences(make_problem({2, 3, 4}, 1, 35));
}

TEST(BatchNormDoubleBackward, TwoElementsPerFeature) {
  // With M = 2, xhat = +-sqrt(var / (var + eps)): the first backward's dx
  // and dgamma's dependence on x vanish as eps -> 0. With eps comparable to
  // the variance they do not.
  for (const auto& [shape, axis] : {std::pair<Shape, int>{{2, 3}, 0}, {{1, 3, 2}, 1}}) {
    Problem p = make_problem(shape, axis, 40);
    p.eps = 0.5;
    expect_matches_finite_differences(p);
    // With a small eps, dx and dgamma are O(eps) = 1e-5, next to central
    // differences' rounding noise of about 1e-16 * |L2| / step = 1e-10.
    p.eps = 1e-5;
    expect_matches_finite_differences(p, 1e-6, 1e-8);
  }
}

TEST(BatchNormDoubleBackward, OneFeature) {
  expect_matches_finite_differences(make_problem({6, 1}, 1, 50));
  expect_matches_finite_differences(make_problem({3, 1, 2, 2}, 1, 55));
}

TEST(BatchNormDoubleBackward, AxesOfSizeOne) {
  // Size-1 axes after the feature axis make inner = 1; before it, outer = 1.
  expect_matches_finite_differences(make_problem({4, 3, 1, 1}, 1, 56));
  expect_matches_finite_differences(make_problem({4, 3, 1}, 1, 57));
  expect_matches_finite_differences(make_problem({3, 2, 3, 1}, 1, 58));
  expect_matches_finite_differences(make_problem({3, 2, 1, 3}, 2, 59));
  expect_matches_finite_differences(make_problem({1, 2, 3, 2}, 1, 54));
}

TEST(BatchNormDoubleBackward, LargeOffset) {
  // x = 1e3 + N(0, 0.5): the sums over xhat must not cancel.
  expect_matches_finite_differences(make_problem({6, 3}, 0, 60, 1e3, 0.5));
  expect_matches_finite_differences(make_problem({3, 2, 2, 2}, 1, 65, 1e3, 0.5));
}

TEST(BatchNormDoubleBackward, EpsilonComparableToTheVariance) {
  // sum(xhat^2) is far from M here: a derivation that assumed it would fail.
  Problem p = make_problem({5, 3}, 0, 70, 0.0, 0.05);
  p.eps = 1e-2;
  expect_matches_finite_differences(p);
}

// Each upstream gradient undefined alone: zero, and the gradients it alone
// would feed are not allocated.
TEST(BatchNormDoubleBackward, UndefinedGgx) {
  Problem p = make_problem({3, 2, 3, 2}, 1, 80);
  p.up.ggx = Tensor();
  expect_matches_finite_differences(p);
  EXPECT_FALSE(analytic(p).dgamma.defined());
  Problem rows = make_problem({5, 4}, 0, 81);
  rows.up.ggx = Tensor();
  expect_matches_finite_differences(rows);
}

TEST(BatchNormDoubleBackward, UndefinedGggamma) {
  Problem p = make_problem({3, 2, 3, 2}, 1, 90);
  p.up.gggamma = Tensor();
  expect_matches_finite_differences(p);
  Problem rows = make_problem({5, 4}, 0, 91);
  rows.up.gggamma = Tensor();
  expect_matches_finite_differences(rows);
}

TEST(BatchNormDoubleBackward, UndefinedGgbeta) {
  Problem p = make_problem({3, 2, 3, 2}, 1, 100);
  p.up.ggbeta = Tensor();
  expect_matches_finite_differences(p);
  Problem rows = make_problem({5, 4}, 0, 101);
  rows.up.ggbeta = Tensor();
  expect_matches_finite_differences(rows);
}

TEST(BatchNormDoubleBackward, OnlyGgbetaDefined) {
  // dL2/ddy = ggbeta broadcast; dx and dgamma are zero and not allocated.
  Problem p = make_problem({3, 2, 3, 2}, 1, 110);
  p.up.ggx = Tensor();
  p.up.gggamma = Tensor();
  expect_matches_finite_differences(p);
  const BatchNormDoubleGrads g = analytic(p);
  EXPECT_FALSE(g.dx.defined());
  EXPECT_FALSE(g.dgamma.defined());
}

// float32 against float64 on the same (float32-representable) values.
void expect_float32_matches_float64(Problem p, double tol = 1e-5) {
  for (Tensor* t : {&p.x, &p.gamma, &p.dy, &p.up.ggx, &p.up.gggamma, &p.up.ggbeta}) {
    *t = t->astype(DType::Float32).astype(DType::Float64);
  }
  const BatchNormDoubleGrads want = analytic(p, DType::Float64);
  const BatchNormDoubleGrads got = analytic(p, DType::Float32);
  EXPECT_EQ(got.dx.dtype(), DType::Float32);
  EXPECT_EQ(got.dgamma.dtype(), DType::Float32);
  EXPECT_EQ(got.ddy.dtype(), DType::Float32);
  expect_close("dx_f32", got.dx, want.dx, tol);
  expect_close("dgamma_f32", got.dgamma, want.dgamma, tol);
  expect_close("ddy_f32", got.ddy, want.ddy, tol);
}

TEST(BatchNormDoubleBackward, Float32MatchesFloat64) {
  expect_float32_matches_float64(make_problem({6, 5}, 0, 120));
  expect_float32_matches_float64(make_problem({4, 3, 5, 3}, 1, 121));
  expect_float32_matches_float64(make_problem({3, 5, 4}, -1, 122));
}

TEST(BatchNormDoubleBackward, Float32WithLargeOffset) {
  // Note [Rounded mean]: float32 x = 1e4 + N(0, 1), whose mean rounded to
  // float32 is off by up to 5e-4, a two-thousandth of the spread.
  expect_float32_matches_float64(make_problem({40, 3}, 0, 130, 1e4, 1.0));
  expect_float32_matches_float64(make_problem({8, 3, 4, 5}, 1, 131, 1e4, 1.0));
}

// Tensors that span several row blocks (inner == 1) or segment blocks and
// feature groups (inner > 1): directional central differences, cheap for
// any size, in float64; then float32 against float64 element by element.
void expect_directional_derivatives_match(const Problem& p) {
  const BatchNormDoubleGrads g = analytic(p);
  const Tensor* grads[3] = {&g.dx, &g.dgamma, &g.ddy};
  const char* names[3] = {"dx", "dgamma", "ddy"};
  for (int which = 0; which < 3; ++which) {
    Tensor in[3] = {p.x.clone(), p.gamma.clone(), p.dy.clone()};
    const Tensor dir = Tensor::randn(in[which].shape(), 500 + which, DType::Float64);
    const double h = 1e-6;
    auto at = [&](double t) {
      Tensor moved[3] = {in[0], in[1], in[2]};
      moved[which] = in[which].clone();
      double* v = moved[which].data<double>();
      const std::vector<double> d = dir.to_vector();
      for (std::int64_t i = 0; i < moved[which].size(); ++i) v[i] += t * d[i];
      return second_order_loss(p, moved[0], moved[1], moved[2]);
    };
    const double numeric = (at(h) - at(-h)) / (2 * h);
    const double exact = dot(*grads[which], dir);
    const double scale = std::sqrt(double(dir.size())) * max_abs(*grads[which]);
    std::ostringstream err;
    err << std::abs(exact - numeric) / scale;
    ::testing::Test::RecordProperty(
        std::string(names[which]) + "_directional_error_over_scale_" + std::to_string(dir.size()),
        err.str());
    EXPECT_NEAR(exact, numeric, 1e-6 * scale) << names[which] << " along a random direction";
  }
}

TEST(BatchNormDoubleBackward, LargeTensors) {
  // inner = 4225 > one segment block; M = 67600 per feature.
  const Problem groups = make_problem({16, 3, 65, 65}, 1, 140);
  expect_directional_derivatives_match(groups);
  expect_float32_matches_float64(groups);
  // outer = 70 > one row block.
  const Problem rows = make_problem({70, 40}, 0, 141);
  expect_directional_derivatives_match(rows);
  expect_float32_matches_float64(rows);
}

TEST(BatchNormDoubleBackward, BadInputThrowsTypedErrors) {
  const Problem p = make_problem({3, 2, 3, 2}, 1, 150);
  BatchNormStats stats;
  batchnorm_forward_train(p.x, p.gamma, Tensor::zeros({2}, DType::Float64), p.L, p.eps, stats);
  auto call = [&](const Tensor& ggx, const Tensor& gggamma, const Tensor& dy, const Tensor& gamma) {
    batchnorm_double_backward_train(ggx, gggamma, p.up.ggbeta, dy, p.x, gamma, stats, p.L);
  };
  auto expect_message = [](auto&& fn, const std::string& a, const std::string& b) {
    try {
      fn();
      ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(a), std::string::npos) << what;
      EXPECT_NE(what.find(b), std::string::npos) << what;
    }
  };
  const Tensor wrong = Tensor::randn({3, 2, 6}, 1, DType::Float64);
  EXPECT_THROW(call(wrong, p.up.gggamma, p.dy, p.gamma), ShapeError);
  expect_message([&] { call(wrong, p.up.gggamma, p.dy, p.gamma); }, to_string(p.x.shape()),
                 to_string(wrong.shape()));
  EXPECT_THROW(call(p.up.ggx, p.up.gggamma, wrong, p.gamma), ShapeError);
  const Tensor three = Tensor::randn({3}, 2, DType::Float64);
  EXPECT_THROW(call(p.up.ggx, three, p.dy, p.gamma), ShapeError);
  expect_message([&] { call(p.up.ggx, three, p.dy, p.gamma); }, "(2,)", "(3,)");
  EXPECT_THROW(call(p.up.ggx, p.up.gggamma, p.dy, three), ShapeError);
  EXPECT_THROW(call(p.up.ggx.astype(DType::Float32), p.up.gggamma, p.dy, p.gamma), DTypeError);
  EXPECT_THROW(call(p.up.ggx, p.up.gggamma, Tensor(), p.gamma), ValueError);
  // A layout for inputs of another batch size.
  const BatchNormLayout other = batchnorm_layout({4, 2, 3, 2}, 1);
  expect_message(
      [&] {
        batchnorm_double_backward_train(p.up.ggx, p.up.gggamma, p.up.ggbeta, p.dy, p.x, p.gamma,
                                        stats, other);
      },
      to_string(p.x.shape()), "outer 4");
}

}  // namespace
}  // namespace npdl::layers
