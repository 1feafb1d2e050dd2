#pragma once
// npdl's fully connected layers: Linear (y = x W + b) and Dense (Linear
// followed by an activation).
#include <cstdint>
#include <string>
#include <utility>

#include "layers/activation.hpp"
#include "layers/initializers.hpp"
#include "layers/layer.hpp"

namespace npdl::layers {

/// y = x @ W + b for x of shape (N, n_in); W is (n_in, n_out), b is (n_out).
class Linear : public Layer {
 public:
  /// npdl's Linear(n_out, n_in=None, init='glorot_uniform'); n_in = 0 means
  /// "from the previous layer or the first input" (npdl's None). Throws
  /// ValueError for n_out < 1 or n_in < 0.
  explicit Linear(std::int64_t n_out, std::int64_t n_in = 0,
                  initializers::InitSpec init = "glorot_uniform");

  std::string name() const override { return "Linear"; }
  Var apply(const Var& input, bool training) override;
  Shape output_shape() const override { return {n_out_}; }
  /// npdl's order: {W, b}; grads() is {dW, db}.
  std::vector<ParameterPtr> params() const override { return {W_, b_}; }

  std::int64_t n_out() const { return n_out_; }
  /// The input size given at construction (0 when it is taken from the data).
  std::int64_t n_in() const { return n_in_; }
  Shape declared_input_shape() const override { return n_in_ > 0 ? Shape{n_in_} : Shape{}; }
  const ParameterPtr& W() const { return W_; }
  const ParameterPtr& b() const { return b_; }

 protected:
  void build(const Shape& input_shape) override;
  /// x @ W + b on x's graph, with the parameters in x's dtype.
  Var affine(const Var& input);

 private:
  std::int64_t n_out_, n_in_;
  initializers::InitSpec init_;
  ParameterPtr W_, b_;
};

/// npdl's Dense(n_out, n_in=None, init='glorot_uniform', activation='tanh').
class Dense : public Linear, public EndsInActivation {
 public:
  explicit Dense(std::int64_t n_out, std::int64_t n_in = 0,
                 initializers::InitSpec init = "glorot_uniform",
                 const ActivationSpec& activation = "tanh");

  std::string name() const override { return "Dense"; }
  Var apply(const Var& input, bool training) override;
  const ActivationKind& final_activation() const override { return activation_; }
  Var apply_pre_activation(const Var& input, bool training) override;

 private:
  ActivationKind activation_;
};

/// npdl's Softmax(n_out, n_in=None, init='glorot_uniform'): a Dense layer
/// whose activation is the softmax.
class Softmax : public Dense {
 public:
  explicit Softmax(std::int64_t n_out, std::int64_t n_in = 0,
                   initializers::InitSpec init = "glorot_uniform")
      : Dense(n_out, n_in, std::move(init), "softmax") {}
  std::string name() const override { return "Softmax"; }
};

}  // namespace npdl::layers
