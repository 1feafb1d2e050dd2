// Lanczos on Hessian operators (Note [Lanczos] in autodiff/hessian.hpp):
// the eigenvalues of quadratic forms whose Hessians are known.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "npdl.hpp"

namespace npdl {
namespace {

using TensorsOp = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

/// Q diag(eigenvalues) Q' with a random orthogonal Q.
Eigen::MatrixXd symmetric_with(const std::vector<double>& eigenvalues, unsigned seed) {
  const auto n = static_cast<Eigen::Index>(eigenvalues.size());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const Eigen::MatrixXd random = Eigen::MatrixXd::NullaryExpr(n, n, [&] { return u(rng); });
  const Eigen::MatrixXd Q = Eigen::HouseholderQR<Eigen::MatrixXd>(random).householderQ();
  const Eigen::VectorXd d = Eigen::Map<const Eigen::VectorXd>(eigenvalues.data(), n);
  return Q * d.asDiagonal() * Q.transpose();
}

Tensor matrix_tensor(const Eigen::MatrixXd& m, DType dtype) {
  std::vector<double> values;
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 0; j < m.cols(); ++j) values.push_back(m(i, j));
  }
  return Tensor::from_vector({m.rows(), m.cols()}, values, dtype);
}

std::vector<double> descending(std::vector<double> v) {
  std::sort(v.rbegin(), v.rend());
  return v;
}

/// x' A x / 2 for x = (vec(a), b), a of shape (2, 3) and b of shape (4):
/// the Hessian with respect to (a, b) is A.
Var quadratic_form(const Eigen::MatrixXd& A, const Var& a, const Var& b) {
  const DType dt = a.dtype();
  const Var A11(matrix_tensor(A.topLeftCorner(6, 6), dt));
  const Var A12(matrix_tensor(A.topRightCorner(6, 4), dt));
  const Var A22(matrix_tensor(A.bottomRightCorner(4, 4), dt));
  const Var x = ops::reshape(a, {6, 1}), y = ops::reshape(b, {4, 1});
  return ops::sum(x * ops::matmul(A11, x)) * 0.5 + ops::sum(x * ops::matmul(A12, y)) +
         ops::sum(y * ops::matmul(A22, y)) * 0.5;
}

TEST(Lanczos, FindsEveryEigenvalueOfAQuadraticFormSplitOverTwoInputs) {
  const std::vector<double> eigenvalues{9, 7, 4, 2.5, 1, 0.5, 0, -0.25, -1, -3};
  const Eigen::MatrixXd A = symmetric_with(eigenvalues, 1);
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    SCOPED_TRACE(to_string(dtype));
    Graph graph;
    const Var a = graph.variable(Tensor::randn({2, 3}, 2, dtype), "a");
    const Var b = graph.variable(Tensor::randn({4}, 3, dtype), "b");
    const HessianOperator hessian(quadratic_form(A, a, b), {a, b});
    // As many products as elements: T is A in another basis. More are not taken.
    const std::vector<double> ritz =
        lanczos_ritz_values(hessian, {a.value(), b.value()}, /*iterations=*/25);
    ASSERT_EQ(ritz.size(), eigenvalues.size());
    const double tolerance = dtype == DType::Float64 ? 1e-9 : 1e-4;
    for (std::size_t i = 0; i < ritz.size(); ++i) {
      EXPECT_NEAR(ritz[i], eigenvalues[i], tolerance) << "eigenvalue " << i;
    }
  }
}

/// A as an operator on one flat tensor of its size.
TensorsOp matrix_operator(const Eigen::MatrixXd& A) {
  return [A](const std::vector<Tensor>& v) {
    const std::vector<double> x = v.at(0).to_vector();
    const Eigen::VectorXd y = A * Eigen::Map<const Eigen::VectorXd>(x.data(), A.cols());
    return std::vector<Tensor>{Tensor::from_vector(
        v[0].shape(), std::vector<double>(y.data(), y.data() + y.size()), v[0].dtype())};
  };
}

TEST(Lanczos, TheTopEigenvaluesOfALargeOperatorConvergeInAFewProducts) {
  // Three outliers above a bulk in [-1, 1], as in the Hessians of networks.
  // Without full reorthogonalisation the converged 50 comes back as a ghost
  // copy within 20 products, and the second value reads 50 instead of 20.
  std::vector<double> eigenvalues{50, 20, 10};
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> bulk(-1.0, 1.0);
  for (int i = 0; i < 297; ++i) eigenvalues.push_back(bulk(rng));
  const Eigen::MatrixXd A = symmetric_with(eigenvalues, 5);
  const std::vector<double> exact = descending(eigenvalues);
  const Tensor like = Tensor::zeros({300}, DType::Float64);
  const std::vector<double> ritz = lanczos_ritz_values(matrix_operator(A), {like}, 20, 6);
  ASSERT_EQ(ritz.size(), 20u);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(ritz[i], exact[i], 1e-8 * exact[i]) << "eigenvalue " << i;
  // Ritz values lie within the spectrum and come largest first.
  EXPECT_TRUE(std::is_sorted(ritz.rbegin(), ritz.rend()));
  EXPECT_GE(ritz.back(), exact.back() - 1e-9);
  // The same seed, the same values; another seed, the same top eigenvalues.
  EXPECT_EQ(lanczos_ritz_values(matrix_operator(A), {like}, 20, 6), ritz);
  const std::vector<double> other = lanczos_ritz_values(matrix_operator(A), {like}, 20, 7);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(other[i], exact[i], 1e-8 * exact[i]);
}

TEST(Lanczos, StopsOnAnInvariantSubspace) {
  // 3 I: the start vector is an eigenvector; then two distinct eigenvalues.
  const Tensor like = Tensor::zeros({5, 2}, DType::Float64);
  const TensorsOp three = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{math::scale(v[0], 3.0)};
  };
  const std::vector<double> ritz = lanczos_ritz_values(three, {like}, 8);
  ASSERT_EQ(ritz.size(), 1u);
  EXPECT_NEAR(ritz[0], 3.0, 1e-12);
  const std::vector<double> two = lanczos_ritz_values(
      matrix_operator(symmetric_with({2, 2, 2, 2, 2, -1, -1, -1, -1, -1}, 8)), {like}, 8);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_NEAR(two[0], 2.0, 1e-10);
  EXPECT_NEAR(two[1], -1.0, 1e-10);
}

TEST(Lanczos, BadArgumentsAreTypedErrors) {
  const Tensor like = Tensor::zeros({3}, DType::Float64);
  const TensorsOp identity = [](const std::vector<Tensor>& v) { return v; };
  EXPECT_THROW(lanczos_ritz_values(identity, {like}, 0), ValueError);
  EXPECT_THROW(lanczos_ritz_values(identity, {}, 5), ValueError);
  EXPECT_THROW(lanczos_ritz_values(identity, {Tensor::zeros({0, 4})}, 5), ValueError);
  const TensorsOp two = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{v[0], v[0]};
  };
  EXPECT_THROW(lanczos_ritz_values(two, {like}, 5), ShapeError);
  const TensorsOp reshaped = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{v[0].reshape({1, 3})};
  };
  try {
    lanczos_ritz_values(reshaped, {like}, 5);
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("(1, 3)"), std::string::npos) << e.what();
  }
  const TensorsOp nan = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{Tensor::full(v[0].shape(), std::nan(""), v[0].dtype())};
  };
  EXPECT_THROW(lanczos_ritz_values(nan, {like}, 5), ValueError);
}

}  // namespace
}  // namespace npdl
