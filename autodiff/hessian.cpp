#include "autodiff/hessian.hpp"

#include <Eigen/Eigenvalues>
#include <algorithm>

namespace npdl {

HessianOperator::HessianOperator(const Var& output, std::vector<Var> inputs)
    : inputs_(std::move(inputs)) {
  if (output.value().size() != 1) {
    throw ShapeError("hvp expects a scalar (one-element) output, got shape " +
                     to_string(output.shape()));
  }
  grads_ = grad({output}, inputs_, {}, /*create_graph=*/true);
}

std::vector<Tensor> HessianOperator::gradient() const {
  std::vector<Tensor> g;
  for (const Var& v : grads_) g.push_back(v.value());
  return g;
}

std::vector<Tensor> HessianOperator::operator()(const std::vector<Tensor>& v) const {
  if (v.size() != inputs_.size()) {
    throw ShapeError("hvp expects one vector per input (" + std::to_string(inputs_.size()) +
                     "), got " + std::to_string(v.size()));
  }
  std::vector<Var> outputs, weights;
  for (std::size_t i = 0; i < v.size(); ++i) {
    check_same_shape(inputs_[i].shape(), v[i].shape(), "hvp: v[" + std::to_string(i) + "]");
    if (!grads_[i].requires_grad()) continue;  // a gradient constant in x: no curvature
    outputs.push_back(grads_[i]);
    weights.push_back(Var(v[i].astype(grads_[i].dtype())));
  }
  std::vector<Tensor> result;
  if (outputs.empty()) {
    for (const Var& x : inputs_) result.push_back(Tensor::zeros(x.shape(), x.dtype()));
    return result;
  }
  BackwardOptions keep;
  keep.retain_graph = true;
  Graph& graph = *inputs_.front().graph();
  for (const Var& h : graph.gradients(outputs, inputs_, weights, keep)) {
    result.push_back(h.value());
  }
  return result;
}

std::vector<Tensor> hvp(const Var& output, const std::vector<Var>& inputs,
                        const std::vector<Tensor>& v) {
  return HessianOperator(output, inputs)(v);
}

std::vector<Tensor> hvp(const GraphFunction& f, const std::vector<Tensor>& x,
                        const std::vector<Tensor>& v) {
  Graph graph;
  std::vector<Var> inputs;
  for (const Tensor& t : x) inputs.push_back(graph.variable(t));
  const Var out = f(inputs);
  return hvp(out, inputs, v);
}

std::vector<double> lanczos_ritz_values(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& op,
    const std::vector<Tensor>& like, int iterations, std::uint64_t seed) {
  if (iterations < 1) {
    throw ValueError("lanczos_ritz_values: iterations must be >= 1, got " +
                     std::to_string(iterations));
  }
  std::int64_t n = 0;
  for (const Tensor& t : like) n += t.size();
  if (n == 0)
    throw ValueError("lanczos_ritz_values: expected tensors with at least one element, got none");
  // Note [Lanczos]: vectors are flat float64 here and lists of tensors for the operator.
  auto to_tensors = [&like](const Eigen::VectorXd& flat) {
    std::vector<Tensor> out;
    std::int64_t at = 0;
    for (const Tensor& t : like) {
      out.push_back(Tensor::from_vector(
          t.shape(), std::vector<double>(flat.data() + at, flat.data() + at + t.size()),
          t.dtype()));
      at += t.size();
    }
    return out;
  };
  auto apply = [&](const Eigen::VectorXd& q) {
    const std::vector<Tensor> product = op(to_tensors(q));
    if (product.size() != like.size()) {
      throw ShapeError("lanczos_ritz_values: the operator returned " +
                       std::to_string(product.size()) + " tensors for " +
                       std::to_string(like.size()) + "; expected one per input");
    }
    Eigen::VectorXd w(n);
    std::int64_t at = 0;
    for (std::size_t i = 0; i < like.size(); ++i) {
      check_same_shape(like[i].shape(), product[i].shape(),
                       "lanczos_ritz_values: the operator's result " + std::to_string(i));
      const std::vector<double> values = product[i].to_vector();
      std::copy(values.begin(), values.end(), w.data() + at);
      at += product[i].size();
    }
    if (!w.allFinite()) throw ValueError("lanczos_ritz_values: the operator returned NaN or Inf");
    return w;
  };

  const auto steps = static_cast<Eigen::Index>(std::min<std::int64_t>(iterations, n));
  Eigen::MatrixXd basis(n, steps);
  std::vector<double> alpha, beta;
  const std::vector<double> start = Tensor::randn({n}, seed, DType::Float64).to_vector();
  Eigen::VectorXd q = Eigen::Map<const Eigen::VectorXd>(start.data(), n).normalized();
  double scale = 0.0;  // the largest |A q| so far: what "zero" is measured against
  for (Eigen::Index j = 0; j < steps; ++j) {
    basis.col(j) = q;
    Eigen::VectorXd w = apply(q);
    scale = std::max(scale, w.norm());
    alpha.push_back(q.dot(w));
    // Against every earlier vector (the three-term recurrence's two among
    // them), twice: Gram-Schmidt once more recovers what round-off lost.
    const auto Q = basis.leftCols(j + 1);
    for (int pass = 0; pass < 2; ++pass) w -= Q * (Q.transpose() * w);
    if (j + 1 == steps) break;
    const double b = w.norm();
    if (b <= 1e-10 * scale) break;  // an invariant subspace: T's eigenvalues are exact
    beta.push_back(b);
    q = w / b;
  }
  const auto m = static_cast<Eigen::Index>(alpha.size());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver;
  solver.computeFromTridiagonal(Eigen::Map<const Eigen::VectorXd>(alpha.data(), m),
                                Eigen::Map<const Eigen::VectorXd>(beta.data(), m - 1),
                                Eigen::EigenvaluesOnly);
  std::vector<double> ritz(solver.eigenvalues().data(), solver.eigenvalues().data() + m);
  std::reverse(ritz.begin(), ritz.end());
  return ritz;
}

}  // namespace npdl
