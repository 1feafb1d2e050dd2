#include "layers/layer.hpp"

#include "autodiff/tensor_math.hpp"

namespace npdl::layers {

void Layer::connect_to(const Layer& prev_layer) {
  if (!prev_layer.connected()) {
    throw GraphError(name() + ".connect_to: the previous layer (" + prev_layer.name() +
                     ") has no output shape yet; connect it first");
  }
  connect_to(prev_layer.output_shape());
}

void Layer::connect_to(const Shape& input_shape) {
  build(input_shape);  // may throw; then the layer stays unconnected
  input_shape_ = input_shape;
  connected_ = true;
}

void Layer::ensure_connected(const Shape& batch_shape) {
  if (batch_shape.empty()) {
    throw ShapeError(name() + " expects an input with a samples axis, got a scalar");
  }
  const Shape sample(batch_shape.begin() + 1, batch_shape.end());
  if (!connected_) {
    connect_to(sample);
  } else if (sample != input_shape_) {
    throw ShapeError(name() + " expects inputs of shape (N, " + to_string(input_shape_).substr(1) +
                     ", got " + to_string(batch_shape));
  }
}

Tensor Layer::forward(const Tensor& input, bool training) {
  // Lean: a layer's private graph keeps only what its backward needs.
  auto graph = std::make_unique<Graph>(GraphOptions{/*keep_intermediates=*/false});
  Var in = graph->variable(input, "input");
  Var out = apply(in, training);  // throws before any state changes on bad input
  graph_ = std::move(graph);
  input_ = in;
  output_ = out;
  return out.value();
}

Tensor Layer::backward(const Tensor& pre_grad) {
  if (!graph_) {
    throw GraphError(name() + ".backward called before forward: expected a forward first");
  }
  check_same_shape(output_.shape(), pre_grad.shape(), name() + ".backward: pre_grad");
  check_same_dtype(output_.value(), pre_grad, "backward: pre_grad");
  // Not retained: the sweep frees what it no longer needs; a second backward
  // for the same forward is a GraphError (run forward again).
  graph_->backward(output_, pre_grad);
  const Tensor& g = input_.grad();
  return g.defined() ? g : Tensor::zeros(input_.shape(), input_.dtype());
}

std::vector<Tensor> Layer::grads() const {
  std::vector<Tensor> out;
  for (const auto& p : params()) out.push_back(p->grad);
  return out;
}

}  // namespace npdl::layers
