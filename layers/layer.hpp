#pragma once
// npdl's layer API on the graph.
//
// A layer is defined once, by `apply`: what it records on a graph when it is
// applied to a graph value. npdl's eager API (forward / backward) is derived
// from it: forward records the layer on a private graph and keeps it;
// backward(pre_grad) runs reverse mode on that graph, returns the input
// gradient and stores the parameter gradients (grads()).
#include <memory>
#include <string>
#include <vector>

#include "autodiff/graph.hpp"

namespace npdl::layers {

class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string name() const = 0;

  /// Sizes the parameters from the previous layer's output shape.
  void connect_to(const Layer& prev_layer);
  /// Sizes the parameters for inputs of shape (samples, ...input_shape).
  void connect_to(const Shape& input_shape);
  bool connected() const { return connected_; }
  /// Input and output shape without the samples axis (valid once connected).
  const Shape& input_shape() const { return input_shape_; }
  virtual Shape output_shape() const { return input_shape_; }
  /// The input shape given at construction (npdl's n_in, input_shape), or
  /// empty when it is taken from the previous layer or the first input.
  virtual Shape declared_input_shape() const { return {}; }

  /// Records the layer applied to `input` on its graph. Connects the layer
  /// to the input's shape on first use (lazy sizing).
  virtual Var apply(const Var& input, bool training) = 0;

  /// npdl's forward: output of the input's layer for a batch.
  Tensor forward(const Tensor& input, bool training = true);
  /// npdl's backward: input gradient; parameter gradients go to grads().
  /// Once per forward. Throws GraphError before any forward or for a second
  /// backward of one forward, ShapeError for a wrong pre_grad.
  Tensor backward(const Tensor& pre_grad);

  /// npdl's params and grads, in the layer's order.
  virtual std::vector<ParameterPtr> params() const { return {}; }
  std::vector<Tensor> grads() const;

 protected:
  /// Called once with the input shape (without the samples axis).
  virtual void build(const Shape& input_shape) { (void)input_shape; }
  /// Connects on first use; throws ShapeError if `input` does not fit.
  void ensure_connected(const Shape& batch_shape);

 private:
  bool connected_ = false;
  Shape input_shape_;
  std::unique_ptr<Graph> graph_;  // of the last eager forward
  Var input_, output_;
};

}  // namespace npdl::layers
