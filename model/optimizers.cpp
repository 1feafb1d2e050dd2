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
void apply(UpdateRule rule, const optimizer_level::StepParams& step, Tensor& value,
           const Tensor& grad, std::vector<Tensor>& state) {
  Tensor* s0 = state.size() > 0 ? &state[0] : nullptr;
  Tensor* s1 = state.size() > 1 ? &state[1] : nullptr;
  dispatch(value.dtype(), [&](auto zero) {
    using T = decltype(zero);
    level_kernels<T>().update(rule, step, value.data<T>(), grad.data<T>(),
                              s0 != nullptr ? s0->data<T>() : nullptr,
                              s1 != nullptr ? s1->data<T>() : nullptr, value.size());
  });
}

// The step size of step t (from 1): the learning rate, or with Adam's and
// Adamax's bias corrections folded in.
double plain_rate(const RuleParameters&, double lr, std::int64_t) { return lr; }
double adam_rate(const RuleParameters& h, double lr, std::int64_t t) {
  return lr * std::sqrt(1 - std::pow(h.beta2, double(t))) / (1 - std::pow(h.beta1, double(t)));
}
double adamax_rate(const RuleParameters& h, double lr, std::int64_t t) {
  return lr / (1 - std::pow(h.beta1, double(t)));
}

// The hyper-parameters each rule reads, checked; `who` names the optimiser.
void check_nothing(const std::string&, const RuleParameters&) {}
void check_momentum(const std::string& who, const RuleParameters& h) {
  require_decay_rate(who, "momentum", h.momentum);
}
void check_epsilon(const std::string& who, const RuleParameters& h) {
  require_epsilon(who, h.epsilon);
}
void check_rho(const std::string& who, const RuleParameters& h) {
  require_decay_rate(who, "rho", h.rho);
  require_epsilon(who, h.epsilon);
}
void check_betas(const std::string& who, const RuleParameters& h) {
  require_decay_rate(who, "beta1", h.beta1);
  require_decay_rate(who, "beta2", h.beta2);
  require_epsilon(who, h.epsilon);
}

/// Everything about a rule but its kernel, in UpdateRule's order.
struct RuleFacts {
  const char* name;  // npdl's class name
  int state_slots;   // tensors kept per parameter, zero at the start
  double (*step_size)(const RuleParameters&, double lr, std::int64_t t);
  void (*check)(const std::string& who, const RuleParameters&);
};
constexpr RuleFacts kRules[kUpdateRuleCount] = {
    {"SGD", 0, plain_rate, check_nothing},
    {"Momentum", 1, plain_rate, check_momentum},
    {"NesterovMomentum", 1, plain_rate, check_momentum},
    {"Adagrad", 1, plain_rate, check_epsilon},
    {"RMSprop", 1, plain_rate, check_rho},
    {"Adadelta", 2, plain_rate, check_rho},
    {"Adam", 2, adam_rate, check_betas},
    {"Adamax", 2, adamax_rate, check_betas},
};

const RuleFacts& facts(UpdateRule rule) { return kRules[static_cast<int>(rule)]; }

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

Optimizer::Optimizer(UpdateRule rule, RuleParameters parameters, OptimizerOptions options)
    : rule_(rule), parameters_(parameters), options_(options) {
  const int index = static_cast<int>(rule);
  if (index < 0 || index >= kUpdateRuleCount) {
    throw ValueError("optimizer: expected an UpdateRule, got the value " + std::to_string(index));
  }
  require(std::isfinite(options.lr) && options.lr >= 0, "optimizer: lr must be finite and >= 0",
          options.lr);
  require(std::isfinite(options.decay) && options.decay >= 0,
          "optimizer: decay must be finite and >= 0", options.decay);
  require(options.lr_min >= 0 && options.lr_min <= options.lr_max,
          "optimizer: lr_min must lie in [0, lr_max]", options.lr_min);
  require(!std::isnan(options.clip), "optimizer: clip must be a number (<= 0: no clipping)",
          options.clip);
  facts(rule).check(name(), parameters);
}

std::string Optimizer::name() const { return facts(rule_).name; }

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
    // Runs before every step: the messages are built only on failure.
    const auto what = [&] {
      return name() + ": parameter " + std::to_string(i) + " (" + p.name + ")";
    };
    if (!p.grad.defined()) {
      throw ShapeError(what() + " has no gradient; expected one of shape " +
                       to_string(p.value.shape()) + " (run backward first)");
    }
    if (p.grad.shape() != p.value.shape()) {
      check_same_shape(p.value.shape(), p.grad.shape(), what() + " gradient");
    }
    check_same_dtype(p.value, p.grad, "optimizer update");
    if (!shapes_.empty() && (i >= shapes_.size() || shapes_[i] != p.value.shape())) {
      throw ShapeError(
          what() + " has shape " + to_string(p.value.shape()) +
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
      for (int s = 0; s < facts(rule_).state_slots; ++s) {
        state_.back().push_back(Tensor::zeros(p->value.shape(), p->value.dtype()));
      }
    }
  }
  const double lr = current_lr();
  ++iterations_;  // t counts from 1
  const optimizer_level::StepParams step{facts(rule_).step_size(parameters_, lr, iterations_),
                                         parameters_};
  for (std::size_t i = 0; i < params.size(); ++i) {
    Parameter& p = *params[i];
    // A buffer shared with someone else (a graph's saved tensor, a caller's
    // copy) must not change under them: update a private copy then.
    if (!p.value.unique()) p.value = p.value.clone();
    apply(rule_, step, p.value, clipped(p.grad, options_.clip), state_[i]);
  }
}

namespace {
RuleParameters momentum_of(double momentum) {
  RuleParameters h;
  h.momentum = momentum;
  return h;
}
RuleParameters decay_of(double rho, double epsilon) {
  RuleParameters h;
  h.rho = rho;
  h.epsilon = epsilon;
  return h;
}
RuleParameters betas_of(double beta1, double beta2, double epsilon) {
  RuleParameters h;
  h.beta1 = beta1;
  h.beta2 = beta2;
  h.epsilon = epsilon;
  return h;
}
}  // namespace

SGD::SGD(OptimizerOptions options) : Optimizer(UpdateRule::Sgd, {}, options) {}
Momentum::Momentum(double momentum, OptimizerOptions options)
    : Optimizer(UpdateRule::Momentum, momentum_of(momentum), options) {}
NesterovMomentum::NesterovMomentum(double momentum, OptimizerOptions options)
    : Optimizer(UpdateRule::Nesterov, momentum_of(momentum), options) {}
Adagrad::Adagrad(double epsilon, OptimizerOptions options)
    : Optimizer(UpdateRule::Adagrad, decay_of(0, epsilon), options) {}
RMSprop::RMSprop(double rho, double epsilon, OptimizerOptions options)
    : Optimizer(UpdateRule::RMSprop, decay_of(rho, epsilon), options) {}
Adadelta::Adadelta(double rho, double epsilon, OptimizerOptions options)
    : Optimizer(UpdateRule::Adadelta, decay_of(rho, epsilon), options) {}
Adam::Adam(double beta1, double beta2, double epsilon, OptimizerOptions options)
    : Optimizer(UpdateRule::Adam, betas_of(beta1, beta2, epsilon), options) {}
Adamax::Adamax(double beta1, double beta2, double epsilon, OptimizerOptions options)
    : Optimizer(UpdateRule::Adamax, betas_of(beta1, beta2, epsilon), options) {}

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
