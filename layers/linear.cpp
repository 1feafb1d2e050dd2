#include "layers/linear.hpp"

#include <optional>

#include "ops/ops.hpp"

namespace npdl::layers {

Linear::Linear(std::int64_t n_out, std::int64_t n_in, initializers::InitSpec init)
    : n_out_(n_out), n_in_(n_in), init_(std::move(init)) {
  if (n_out < 1) {
    throw ValueError("Linear: n_out must be at least 1, got " + std::to_string(n_out));
  }
  if (n_in < 0) {
    throw ValueError("Linear: n_in must be 0 (taken from the input) or positive, got " +
                     std::to_string(n_in));
  }
}

void Linear::build(const Shape& input_shape) {
  if (input_shape.size() != 1) {
    throw ShapeError(name() + " expects inputs of shape (N, features), got samples of shape " +
                     to_string(input_shape) + " (insert a Flatten before it)");
  }
  if (n_in_ > 0 && input_shape[0] != n_in_) {
    throw ShapeError(name() + " was declared with n_in = " + std::to_string(n_in_) +
                     ", got inputs with " + std::to_string(input_shape[0]) + " features");
  }
  // Weights first, then the bias: the order in which they draw from the
  // global generator is part of a seeded run.
  ParameterPtr W = make_parameter(init_({input_shape[0], n_out_}, DType::Float32), "W");
  ParameterPtr b = make_parameter(Tensor::zeros({n_out_}, DType::Float32), "b");
  W->grad = Tensor::zeros(W->value.shape(), DType::Float32);
  b->grad = Tensor::zeros(b->value.shape(), DType::Float32);
  W_ = std::move(W);
  b_ = std::move(b);
}

Var Linear::affine(const Var& input) {
  ensure_connected(input.shape());
  match_dtype(input.dtype());
  Graph* graph = input.graph();
  const Var W = graph != nullptr ? graph->param(W_) : Var(W_->value);
  const Var b = graph != nullptr ? graph->param(b_) : Var(b_->value);
  Var y = ops::matmul(input, W) + b;
  fix_dtype();
  return y;
}

Var Linear::apply(const Var& input, bool /*training*/) {
  std::optional<Graph::CompositeScope> scope;
  if (input.graph() != nullptr) scope.emplace(*input.graph(), name());
  return affine(input);
}

Dense::Dense(std::int64_t n_out, std::int64_t n_in, initializers::InitSpec init,
             const ActivationSpec& activation)
    : Linear(n_out, n_in, std::move(init)), activation_(activation.kind()) {}

Var Dense::apply_pre_activation(const Var& input, bool /*training*/) {
  std::optional<Graph::CompositeScope> scope;
  if (input.graph() != nullptr) scope.emplace(*input.graph(), name());
  return affine(input);
}

Var Dense::apply(const Var& input, bool /*training*/) {
  std::optional<Graph::CompositeScope> scope;
  if (input.graph() != nullptr) scope.emplace(*input.graph(), name());
  return activate(activation_, affine(input));
}

}  // namespace npdl::layers
