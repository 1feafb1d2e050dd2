#include "autodiff/hessian.hpp"

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

}  // namespace npdl
