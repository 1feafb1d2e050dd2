#include "layers/layer.hpp"

#include <algorithm>

#include "tensor/tensor_math.hpp"

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
    throw ShapeError(name() + " expects inputs of shape " + batch_shape_text(input_shape_) +
                     ", got " + to_string(batch_shape));
  }
}

std::string batch_shape_text(const Shape& sample_shape) {
  std::string text = "(N";
  for (std::int64_t d : sample_shape) text += ", " + std::to_string(d);
  return text + ")";
}

void Layer::match_dtype(DType dtype) {
  const std::vector<ParameterPtr> ps = params();
  if (ps.empty() || ps.front()->value.dtype() == dtype) return;
  if (dtype_fixed_) {
    throw DTypeError(name() + "'s parameters are " + npdl::to_string(ps.front()->value.dtype()) +
                     " (fixed by earlier forwards), got a " + npdl::to_string(dtype) + " input");
  }
  for (const ParameterPtr& p : ps) {
    p->value = p->value.astype(dtype);
    if (p->grad.defined()) p->grad = p->grad.astype(dtype);
  }
  for (Tensor* t : state_tensors()) *t = t->astype(dtype);
}

std::vector<Layer::NamedState> Layer::state() {
  const std::vector<Tensor*> tensors = state_tensors();
  const std::vector<std::string> names = state_names();
  std::vector<NamedState> out;
  for (std::size_t i = 0; i < tensors.size(); ++i) out.push_back({names.at(i), *tensors[i]});
  return out;
}

void Layer::check_state(std::size_t, const Tensor&, const std::string&) const {}

bool Layer::state_shape_fits(std::size_t index, const Shape& shape) {
  const std::vector<Tensor*> tensors = state_tensors();
  if (index >= tensors.size()) return false;
  const Shape& current = tensors[index]->shape();
  if (shape == current) return true;
  return state_rows_vary(index) && shape.size() == current.size() && !shape.empty() &&
         std::equal(shape.begin() + 1, shape.end(), current.begin() + 1);
}

void Layer::set_state(std::size_t index, const Tensor& value, const std::string& who) {
  const std::vector<Tensor*> tensors = state_tensors();
  if (index >= tensors.size()) {
    throw ValueError(who + ": " + name() + " has " + std::to_string(tensors.size()) +
                     " state tensors, got index " + std::to_string(index));
  }
  Tensor& current = *tensors[index];
  const std::string what = who + ": " + state_names().at(index);
  if (!state_shape_fits(index, value.shape())) {
    throw ShapeError(what + " has shape " + npdl::to_string(current.shape()) + ", got " +
                     npdl::to_string(value.shape()));
  }
  if (value.dtype() != current.dtype()) {
    throw DTypeError(what + " is " + npdl::to_string(current.dtype()) + ", got " +
                     npdl::to_string(value.dtype()));
  }
  check_state(index, value, who);
  current = value;
}

Layer::Snapshot Layer::snapshot() {
  Snapshot s{connected_, input_shape_, dtype_fixed_.load(), {}, {}};
  if (connected_) {
    for (const ParameterPtr& p : params()) s.params.emplace_back(p, *p);
    for (Tensor* t : state_tensors()) s.state.emplace_back(t, *t);
  }
  return s;
}

void Layer::restore(const Snapshot& s) {
  connected_ = s.connected;
  input_shape_ = s.input_shape;
  dtype_fixed_ = s.dtype_fixed;
  for (const auto& [p, old] : s.params) *p = old;
  for (const auto& [t, old] : s.state) *t = old;
}

StateGuard::StateGuard(const std::vector<Layer*>& layers) {
  for (Layer* l : layers) saved_.emplace_back(l, l->snapshot());
}

StateGuard::~StateGuard() {
  if (committed_) return;
  for (auto& [layer, s] : saved_) layer->restore(s);
}

Tensor Layer::forward(const Tensor& input, bool training) {
  StateGuard guard({this});
  // Lean: a layer's private graph keeps only what its backward needs.
  auto graph = std::make_unique<Graph>(GraphOptions{/*keep_intermediates=*/false});
  // Indices (integers) are data without a gradient; values are variables.
  Var in =
      is_floating(input.dtype()) ? graph->variable(input, "input") : graph->input(input, "input");
  Var out = apply(in, training);
  guard.commit();
  forward_untracked_ = !out.tracked();
  graph_ = forward_untracked_ ? nullptr : std::move(graph);
  input_ = in;
  output_ = out;
  backward_done_ = false;
  // An identity forward (Dropout(0), a linear Activation) must not hand out
  // the caller's own buffer: writing to the output would change the input.
  return out.value().same_storage(input) ? out.value().clone() : out.value();
}

Tensor Layer::backward(const Tensor& pre_grad) {
  if (forward_untracked_) {
    throw GraphError(name() +
                     ".backward: the last forward ran with gradients disabled (NoGradGuard), so "
                     "no graph was recorded; run forward with gradients enabled first");
  }
  if (!graph_) {
    throw GraphError(name() + ".backward called before forward: expected a forward first");
  }
  check_same_shape(output_.shape(), pre_grad.shape(), name() + ".backward: pre_grad");
  check_same_dtype(output_.value(), pre_grad, "backward: pre_grad");
  if (backward_done_) {
    throw GraphError(name() +
                     ".backward called twice for one forward: the first backward freed what "
                     "it needed; run forward again");
  }
  // Not retained: the sweep frees what it no longer needs.
  graph_->backward(output_, pre_grad);
  backward_done_ = true;
  if (!is_floating(input_.dtype())) return Tensor();  // indices have no gradient
  const Tensor& g = input_.grad();
  return g.defined() ? g : Tensor::zeros(input_.shape(), input_.dtype());
}

std::vector<Tensor> Layer::grads() const {
  std::vector<Tensor> out;
  for (const auto& p : params()) out.push_back(p->grad);
  return out;
}

}  // namespace npdl::layers
