#include "model/optimizers.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>

namespace npdl::model {
namespace {

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void require(bool ok, const std::string& what, double given) {
  if (!ok) throw ValueError(what + ", got " + number(given));
}

// The hyper-parameter checks the optimisers share; `who` names the optimiser.
void require_decay_rate(const std::string& who, const char* name, double value) {
  require(value >= 0 && value < 1, who + ": " + name + " must lie in [0, 1)", value);
}
void require_epsilon(const std::string& who, double epsilon) {
  require(epsilon > 0 && std::isfinite(epsilon), who + ": epsilon must be finite and > 0", epsilon);
}

/// Calls f(p, g, s...) with Eigen array maps of the parameter, its gradient
/// and the state tensors, all of the parameter's dtype.
template <class F>
void with_arrays(Tensor& value, const Tensor& grad, std::initializer_list<Tensor*> state, F f) {
  dispatch(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const Eigen::Index n = value.size();
    ArrayMap<T> p(value.data<T>(), n);
    ConstArrayMap<T> g(grad.data<T>(), n);
    std::vector<ArrayMap<T>> s;
    for (Tensor* t : state) s.emplace_back(t->data<T>(), n);
    f(p, g, s);
  });
}

Tensor clipped(const Tensor& grad, double clip) {
  if (!(clip > 0)) return grad;
  Tensor out = grad.clone();
  dispatch(out.dtype(), [&](auto zero) {
    using T = decltype(zero);
    ArrayMap<T> g(out.data<T>(), out.size());
    g = g.max(T(-clip)).min(T(clip));
  });
  return out;
}

}  // namespace

Optimizer::Optimizer(OptimizerOptions options) : options_(options) {
  require(std::isfinite(options.lr) && options.lr >= 0, "optimizer: lr must be finite and >= 0",
          options.lr);
  require(std::isfinite(options.decay) && options.decay >= 0,
          "optimizer: decay must be finite and >= 0", options.decay);
  require(options.lr_min >= 0 && options.lr_min <= options.lr_max,
          "optimizer: lr_min must lie in [0, lr_max]", options.lr_min);
  require(!std::isnan(options.clip), "optimizer: clip must be a number (<= 0: no clipping)",
          options.clip);
}

double Optimizer::current_lr() const {
  const double lr = options_.lr / (1.0 + options_.decay * static_cast<double>(iterations_));
  return std::clamp(lr, options_.lr_min, options_.lr_max);
}

void Optimizer::reset() {
  iterations_ = 0;
  state_.clear();
  shapes_.clear();
}

void Optimizer::check(const std::vector<ParameterPtr>& params) const {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = *params[i];
    const std::string what = name() + ": parameter " + std::to_string(i) + " (" + p.name + ")";
    if (!p.grad.defined()) {
      throw ShapeError(what + " has no gradient; expected one of shape " +
                       to_string(p.value.shape()) + " (run backward first)");
    }
    check_same_shape(p.value.shape(), p.grad.shape(), what + " gradient");
    check_same_dtype(p.value, p.grad, "optimizer update");
    if (!shapes_.empty() && (i >= shapes_.size() || shapes_[i] != p.value.shape())) {
      throw ShapeError(
          what + " has shape " + to_string(p.value.shape()) +
          ", but this optimiser's state was made for " +
          (i < shapes_.size() ? to_string(shapes_[i]) : std::string("no such parameter")) +
          "; use one optimiser per model");
    }
  }
  if (!shapes_.empty() && params.size() != shapes_.size()) {
    throw ShapeError(name() + ": got " + std::to_string(params.size()) +
                     " parameters, but the state was made for " + std::to_string(shapes_.size()));
  }
}

void Optimizer::update(const std::vector<ParameterPtr>& params) {
  check(params);  // before anything changes
  if (shapes_.empty()) {
    for (const ParameterPtr& p : params) {
      shapes_.push_back(p->value.shape());
      state_.emplace_back();
      for (int s = 0; s < state_slots(); ++s) {
        state_.back().push_back(Tensor::zeros(p->value.shape(), p->value.dtype()));
      }
    }
  }
  const double lr = current_lr();
  ++iterations_;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Parameter& p = *params[i];
    // A buffer shared with someone else (a graph's saved tensor, a caller's
    // copy) must not change under them: update a private copy then.
    if (!p.value.unique()) p.value = p.value.clone();
    step(i, p.value, clipped(p.grad, options_.clip), lr, iterations_);
  }
}

void SGD::step(std::size_t, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  with_arrays(value, grad, {}, [&](auto& p, const auto& g, auto&) {
    using T = typename std::decay_t<decltype(p)>::Scalar;
    p -= T(lr) * g;
  });
}

Momentum::Momentum(double momentum, OptimizerOptions options)
    : Optimizer(options), momentum_(momentum) {
  require_decay_rate("Momentum", "momentum", momentum);
}

void Momentum::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  with_arrays(value, grad, {&state(i, 0)}, [&](auto& p, const auto& g, auto& s) {
    using T = typename std::decay_t<decltype(p)>::Scalar;
    auto& v = s[0];
    v = T(momentum_) * v - T(lr) * g;
    p += v;
  });
}

void NesterovMomentum::step(std::size_t i, Tensor& value, const Tensor& grad, double lr,
                            std::int64_t) {
  with_arrays(value, grad, {&state(i, 0)}, [&](auto& p, const auto& g, auto& s) {
    using T = typename std::decay_t<decltype(p)>::Scalar;
    auto& v = s[0];
    v = T(momentum_) * v - T(lr) * g;
    p += T(momentum_) * v - T(lr) * g;
  });
}

Adagrad::Adagrad(double epsilon, OptimizerOptions options) : Optimizer(options), epsilon_(epsilon) {
  require_epsilon("Adagrad", epsilon);
}

void Adagrad::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  with_arrays(value, grad, {&state(i, 0)}, [&](auto& p, const auto& g, auto& s) {
    using T = typename std::decay_t<decltype(p)>::Scalar;
    auto& c = s[0];
    c += g.square();
    p -= T(lr) * g / (c.sqrt() + T(epsilon_));
  });
}

RMSprop::RMSprop(double rho, double epsilon, OptimizerOptions options)
    : Optimizer(options), rho_(rho), epsilon_(epsilon) {
  require_decay_rate("RMSprop", "rho", rho);
  require_epsilon("RMSprop", epsilon);
}

void RMSprop::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  with_arrays(value, grad, {&state(i, 0)}, [&](auto& p, const auto& g, auto& s) {
    using T = typename std::decay_t<decltype(p)>::Scalar;
    auto& c = s[0];
    c = T(rho_) * c + T(1 - rho_) * g.square();
    p -= T(lr) * g / (c + T(epsilon_)).sqrt();
  });
}

Adadelta::Adadelta(double rho, double epsilon, OptimizerOptions options)
    : Optimizer(options), rho_(rho), epsilon_(epsilon) {
  require_decay_rate("Adadelta", "rho", rho);
  require_epsilon("Adadelta", epsilon);
}

void Adadelta::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  with_arrays(value, grad, {&state(i, 0), &state(i, 1)}, [&](auto& p, const auto& g, auto& s) {
    using T = typename std::decay_t<decltype(p)>::Scalar;
    auto& c = s[0];
    auto& d = s[1];
    c = T(rho_) * c + T(1 - rho_) * g.square();
    const auto u = (g * (d + T(epsilon_)).sqrt() / (c + T(epsilon_)).sqrt()).eval();
    p -= T(lr) * u;
    d = T(rho_) * d + T(1 - rho_) * u.square();
  });
}

namespace {
void check_betas(const char* who, double beta1, double beta2, double epsilon) {
  require_decay_rate(who, "beta1", beta1);
  require_decay_rate(who, "beta2", beta2);
  require_epsilon(who, epsilon);
}
}  // namespace

Adam::Adam(double beta1, double beta2, double epsilon, OptimizerOptions options)
    : Optimizer(options), beta1_(beta1), beta2_(beta2), epsilon_(epsilon) {
  check_betas("Adam", beta1, beta2, epsilon);
}

void Adam::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t t) {
  // The bias corrections of both moments folded into one step size.
  const double a_t =
      lr * std::sqrt(1 - std::pow(beta2_, double(t))) / (1 - std::pow(beta1_, double(t)));
  with_arrays(value, grad, {&state(i, 0), &state(i, 1)}, [&](auto& p, const auto& g, auto& s) {
    using T = typename std::decay_t<decltype(p)>::Scalar;
    auto& m = s[0];
    auto& v = s[1];
    m = T(beta1_) * m + T(1 - beta1_) * g;
    v = T(beta2_) * v + T(1 - beta2_) * g.square();
    p -= T(a_t) * m / (v.sqrt() + T(epsilon_));
  });
}

Adamax::Adamax(double beta1, double beta2, double epsilon, OptimizerOptions options)
    : Optimizer(options), beta1_(beta1), beta2_(beta2), epsilon_(epsilon) {
  check_betas("Adamax", beta1, beta2, epsilon);
}

void Adamax::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t t) {
  const double a_t = lr / (1 - std::pow(beta1_, double(t)));
  with_arrays(value, grad, {&state(i, 0), &state(i, 1)}, [&](auto& p, const auto& g, auto& s) {
    using T = typename std::decay_t<decltype(p)>::Scalar;
    auto& m = s[0];
    auto& u = s[1];
    m = T(beta1_) * m + T(1 - beta1_) * g;
    u = (T(beta2_) * u).max(g.abs());
    p -= T(a_t) * m / (u + T(epsilon_));
  });
}

namespace {

using Factory = std::function<OptimizerPtr(const OptimizerOptions&)>;

// npdl's defaults for everything but the common options.
const std::map<std::string, Factory>& registry() {
  static const std::map<std::string, Factory> r = [] {
    std::map<std::string, Factory> m;
    auto add = [&m](std::initializer_list<const char*> spellings, Factory make) {
      for (const char* s : spellings) m[s] = make;
    };
    add({"sgd", "SGD"}, [](const OptimizerOptions& o) { return std::make_shared<SGD>(o); });
    add({"momentum", "Momentum"},
        [](const OptimizerOptions& o) { return std::make_shared<Momentum>(0.9, o); });
    add({"nesterov_momentum", "NesterovMomentum"},
        [](const OptimizerOptions& o) { return std::make_shared<NesterovMomentum>(0.9, o); });
    add({"adagrad", "Adagrad"},
        [](const OptimizerOptions& o) { return std::make_shared<Adagrad>(1e-6, o); });
    add({"rmsprop", "RMSprop"},
        [](const OptimizerOptions& o) { return std::make_shared<RMSprop>(0.9, 1e-6, o); });
    add({"adadelta", "Adadelta"},
        [](const OptimizerOptions& o) { return std::make_shared<Adadelta>(0.9, 1e-6, o); });
    add({"adam", "Adam"},
        [](const OptimizerOptions& o) { return std::make_shared<Adam>(0.9, 0.999, 1e-8, o); });
    add({"adamax", "Adamax"},
        [](const OptimizerOptions& o) { return std::make_shared<Adamax>(0.9, 0.999, 1e-8, o); });
    return m;
  }();
  return r;
}

}  // namespace

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& entry : registry()) n.push_back(entry.first);
    return n;
  }();
  return names;
}

OptimizerPtr get_optimizer(const std::string& name, const OptimizerOptions& options) {
  const auto it = registry().find(name);
  if (it != registry().end()) return it->second(options);
  std::string valid;
  for (const std::string& n : optimizer_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw ValueError("unknown optimizer '" + name + "'; expected one of: " + valid);
}

}  // namespace npdl::model
