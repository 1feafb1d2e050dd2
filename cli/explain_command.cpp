// npdl explain batchnorm: the batch-norm gradient, derived in front of the
// user on numbers. It records BatchNormal in autodiff mode, walks the
// composite graph forward (every primitive and its value) and backward
// (every VJP, the gradient arriving and the gradients leaving), shows where
// branches add up and why one path contributes nothing, prints the
// derivation of the fused formula, and ends with autodiff, fused and finite
// differences side by side.
#include <map>
#include <optional>
#include <ostream>
#include <set>

#include "cli/batchnorm_problem.hpp"
#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::cli {
namespace {

struct ExplainOptions {
  std::string x;
  int axis = 0;
  double epsilon = 1e-6;
  std::uint64_t seed = 1;
  std::string format = "text";
};

// The composite's structure in the names of the derivation, so that the walk
// reads "xmu = sub(x, mean)" rather than "v4 = sub(v0, v3)".
class VertexNames {
 public:
  VertexNames(const GraphImpl& g, Vertex x, Vertex y) : g_(g) {
    for (Vertex v : boost::make_iterator_range(boost::vertices(g))) {
      if (!g[v].label.empty()) names_[v] = g[v].label;
    }
    name(x, "x");
    const auto mean = consumer(x, "mean");
    const auto xmu = consumer(x, "sub");
    // xmu^2 is square(xmu) or mul(xmu, xmu), depending on how it is written.
    auto squared = xmu ? consumer(*xmu, "square") : std::nullopt;
    if (!squared && xmu) squared = consumer(*xmu, "mul", /*both_args=*/true);
    const auto xhat = xmu ? consumer(*xmu, "mul", false) : std::nullopt;
    const auto var = squared ? consumer(*squared, "mean") : std::nullopt;
    const auto shifted = var ? consumer(*var, "add_scalar") : std::nullopt;
    const auto invstd = shifted ? consumer(*shifted, "rsqrt") : std::nullopt;
    const auto scaled = xhat ? consumer(*xhat, "mul") : std::nullopt;
    name(mean, "mean");
    name(xmu, "xmu");
    name(squared, "xmu^2");
    name(var, "var");
    name(shifted, "var+eps");
    name(invstd, "invstd");
    name(xhat, "xhat");
    name(scaled, "gamma*xhat");
    name(y, "y");
    // Parameters reshaped to broadcast (a feature axis in the middle).
    for (Vertex v : boost::make_iterator_range(boost::vertices(g))) {
      if (names_.count(v) || g[v].op->name != std::string("reshape")) continue;
      for (auto [e, end] = boost::in_edges(v, g); e != end; ++e) {
        const auto it = names_.find(boost::source(*e, g));
        if (it != names_.end()) names_[v] = it->second + "'";
      }
    }
  }

  /// True when every vertex of the composite has its name from the derivation.
  bool complete() const {
    for (const char* role :
         {"mean", "xmu", "xmu^2", "var", "var+eps", "invstd", "xhat", "gamma*xhat", "y"}) {
      if (!find(role)) return false;
    }
    return true;
  }

  std::string operator()(Vertex v) const {
    const auto it = names_.find(v);
    return it != names_.end() ? it->second : "v" + std::to_string(v);
  }
  std::optional<Vertex> find(const std::string& role) const {
    for (const auto& [v, n] : names_) {
      if (n == role) return v;
    }
    return std::nullopt;
  }

 private:
  void name(std::optional<Vertex> v, const std::string& role) {
    if (v) names_[*v] = role;
  }
  // The consumer of `v` that applies `op`; with both_args, the one that
  // takes `v` as both of its inputs (xmu * xmu), otherwise one that does not.
  std::optional<Vertex> consumer(Vertex v, const std::string& op, bool both_args = false) const {
    for (auto [e, end] = boost::out_edges(v, g_); e != end; ++e) {
      const Vertex c = boost::target(*e, g_);
      if (g_[c].op->name != op) continue;
      int from_v = 0;
      for (auto [in, in_end] = boost::in_edges(c, g_); in != in_end; ++in) {
        from_v += boost::source(*in, g_) == v;
      }
      if (both_args == (from_v == 2)) return c;
    }
    return std::nullopt;
  }

  const GraphImpl& g_;
  std::map<Vertex, std::string> names_;
};

// Inputs of `v` in argument order.
std::vector<Vertex> inputs_of(const GraphImpl& g, Vertex v) {
  std::vector<std::pair<int, Vertex>> args;
  for (auto [e, end] = boost::in_edges(v, g); e != end; ++e) {
    args.emplace_back(g[*e].arg, boost::source(*e, g));
  }
  std::sort(args.begin(), args.end());
  std::vector<Vertex> out;
  for (const auto& a : args) out.push_back(a.second);
  return out;
}

std::string arg_letter(std::size_t arg) { return std::string(1, static_cast<char>('a' + arg)); }

// A gradient that a consumer's VJP sent to one of its inputs.
struct Contribution {
  Vertex consumer;
  std::size_t arg;
  Tensor grad;
};

class Explanation {
 public:
  Explanation(const BatchNormProblem& p, Report& report)
      : p_(p),
        recorded_(record_batchnorm(p)),
        g_(recorded_.graph->impl()),
        names_(g_, recorded_.x.vertex(), recorded_.y.vertex()),
        report_(report) {}

  // Returns the comparisons of the last part.
  std::vector<GradientAgreement> write() {
    introduction();
    forward_walk();
    backward_walk();
    branches();
    vanishing_path();
    derivation();
    return comparison();
  }

 private:
  std::string label(Vertex v) const { return "v" + std::to_string(v) + " " + names_(v); }

  // "sub(x, mean)": the op applied to its inputs, by name.
  std::string expression(Vertex v) const {
    std::string s = std::string(g_[v].op->name) + "(";
    const std::vector<Vertex> in = inputs_of(g_, v);
    for (std::size_t i = 0; i < in.size(); ++i) s += (i ? ", " : "") + names_(in[i]);
    return s + ")";
  }

  std::string tensor_title(const std::string& name, const Tensor& t) const {
    return name + "  " + to_string(t.shape()) + " " + to_string(t.dtype());
  }

  void introduction() {
    const auto& L = p_.layout;
    report_.title("How reverse mode differentiates BatchNormal");
    report_.paragraph("Input: x of shape " + to_string(p_.x.shape()) + ", " +
                      to_string(p_.x.dtype()) + ", " + p_.origin + ". Feature axis " +
                      std::to_string(p_.axis) + ": each of the " + std::to_string(L.features) +
                      " features is normalised over M = " + std::to_string(L.M) +
                      " elements (the reduced axes " + to_string(L.reduced_axes) +
                      "). epsilon = " + format_number(p_.epsilon) +
                      ". gamma, beta and the upstream gradient dy are seeded " +
                      "random, so that no gradient below is trivially 0 or 1.");
    report_.entry(tensor_title("x", p_.x), format_tensor(p_.x));
    report_.entry(tensor_title("gamma", p_.gamma), format_tensor(p_.gamma));
    report_.entry(tensor_title("beta", p_.beta), format_tensor(p_.beta));
    report_.entry(tensor_title("dy", p_.dy), format_tensor(p_.dy));
    picture();
  }

  // The graph drawn top-down, each vertex with the op that computes it.
  void picture() {
    if (!names_.complete()) return;
    auto at = [&](const char* role) {
      const Vertex v = *names_.find(role);
      return std::string(role) + " = " + expression(v);
    };
    report_.paragraph(
        "The training forward, recorded from primitives, is this graph; arrows "
        "carry values down, gradients flow back up along them:");
    // x's second edge runs down the right-hand side, to xmu.
    const std::size_t side = std::max(at("mean").size() + 2, at("xmu").size() + 5);
    auto with_side = [&](std::string line, char edge) {
      line.resize(side, ' ');
      return line + edge;
    };
    std::string xmu_line = at("xmu") + "  <";
    xmu_line += std::string(side - xmu_line.size(), '-') + "+     x feeds two ops";
    report_.block({
        "x " + std::string(side - 2, '-') + "+",
        with_side("|", '|'),
        with_side("v", '|'),
        with_side(at("mean"), '|'),
        with_side("|", '|'),
        with_side("v", '|'),
        xmu_line,
        "|         |",
        "|         v",
        "|    " + at("xmu^2") + "    xmu feeds two ops",
        "|         |",
        "|         v",
        "|    " + at("var"),
        "|         |",
        "|         v",
        "|    " + at("var+eps") + "    + epsilon",
        "|         |",
        "|         v",
        "|    " + at("invstd"),
        "|         |",
        "v         v",
        at("xhat"),
        "|",
        "v",
        at("gamma*xhat"),
        "|",
        "v",
        at("y"),
    });
  }

  void forward_walk() {
    report_.section("1. Forward: every vertex, in creation order");
    report_.paragraph(
        "In creation order (the order define-by-run recorded them): the op, what "
        "it computes, its shape and its value.");
    // The graph holds just this layer: x, the parameters and the cluster.
    for (Vertex v : boost::make_iterator_range(boost::vertices(g_))) {
      const VertexData& d = g_[v];
      const bool leaf = boost::in_degree(v, g_) == 0;
      std::vector<std::string> lines{std::string(d.op->name) + ": " + d.op->forward};
      for (const std::string& l : format_tensor(d.value)) lines.push_back(l);
      report_.entry(
          label(v) + (leaf ? "" : " = " + expression(v)) + "   " + to_string(d.value.shape()),
          lines);
    }
  }

  void backward_walk() {
    report_.section("2. Backward: reverse mode, vertex by vertex");
    report_.paragraph(
        "The sweep (Graph::last_sweep) visits a vertex only after every op that consumes it, so "
        "the gradient arriving at it is complete: where a value feeds several ops, the "
        "gradients their VJPs send back add up. g is the gradient arriving at the output of an "
        "op; ga, gb are the gradients it sends to its inputs a, b.");
    std::set<Vertex> swept(recorded_.graph->last_sweep().begin(),
                           recorded_.graph->last_sweep().end());
    for (Vertex v : recorded_.graph->last_sweep()) {
      const VertexData& d = g_[v];
      std::vector<std::string> lines;
      if (d.node) lines.push_back("VJP: " + std::string(d.op->vjp));
      arriving(v, lines);
      if (d.node) leaving(v, swept, lines);
      report_.entry(label(v) + (d.node ? "  (" + std::string(d.op->name) + ")" : "  (leaf)"),
                    lines);
    }
  }

  void arriving(Vertex v, std::vector<std::string>& lines) const {
    const auto it = contributions_.find(v);
    const bool summed = it != contributions_.end() && it->second.size() > 1;
    if (v == recorded_.y.vertex()) {
      lines.push_back("g arriving = dy, the upstream gradient:");
    } else if (summed) {
      lines.push_back("g arriving = the sum of " + std::to_string(it->second.size()) +
                      " contributions:");
      for (const Contribution& c : it->second) {
        lines.push_back("  from " + names_(c.consumer) + " (as its " + arg_letter(c.arg) + "):");
        for (const std::string& l : format_tensor(c.grad)) lines.push_back("  " + l);
      }
      lines.push_back("  sum:");
    } else if (it != contributions_.end()) {
      lines.push_back("g arriving, from " + names_(it->second.front().consumer) + ":");
    }
    for (const std::string& l : format_tensor(g_[v].grad.value()))
      lines.push_back((summed ? "  " : "") + l);
  }

  void leaving(Vertex v, const std::set<Vertex>& swept, std::vector<std::string>& lines) {
    const VertexData& d = g_[v];
    // The VJP again, as backward ran it (the graph was retained), to show
    // what it sends to each input.
    const Tensors out = recorded_.graph->replay_vjp(v, d.grad.value());
    const std::vector<Vertex> in = inputs_of(g_, v);
    for (std::size_t arg = 0; arg < in.size(); ++arg) {
      const std::string to = "g" + arg_letter(arg) + " -> " + names_(in[arg]);
      if (!swept.count(in[arg]) || arg >= out.size() || !out[arg].defined()) {
        lines.push_back(to + ": none (no gradient wanted there)");
        continue;
      }
      contributions_[in[arg]].push_back({v, arg, out[arg]});
      lines.push_back(to + "  " + to_string(out[arg].shape()) + ":");
      for (const std::string& l : format_tensor(out[arg])) lines.push_back(l);
    }
  }

  void branches() {
    report_.section("3. Where two branches add up");
    std::vector<std::string> lines;
    for (const auto& [v, parts] : contributions_) {
      std::set<Vertex> consumers;
      for (const Contribution& c : parts) consumers.insert(c.consumer);
      if (consumers.size() < 2) continue;
      Tensor sum = parts.front().grad;
      std::string ops;
      for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) sum = math::add(sum, parts[i].grad);
        ops += (i ? " + " : "") + std::string("from ") + names_(parts[i].consumer);
      }
      report_.paragraph(names_(v) + " feeds " + std::to_string(consumers.size()) +
                        " ops, so its gradient is the sum " + ops +
                        ". Largest difference "
                        "between that sum and the gradient backward stored: " +
                        format_number(math::max_abs_diff(sum, g_[v].grad.value()).abs) + ".");
    }
    report_.paragraph(
        "xmu = x - mean feeds both the variance (through xmu^2) and xhat; x feeds both mean and "
        "xmu. Reverse mode gets these sums from the order of the sweep alone; a derivation by "
        "hand must remember to add both branches (step 6 below).");
  }

  // The gradient leaving xmu for mean, split by the branch it came through.
  void vanishing_path() {
    report_.section("4. Why the path from the variance through the mean adds nothing");
    const auto xmu = names_.find("xmu"), squared = names_.find("xmu^2");
    const auto xhat = names_.find("xhat");
    if (!xmu || !squared || !xhat || !g_[*xmu].node) {
      report_.paragraph("(The graph does not have the expected shape; this part is skipped.)");
      return;
    }
    auto to_mean = [&](const Tensor& part) {
      const Tensors out = recorded_.graph->replay_vjp(*xmu, part);
      return out.size() > 1 ? out[1] : Tensor();
    };
    Tensor through_var, through_xhat;
    for (const Contribution& c : contributions_[*xmu]) {
      Tensor& part = c.consumer == *squared ? through_var : through_xhat;
      part = part.defined() ? math::add(part, c.grad) : c.grad;
    }
    if (!through_var.defined() || !through_xhat.defined()) return;
    report_.paragraph(
        "sub's VJP sends gb = -sum(g) over the reduced axes to mean. Split the gradient "
        "arriving at xmu by the branch it came through and send each part alone:");
    report_.entry("through xhat: gb -> mean =", format_tensor(to_mean(through_xhat)));
    report_.entry("through the variance (xmu^2): gb -> mean =",
                  format_tensor(to_mean(through_var)));
    report_.paragraph(
        "The variance branch sends 2 * dvar * xmu / M to xmu, so its sum is 2 * dvar / M * "
        "sum(xmu), and sum(xmu) = sum(x - mean) = 0 by the definition of the mean:");
    report_.entry("sum(xmu) over the reduced axes =",
                  format_tensor(math::sum(g_[*xmu].value, p_.layout.reduced_axes)));
    report_.paragraph(
        "What is left is rounding (about 1e-16 times the size of the values for float64): in "
        "exact arithmetic the path from the variance back through the mean contributes "
        "nothing, which is why the fused formula below has no term for it.");
  }

  void derivation() {
    report_.section("5. From the graph to the fused formula");
    report_.paragraph("The same walk on symbols, per feature, sums over the M reduced elements:");
    int step = 1;
    for (const layers::DerivationStep& s : layers::batchnorm_derivation()) {
      std::vector<std::string> lines{s.formula};
      for (const std::string& l : wrap(s.why, kTextWidth - 6)) lines.push_back("  " + l);
      append_step_value(s, lines);
      report_.entry("Step " + std::to_string(step++) + ": " + s.title, lines);
    }
  }

  // The number a step computes, from the walk above: the step "dvar" is the
  // gradient that arrived at var. The last step is the fused formula's dx.
  void append_step_value(const layers::DerivationStep& s, std::vector<std::string>& lines) {
    const std::string symbol = s.title.substr(0, s.title.find(' '));
    Tensor value;
    std::string where;
    if (s.title.find("fused") != std::string::npos) {
      value = fused_gradients(p_)[0];
      where = "the fused backward's dx (the kernel in layers/batch_norm/kernels.cpp)";
    } else if (symbol.size() > 1 && symbol[0] == 'd') {
      const auto v = names_.find(symbol.substr(1));
      if (!v || !g_[*v].grad.value().defined()) return;
      value = g_[*v].grad.value();
      where = "the gradient at " + symbol.substr(1) + " in part 2";
    } else {
      return;
    }
    lines.push_back("  = " + where + ":");
    for (const std::string& l : format_tensor(value)) lines.push_back("  " + l);
  }

  std::vector<GradientAgreement> comparison() {
    report_.section("6. Autodiff, fused and finite differences side by side");
    const std::vector<GradientAgreement> agreements =
        compare_gradients(p_, autodiff_gradients(p_), fused_gradients(p_), numeric_gradients(p_));
    report_.paragraph(
        "The gradients of sum(y * dy) with respect to x, gamma and beta: reverse mode through "
        "the primitives (autodiff), the fused formula (fused) and float64 central differences "
        "(finite diff, step 1e-6). max rel diff is " +
        report_.code("max |diff| / max |reference|") +
        ". exact: identical; close: within the dtype's tolerance; MISMATCH: beyond it.");
    report_.table(agreement_table(agreements));
    bool all_ok = true;
    for (const auto& a : agreements) all_ok = all_ok && a.ok();
    report_.paragraph(all_ok ? "Verdict: all three agree for dx, dgamma and dbeta."
                             : "Verdict: MISMATCH (see the table).");
    return agreements;
  }

  const BatchNormProblem& p_;
  RecordedBatchNorm recorded_;
  const GraphImpl& g_;
  VertexNames names_;
  Report& report_;
  std::map<Vertex, std::vector<Contribution>> contributions_;
};

class ExplainCommand : public Command {
 public:
  CLI::App* add_to(CLI::App& parent) override {
    CLI::App* explain = parent.add_subcommand("explain", "Teach how a gradient is derived");
    CLI::App* app = explain->add_subcommand("batchnorm", "How the batch-norm gradient is derived");
    app->footer(
        "Walks BatchNormal's composite graph forward and backward on a small input (a seeded "
        "random 4 x 3 batch unless --x is given), vertex by vertex; shows where branches add up "
        "and why the path from the variance through the mean contributes nothing; derives the "
        "fused backward formula; compares autodiff, fused and float64 finite differences. Exit "
        "status 3 when they disagree.");
    app->add_option("--x", o_.x, ".npy input (default: a seeded random 4 x 3 batch)");
    add_integer_option(*app, "--axis", o_.axis, "feature axis", kMinAxis, kMaxAxis)
        ->capture_default_str();
    app->add_option("--epsilon", o_.epsilon, "added to the variance")->capture_default_str();
    add_integer_option(*app, "--seed", o_.seed, "seed of the built-in x, gamma, beta and dy",
                       kMinSeed, kMaxSeed)
        ->capture_default_str();
    app->add_option("--format", o_.format, "text (80 columns) or markdown")
        ->check(CLI::IsMember({"text", "markdown"}))
        ->capture_default_str();
    return app;
  }

  int run(std::ostream& out) override {
    ProblemSpec spec;
    spec.x_path = o_.x;
    spec.axis = o_.axis;
    spec.epsilon = o_.epsilon;
    spec.seed = o_.seed;
    const BatchNormProblem problem = make_problem(spec);
    Report report(out, parse_format(o_.format));
    throw_first_mismatch(Explanation(problem, report).write());
    return kSuccess;
  }

 private:
  ExplainOptions o_;
};

}  // namespace

std::unique_ptr<Command> make_explain_command() { return std::make_unique<ExplainCommand>(); }

}  // namespace npdl::cli
