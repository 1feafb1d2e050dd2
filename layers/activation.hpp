#pragma once
// npdl's activations, as functions of graph values and as a layer.
//
// Every activation is written in the primitive ops (layers -> ops ->
// autodiff), so reverse mode gives its derivative; those without a primitive
// of their own are composed from relu, exp and log:
//   |x|          = relu(x) + relu(-x)
//   softplus     = relu(x) + log(1 + exp(-|x|))          (never overflows)
//   leaky_relu   = relu(x) - alpha * relu(-x)
//   elu          = relu(x) + alpha * (exp(-relu(-x)) - 1)
//   softsign     = x / (1 + |x|)
//   elliot       = 0.5 * x / (1 + |x|) + 0.5     (of steepness * x)
#include <string>
#include <utility>
#include <vector>

#include "layers/layer.hpp"

namespace npdl::layers {

/// One activation, by its canonical (snake_case) name.
struct ActivationKind {
  std::string name;
  double alpha = 0.0;      // slope of leaky_relu below 0, scale of elu
  double steepness = 1.0;  // of elliot and symmetric_elliot: f(steepness * x)
};

/// The activation of a name (npdl's spellings: "tanh", "Tanh", "tan",
/// "relu", "ReLU", "RELU", ...); throws ValueError listing the valid names.
ActivationKind activation_kind(const std::string& name);
/// Every accepted spelling.
const std::vector<std::string>& activation_names();

/// npdl's activation objects with arguments: Elliot(steepness) is
///   0.5 s x / (1 + |s x|) + 0.5,  SymmetricElliot(steepness) s x / (1 + |s x|);
/// and leaky_relu's slope, elu's scale. ValueError unless finite (steepness
/// and scale > 0).
ActivationKind elliot(double steepness = 1.0);
ActivationKind symmetric_elliot(double steepness = 1.0);
ActivationKind leaky_relu(double alpha = 0.01);
ActivationKind elu(double alpha = 1.0);

/// What a layer takes for an activation: a name with npdl's spellings
/// ("tanh", "ReLU") or an activation object (elliot(2.0)).
class ActivationSpec {
 public:
  ActivationSpec(const char* name) : kind_(activation_kind(name)) {}
  ActivationSpec(const std::string& name) : kind_(activation_kind(name)) {}
  ActivationSpec(ActivationKind kind) : kind_(std::move(kind)) {}
  const ActivationKind& kind() const { return kind_; }

 private:
  ActivationKind kind_;
};

/// The activation applied to `x` (softmax along the last axis).
Var activate(const ActivationKind& kind, const Var& x);
inline Var activate(const std::string& name, const Var& x) {
  return activate(activation_kind(name), x);
}

/// Note [Final activation]
/// A layer that ends in an activation can also be applied without it. The
/// Model uses this to hand an objective the pre-activation value (logits)
/// when the objective has a stable form for that activation: softmax cross
/// entropy through log_softmax, binary cross entropy through softplus.
class EndsInActivation {
 public:
  virtual ~EndsInActivation() = default;
  virtual const ActivationKind& final_activation() const = 0;
  /// The layer applied to `input`, without its final activation.
  virtual Var apply_pre_activation(const Var& input, bool training) = 0;
};

/// npdl's Activation layer: an activation by name, no parameters.
class Activation : public Layer, public EndsInActivation {
 public:
  explicit Activation(const ActivationSpec& activation = "tanh") : kind_(activation.kind()) {}
  std::string name() const override { return "Activation(" + kind_.name + ")"; }
  Var apply(const Var& input, bool training) override;
  const ActivationKind& final_activation() const override { return kind_; }
  Var apply_pre_activation(const Var& input, bool training) override;

 private:
  ActivationKind kind_;
};

}  // namespace npdl::layers
