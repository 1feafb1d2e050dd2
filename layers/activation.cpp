#include "layers/activation.hpp"

#include <algorithm>
#include <cmath>
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

namespace {

double checked_argument(const char* activation, const char* what, double v, bool positive) {
  if (!std::isfinite(v) || (positive && v <= 0)) {
    throw ValueError(std::string(activation) + ": " + what + " must be a finite number" +
                     (positive ? " > 0" : "") + ", got " + std::to_string(v));
  }
  return v;
}

}  // namespace

ActivationKind elliot(double steepness) {
  return {"elliot", 0.0, checked_argument("elliot", "steepness", steepness, true)};
}

ActivationKind symmetric_elliot(double steepness) {
  return {"symmetric_elliot", 0.0,
          checked_argument("symmetric_elliot", "steepness", steepness, true)};
}

ActivationKind leaky_relu(double alpha) {
  return {"leaky_relu", checked_argument("leaky_relu", "alpha", alpha, false)};
}

ActivationKind elu(double alpha) { return {"elu", checked_argument("elu", "alpha", alpha, true)}; }

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
  if (n == "softsign") return x / (abs(x) + 1.0);
  if (n == "symmetric_elliot" || n == "elliot") {
    const Var sx = kind.steepness == 1.0 ? x : x * kind.steepness;
    const Var symmetric = sx / (abs(sx) + 1.0);
    return n == "elliot" ? symmetric * 0.5 + 0.5 : symmetric;
  }
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
