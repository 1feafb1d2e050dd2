#include "layers/batch_norm/batch_normal.hpp"

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>

#include "autodiff/catalogue.hpp"
#include "autodiff/gradcheck.hpp"
#include "layers/batch_norm/composite.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::layers {
namespace {

const OpInfo kFusedTrain{
    "batch_normal_fused",
    "y = gamma * (x - mean) * rsqrt(var + epsilon) + beta, statistics in one pass",
    "dx = (gamma * invstd / M) * (M * dy - sum(dy) - xhat * sum(dy * xhat)), "
    "dgamma = sum(dy * xhat), dbeta = sum(dy)",
    false,
    /*saves_inputs=*/0b111};
const OpInfo kFusedInfer{
    "batch_normal_fused_inference",
    "y = gamma * (x - running_mean) * rsqrt(running_var + epsilon) + beta",
    "dx = dy * gamma * rsqrt(running_var + epsilon), dgamma = sum(dy * xhat), dbeta = sum(dy)",
    false,
    /*saves_inputs=*/0b111};

std::string number(double v) {
  std::ostringstream os;
  os.precision(6);
  os << v;
  return os.str();
}

// Feature `flat` of parameters of `shape`: its index, or its index tuple
// when every position of a sample is a feature.
std::string feature_name(const Shape& shape, std::int64_t flat) {
  if (shape.size() == 1) return std::to_string(flat);
  Shape index(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return to_string(index);
}

// Note [Running statistics from outside]: the first element of `t` that
// does not fit, named.
void require_each(const Tensor& t, const std::string& layer, const char* what, bool (*fits)(double),
                  const char* expected) {
  const std::vector<double> values = t.to_vector();
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (fits(values[i])) continue;
    throw ValueError(layer + ": " + what + " of feature " + feature_name(t.shape(), i) + " is " +
                     number(values[i]) + "; expected " + expected);
  }
}

// Note [Checked mode's reference]
// The checked mode runs reverse mode through the composite `f` on the saved
// inputs and compares it with the fused gradients. The composite runs in
// float64 on the inputs promoted from their dtype, whatever that dtype is:
// recorded in float32, the composite rounds the batch mean to float32, and
// on features far from zero next to their spread (x = 1e4 + N(0, 1)) its
// own dx is off by tens of percent while the fused kernel, which keeps the
// statistics in float64, is right to about 1e-6. A float32 reference would
// blame the fused kernel for the reference's rounding. The tolerance is the
// fused gradient's dtype's, its absolute part scaled by the gradient's root
// mean square.
void expect_agreement(const GraphFunction& composite, const VjpArgs& c, const BatchNormGrads& g) {
  GradModeGuard recording(true);  // backward may run under a NoGradGuard
  const auto f64 = [](const Tensor& t) { return t.astype(DType::Float64); };
  const std::vector<Tensor> autodiff = reverse_mode_gradients(
      composite, {f64(c.input(0).value()), f64(c.input(1).value()), f64(c.input(2).value())},
      f64(c.grad.value()));
  const std::pair<const char*, const Tensor*> fused[] = {
      {"dx", &g.dx}, {"dgamma", &g.dgamma}, {"dbeta", &g.dbeta}};
  for (int i = 0; i < 3; ++i) {
    expect_hand_derived_close(std::string("BatchNormal checked backward (") + fused[i].first + ")",
                              autodiff[i], *fused[i].second);
  }
}

[[noreturn]] void throw_non_finite(const std::string& layer, const std::string& batch,
                                   const std::string& detail) {
  throw ValueError(layer + ": " + batch + " contains NaN or Inf" + detail +
                   "; expected finite values");
}

std::string training_batch(const Shape& shape) {
  return "the training batch of shape " + to_string(shape);
}

[[noreturn]] void throw_non_finite(const Shape& shape) {
  throw_non_finite("BatchNormal", training_batch(shape), "");
}

double largest_finite(DType dtype) {
  return dtype == DType::Float32 ? double(std::numeric_limits<float>::max())
                                 : std::numeric_limits<double>::max();
}

// BatchNormal's batch, described when its statistics fail.
StatisticsFailure describe_batch(const Tensor& x) {
  StatisticsFailure f{"BatchNormal", training_batch(x.shape()), std::nullopt};
  if (!math::all_finite(x)) f.non_finite = "";
  return f;
}

// Largest |x|, to tell whether the variance could overflow the dtype.
double max_magnitude(const Tensor& x) {
  if (x.size() == 0) return 0.0;
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return double(Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(x.data<T>(), x.size())
                      .abs()
                      .maxCoeff());
  });
}

}  // namespace

// Note [Statistics overflow]
// A finite batch can still have a variance beyond the dtype's range
// (float32 values near 1e19 and beyond, float64 near 1e154): the squared
// deviations overflow. Every mode applies one rule, on the float64
// statistics: the batch fails when its mean or variance is not finite in the
// input's dtype, and the message tells NaN/Inf in the input from overflow.
// SyncBatchNormal applies the same rule to the global statistics, which are
// the same bits on every rank, so every rank fails together (its `describe`
// then agrees across ranks on where the NaN or Inf is).
void check_statistics(const BatchNormStats& stats, DType dtype,
                      const std::function<StatisticsFailure()>& describe) {
  const double limit = largest_finite(dtype);
  const auto fits = [limit](const Tensor& t) {
    for (double v : t.to_vector()) {
      if (!(std::fabs(v) <= limit)) return false;  // NaN fails too
    }
    return true;
  };
  if (fits(stats.mean) && fits(stats.var)) return;
  const StatisticsFailure f = describe();
  if (f.non_finite) throw_non_finite(f.layer, f.batch, *f.non_finite);
  throw ValueError(f.layer + ": the variance of " + f.batch + " overflowed " + to_string(dtype) +
                   ": the input is finite, but its squared deviations from the mean exceed " +
                   number(limit) + "; expected values of a smaller magnitude (scale the input)");
}

// Note [Running statistics from outside]
// Inference divides by sqrt(running_var + epsilon): a running variance
// below zero gives NaN (or, just above -epsilon, an enormous scale), and a
// NaN or Inf statistic spoils every output, all without an error. Training
// makes finite statistics with var >= 0 (an M2 is never negative). What
// comes from outside is checked where it enters: the setters, and
// Model::load, which checks every tensor of the file before it assigns any.
// Inference checks again, a read per feature, for whatever got past both
// (Layer::restore takes a snapshot as it is).
void check_running_mean(const Tensor& mean, const std::string& layer) {
  require_each(
      mean, layer, "running mean", [](double v) { return std::isfinite(v); }, "a finite number");
}

void check_running_var(const Tensor& var, const std::string& layer) {
  require_each(
      var, layer, "running variance", [](double v) { return std::isfinite(v) && v >= 0.0; },
      "a finite number >= 0 (a variance is never negative)");
}

Var batchnorm_fused_train(const Var& x, const Var& gamma, const Var& beta, const BatchNormLayout& L,
                          double eps, const FusedOptions& options) {
  const bool checked = options.checked;
  const Variant variant = options.variant;
  const DoubleBackward double_backward = options.double_backward;
  BatchNormStats stats;
  Tensor y = batchnorm_forward_train(x.value(), gamma.value(), beta.value(), L, eps, stats,
                                     variant == Variant::NpdlStd);
  if (options.require_finite) {  // Note [Statistics overflow]
    check_statistics(stats, x.dtype(), [&] { return describe_batch(x.value()); });
  }
  if (options.stats != nullptr) *options.stats = stats;
  Graph* graph = common_graph({&x, &gamma, &beta}, kFusedTrain.name);
  if (graph == nullptr) return Var(std::move(y));
  return graph->record(
      kFusedTrain, {&x, &gamma, &beta}, std::move(y), {stats.mean, stats.invstd},
      [L, eps, variant, checked, double_backward](const VjpArgs& c) -> Vars {
        const BatchNormStats s{c.saved[0], Tensor(), c.saved[1]};
        if (c.create_graph && !checked) {
          return batchnorm_train_grads_on_graph(c, L, eps, variant, s, double_backward, checked);
        }
        const BatchNormGrads g =
            batchnorm_backward_train(c.grad.value(), c.input(0).value(), c.input(1).value(), s, L);
        if (checked) {
          expect_agreement(
              [&](const std::vector<Var>& v) {
                return batchnorm_composite_train(v[0], v[1], v[2], L, eps, variant);
              },
              c, g);
          if (c.create_graph) {  // and the second order, when its VJPs run
            return batchnorm_train_grads_on_graph(c, L, eps, variant, s, double_backward, checked);
          }
        }
        return {Var(g.dx), Var(g.dgamma), Var(g.dbeta)};
      });
}

Var batchnorm_fused_infer(const Var& x, const Var& gamma, const Var& beta, const BatchNormLayout& L,
                          double eps, const Tensor& rm, const Tensor& rv, bool checked) {
  Tensor y = batchnorm_forward_infer(x.value(), gamma.value(), beta.value(), rm, rv, L, eps);
  Graph* graph = common_graph({&x, &gamma, &beta}, kFusedInfer.name);
  if (graph == nullptr) return Var(std::move(y));
  return graph->record(
      kFusedInfer, {&x, &gamma, &beta}, std::move(y), {},
      [L, eps, rm, rv, checked](const VjpArgs& c) -> Vars {
        if (c.create_graph) return batchnorm_infer_grads_on_graph(c, L, eps, rm, rv);
        const BatchNormGrads g = batchnorm_backward_infer(c.grad.value(), c.input(0).value(),
                                                          c.input(1).value(), rm, rv, L, eps);
        if (checked) {
          expect_agreement(
              [&](const std::vector<Var>& v) {
                return batchnorm_composite_infer(v[0], v[1], v[2], L, eps, rm.astype(v[0].dtype()),
                                                 rv.astype(v[0].dtype()));
              },
              c, g);
        }
        return {Var(g.dx), Var(g.dgamma), Var(g.dbeta)};
      });
}

BatchNormal::BatchNormal(double epsilon, double momentum, int axis,
                         initializers::InitSpec beta_init, initializers::InitSpec gamma_init)
    : epsilon_(epsilon),
      momentum_(momentum),
      axis_(axis),
      beta_init_(std::move(beta_init)),
      gamma_init_(std::move(gamma_init)) {
  if (!(std::isfinite(epsilon) && epsilon > 0)) {
    throw ValueError("BatchNormal: epsilon must be a finite number > 0, got " + number(epsilon));
  }
  if (!(momentum >= 0.0 && momentum <= 1.0)) {
    throw ValueError("BatchNormal: momentum must lie in [0, 1], got " + number(momentum));
  }
}

void BatchNormal::build(const Shape& input_shape) {
  Shape batch{2};
  batch.insert(batch.end(), input_shape.begin(), input_shape.end());
  BatchNormLayout layout = batchnorm_layout(batch, axis_);  // throws on a bad axis or rank
  if (layout.features == 0) {
    throw ShapeError("BatchNormal expects at least one feature, got samples of shape " +
                     to_string(input_shape) + " (axis " + std::to_string(axis_) + ")");
  }
  ParameterPtr gamma = make_parameter(gamma_init_(layout.param_shape, DType::Float32), "gamma");
  ParameterPtr beta = make_parameter(beta_init_(layout.param_shape, DType::Float32), "beta");
  gamma->grad = Tensor::zeros(layout.param_shape, DType::Float32);
  beta->grad = Tensor::zeros(layout.param_shape, DType::Float32);
  layout_ = std::move(layout);
  gamma_ = std::move(gamma);
  beta_ = std::move(beta);
  running_mean_ = Tensor::zeros(layout_.param_shape, DType::Float32);
  running_var_ = Tensor::ones(layout_.param_shape, DType::Float32);
}

const BatchNormLayout& BatchNormal::layout() const {
  if (!connected()) {
    throw GraphError("BatchNormal is not connected yet: call connect_to or forward first");
  }
  return layout_;
}

void BatchNormal::check_input(const Tensor& x, bool training, bool scan_values) const {
  const BatchNormLayout L = batchnorm_layout(x.shape(), axis_);
  if (x.size() == 0) {
    throw ShapeError(
        "BatchNormal expects a non-empty input (at least one feature and one "
        "sample), got shape " +
        to_string(x.shape()) + " with " + std::to_string(L.features) +
        " features and M = " + std::to_string(L.M));
  }
  const bool rank_fits = x.rank() == static_cast<int>(input_shape().size()) + 1;
  if (connected() && (!rank_fits || L.param_shape != layout_.param_shape)) {
    throw ShapeError("BatchNormal expects inputs of rank " +
                     std::to_string(input_shape().size() + 1) + " whose features have shape " +
                     to_string(layout_.param_shape) + " (axis " + std::to_string(axis_) +
                     "), got an input of shape " + to_string(x.shape()));
  }
  if (!training) return;
  if (L.M < 2) {
    throw ValueError(
        "BatchNormal in training needs at least 2 elements per feature to estimate "
        "a variance, got M = " +
        std::to_string(L.M) + " for input shape " + to_string(x.shape()));
  }
  if (scan_values && !math::all_finite(x)) throw_non_finite(x.shape());
}

Var BatchNormal::apply(const Var& x, bool training) {
  // Validation comes before any state changes. The fused path sees NaN and
  // Inf in its statistics, without a separate scan of the batch.
  const bool fused = mode_ != BackwardMode::Autodiff;
  check_input(x.value(), training, /*scan_values=*/!fused);
  if (!training && connected()) {  // Note [Running statistics from outside]
    check_running_mean(running_mean_, name());
    check_running_var(running_var_, name());
  }
  return apply_with(x, training, [&](const BatchNormLayout& L) {
    // Note [Statistics overflow]: the composite's own statistics are in the
    // input's dtype; a batch large enough to overflow is checked first on
    // float64 statistics, so that nothing is recorded for it.
    if (!fused && training &&
        max_magnitude(x.value()) > 0.5 * std::sqrt(largest_finite(x.dtype()))) {
      BatchNormStats exact;
      batchnorm_forward_train(x.value(), gamma_->value, beta_->value, L, epsilon_, exact);
      check_statistics(exact, x.dtype(), [&] { return describe_batch(x.value()); });
    }
    return Recording{[this, L, fused, training](const Var& x, const Var& gamma, const Var& beta,
                                                BatchNormStats& stats) {
                       return fused ? record_fused(x, gamma, beta, L, training, stats)
                                    : record_composite(x, gamma, beta, L, training, stats);
                     },
                     L.M};
  });
}

Var BatchNormal::record_composite(const Var& x, const Var& gamma, const Var& beta,
                                  const BatchNormLayout& L, bool training,
                                  BatchNormStats& stats) const {
  if (!training) {
    return batchnorm_composite_infer(x, gamma, beta, L, epsilon_, running_mean_, running_var_);
  }
  Var y = batchnorm_composite_train(x, gamma, beta, L, epsilon_, variant_, &stats);
  check_statistics(stats, x.dtype(), [&] { return describe_batch(x.value()); });
  return y;
}

Var BatchNormal::record_fused(const Var& x, const Var& gamma, const Var& beta,
                              const BatchNormLayout& L, bool training,
                              BatchNormStats& stats) const {
  const bool checked = mode_ == BackwardMode::Checked;
  if (!training) {
    return batchnorm_fused_infer(x, gamma, beta, L, epsilon_, running_mean_, running_var_, checked);
  }
  FusedOptions options;
  options.checked = checked;
  options.variant = variant_;
  options.require_finite = true;
  options.double_backward = double_backward_;
  options.stats = &stats;
  return batchnorm_fused_train(x, gamma, beta, L, epsilon_, options);
}

Var BatchNormal::apply_with(const Var& x, bool training,
                            const std::function<Recording(const BatchNormLayout&)>& plan) {
  // The fused path finds NaN, Inf and overflow after the dtype may have
  // changed: Note [No change on failure].
  StateGuard guard({this});
  // Inputs fit when their features do: a per-channel layer takes any
  // spatial size, so the base class's exact shape check does not apply.
  if (!connected()) connect_to(Shape(x.shape().begin() + 1, x.shape().end()));
  match_dtype(x.dtype());
  const BatchNormLayout L = batchnorm_layout(x.shape(), axis_);
  const Recording recording = plan(L);
  Graph* graph = x.graph();
  std::optional<Graph::CompositeScope> scope;
  if (graph != nullptr) scope.emplace(*graph, name());
  const Var gamma = graph != nullptr ? graph->param(gamma_) : Var(gamma_->value);
  const Var beta = graph != nullptr ? graph->param(beta_) : Var(beta_->value);
  BatchNormStats stats;
  const Var y = recording.record(x, gamma, beta, stats);
  if (training) update_running_stats(stats, recording.count);
  fix_dtype();
  guard.commit();
  return y;
}

void update_running_statistics(Tensor& running_mean, Tensor& running_var,
                               const BatchNormStats& stats, std::int64_t M, double momentum) {
  // npdl itself keeps no running statistics: the rule is ours.
  const DType dtype = running_mean.dtype();
  const Tensor mean = stats.mean.astype(dtype), var = stats.var.astype(dtype);
  const double unbias = double(M) / double(M - 1);
  running_mean = math::add(math::scale(running_mean, momentum), math::scale(mean, 1.0 - momentum));
  running_var =
      math::add(math::scale(running_var, momentum), math::scale(var, (1.0 - momentum) * unbias));
}

void BatchNormal::update_running_stats(const BatchNormStats& stats, std::int64_t M) {
  update_running_statistics(running_mean_, running_var_, stats, M, momentum_);
}

Tensor BatchNormal::checked_param(const Tensor& t, const char* what) const {
  check_same_shape(layout().param_shape, t.shape(), std::string("BatchNormal ") + what);
  return t.astype(gamma_->value.dtype());
}

void BatchNormal::set_gamma(const Tensor& gamma) { gamma_->value = checked_param(gamma, "gamma"); }
void BatchNormal::set_beta(const Tensor& beta) { beta_->value = checked_param(beta, "beta"); }

void BatchNormal::check_state(std::size_t index, const Tensor& value,
                              const std::string& who) const {
  if (index == 0) check_running_mean(value, who);
  if (index == 1) check_running_var(value, who);
}

void BatchNormal::set_running_stats(const Tensor& mean, const Tensor& var) {
  Tensor m = checked_param(mean, "running_mean");
  Tensor v = checked_param(var, "running_var");
  check_running_mean(m, name());
  check_running_var(v, name());
  running_mean_ = std::move(m);
  running_var_ = std::move(v);
}

// Catalogue entries (Note [One entry per primitive] in autodiff/catalogue.hpp):
// the fused nodes on the layouts BatchNormal meets, edge shapes among them.
namespace {
using catalogue::Choices;
using catalogue::Primitive;
using catalogue::Sample;
using catalogue::Samples;
using V = const std::vector<Var>&;
constexpr const char* kFile = "layers/batch_norm/batch_normal.cpp";
constexpr double kSampleEpsilon = 1e-5;

struct LayoutCase {
  const char* what;
  Shape shape;
  int axis;
  double offset;  // added to x: statistics far from 0
};
const LayoutCase kLayoutCases[] = {{"(4, 3), a feature per column", {4, 3}, 0, 0.0},
                                   {"M = 2", {2, 3}, 0, 0.0},
                                   {"one feature", {5, 1}, 0, 0.0},
                                   {"per channel of (3, 2, 2, 2)", {3, 2, 2, 2}, 1, 0.0},
                                   {"1x1 maps", {4, 2, 1, 1}, 1, 0.0},
                                   {"features last of (3, 2, 4)", {3, 2, 4}, -1, 0.0},
                                   {"a large offset", {4, 3}, 0, 50.0}};

// x, gamma and beta for a layout case.
std::vector<Tensor> layout_inputs(const LayoutCase& c, std::uint64_t seed) {
  const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
  return {math::add_scalar(catalogue::sample::normal(c.shape, seed), c.offset),
          catalogue::sample::positive(L.param_shape, seed + 1),
          catalogue::sample::normal(L.param_shape, seed + 2)};
}

Samples fused_train_samples() {
  Samples s;
  std::uint64_t seed = 200;
  for (const LayoutCase& c : kLayoutCases) {
    const int axis = c.axis;
    s.push_back({c.what,
                 [axis](V v) {
                   const BatchNormLayout L = batchnorm_layout(v[0].shape(), axis);
                   return batchnorm_fused_train(v[0], v[1], v[2], L, kSampleEpsilon);
                 },
                 layout_inputs(c, seed)});
    seed += 3;
  }
  return s;
}

Samples fused_infer_samples() {
  Samples s;
  std::uint64_t seed = 300;
  for (const LayoutCase& c : {kLayoutCases[0], kLayoutCases[3], kLayoutCases[4]}) {
    const int axis = c.axis;
    const Shape param = batchnorm_layout(c.shape, axis).param_shape;
    const Tensor mean = catalogue::sample::normal(param, seed + 3),
                 var = catalogue::sample::positive(param, seed + 4);
    s.push_back({c.what,
                 [axis, mean, var](V v) {
                   const BatchNormLayout L = batchnorm_layout(v[0].shape(), axis);
                   return batchnorm_fused_infer(v[0], v[1], v[2], L, kSampleEpsilon, mean, var);
                 },
                 layout_inputs(c, seed)});
    seed += 5;
  }
  return s;
}

// The layout for the axis the bits choose; refuses parameters larger than
// the caller allows (an empty batch of huge samples).
BatchNormLayout random_layout(const Var& a, const Choices& c) {
  const BatchNormLayout L = batchnorm_layout(a.shape(), static_cast<int>(c.bits % 3) - 1);
  if (c.max_elements > 0 && L.features > c.max_elements) {
    throw ValueError("batch norm: a random application would make " + std::to_string(L.features) +
                     " parameters; the caller allows " + std::to_string(c.max_elements));
  }
  return L;
}

// gamma = 1 and beta = 0 as constants. epsilon 1e-3 keeps a constant
// feature's derivatives moderate.
Var random_fused_train(const Var& a, const Var&, const Choices& c) {
  const BatchNormLayout L = random_layout(a, c);
  const Var gamma(Tensor::ones(L.param_shape, a.dtype())),
      beta(Tensor::zeros(L.param_shape, a.dtype()));
  return batchnorm_fused_train(a, gamma, beta, L, 1e-3);
}

Var random_fused_infer(const Var& a, const Var&, const Choices& c) {
  const BatchNormLayout L = random_layout(a, c);
  const Var gamma(Tensor::ones(L.param_shape, a.dtype())),
      beta(Tensor::zeros(L.param_shape, a.dtype()));
  const Tensor mean = Tensor::full(L.param_shape, c.scalar, DType::Float64);
  const Tensor var = Tensor::full(L.param_shape, 1.0 + c.scalar * c.scalar, DType::Float64);
  return batchnorm_fused_infer(a, gamma, beta, L, 1e-3, mean, var);
}

const Primitive kEntries[] = {
    Primitive(kFusedTrain, kFile)
        .with_inputs({{}, {}, {}})
        .with_samples(fused_train_samples)
        .with_random(random_fused_train),
    Primitive(kFusedInfer, kFile)
        .with_inputs({{}, {}, {}})
        .with_samples(fused_infer_samples)
        .with_random(random_fused_infer),
};
const catalogue::Registration kRegistered(kEntries);
}  // namespace

// The Hand nodes' entries (layers/batch_norm/second_order.hpp): each node
// is a gradient of the fused training node, recorded under create_graph;
// its samples take (x, gamma, dy) and return that gradient.
namespace {
constexpr const char* kSecondOrderFile = "layers/batch_norm/second_order.cpp";

// d<dy, batch_normal(x)>/d(x or gamma) of v = (x, gamma, dy), on their
// graph. Finite differences call it with values on no graph, gradients
// off: then on a graph of its own, returning the value.
template <int which>
Var hand_node(const std::vector<Var>& v, const BatchNormLayout& L) {
  if (!v[0].tracked()) {
    GradModeGuard recording(true);
    Graph local;
    std::vector<Var> on_graph;
    for (const Var& each : v) on_graph.push_back(local.variable(each.value()));
    return Var(hand_node<which>(on_graph, L).value());
  }
  const Var beta(Tensor::zeros(L.param_shape, DType::Float64));
  const Var y = batchnorm_fused_train(v[0], v[1], beta, L, 1e-5);
  return grad({y}, {v[0], v[1]}, {v[2]}, /*create_graph=*/true)[which];
}

template <int which>
Samples hand_node_samples() {
  Samples s;
  std::uint64_t seed = 400;
  for (const auto& [shape, axis] :
       {std::pair<Shape, int>{{4, 3}, 0}, {{3, 2, 2, 2}, 1}, {{2, 3}, 0}}) {
    const BatchNormLayout L = batchnorm_layout(shape, axis);
    s.push_back({"shape " + to_string(shape) + ", axis " + std::to_string(axis),
                 [L](V v) { return hand_node<which>(v, L); },
                 {catalogue::sample::normal(shape, seed),
                  catalogue::sample::positive(L.param_shape, seed + 1),
                  catalogue::sample::normal(shape, seed + 2)}});
    seed += 3;
  }
  return s;
}

const Primitive kHandEntries[] = {
    Primitive(kHandDx, kSecondOrderFile)
        .with_inputs({{}, {}, {}})
        .with_samples(hand_node_samples<0>),
    Primitive(kHandDgamma, kSecondOrderFile)
        .with_inputs({{}, {}, {}})
        .with_samples(hand_node_samples<1>),
};
const catalogue::Registration kHandRegistered(kHandEntries);
}  // namespace

}  // namespace npdl::layers
