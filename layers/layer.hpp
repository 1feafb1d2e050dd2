#pragma once
// npdl's layer API on the graph.
//
// A layer is defined once, by `apply`: what it records on a graph when it is
// applied to a graph value. npdl's eager API (forward / backward) is derived
// from it: forward records the layer on a private graph and keeps it;
// backward(pre_grad) runs reverse mode on that graph, returns the input
// gradient and stores the parameter gradients (grads()).
#include <atomic>
#include <memory>
#include <string>
#include <utility>
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
  /// npdl's backward: input gradient (an undefined tensor for an input of
  /// integer indices, which has none); parameter gradients go to grads().
  /// Once per forward. Throws GraphError before any forward or for a second
  /// backward of one forward, ShapeError for a wrong pre_grad.
  Tensor backward(const Tensor& pre_grad);

  /// npdl's params and grads, in the layer's order.
  virtual std::vector<ParameterPtr> params() const { return {}; }
  std::vector<Tensor> grads() const;

  /// State besides the parameters that is not trained by gradients
  /// (BatchNormal's running statistics): what a saved model holds besides
  /// params(), and what data-parallel training copies from rank 0. Code
  /// above the layers (model/) reaches it through these three calls, without
  /// knowing the layer's type.
  struct NamedState {
    std::string name;  // "running_mean"
    Tensor value;
  };
  /// The state tensors, in a fixed order (empty for most layers).
  std::vector<NamedState> state();
  /// Throws (ValueError naming `who`) unless `value` may become state tensor
  /// `index`, beyond its shape and dtype; changes nothing.
  virtual void check_state(std::size_t index, const Tensor& value, const std::string& who) const;
  /// Whether a tensor of `shape` may become state tensor `index`: the
  /// current shape, or any number of rows for a tensor whose first axis
  /// counts time steps (a recurrent layer's per-step statistics).
  bool state_shape_fits(std::size_t index, const Shape& shape);
  /// Replaces state tensor `index` (state()'s order). ShapeError or
  /// DTypeError unless `value` fits (state_shape_fits) and has the current
  /// dtype, and what check_state throws; on failure nothing changes.
  void set_state(std::size_t index, const Tensor& value, const std::string& who);

  /// Note [No change on failure]
  /// A call that throws leaves the layer as it was: parameters (values,
  /// gradients, dtype), running statistics and whether it is connected. A
  /// Snapshot holds the handles of that state (tensors are never updated
  /// in place by a forward, so holding the old handles is enough);
  /// restore() puts them back.
  struct Snapshot {
    bool connected = false;
    Shape input_shape;
    bool dtype_fixed = false;
    std::vector<std::pair<ParameterPtr, Parameter>> params;
    std::vector<std::pair<Tensor*, Tensor>> state;
  };
  Snapshot snapshot();
  void restore(const Snapshot& s);

 protected:
  /// Called once with the input shape (without the samples axis).
  virtual void build(const Shape& input_shape) { (void)input_shape; }
  /// Connects on first use; throws ShapeError if `input` does not fit.
  void ensure_connected(const Shape& batch_shape);
  /// Tensors besides params() that follow the parameters' dtype and that a
  /// failed call restores (BatchNormal's running statistics).
  virtual std::vector<Tensor*> state_tensors() { return {}; }
  /// The names of state_tensors(), in their order.
  virtual std::vector<std::string> state_names() const { return {}; }
  /// Whether state tensor `index`'s first axis counts steps seen so far, so
  /// that a saved one may have another number of rows.
  virtual bool state_rows_vary(std::size_t index) const {
    (void)index;
    return false;
  }
  /// Before the first successful forward, params() and state_tensors()
  /// follow the input's dtype (a float64 gradient check then runs in
  /// float64 throughout); after it, another dtype is a DTypeError.
  void match_dtype(DType dtype);
  /// Called by a forward that succeeded: the parameters' dtype is now fixed.
  /// Written only once: inference on one model from several threads reads it.
  void fix_dtype() {
    if (!dtype_fixed_.load(std::memory_order_relaxed)) {
      dtype_fixed_.store(true, std::memory_order_relaxed);
    }
  }

 private:
  bool connected_ = false;
  std::atomic<bool> dtype_fixed_{false};
  Shape input_shape_;
  std::unique_ptr<Graph> graph_;  // of the last eager forward
  Var input_, output_;
  bool backward_done_ = false;      // the last forward's backward has run
  bool forward_untracked_ = false;  // the last forward ran with gradients off
};

/// Restores the layers' state when the scope ends without commit() (an
/// exception on the way): Note [No change on failure].
class StateGuard {
 public:
  explicit StateGuard(const std::vector<Layer*>& layers);
  ~StateGuard();
  StateGuard(const StateGuard&) = delete;
  StateGuard& operator=(const StateGuard&) = delete;
  void commit() { committed_ = true; }

 private:
  std::vector<std::pair<Layer*, Layer::Snapshot>> saved_;
  bool committed_ = false;
};

/// "(N, 3)" for samples of shape (3,): how a layer names the batch it expects.
std::string batch_shape_text(const Shape& sample_shape);

}  // namespace npdl::layers
