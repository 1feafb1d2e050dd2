#include "autodiff/gradcheck.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "tensor/tensor_math.hpp"

namespace npdl {
namespace {

std::string multi_index(const Shape& shape, std::int64_t flat) {
  std::ostringstream os;
  os << '(';
  Shape idx(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] == 0 ? 0 : flat % shape[d];
    flat = shape[d] == 0 ? 0 : flat / shape[d];
  }
  for (std::size_t d = 0; d < idx.size(); ++d) os << (d ? ", " : "") << idx[d];
  if (idx.size() == 1) os << ',';
  return os.str() + ")";
}

std::string name_of(const std::vector<std::string>& names, std::size_t i) {
  return i < names.size() ? names[i] : "input " + std::to_string(i);
}

Tensor output_upstream(const GraphFunction& f, const std::vector<Tensor>& inputs,
                       std::uint64_t seed) {
  NoGradGuard no_grad;
  std::vector<Var> vars(inputs.begin(), inputs.end());
  const Var out = f(vars);
  return Tensor::randn(out.shape(), seed, out.dtype());
}

double weighted_sum(const Tensor& out, const Tensor& upstream) {
  return math::sum(math::mul(out.astype(DType::Float64), upstream.astype(DType::Float64))).item();
}

std::vector<Tensor> to_float64(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out;
  for (const Tensor& t : inputs) out.push_back(t.astype(DType::Float64));
  return out;
}

}  // namespace

std::string TensorComparison::describe() const {
  std::ostringstream os;
  os << name << ' ' << to_string(shape) << ": ";
  if (!problem.empty()) return os.str() + problem;
  if (worst_index < 0) return os.str() + "empty, nothing to compare";
  os.precision(6);
  os << (ok ? "ok" : "MISMATCH") << ", worst element " << multi_index(shape, worst_index)
     << ": got " << actual << ", expected " << expected << ", abs error " << abs_error
     << ", rel error " << rel_error << ", tolerance " << tolerance;
  if (!ok && !(std::isfinite(actual) && std::isfinite(expected))) {
    os << " (non-finite values must match exactly: NaN where NaN is expected, or the same "
          "infinity)";
  }
  return os.str();
}

bool GradCheckReport::ok() const {
  if (!problems.empty()) return false;
  for (const auto& t : tensors) {
    if (!t.ok) return false;
  }
  return true;
}

std::string GradCheckReport::describe() const {
  std::ostringstream os;
  for (const auto& t : tensors) os << t.describe() << '\n';
  for (const auto& p : problems) os << p << '\n';
  return os.str();
}

TensorComparison compare_tensors(std::string name, const Tensor& actual, const Tensor& expected,
                                 double atol, double rtol) {
  TensorComparison c;
  c.name = std::move(name);
  c.shape = expected.shape();
  if (!actual.defined()) {
    c.ok = false;
    c.problem = "no gradient was computed (undefined)";
    return c;
  }
  if (actual.shape() != expected.shape()) {
    c.ok = false;
    c.problem = "shape mismatch: expected " + to_string(expected.shape()) + ", got " +
                to_string(actual.shape());
    return c;
  }
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  double worst_ratio = -1.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    // Note [Non-finite comparison]: a non-finite value on either side is a
    // mismatch (ratio +inf) unless both sides hold the same one.
    const double tol = atol + rtol * (std::isfinite(e[i]) ? std::fabs(e[i]) : 0.0);
    const double err = math::element_error(a[i], e[i]);
    const double ratio = err == 0.0 ? 0.0 : err / tol;
    c.max_abs_error = std::max(c.max_abs_error, err);
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      c.worst_index = static_cast<std::int64_t>(i);
      c.actual = a[i];
      c.expected = e[i];
      c.abs_error = err;
      c.rel_error = err == 0.0 ? 0.0 : err / std::max(std::fabs(a[i]), std::fabs(e[i]));
      c.tolerance = tol;
    }
  }
  c.ok = worst_ratio <= 1.0;
  return c;
}

std::vector<Tensor> reverse_mode_gradients(const GraphFunction& f,
                                           const std::vector<Tensor>& inputs,
                                           const Tensor& upstream) {
  Graph graph;
  std::vector<Var> vars;
  for (std::size_t i = 0; i < inputs.size(); ++i) vars.push_back(graph.variable(inputs[i]));
  const Var out = f(vars);
  graph.backward(out, upstream.astype(out.dtype()));
  std::vector<Tensor> grads;
  for (const Var& v : vars) {
    grads.push_back(v.grad().defined() ? v.grad() : Tensor::zeros(v.shape(), v.dtype()));
  }
  return grads;
}

std::vector<Tensor> finite_difference_gradients(const GraphFunction& f,
                                                const std::vector<Tensor>& inputs_in,
                                                const Tensor& upstream, double step) {
  NoGradGuard no_grad;
  std::vector<Tensor> inputs = to_float64(inputs_in);
  auto loss = [&] {
    std::vector<Var> vars(inputs.begin(), inputs.end());
    return weighted_sum(f(vars).value(), upstream);
  };
  return central_differences(inputs, loss, step);
}

std::vector<Tensor> central_differences(std::vector<Tensor>& at, const std::function<double()>& f,
                                        double step) {
  std::vector<Tensor> result;
  for (Tensor& x : at) {
    Tensor d = Tensor::zeros(x.shape(), DType::Float64);
    double* p = x.data<double>();
    for (std::int64_t i = 0; i < x.size(); ++i) {
      const double saved = p[i];
      p[i] = saved + step;
      const double plus = f();
      p[i] = saved - step;
      const double minus = f();
      p[i] = saved;
      d.data<double>()[i] = (plus - minus) / (2.0 * step);
    }
    result.push_back(d);
  }
  return result;
}

namespace {

GradCheckReport compare_all(const std::vector<Tensor>& actual, const std::vector<Tensor>& expected,
                            const GradCheckOptions& options,
                            const std::vector<std::string>& names) {
  GradCheckReport report;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const Tensor a = i < actual.size() ? actual[i] : Tensor();
    report.tensors.push_back(compare_tensors("gradient of " + name_of(names, i), a, expected[i],
                                             options.atol, options.rtol));
  }
  return report;
}

// Side checks in the style of PyTorch's gradcheck: a second backward must
// agree bit for bit, and a zero upstream gradient must give zero gradients.
void side_checks(const GraphFunction& f, const std::vector<Tensor>& inputs, const Tensor& upstream,
                 const std::vector<Tensor>& first, GradCheckReport& report) {
  const std::vector<Tensor> second = reverse_mode_gradients(f, inputs, upstream);
  for (std::size_t i = 0; i < first.size(); ++i) {
    if (math::max_abs_diff(first[i], second[i]).abs != 0.0) {
      report.problems.push_back("backward is not reproducible: two runs differ for input " +
                                std::to_string(i));
    }
  }
  const Tensor zero = Tensor::zeros(upstream.shape(), upstream.dtype());
  const std::vector<Tensor> zeros = reverse_mode_gradients(f, inputs, zero);
  for (std::size_t i = 0; i < zeros.size(); ++i) {
    const auto d = math::max_abs_diff(zeros[i], Tensor::zeros(zeros[i].shape(), zeros[i].dtype()));
    if (d.abs != 0.0) {
      report.problems.push_back("a zero upstream gradient gave a non-zero gradient for input " +
                                std::to_string(i));
    }
  }
}

}  // namespace

GradCheckReport gradcheck(const GraphFunction& f, const std::vector<Tensor>& inputs_in,
                          const GradCheckOptions& options, const std::vector<std::string>& names) {
  const std::vector<Tensor> inputs = to_float64(inputs_in);
  const Tensor upstream = output_upstream(f, inputs, options.seed);
  const std::vector<Tensor> analytic = reverse_mode_gradients(f, inputs, upstream);
  const std::vector<Tensor> numeric =
      finite_difference_gradients(f, inputs, upstream, options.step);
  GradCheckReport report = compare_all(analytic, numeric, options, names);
  side_checks(f, inputs, upstream, analytic, report);
  return report;
}

GradCheckReport check_against_analytic(const GraphFunction& f, const AnalyticGradient& analytic,
                                       const std::vector<Tensor>& inputs,
                                       const GradCheckOptions& options,
                                       const std::vector<std::string>& names) {
  const Tensor upstream = output_upstream(f, inputs, options.seed);
  const std::vector<Tensor> reverse = reverse_mode_gradients(f, inputs, upstream);
  const std::vector<Tensor> expected = analytic(inputs, upstream);
  if (expected.size() != inputs.size()) {
    throw ValueError("the analytic gradient returned " + std::to_string(expected.size()) +
                     " tensors, expected one per input (" + std::to_string(inputs.size()) + ")");
  }
  return compare_all(reverse, expected, options, names);
}

namespace {

// H(x, u) = sum_i <v_i, G_i(x, u)>, G = first-order reverse mode of <f, u>.
double contracted_gradient(const GraphFunction& f, const std::vector<Tensor>& inputs,
                           const Tensor& upstream, const std::vector<Tensor>& v) {
  const std::vector<Tensor> g = reverse_mode_gradients(f, inputs, upstream);
  double h = 0.0;
  for (std::size_t i = 0; i < g.size(); ++i) h += weighted_sum(g[i], v[i]);
  return h;
}

// Central differences of H along every element of every tensor of `at`
// (the inputs, then u).
std::vector<Tensor> finite_difference_second(const GraphFunction& f, std::vector<Tensor> at,
                                             const std::vector<Tensor>& v, double step) {
  return central_differences(
      at,
      [&] {
        const std::vector<Tensor> inputs(at.begin(), at.end() - 1);
        return contracted_gradient(f, inputs, at.back(), v);
      },
      step);
}

}  // namespace

GradCheckReport gradgradcheck(const GraphFunction& f, const std::vector<Tensor>& inputs_in,
                              const GradCheckOptions& options,
                              const std::vector<std::string>& names) {
  const std::vector<Tensor> inputs = to_float64(inputs_in);
  const Tensor upstream = output_upstream(f, inputs, options.seed);
  std::vector<Tensor> v;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    v.push_back(Tensor::randn(inputs[i].shape(), options.seed + 1 + i, DType::Float64));
  }

  // Reverse over reverse: the gradients recorded, then differentiated.
  Graph graph;
  std::vector<Var> wrt;
  for (const Tensor& x : inputs) wrt.push_back(graph.variable(x));
  const Var u = graph.variable(upstream, "upstream");
  const Var out = f(std::vector<Var>(wrt.begin(), wrt.end()));
  const std::vector<Var> first = grad({out}, wrt, {u}, /*create_graph=*/true);
  std::vector<Var> outputs, weights;
  for (std::size_t i = 0; i < first.size(); ++i) {
    if (first[i].requires_grad()) {
      outputs.push_back(first[i]);
      weights.push_back(Var(v[i]));
    }
  }
  wrt.push_back(u);
  std::vector<Tensor> reverse;
  if (outputs.empty()) {  // no gradient depends on anything: H is constant
    for (const Var& w : wrt) reverse.push_back(Tensor::zeros(w.shape(), DType::Float64));
  } else {
    BackwardOptions retained;
    retained.retain_graph = true;
    for (const Var& g : graph.gradients(outputs, wrt, weights, retained)) {
      reverse.push_back(g.value());
    }
  }

  std::vector<Tensor> at = inputs;
  at.push_back(upstream);
  const std::vector<Tensor> numeric = finite_difference_second(f, at, v, options.step);
  GradCheckReport report;
  for (std::size_t k = 0; k < at.size(); ++k) {
    const std::string of = k < inputs.size() ? name_of(names, k) : "the upstream gradient";
    report.tensors.push_back(compare_tensors("second derivative w.r.t. " + of, reverse[k],
                                             numeric[k], options.atol, options.rtol));
  }
  // The recorded first derivative against the first-order sweep.
  const std::vector<Tensor> plain = reverse_mode_gradients(f, inputs, upstream);
  const GradCheckOptions same = tolerances_for(DType::Float64);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    report.tensors.push_back(
        compare_tensors("gradient of " + name_of(names, i) + " recorded with create_graph",
                        first[i].value(), plain[i], same.atol, same.rtol));
  }
  return report;
}

GradCheckOptions tolerances_for(DType dtype) {
  GradCheckOptions o;
  if (dtype == DType::Float32) {
    o.atol = 1e-4;
    o.rtol = 1e-3;
  } else {
    o.atol = 1e-9;
    o.rtol = 1e-7;
  }
  return o;
}

void expect_hand_derived_close(const std::string& what, const Tensor& reference,
                               const Tensor& computed) {
  // The tolerance is the computed tensor's dtype's, its absolute part scaled
  // by the tensor's root mean square.
  const GradCheckOptions tol = tolerances_for(computed.dtype());
  const double rms = std::sqrt(math::sum(math::square(computed.astype(DType::Float64))).item() /
                               double(std::max<std::int64_t>(computed.size(), 1)));
  const TensorComparison cmp =
      compare_tensors(what, reference, computed, tol.atol * std::max(1.0, rms), tol.rtol);
  if (!cmp.ok) {
    throw GradientMismatch(what + ": autodiff and the hand-derived formula disagree on " +
                           cmp.describe() +
                           " (got = autodiff in float64, expected = hand-derived)");
  }
}

}  // namespace npdl
