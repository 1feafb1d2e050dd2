#include "layers/activation.hpp"

#include <algorithm>
#include <map>

#include "layers/registry.hpp"
#include "ops/ops.hpp"

namespace npdl::layers {
namespace {

constexpr double kLeakyReluSlope = 0.01;  // Keras' and PyTorch's default
constexpr double kEluScale = 1.0;

// Every spelling of npdl's activations.get, plus leaky_relu and elu.
const Registry<ActivationKind>& registry() {
  static const Registry<ActivationKind> r = [] {
    Registry<ActivationKind> m("activation");
    m.add({"sigmoid", "Sigmoid"}, {"sigmoid"});
    m.add({"tanh", "tan", "Tanh"}, {"tanh"});
    m.add({"relu", "ReLU", "RELU"}, {"relu"});
    m.add({"linear", "Linear"}, {"linear"});
    m.add({"softmax", "Softmax"}, {"softmax"});
    m.add({"softplus", "soft_plus", "SoftPlus"}, {"softplus"});
    m.add({"softsign", "soft_sign", "SoftSign"}, {"softsign"});
    m.add({"elliot", "Elliot"}, {"elliot"});
    m.add({"symmetric_elliot", "SymmetricElliot"}, {"symmetric_elliot"});
    m.add({"leaky_relu", "LeakyReLU"}, {"leaky_relu", kLeakyReluSlope});
    m.add({"elu", "ELU"}, {"elu", kEluScale});
    return m;
  }();
  return r;
}

Var abs(const Var& x) { return ops::relu(x) + ops::relu(-x); }

}  // namespace

const std::vector<std::string>& activation_names() { return registry().names(); }

ActivationKind activation_kind(const std::string& name) { return registry().get(name); }

Var activate(const ActivationKind& kind, const Var& x) {
  const std::string& n = kind.name;
  if (n == "sigmoid") return ops::sigmoid(x);
  if (n == "tanh") return ops::tanh(x);
  if (n == "relu") return ops::relu(x);
  if (n == "linear") return x;
  if (n == "softmax") return ops::softmax(x, -1);
  // Note [Kinks and compositions] (ops/activation.cpp): softplus, leaky_relu
  // and elu are primitives, so that their derivative at 0 is right.
  if (n == "softplus") return ops::softplus(x);
  if (n == "softsign" || n == "symmetric_elliot") return x / (abs(x) + 1.0);
  if (n == "elliot") return x * 0.5 / (abs(x) + 1.0) + 0.5;
  if (n == "leaky_relu") return ops::leaky_relu(x, kind.alpha);
  if (n == "elu") return ops::elu(x, kind.alpha);
  return activate(activation_kind(n), x);  // not canonical: throws listing the names
}

Var Activation::apply(const Var& input, bool training) {
  return activate(kind_, apply_pre_activation(input, training));
}

Var Activation::apply_pre_activation(const Var& input, bool /*training*/) {
  ensure_connected(input.shape());
  return input;
}

}  // namespace npdl::layers
