#include "cli/batchnorm_problem.hpp"

#include <algorithm>
#include <cmath>

#include "io/npy.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::cli {
namespace {

Tensor seeded_x(const ProblemSpec& spec) {
  // Mean 1 and spread 2, so that centring and scaling visibly do something.
  return Tensor::randn(spec.shape, spec.seed, spec.dtype.value_or(DType::Float64), 1.0, 2.0);
}

void check_problem(const BatchNormProblem& p) {
  if (!(std::isfinite(p.epsilon) && p.epsilon > 0)) {
    throw ValueError("epsilon must be a finite number > 0, got " + std::to_string(p.epsilon));
  }
  if (p.training && p.layout.M < 2) {
    throw ValueError(
        "training needs at least 2 elements per feature to estimate a variance, got "
        "M = " +
        std::to_string(p.layout.M) + " for x of shape " + to_string(p.x.shape()));
  }
  if (!math::all_finite(p.x)) {
    throw ValueError("x of shape " + to_string(p.x.shape()) +
                     " contains NaN or Inf; expected finite values");
  }
  if (p.x.size() > kMaxFiniteDifferenceElements) {
    throw ValueError("x has " + std::to_string(p.x.size()) +
                     " elements; finite differences run two forwards per element, so at most " +
                     std::to_string(kMaxFiniteDifferenceElements) + " are allowed here");
  }
}

// The tolerance of a comparison: the dtype's, with atol scaled by the size
// of the reference gradient (a gradient of magnitude 100 carries 100 times
// the rounding error of one of magnitude 1).
TensorComparison compare(const std::string& name, const Tensor& actual, const Tensor& reference,
                         GradCheckOptions tolerance) {
  const double rms = std::sqrt(math::sum(math::square(reference.astype(DType::Float64))).item() /
                               double(std::max<std::int64_t>(reference.size(), 1)));
  return compare_tensors(name, actual, reference, tolerance.atol * std::max(1.0, rms),
                         tolerance.rtol);
}

}  // namespace

GradientAgreement agreement(const std::string& tensor, const std::string& pair,
                            const Tensor& actual, const Tensor& reference,
                            const GradCheckOptions& tolerance, bool informational) {
  GradientAgreement a;
  a.tensor = tensor;
  a.pair = pair;
  a.informational = informational;
  const Tensor actual64 = actual.astype(DType::Float64);
  const Tensor reference64 = reference.astype(DType::Float64);
  a.max_abs = math::max_abs_diff(actual64, reference64).abs;
  const std::vector<double> ref = reference64.to_vector();
  double scale = 0.0;
  for (double v : ref) scale = std::max(scale, std::fabs(v));
  a.max_rel = a.max_abs == 0.0 ? 0.0 : a.max_abs / scale;
  a.detail = compare(tensor, actual64, reference64, tolerance);
  a.verdict = !a.detail.ok       ? (informational ? "inexact" : "MISMATCH")
              : a.max_abs == 0.0 ? "exact"
                                 : "close";
  return a;
}

DType parse_dtype(const std::string& name) {
  if (name == "float32") return DType::Float32;
  if (name == "float64") return DType::Float64;
  throw ValueError("unknown dtype '" + name + "'; expected float32 or float64");
}

BatchNormProblem make_problem(const ProblemSpec& spec) {
  BatchNormProblem p;
  if (spec.x_path.empty()) {
    p.x = seeded_x(spec);
    p.origin = "built-in seeded random input (seed " + std::to_string(spec.seed) + ")";
  } else {
    p.x = io::load_npy(spec.x_path);
    if (spec.dtype) p.x = p.x.astype(*spec.dtype);
    p.origin = "'" + spec.x_path + "'";
  }
  p.axis = spec.axis;
  p.epsilon = spec.epsilon;
  p.training = spec.training;
  p.variant = spec.variant;
  p.layout = layers::batchnorm_layout(p.x.shape(), spec.axis);  // throws on a bad axis or rank
  check_problem(p);
  const DType dtype = p.x.dtype();
  const Shape& param = p.layout.param_shape;
  p.gamma = Tensor::uniform(param, spec.seed + 1, dtype, 0.5, 1.5);
  p.beta = Tensor::uniform(param, spec.seed + 2, dtype, -0.5, 0.5);
  p.dy = Tensor::randn(p.x.shape(), spec.seed + 3, dtype);
  p.running_mean = Tensor::randn(param, spec.seed + 4, dtype, 0.0, 0.5);
  p.running_var = Tensor::uniform(param, spec.seed + 5, dtype, 0.5, 2.0);
  p.ggx = Tensor::randn(p.x.shape(), spec.seed + 6, dtype);
  p.gggamma = Tensor::randn(param, spec.seed + 7, dtype);
  p.ggbeta = Tensor::randn(param, spec.seed + 8, dtype);
  return p;
}

GraphFunction composite_function(const BatchNormProblem& p) {
  const layers::BatchNormLayout layout = p.layout;
  const double epsilon = p.epsilon;
  if (p.training) {
    const layers::Variant variant = p.variant;
    return [layout, epsilon, variant](const std::vector<Var>& v) {
      return layers::batchnorm_composite_train(v[0], v[1], v[2], layout, epsilon, variant);
    };
  }
  const Tensor mean = p.running_mean, var = p.running_var;
  return [layout, epsilon, mean, var](const std::vector<Var>& v) {
    // The statistics are constants of the input's dtype (float64 in checks).
    return layers::batchnorm_composite_infer(v[0], v[1], v[2], layout, epsilon,
                                             mean.astype(v[0].dtype()), var.astype(v[0].dtype()));
  };
}

std::vector<Tensor> autodiff_gradients(const BatchNormProblem& p) {
  return reverse_mode_gradients(composite_function(p), {p.x, p.gamma, p.beta}, p.dy);
}

std::vector<Tensor> autodiff_gradients_in_float64(const BatchNormProblem& p) {
  const auto f64 = [](const Tensor& t) { return t.astype(DType::Float64); };
  return reverse_mode_gradients(composite_function(p), {f64(p.x), f64(p.gamma), f64(p.beta)},
                                f64(p.dy));
}

std::vector<Tensor> fused_gradients(const BatchNormProblem& p) {
  layers::BatchNormGrads g;
  if (p.training) {
    layers::BatchNormStats stats;
    layers::batchnorm_forward_train(p.x, p.gamma, p.beta, p.layout, p.epsilon, stats,
                                    p.variant == layers::Variant::NpdlStd);
    g = layers::batchnorm_backward_train(p.dy, p.x, p.gamma, stats, p.layout);
  } else {
    g = layers::batchnorm_backward_infer(p.dy, p.x, p.gamma, p.running_mean, p.running_var,
                                         p.layout, p.epsilon);
  }
  return {g.dx, g.dgamma, g.dbeta};
}

std::vector<Tensor> numeric_gradients(const BatchNormProblem& p) {
  const GradCheckOptions defaults;
  return finite_difference_gradients(composite_function(p), {p.x, p.gamma, p.beta},
                                     p.dy.astype(DType::Float64), defaults.step);
}

std::vector<GradientAgreement> compare_gradients(const BatchNormProblem& p,
                                                 const std::vector<Tensor>& autodiff,
                                                 const std::vector<Tensor>& fused,
                                                 const std::vector<Tensor>& numeric) {
  // Against float64 central differences (truncation error ~ step^2) the
  // float64 tolerance is gradcheck's; a float32 computation has float32's.
  const GradCheckOptions vs_numeric =
      p.x.dtype() == DType::Float64 ? GradCheckOptions{} : tolerances_for(DType::Float32);
  const GradCheckOptions vs_each_other = tolerances_for(p.x.dtype());
  // Note [Checked mode's reference]: a float32 problem's fused gradients are
  // held to the composite run in float64; the float32 composite's distance
  // from float64 is its own rounding, shown but not a failure.
  const bool float32 = p.x.dtype() == DType::Float32;
  const std::vector<Tensor> reference = float32 ? autodiff_gradients_in_float64(p) : autodiff;
  const char* names[] = {"dx", "dgamma", "dbeta"};
  std::vector<GradientAgreement> out;
  for (int i = 0; i < 3; ++i) {
    out.push_back(agreement(names[i], "autodiff vs finite diff", autodiff[i], numeric[i],
                            vs_numeric, /*informational=*/float32));
    out.push_back(agreement(names[i], "fused vs finite diff", fused[i], numeric[i], vs_numeric));
    out.push_back(agreement(names[i],
                            float32 ? "autodiff in float64 vs fused" : "autodiff vs fused",
                            reference[i], fused[i], vs_each_other));
  }
  return out;
}

namespace {

GraphFunction forward_for(const BatchNormProblem& p, SecondOrderWay way) {
  if (way == SecondOrderWay::Autodiff) return composite_function(p);
  const layers::BatchNormLayout layout = p.layout;
  const double epsilon = p.epsilon;
  const layers::DoubleBackward how =
      way == SecondOrderWay::Hand ? layers::DoubleBackward::Hand : layers::DoubleBackward::Recorded;
  layers::FusedOptions options;
  options.variant = p.variant;
  options.double_backward = how;
  return [layout, epsilon, options](const std::vector<Var>& v) {
    return layers::batchnorm_fused_train(v[0], v[1], v[2], layout, epsilon, options);
  };
}

// H's weights as tensors of `dtype`.
std::vector<Var> second_upstreams(const BatchNormProblem& p, DType dtype) {
  return {Var(p.ggx.astype(dtype)), Var(p.gggamma.astype(dtype)), Var(p.ggbeta.astype(dtype))};
}

}  // namespace

std::vector<Tensor> second_order_gradients(const BatchNormProblem& p, SecondOrderWay way) {
  GradModeGuard recording(true);
  Graph graph;
  const Var x = graph.variable(p.x, "x"), gamma = graph.variable(p.gamma, "gamma");
  const Var beta = graph.variable(p.beta, "beta"), dy = graph.variable(p.dy, "dy");
  const Var y = forward_for(p, way)({x, gamma, beta});
  const std::vector<Var> first = grad({y}, {x, gamma, beta}, {dy}, /*create_graph=*/true);
  std::vector<Var> outputs, weights;
  const std::vector<Var> w = second_upstreams(p, p.x.dtype());
  for (int i = 0; i < 3; ++i) {
    if (!first[i].requires_grad()) continue;
    outputs.push_back(first[i]);
    weights.push_back(w[i]);
  }
  std::vector<Tensor> result;
  for (const Var& g : grad(outputs, {x, gamma, dy}, weights)) result.push_back(g.value());
  return result;
}

std::vector<Tensor> numeric_second_order_gradients(const BatchNormProblem& p) {
  const auto f64 = [](const Tensor& t) { return t.astype(DType::Float64); };
  std::vector<Tensor> at{f64(p.x), f64(p.gamma), f64(p.dy)};
  const Tensor beta = f64(p.beta);
  const GraphFunction f = composite_function(p);
  const std::vector<Var> w = second_upstreams(p, DType::Float64);
  auto h = [&] {
    const std::vector<Tensor> g = reverse_mode_gradients(f, {at[0], at[1], beta}, at[2]);
    double sum = 0.0;
    for (int i = 0; i < 3; ++i) sum += math::sum(math::mul(g[i], w[i].value())).item();
    return sum;
  };
  return central_differences(at, h, GradCheckOptions{}.step);
}

std::vector<GradientAgreement> compare_second_order(const BatchNormProblem& p,
                                                    const std::vector<Tensor>& autodiff,
                                                    const std::vector<Tensor>& recorded,
                                                    const std::vector<Tensor>& hand,
                                                    const std::vector<Tensor>& numeric) {
  const bool float32 = p.x.dtype() == DType::Float32;
  const GradCheckOptions vs_numeric = float32 ? tolerances_for(DType::Float32) : GradCheckOptions{};
  const char* names[] = {"d/dx", "d/dgamma", "d/ddy"};
  std::vector<GradientAgreement> out;
  for (int i = 0; i < 3; ++i) {
    out.push_back(agreement(names[i], "autodiff vs finite diff", autodiff[i], numeric[i],
                            vs_numeric, float32));
    out.push_back(agreement(names[i], "recorded vs finite diff", recorded[i], numeric[i],
                            vs_numeric, float32));
    out.push_back(agreement(names[i], "hand vs finite diff", hand[i], numeric[i], vs_numeric));
    out.push_back(agreement(names[i], "hand vs autodiff", hand[i], autodiff[i],
                            tolerances_for(p.x.dtype()), float32));
  }
  return out;
}

std::string GradientAgreement::describe() const {
  const std::size_t vs = pair.find(" vs ");
  return pair + ": " + detail.describe() + " (got = " + pair.substr(0, vs) +
         ", expected = " + pair.substr(vs + 4) + ")";
}

Table agreement_table(const std::vector<GradientAgreement>& agreements) {
  Table t;
  t.header = {"gradient", "comparison", "max abs diff", "max rel diff", "verdict"};
  for (const GradientAgreement& a : agreements) {
    t.rows.push_back(
        {a.tensor, a.pair, format_number(a.max_abs), format_number(a.max_rel), a.verdict});
  }
  return t;
}

void throw_first_mismatch(const std::vector<GradientAgreement>& agreements) {
  for (const GradientAgreement& a : agreements) {
    if (!a.ok()) {
      throw GradientMismatch("gradient mismatch, " + a.describe());
    }
  }
}

void adopt_dtype(layers::BatchNormal& layer, DType dtype) {
  // One sample in inference: converts the parameters, changes no statistics.
  Shape one_sample{1};
  one_sample.insert(one_sample.end(), layer.input_shape().begin(), layer.input_shape().end());
  layer.forward(Tensor::zeros(one_sample, dtype), /*training=*/false);
}

RecordedBatchNorm record_batchnorm(const BatchNormProblem& p) {
  RecordedBatchNorm r;
  r.graph = std::make_unique<Graph>();
  r.layer = std::make_unique<layers::BatchNormal>(p.epsilon, 0.9, p.axis);
  layers::BatchNormal& layer = *r.layer;
  layer.set_backward_mode(layers::BackwardMode::Autodiff);
  layer.set_variant(p.variant);
  layer.connect_to(Shape(p.x.shape().begin() + 1, p.x.shape().end()));
  adopt_dtype(layer, p.x.dtype());
  layer.set_gamma(p.gamma);
  layer.set_beta(p.beta);
  layer.set_running_stats(p.running_mean, p.running_var);
  r.x = r.graph->variable(p.x, "x");
  r.y = layer.apply(r.x, p.training);
  r.graph->backward(r.y, p.dy, /*retain_graph=*/true);
  const auto& composites = r.graph->composites();
  for (int c = 0; c < static_cast<int>(composites.size()); ++c) {
    if (composites[c].name == layer.name()) r.cluster = c;
  }
  return r;
}

RecordedBatchNorm record_batchnorm_second_order(const BatchNormProblem& p) {
  GradModeGuard recording(true);
  RecordedBatchNorm r;
  r.graph = std::make_unique<Graph>();
  Graph& graph = *r.graph;
  r.x = graph.variable(p.x, "x");
  const Var gamma = graph.variable(p.gamma, "gamma"), beta = graph.variable(p.beta, "beta");
  const Var dy = graph.variable(p.dy, "dy");
  r.y = composite_function(p)({r.x, gamma, beta});
  const std::vector<Var> first = grad({r.y}, {r.x, gamma, beta}, {dy}, /*create_graph=*/true);
  const std::vector<Tensor> weights{p.ggx, p.gggamma, p.ggbeta};
  const char* weight_names[] = {"ggx", "gggamma", "ggbeta"};
  for (int i = 0; i < 3; ++i) {
    if (!first[i].requires_grad()) continue;
    const Var weight = graph.input(weights[i].astype(p.x.dtype()), weight_names[i]);
    const Var term = ops::sum(ops::mul(weight, first[i]));
    r.h = r.h.tracked() ? ops::add(r.h, term) : term;
  }
  graph.backward(r.h, Tensor(), /*retain_graph=*/true);
  return r;
}

}  // namespace npdl::cli
