#include "model/optimizers.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>
#include <type_traits>

#include "layers/registry.hpp"
#include "model/detail/optimizer_level.hpp"
#include "tensor/kernels/per_level.hpp"

// Each level's table() is defined by optimizer_level.cpp compiled for that
// level (Note [Kernels per instruction set] in tensor/kernels/kernels.hpp).
NPDL_PER_LEVEL_TABLES(npdl::model::optimizer_level,
                      ::npdl::model::optimizer_level::OptimizerKernelTable)

namespace npdl::model {
namespace {

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

template <class T>
const optimizer_level::TypedOptimizerKernels<T>& level_kernels() {
  const optimizer_level::OptimizerKernelTable& table =
      optimizer_level::kLevelTables.for_this_thread();
  if constexpr (std::is_same_v<T, float>) {
    return table.f32;
  } else {
    return table.f64;
  }
}

/// One step of `rule` on a parameter, with the state tensors it keeps (of
/// the parameter's dtype and shape), by the level's kernel.
void apply(optimizer_level::Rule rule, const optimizer_level::StepParams& step, Tensor& value,
           const Tensor& grad, Tensor* s0 = nullptr, Tensor* s1 = nullptr) {
  dispatch(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    level_kernels<T>().update(rule, step, value.data<T>(), grad.data<T>(),
                              s0 != nullptr ? s0->data<T>() : nullptr,
                              s1 != nullptr ? s1->data<T>() : nullptr, value.size());
  });
}

optimizer_level::StepParams at_rate(double lr) {
  optimizer_level::StepParams step;
  step.lr = lr;
  return step;
}

Tensor clipped(const Tensor& grad, double clip) {
  if (!(clip > 0)) return grad;
  Tensor out = grad.clone();
  dispatch(out.dtype(), [&](auto zero) {
    using T = decltype(zero);
    level_kernels<T>().clip(out.data<T>(), T(clip), out.size());
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
  apply(optimizer_level::Rule::Sgd, at_rate(lr), value, grad);
}

Momentum::Momentum(double momentum, OptimizerOptions options)
    : Optimizer(options), momentum_(momentum) {
  require_decay_rate("Momentum", "momentum", momentum);
}

void Momentum::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  optimizer_level::StepParams step = at_rate(lr);
  step.momentum = momentum_;
  apply(optimizer_level::Rule::Momentum, step, value, grad, &state(i, 0));
}

void NesterovMomentum::step(std::size_t i, Tensor& value, const Tensor& grad, double lr,
                            std::int64_t) {
  optimizer_level::StepParams step = at_rate(lr);
  step.momentum = momentum_;
  apply(optimizer_level::Rule::Nesterov, step, value, grad, &state(i, 0));
}

Adagrad::Adagrad(double epsilon, OptimizerOptions options) : Optimizer(options), epsilon_(epsilon) {
  require_epsilon("Adagrad", epsilon);
}

void Adagrad::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  optimizer_level::StepParams step = at_rate(lr);
  step.epsilon = epsilon_;
  apply(optimizer_level::Rule::Adagrad, step, value, grad, &state(i, 0));
}

RMSprop::RMSprop(double rho, double epsilon, OptimizerOptions options)
    : Optimizer(options), rho_(rho), epsilon_(epsilon) {
  require_decay_rate("RMSprop", "rho", rho);
  require_epsilon("RMSprop", epsilon);
}

void RMSprop::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  optimizer_level::StepParams step = at_rate(lr);
  step.rho = rho_;
  step.epsilon = epsilon_;
  apply(optimizer_level::Rule::RMSprop, step, value, grad, &state(i, 0));
}

Adadelta::Adadelta(double rho, double epsilon, OptimizerOptions options)
    : Optimizer(options), rho_(rho), epsilon_(epsilon) {
  require_decay_rate("Adadelta", "rho", rho);
  require_epsilon("Adadelta", epsilon);
}

void Adadelta::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t) {
  optimizer_level::StepParams step = at_rate(lr);
  step.rho = rho_;
  step.epsilon = epsilon_;
  apply(optimizer_level::Rule::Adadelta, step, value, grad, &state(i, 0), &state(i, 1));
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
  optimizer_level::StepParams step = at_rate(a_t);
  step.beta1 = beta1_;
  step.beta2 = beta2_;
  step.epsilon = epsilon_;
  apply(optimizer_level::Rule::Adam, step, value, grad, &state(i, 0), &state(i, 1));
}

Adamax::Adamax(double beta1, double beta2, double epsilon, OptimizerOptions options)
    : Optimizer(options), beta1_(beta1), beta2_(beta2), epsilon_(epsilon) {
  check_betas("Adamax", beta1, beta2, epsilon);
}

void Adamax::step(std::size_t i, Tensor& value, const Tensor& grad, double lr, std::int64_t t) {
  const double a_t = lr / (1 - std::pow(beta1_, double(t)));
  optimizer_level::StepParams step = at_rate(a_t);
  step.beta1 = beta1_;
  step.beta2 = beta2_;
  step.epsilon = epsilon_;
  apply(optimizer_level::Rule::Adamax, step, value, grad, &state(i, 0), &state(i, 1));
}

namespace {

using Factory = std::function<OptimizerPtr(const OptimizerOptions&)>;

// npdl's defaults for everything but the common options.
const layers::Registry<Factory>& registry() {
  static const layers::Registry<Factory> r = [] {
    layers::Registry<Factory> m("optimizer");
    m.add({"sgd", "SGD"}, [](const OptimizerOptions& o) { return std::make_shared<SGD>(o); });
    m.add({"momentum", "Momentum"},
          [](const OptimizerOptions& o) { return std::make_shared<Momentum>(0.9, o); });
    m.add({"nesterov_momentum", "NesterovMomentum"},
          [](const OptimizerOptions& o) { return std::make_shared<NesterovMomentum>(0.9, o); });
    m.add({"adagrad", "Adagrad"},
          [](const OptimizerOptions& o) { return std::make_shared<Adagrad>(1e-6, o); });
    m.add({"rmsprop", "RMSprop"},
          [](const OptimizerOptions& o) { return std::make_shared<RMSprop>(0.9, 1e-6, o); });
    m.add({"adadelta", "Adadelta"},
          [](const OptimizerOptions& o) { return std::make_shared<Adadelta>(0.9, 1e-6, o); });
    m.add({"adam", "Adam"},
          [](const OptimizerOptions& o) { return std::make_shared<Adam>(0.9, 0.999, 1e-8, o); });
    m.add({"adamax", "Adamax"},
          [](const OptimizerOptions& o) { return std::make_shared<Adamax>(0.9, 0.999, 1e-8, o); });
    return m;
  }();
  return r;
}

}  // namespace

const std::vector<std::string>& optimizer_names() { return registry().names(); }

OptimizerPtr get_optimizer(const std::string& name, const OptimizerOptions& options) {
  return registry().get(name)(options);
}

}  // namespace npdl::model
