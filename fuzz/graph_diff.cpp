// Differential fuzz target: random graphs of the primitives of the catalogue
// (every entry with a random application, autodiff/catalogue.hpp).
//
// The input decides a program: leaves of random (broadcast-compatible,
// possibly empty) shapes and dtype, then up to kMaxSteps ops, each reading
// earlier values (so values fan out). The program is run several ways that
// must agree:
//   - a full graph (GraphOptions{}) at 1 thread: the reference;
//   - a lean graph (keep_intermediates = false): bit-identical output and
//     leaf gradients;
//   - a full graph at 2 threads: bit-identical (in "large" mode the tensors
//     exceed kElementGrain, so kernels really split);
//   - no-gradient mode (NoGradGuard): bit-identical output;
//   - create_graph (the VJPs' ops recorded): the same leaf gradients within
//     rounding (a fused first-order kernel and its composition may sum in
//     another order), and a second derivative through them, H v for a random
//     direction v, that throws an npdl::Error or, where differences are
//     trusted, matches float64 central differences of the first-order
//     gradient along v;
//   - float64 central differences of L = sum(output * w), w random: the
//     reverse-mode leaf gradients must match, where the function is smooth
//     and well-conditioned at the point (see Note [When differences are
//     trusted]).
// A "long" mode builds programs of up to kMaxLongSteps ops, each reading one
// of the 32 newest values, after up to 255 unused leaves and with unrelated
// ops recorded between its own, and runs create_graph on a fresh thread:
// the sizes at which a reference into the graph's vertex storage, held
// across a recording, goes wrong (Note [Vertex storage moves]).
// A "huge" mode builds shapes with sizes up to 2^63 - 1 and a zero
// among them: ops on those empty tensors must work, and any shape whose
// element count overflows must be refused with a ShapeError.
// Every op that fails must fail with an npdl::Error (incompatible shapes,
// an axis out of range); anything else is a finding.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <boost/range/iterator_range.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <thread>
#include <vector>

#include "autodiff/catalogue.hpp"
#include "autodiff/graph.hpp"
#include "ops/ops.hpp"
#include "tensor/parallel.hpp"
#include "tensor/tensor_math.hpp"

namespace {

using npdl::Axes;
using npdl::DType;
using npdl::Shape;
using npdl::Tensor;
using npdl::Var;
namespace ops = npdl::ops;

constexpr int kMaxSteps = 12;
constexpr int kMaxLongSteps = 300;
constexpr std::int64_t kMaxElementsForDifferences = 48;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "graph_diff: %s\n", what);
  std::abort();
}

using npdl::catalogue::Primitive;

/// The op table: every catalogue entry that can be applied to random
/// operands (Note [One entry per primitive] in autodiff/catalogue.hpp), in
/// name order. An op added to the library with its entry is drawn here too.
const std::vector<const Primitive*>& op_table() {
  static const std::vector<const Primitive*> table = [] {
    std::vector<const Primitive*> t;
    for (const Primitive* p : npdl::catalogue::primitives()) {
      if (p->random != nullptr) t.push_back(p);
    }
    if (t.empty()) finding("the catalogue has no op the fuzzer can apply");
    return t;
  }();
  return table;
}

/// One op of the program, with every choice already made.
struct Step {
  const Primitive* op = nullptr;
  int a = 0, b = 0;        // operands: indices of earlier values
  bool flag = false;       // keepdims / guarded domain / reshape variant
  double scalar = 0.0;     // for add_scalar, mul_scalar, leaky_relu, elu, ...
  std::uint32_t bits = 0;  // axes subset, permutation seed, axis, sizes (Choices)
};

struct Program {
  DType dtype = DType::Float64;
  std::vector<Shape> leaf_shapes;
  std::vector<std::uint64_t> leaf_seeds;
  bool large = false;        // a long axis: kernels split across threads
  bool exact_zeros = false;  // leaves hold rounded values: ties and exact zeros
  std::vector<Step> steps;   // as decoded; steps that failed are dropped
  std::uint64_t weight_seed = 0;
  // "long" mode (Note [Vertex storage moves] in autodiff/graph.hpp): up to
  // kMaxLongSteps ops, each reading one of the 32 newest values, after
  // unused leaves, with an unrelated op recorded after every noise_every-th
  // step, and the create_graph run on a fresh thread (empty recycled storage).
  bool recent_operands = false;
  int unused_leaves = 0;
  int noise_every = 0;
  bool fresh_thread = false;
};

/// The program, for the report of a finding.
void describe(const Program& p) {
  std::fprintf(stderr, "program: %s, %zu leaves:", npdl::to_string(p.dtype).c_str(),
               p.leaf_shapes.size());
  for (const Shape& s : p.leaf_shapes) std::fprintf(stderr, " %s", npdl::to_string(s).c_str());
  std::fprintf(stderr, "\n  %d unused leaves first, noise every %d steps, %s thread\n",
               p.unused_leaves, p.noise_every, p.fresh_thread ? "fresh" : "warm");
  for (std::size_t i = 0; i < p.steps.size(); ++i) {
    const Step& st = p.steps[i];
    std::fprintf(stderr, "  v%zu = %s(v%d, v%d) flag %d scalar %g bits %u\n",
                 i + p.leaf_shapes.size(), st.op->name(), st.a, st.b, int(st.flag), st.scalar,
                 st.bits);
  }
}

// Note [When differences are trusted]
// Central differences only estimate the derivative of a function that is
// smooth around the point; reverse mode gives the one-sided derivative the
// op defines at a kink. So the comparison runs only when every input of a
// kink (relu, leaky_relu, elu at 0) and of a singular op (sqrt, rsqrt, log
// at 0, the denominator of div) stays at least kMargin away from it, and
// every value is finite and at most kMaxMagnitude: beyond that the float64
// differences themselves lose the digits the comparison needs.
constexpr double kMargin = 1e-2;
constexpr double kMaxMagnitude = 1e4;

double min_abs(const Tensor& t) {
  double m = std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < t.size(); ++i) m = std::min(m, std::fabs(t.at(i)));
  return m;
}

bool all_finite_and_bounded(const Tensor& t) {
  for (std::int64_t i = 0; i < t.size(); ++i) {
    const double v = t.at(i);
    if (!std::isfinite(v) || std::fabs(v) > kMaxMagnitude) return false;
  }
  return true;
}

/// How a run evaluates the program.
struct RunResult {
  Tensor output;
  std::vector<Tensor> leaf_grads;  // undefined when no gradient reached a leaf
  bool smooth = true;              // Note [When differences are trusted]
  std::vector<Tensor> values;      // every value of the program, leaves first
  double max_vertex_grad = 0;      // largest |gradient| on any vertex (full graph)
  std::vector<Tensor> second;      // H v (create_graph), empty when refused
};

/// Applies one step through its op's entry; throws what the op throws (an
/// npdl::Error, a ValueError too when the result would hold more than
/// `limit` elements: {L, 1} + {1, L} of a long axis is valid, but is
/// gigabytes, which libFuzzer's malloc limit would report as a finding).
/// An input with a Positive domain is guarded as square(x) + 0.25 when the
/// step's flag says so; inputs with a domain edge or a kink must stay away
/// from it for differences to be trusted.
/// Replays of decoded steps pass no limit (0): every kept step fitted it.
Var apply(const Step& st, const std::vector<Var>& v, bool& smooth, std::int64_t limit = 0) {
  const Primitive& op = *st.op;
  Var operands[2] = {v[st.a], v[st.b]};
  for (std::size_t i = 0; i < std::min<std::size_t>(op.inputs.size(), 2); ++i) {
    const npdl::catalogue::InputFacts& facts = op.inputs[i];
    const bool positive = facts.domain == npdl::catalogue::Domain::Positive;
    if (positive && st.flag) operands[i] = ops::add_scalar(ops::square(operands[i]), 0.25);
    if ((positive || facts.kink_at_zero) && min_abs(operands[i].value()) < kMargin) smooth = false;
  }
  return op.random(operands[0], operands[1],
                   npdl::catalogue::Choices{st.bits, st.flag, st.scalar, limit});
}

Tensor leaf_value(const Program& p, std::size_t i, DType dtype) {
  Tensor t = Tensor::uniform(p.leaf_shapes[i], p.leaf_seeds[i], DType::Float64, -2.0, 2.0);
  if (p.exact_zeros) {
    double* d = t.data<double>();
    for (std::int64_t k = 0; k < t.size(); ++k) d[k] = std::round(d[k]);
  }
  return t.astype(dtype);
}

enum class Mode { Full, Lean, NoGrad, CreateGraph };

/// The direction of the second derivative: one random tensor per leaf.
std::vector<Tensor> directions(const Program& p, DType dtype) {
  std::vector<Tensor> v;
  for (std::size_t i = 0; i < p.leaf_shapes.size(); ++i) {
    v.push_back(Tensor::uniform(p.leaf_shapes[i], p.weight_seed + 1000 + i, dtype, -1.0, 1.0));
  }
  return v;
}

/// H v = d/dx sum_i <leaf_grad_i, v_i>, through the gradients recorded with
/// create_graph. Any op may refuse it with an npdl::Error (one not twice
/// differentiable): then nothing is returned. Nothing else may go wrong.
std::vector<Tensor> differentiate_again(npdl::Graph& graph, const std::vector<Var>& leaves,
                                        const std::vector<Tensor>& v) {
  std::vector<Var> grads, weights;
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    const Var g = leaves[i].grad_var();
    if (!g.requires_grad()) continue;  // no gradient, or one constant in the leaves
    grads.push_back(g);
    weights.push_back(Var(v[i]));
  }
  std::vector<Tensor> second;
  if (grads.empty()) {
    for (const Var& leaf : leaves) second.push_back(Tensor::zeros(leaf.shape(), leaf.dtype()));
    return second;
  }
  try {
    for (const Var& d : graph.gradients(grads, leaves, weights, {})) second.push_back(d.value());
  } catch (const npdl::Error&) {
    return {};
  }
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    if (second[i].shape() != leaves[i].shape()) finding("a second derivative has the wrong shape");
  }
  return second;
}

/// Runs the program. While `decoding`, steps that throw an npdl::Error are
/// dropped from p.steps; afterwards every step must succeed.
RunResult run(Program& p, Mode mode, DType dtype, bool decoding = false) {
  const std::int64_t limit = p.large ? 8 * npdl::kElementGrain : 4096;
  RunResult r;
  npdl::Graph graph(npdl::GraphOptions{mode != Mode::Lean});
  std::optional<npdl::NoGradGuard> no_grad;
  if (mode == Mode::NoGrad) no_grad.emplace();
  for (int i = 0; i < p.unused_leaves; ++i) graph.input(Tensor::zeros({1}, dtype));
  Var noise = graph.variable(Tensor::zeros({2}, dtype));
  std::vector<Var> values, leaves;
  for (std::size_t i = 0; i < p.leaf_shapes.size(); ++i) {
    // Rounded to the program's dtype first: a float64 run of a float32
    // program starts from the same point.
    Tensor t = leaf_value(p, i, p.dtype).astype(dtype);
    leaves.push_back(mode == Mode::NoGrad ? Var(t) : graph.variable(t));
    values.push_back(leaves.back());
  }
  std::vector<Step> kept;
  for (const Step& st : p.steps) {
    Step s = st;
    const int n = static_cast<int>(values.size());
    if (decoding && p.recent_operands) {  // stored as absolute indices from here on
      s.a = n - 1 - s.a % std::min(n, 32);
      s.b = n - 1 - s.b % std::min(n, 32);
    }
    s.a %= n;
    s.b %= n;
    if (p.noise_every > 0 && kept.size() % p.noise_every == 0) noise = ops::exp(noise * 0.5);
    try {
      values.push_back(apply(s, values, r.smooth, limit));
      kept.push_back(s);
    } catch (const npdl::Error&) {
      if (!decoding) finding("a step that succeeded once failed on a replay");
    }
  }
  if (decoding) p.steps = kept;
  for (const Var& v : values) {
    if (!all_finite_and_bounded(v.value())) r.smooth = false;
  }
  r.output = values.back().value();
  for (const Var& v : values) r.values.push_back(v.value());
  if (mode != Mode::NoGrad) {
    const Tensor w = Tensor::uniform(r.output.shape(), p.weight_seed, dtype, -1.0, 1.0);
    npdl::BackwardOptions options;
    options.create_graph = mode == Mode::CreateGraph;
    graph.backward(values.back(), Var(w), options);
    for (const Var& leaf : leaves) r.leaf_grads.push_back(leaf.grad());
    if (mode == Mode::CreateGraph)
      r.second = differentiate_again(graph, leaves, directions(p, dtype));
    if (mode == Mode::Full) {
      for (const auto& vertex : boost::make_iterator_range(boost::vertices(graph.impl()))) {
        const Tensor& g = graph.impl()[vertex].grad.value();
        if (!g.defined()) continue;
        for (std::int64_t k = 0; k < g.size(); ++k) {
          r.max_vertex_grad = std::max(r.max_vertex_grad, std::fabs(g.at(k)));
        }
      }
    }
  }
  return r;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         (a.nbytes() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0);
}

void expect_identical(const Program& p, const RunResult& ref, const RunResult& other,
                      const char* what) {
  bool same = bit_identical(ref.output, other.output);
  for (std::size_t i = 0; i < other.leaf_grads.size(); ++i) {
    same = same && bit_identical(ref.leaf_grads[i], other.leaf_grads[i]);
  }
  if (!same) {
    describe(p);
    finding(what);
  }
}

/// create_graph's leaf gradients against the first-order ones: where the
/// program is smooth, within rounding relative to the largest gradient.
void expect_close_gradients(const Program& p, const RunResult& ref, const RunResult& other) {
  if (!bit_identical(ref.output, other.output)) {
    describe(p);
    finding("the forward differs under create_graph");
  }
  if (!ref.smooth) return;
  const double tol = (p.dtype == DType::Float64 ? 1e-12 : 1e-5) * (ref.max_vertex_grad + 1.0);
  for (std::size_t i = 0; i < ref.leaf_grads.size(); ++i) {
    const Tensor& a = ref.leaf_grads[i];
    const Tensor& b = other.leaf_grads[i];
    if (a.defined() != b.defined()) finding("create_graph reaches other leaves than first order");
    if (!a.defined()) continue;
    for (std::int64_t k = 0; k < a.size(); ++k) {
      if (!(std::fabs(a.at(k) - b.at(k)) <= tol)) {
        describe(p);
        std::fprintf(stderr, "leaf %zu element %lld: first order %.17g, create_graph %.17g\n", i,
                     static_cast<long long>(k), a.at(k), b.at(k));
        finding("create_graph's gradients differ from first order's");
      }
    }
  }
}

/// L = sum(output * w) in float64, without a graph.
double loss64(Program& p, const std::vector<Tensor>& leaves) {
  npdl::NoGradGuard no_grad;
  std::vector<Var> values;
  for (const Tensor& t : leaves) values.push_back(Var(t));
  bool smooth = true;
  for (const Step& st : p.steps) values.push_back(apply(st, values, smooth));
  const Tensor& out = values.back().value();
  const Tensor w = Tensor::uniform(out.shape(), p.weight_seed, DType::Float64, -1.0, 1.0);
  double l = 0;
  for (std::int64_t i = 0; i < out.size(); ++i) l += out.at(i) * w.at(i);
  return l;
}

/// Float64 reverse mode (`got`) against float64 central differences. The
/// tolerance of each element adds: the differences' own error, estimated
/// from two step sizes; their rounding error; and float64 rounding relative
/// to the largest gradient. A wrong VJP is off by far more than any of those.
void check_against_differences(Program& p, const std::vector<Tensor>& got) {
  std::vector<Tensor> leaves;
  for (std::size_t i = 0; i < p.leaf_shapes.size(); ++i) {
    leaves.push_back(leaf_value(p, i, p.dtype).astype(DType::Float64));
  }
  const double l0 = std::fabs(loss64(p, leaves));
  const double h = 1e-4;
  std::vector<std::vector<double>> fd(leaves.size()), err(leaves.size());
  double scale = 0;
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    double* x = leaves[i].data<double>();
    for (std::int64_t k = 0; k < leaves[i].size(); ++k) {
      const double x0 = x[k];
      auto diff = [&](double step) {
        x[k] = x0 + step;
        const double up = loss64(p, leaves);
        x[k] = x0 - step;
        const double down = loss64(p, leaves);
        x[k] = x0;
        return (up - down) / (2 * step);
      };
      const double d1 = diff(h), d2 = diff(2 * h);
      fd[i].push_back(d1);
      err[i].push_back(std::fabs(d1 - d2));  // truncation error of d1 is about a quarter of this
      scale = std::max(scale, std::fabs(d1));
    }
  }
  const double rounding = 1e3 * std::numeric_limits<double>::epsilon() * (l0 + 1) / h;
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    for (std::size_t k = 0; k < fd[i].size(); ++k) {
      const double g = got[i].defined() ? got[i].at(static_cast<std::int64_t>(k)) : 0.0;
      const double tol = 2 * err[i][k] + rounding + 1e-7 * scale + 1e-9;
      if (!(std::fabs(g - fd[i][k]) <= tol)) {
        describe(p);
        std::fprintf(stderr,
                     "leaf %zu element %zu: reverse mode %.17g, differences %.17g, tol %g\n", i, k,
                     g, fd[i][k], tol);
        finding("reverse mode disagrees with float64 central differences");
      }
    }
  }
}

/// First-order reverse mode of L = sum(output * w) in float64 at `leaves`.
std::vector<Tensor> gradients64(Program& p, const std::vector<Tensor>& leaves) {
  npdl::Graph graph;
  std::vector<Var> values, vars;
  for (const Tensor& t : leaves) {
    vars.push_back(graph.variable(t));
    values.push_back(vars.back());
  }
  bool smooth = true;
  for (const Step& st : p.steps) values.push_back(apply(st, values, smooth));
  const Var w(Tensor::uniform(values.back().shape(), p.weight_seed, DType::Float64, -1.0, 1.0));
  std::vector<Tensor> out;
  for (const Var& g : graph.gradients({values.back()}, vars, {w}, {})) out.push_back(g.value());
  return out;
}

/// The second derivative (H v, reverse over reverse through create_graph)
/// against central differences of the first-order gradient along v, with
/// the tolerance of check_against_differences.
void check_second_against_differences(Program& p, const std::vector<Tensor>& second) {
  std::vector<Tensor> x;
  for (std::size_t i = 0; i < p.leaf_shapes.size(); ++i) {
    x.push_back(leaf_value(p, i, p.dtype).astype(DType::Float64));
  }
  const std::vector<Tensor> v = directions(p, DType::Float64);
  auto along = [&](double step) {  // (g(x + step v) - g(x - step v)) / 2 step
    std::vector<Tensor> up, down;
    for (std::size_t i = 0; i < x.size(); ++i) {
      up.push_back(npdl::math::add(x[i], npdl::math::scale(v[i], step)));
      down.push_back(npdl::math::sub(x[i], npdl::math::scale(v[i], step)));
    }
    const std::vector<Tensor> gu = gradients64(p, up), gd = gradients64(p, down);
    std::vector<Tensor> d;
    for (std::size_t i = 0; i < x.size(); ++i) {
      d.push_back(npdl::math::scale(npdl::math::sub(gu[i], gd[i]), 1 / (2 * step)));
    }
    return d;
  };
  const double h = 1e-4;
  const std::vector<Tensor> d1 = along(h), d2 = along(2 * h), g0 = gradients64(p, x);
  double scale = 0, gmax = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    for (std::int64_t k = 0; k < d1[i].size(); ++k) scale = std::max(scale, std::fabs(d1[i].at(k)));
    for (std::int64_t k = 0; k < g0[i].size(); ++k) gmax = std::max(gmax, std::fabs(g0[i].at(k)));
  }
  const double rounding = 1e3 * std::numeric_limits<double>::epsilon() * (gmax + 1) / h;
  for (std::size_t i = 0; i < x.size(); ++i) {
    for (std::int64_t k = 0; k < d1[i].size(); ++k) {
      const double err = std::fabs(d1[i].at(k) - d2[i].at(k));
      const double tol = 2 * err + rounding + 1e-7 * scale + 1e-9;
      if (!(std::fabs(second[i].at(k) - d1[i].at(k)) <= tol)) {
        describe(p);
        std::fprintf(stderr,
                     "leaf %zu element %lld: reverse over reverse %.17g, differences of the "
                     "gradient %.17g, tol %g\n",
                     i, static_cast<long long>(k), second[i].at(k), d1[i].at(k), tol);
        finding("the second derivative disagrees with differences of the first");
      }
    }
  }
}

/// True when every value of the float32 run is within 1e-4 (relative) of
/// the float64 run of the same program: the point is well-conditioned in
/// float32, so its gradients may be held to the float64 ones.
bool agrees_with_float64(const RunResult& r32, const RunResult& r64) {
  for (std::size_t v = 0; v < r32.values.size(); ++v) {
    for (std::int64_t k = 0; k < r32.values[v].size(); ++k) {
      const double a = r32.values[v].at(k), b = r64.values[v].at(k);
      if (!(std::fabs(a - b) <= 1e-4 * std::fabs(b))) return false;
    }
  }
  return true;
}

/// Float32 reverse mode against float64 reverse mode (itself checked
/// against differences). A float32 local derivative such as tanh's
/// 1 - y * y is exact only to float32's epsilon relative to 1, not to its
/// result, so the tolerance is relative to the largest gradient anywhere in
/// the graph: 1e-3 of it, some thousand float32 roundings.
void check_float32_gradients(const Program& p, const RunResult& r32, const RunResult& r64) {
  const double tol = 1e-3 * r64.max_vertex_grad + 1e-12;
  for (std::size_t i = 0; i < r32.leaf_grads.size(); ++i) {
    const Tensor& g32 = r32.leaf_grads[i];
    const Tensor& g64 = r64.leaf_grads[i];
    if (g32.defined() != g64.defined())
      finding("float32 and float64 differ in which leaves get a gradient");
    if (!g32.defined()) continue;
    for (std::int64_t k = 0; k < g32.size(); ++k) {
      if (!(std::fabs(g32.at(k) - g64.at(k)) <= tol)) {
        describe(p);
        std::fprintf(stderr, "leaf %zu element %lld: float32 %.9g, float64 %.17g, tol %g\n", i,
                     static_cast<long long>(k), g32.at(k), g64.at(k), tol);
        finding("float32 reverse mode disagrees with float64 reverse mode");
      }
    }
  }
}

// ---- "huge" mode: sizes up to 2^63 - 1 around a zero ----

bool overflows(const Shape& s) {
  std::int64_t n = 1;
  for (std::int64_t d : s) {
    if (d != 0 && __builtin_mul_overflow(n, d, &n)) return true;
  }
  return false;
}

Shape huge_shape(FuzzedDataProvider& in) {
  static const std::int64_t kSizes[] = {0,
                                        1,
                                        2,
                                        3,
                                        std::int64_t{1} << 31,
                                        (std::int64_t{1} << 32) + 1,
                                        std::int64_t{1} << 62,
                                        std::numeric_limits<std::int64_t>::max()};
  Shape s;
  const int rank = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < rank; ++i) s.push_back(kSizes[in.ConsumeIntegralInRange(0, 7)]);
  return s;
}

// An empty (or small) tensor of shape s, or undefined when s is valid but
// too large to allocate here; a ShapeError exactly when its count overflows.
Tensor make_or_refuse(const Shape& s) {
  try {
    const std::int64_t n = npdl::numel(s);
    if (overflows(s)) finding("numel accepted an overflowing shape");
    if (n > 64) return Tensor();
    return Tensor::zeros(s);
  } catch (const npdl::ShapeError&) {
    if (!overflows(s)) finding("a valid shape was refused");
    return Tensor();
  }
}

template <class Fn>
void expect_fine_or_error(Fn fn) {
  try {
    fn();
  } catch (const npdl::Error&) {
  }
}

void run_huge(FuzzedDataProvider& in) {
  const Shape sa = huge_shape(in), sb = huge_shape(in);
  const Tensor a = make_or_refuse(sa), b = make_or_refuse(sb);
  if (!a.defined() || !b.defined()) return;
  // Broadcasting two valid shapes may give one whose count overflows.
  bool broadcastable = true;
  Shape joint;
  try {
    joint = npdl::broadcast_shapes(sa, sb);
  } catch (const npdl::ShapeError&) {
    broadcastable = false;
  }
  npdl::Graph graph;
  const Var va = graph.variable(a), vb = graph.variable(b);
  try {
    const Var s = ops::add(va, vb);
    if (!broadcastable || overflows(joint)) finding("add accepted shapes it cannot combine");
    if (s.shape() != joint) finding("add gave the wrong shape");
    const Var loss = ops::sum(ops::exp(ops::mul(s, s)));
    graph.backward(loss);
    if (va.grad().defined() && va.grad().shape() != sa) finding("gradient of the wrong shape");
    if (vb.grad().defined() && vb.grad().shape() != sb) finding("gradient of the wrong shape");
  } catch (const npdl::ShapeError&) {
    if (broadcastable && !overflows(joint)) finding("add refused shapes it can combine");
  }
  // Every op of the table on the empty tensors: a value or an npdl::Error.
  // Sums over the empty axis and matmul can make a huge non-empty result
  // (zeros): valid, a MemoryError where the memory is missing (a unit
  // test's business), gigabytes of zeros otherwise; the ops' random
  // application refuses results beyond 2^16 elements, which leaves those out.
  const std::uint32_t bits = in.ConsumeIntegral<std::uint32_t>();
  const bool flag = in.ConsumeBool();
  for (const Primitive* op : op_table()) {
    expect_fine_or_error([&] {
      op->random(va, vb, npdl::catalogue::Choices{bits, flag, 0.5, std::int64_t{1} << 16});
    });
  }
}

// ---- decoding ----

Program decode(FuzzedDataProvider& in, bool large, bool long_program) {
  Program p;
  p.large = large;
  if (long_program) {
    p.recent_operands = true;
    p.unused_leaves = in.ConsumeIntegralInRange(0, 255);
    p.noise_every = in.ConsumeIntegralInRange(0, 7);
    p.fresh_thread = in.ConsumeBool();
  }
  p.dtype = in.ConsumeBool() ? DType::Float32 : DType::Float64;
  p.exact_zeros = in.ConsumeIntegralInRange(0, 7) == 0;
  p.weight_seed = in.ConsumeIntegral<std::uint8_t>();
  // A base shape; each leaf drops leading axes and sets some sizes to 1, so
  // leaves broadcast against each other more often than not.
  Shape base;
  const int rank = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < rank; ++i) base.push_back(in.ConsumeIntegralInRange(0, 4));
  if (large) {
    if (base.empty()) base.push_back(1);
    base[in.ConsumeIntegralInRange<std::size_t>(0, base.size() - 1)] =
        in.ConsumeIntegralInRange(npdl::kElementGrain, 3 * npdl::kElementGrain);
  }
  const int n_leaves = in.ConsumeIntegralInRange(1, 3);
  for (int i = 0; i < n_leaves; ++i) {
    Shape s(base.begin() + in.ConsumeIntegralInRange<std::size_t>(0, base.size()), base.end());
    for (auto& d : s) {
      if (in.ConsumeIntegralInRange(0, 3) == 0) d = 1;
    }
    if (large && npdl::numel(s) > 4 * npdl::kElementGrain) s = base;
    p.leaf_shapes.push_back(s);
    p.leaf_seeds.push_back(in.ConsumeIntegral<std::uint16_t>());
  }
  const int n_steps = in.ConsumeIntegralInRange(1, long_program ? kMaxLongSteps : kMaxSteps);
  for (int i = 0; i < n_steps && in.remaining_bytes() > 0; ++i) {
    Step st;
    const std::vector<const Primitive*>& table = op_table();
    st.op = table[in.ConsumeIntegralInRange<std::size_t>(0, table.size() - 1)];
    st.a = in.ConsumeIntegralInRange(0, 31);
    st.b = in.ConsumeIntegralInRange(0, 31);
    st.flag = in.ConsumeBool();
    st.scalar = in.ConsumeIntegralInRange(-8, 8) / 4.0;
    st.bits = in.ConsumeIntegral<std::uint32_t>();
    p.steps.push_back(st);
  }
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const int mode = in.ConsumeIntegralInRange(0, 7);
  if (mode == 0) {
    run_huge(in);
    return 0;
  }
  const bool large = mode == 1;
  Program p = decode(in, large, /*long_program=*/mode == 2);
  npdl::set_num_threads(1);
  const RunResult ref = run(p, Mode::Full, p.dtype, /*decoding=*/true);
  expect_identical(p, ref, run(p, Mode::Lean, p.dtype), "lean graph differs from the full graph");
  expect_identical(p, ref, run(p, Mode::NoGrad, p.dtype), "no-gradient mode differs");
  RunResult created;
  if (p.fresh_thread) {
    std::thread([&] { created = run(p, Mode::CreateGraph, p.dtype); }).join();
  } else {
    created = run(p, Mode::CreateGraph, p.dtype);
  }
  expect_close_gradients(p, ref, created);
  npdl::set_num_threads(2);
  const RunResult two = run(p, Mode::Full, p.dtype);
  npdl::set_num_threads(1);
  expect_identical(p, ref, two, "2 threads differ from 1 thread");

  std::int64_t leaf_elements = 0;
  for (const Shape& s : p.leaf_shapes) leaf_elements += npdl::numel(s);
  if (large || leaf_elements > kMaxElementsForDifferences || !ref.smooth) return 0;
  if (p.dtype == DType::Float64) {
    check_against_differences(p, ref.leaf_grads);
    if (!created.second.empty()) check_second_against_differences(p, created.second);
    return 0;
  }
  // Float32: the same program in float64 is checked against differences,
  // and the float32 gradients against it where float32 is well-conditioned.
  // Smoothness is judged on both runs: a float32 value may sit on the other
  // side of a kink than its float64 counterpart.
  const RunResult r64 = run(p, Mode::Full, DType::Float64);
  if (!r64.smooth) return 0;
  check_against_differences(p, r64.leaf_grads);
  if (agrees_with_float64(ref, r64)) check_float32_gradients(p, ref, r64);
  return 0;
}
