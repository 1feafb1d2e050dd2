// Builds the explanation of the batch-norm gradient (cli/explanation.hpp):
// records BatchNormal in autodiff mode, walks the composite graph forward
// (every primitive and its value) and backward (every VJP, the gradient
// arriving and the gradients leaving), shows where branches add up and why
// one path contributes nothing, derives the fused formula, and compares
// autodiff, fused and finite differences.
#include "cli/explanation.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "layers/batch_norm/double_backward.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::cli {
namespace {

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

// The identifiers of a formula ("dvar", "invstd"), in order.
std::vector<std::string> identifiers(const std::string& text) {
  std::vector<std::string> out;
  std::string word;
  for (char c : text + ' ') {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') {
      word += c;
    } else if (!word.empty()) {
      if (!std::isdigit(static_cast<unsigned char>(word[0]))) out.push_back(word);
      word.clear();
    }
  }
  return out;
}

// The derivation steps that `why` cites by number: "step 6", "steps 5 to 8".
std::vector<int> cited_steps(const std::string& why) {
  std::vector<int> out;
  std::size_t at = 0;
  while ((at = why.find("step", at)) != std::string::npos) {
    at += 4;
    if (at < why.size() && why[at] == 's') ++at;
    int first = 0, last = 0, read = 0;
    if (std::sscanf(why.c_str() + at, " %d to %d%n", &first, &last, &read) == 2) {
      for (int s = first; s <= last; ++s) out.push_back(s);
    } else if (std::sscanf(why.c_str() + at, " %d", &first) == 1) {
      out.push_back(first);
    }
  }
  return out;
}

// A gradient that a consumer's VJP sent to one of its inputs.
struct Contribution {
  Vertex consumer;
  std::size_t arg;
  Tensor grad;
};

class ExplanationBuilder {
 public:
  ExplanationBuilder(const BatchNormProblem& p, int order)
      : p_(p),
        order_(order),
        recorded_(order == 2 ? record_batchnorm_second_order(p) : record_batchnorm(p)),
        g_(recorded_.graph->impl()),
        names_(g_, recorded_.x.vertex(), recorded_.y.vertex()) {}

  Explanation build() {
    describe_problem();
    describe_graph();
    introduction();
    forward_walk();
    backward_walk();
    branches();
    if (order_ == 1) {
      vanishing_path();
      derivation("5. From the graph to the fused formula", layers::batchnorm_derivation());
      comparison();
    } else {
      derivation("4. From the graph to the hand-derived double backward",
                 layers::batchnorm_double_derivation());
      second_order_comparison();
    }
    return std::move(e_);
  }

 private:
  // "v4 xmu"; a vertex without a name in the derivation is just "v17".
  std::string label(Vertex v) const {
    const std::string id = "v" + std::to_string(v), name = names_(v);
    return name == id ? id : id + " " + name;
  }

  // "sub(x, mean)": the op applied to its inputs, by name.
  std::string expression(Vertex v) const {
    std::string s = std::string(g_[v].op->name) + "(";
    const std::vector<Vertex> in = inputs_of(g_, v);
    for (std::size_t i = 0; i < in.size(); ++i) s += (i ? ", " : "") + names_(in[i]);
    return s + ")";
  }

  ExplanationStep& add_step(StepKind kind, const std::string& title) {
    ExplanationStep step;
    step.kind = kind;
    step.part = e_.parts.size() - 1;
    step.title = title;
    e_.steps.push_back(std::move(step));
    return e_.steps.back();
  }

  ExplanationPart& add_part(const std::string& heading) {
    e_.parts.push_back({heading, {}, {}});
    return e_.parts.back();
  }

  // The step, among those made so far, of `kind` about vertex `v`.
  std::optional<std::size_t> step_about(StepKind kind, Vertex v) const {
    for (std::size_t i = 0; i < e_.steps.size(); ++i) {
      const ExplanationStep& s = e_.steps[i];
      if (s.kind == kind && !s.vertices.empty() && s.vertices.front() == v) return i;
    }
    return std::nullopt;
  }

  void add_edge(ExplanationStep& step, Vertex from, Vertex to, int arg) const {
    step.edges.push_back(edge_id(from, to, arg));
    for (Vertex v : {from, to}) {
      if (std::find(step.vertices.begin(), step.vertices.end(), v) == step.vertices.end()) {
        step.vertices.push_back(v);
      }
    }
  }

  // The vertex backward started from: y at first order, H at second.
  Vertex root() const { return order_ == 2 ? recorded_.h.vertex() : recorded_.y.vertex(); }

  void describe_problem() {
    e_.order = order_;
    e_.title = order_ == 2 ? "How reverse mode differentiates BatchNormal's backward"
                           : "How reverse mode differentiates BatchNormal";
    e_.shape = p_.x.shape();
    e_.dtype = p_.x.dtype();
    e_.axis = p_.axis;
    e_.epsilon = p_.epsilon;
    e_.reduced_count = p_.layout.M;
    e_.origin = p_.origin;
  }

  void describe_graph() {
    for (Vertex v : boost::make_iterator_range(boost::vertices(g_))) {
      const VertexData& d = g_[v];
      const bool leaf = boost::in_degree(v, g_) == 0;
      e_.vertices.push_back(
          {v, names_(v), d.op->name, leaf ? "" : expression(v), d.value, d.grad.value()});
      for (auto [in, end] = boost::in_edges(v, g_); in != end; ++in) {
        const Vertex from = boost::source(*in, g_);
        e_.edges.push_back({edge_id(from, v, g_[*in].arg), from, v, g_[*in].arg});
      }
    }
    e_.dot = to_dot(*recorded_.graph, batchnorm_dot_options());
  }

  void introduction() {
    add_part("");
    const auto& L = p_.layout;
    ExplanationStep& problem = add_step(StepKind::Problem, "The problem");
    problem.text.push_back(
        "Input: x of shape " + to_string(p_.x.shape()) + ", " + to_string(p_.x.dtype()) + ", " +
        p_.origin + ". Feature axis " + std::to_string(p_.axis) + ": each of the " +
        std::to_string(L.features) + " features is normalised over M = " + std::to_string(L.M) +
        " elements (the reduced axes " + to_string(L.reduced_axes) +
        "). epsilon = " + format_number(p_.epsilon) +
        ". gamma, beta and the upstream gradient dy are seeded random, so that no gradient below "
        "is trivially 0 or 1.");
    problem.tensors = {{"x", TensorRole::Input, p_.x},
                       {"gamma", TensorRole::Input, p_.gamma},
                       {"beta", TensorRole::Input, p_.beta},
                       {"dy", TensorRole::Input, p_.dy}};
    problem.vertices = {recorded_.x.vertex()};
    for (const char* leaf : {"gamma", "beta", "dy"}) {
      if (const auto v = names_.find(leaf)) problem.vertices.push_back(*v);
    }
    if (order_ == 2) describe_second_order(problem);

    ExplanationStep& graph = add_step(StepKind::Graph, "The graph");
    graph.text.push_back(
        order_ == 2
            ? "The training forward and its first backward, both recorded from primitives (the "
              "first backward with create_graph, so that its VJPs are ops on the graph too), and "
              "H on top: " +
                  std::to_string(e_.vertices.size()) +
                  " vertices (the html format draws them). Reverse mode from H runs back through "
                  "the first backward to x, gamma and dy."
            : "The training forward, recorded from primitives, is this graph; arrows carry values "
              "down, gradients flow back up along them:");
    for (const GraphVertex& v : e_.vertices) graph.vertices.push_back(v.vertex);
    for (const GraphEdge& edge : e_.edges) graph.edges.push_back(edge.id);
  }

  // What the second derivative is of, and the weights of H.
  void describe_second_order(ExplanationStep& problem) const {
    problem.text.push_back(
        "(dx, dgamma, dbeta) is the first derivative of sum(y * dy). The second derivative is "
        "that of H = sum(ggx * dx) + sum(gggamma * dgamma) + sum(ggbeta * dbeta) with respect to "
        "x, gamma and dy: the double backward. ggx, gggamma and ggbeta are seeded random too.");
    problem.tensors.push_back({"ggx", TensorRole::Input, p_.ggx});
    problem.tensors.push_back({"gggamma", TensorRole::Input, p_.gggamma});
    problem.tensors.push_back({"ggbeta", TensorRole::Input, p_.ggbeta});
  }

  void forward_walk() {
    add_part("1. Forward: every vertex, in creation order")
        .intro.push_back(
            "In creation order (the order define-by-run recorded them): the op, what it "
            "computes, its shape and its value.");
    // The graph holds just this layer: x, the parameters and the cluster.
    for (Vertex v : boost::make_iterator_range(boost::vertices(g_))) {
      const VertexData& d = g_[v];
      const bool leaf = boost::in_degree(v, g_) == 0;
      ExplanationStep& step =
          add_step(StepKind::Forward, label(v) + (leaf ? "" : " = " + expression(v)));
      step.op = d.op->name;
      step.forward = d.op->forward;
      step.tensors.push_back({"value", TensorRole::Value, d.value});
      step.vertices.push_back(v);
      for (auto [in, end] = boost::in_edges(v, g_); in != end; ++in) {
        add_edge(step, boost::source(*in, g_), v, g_[*in].arg);
      }
    }
  }

  void backward_walk() {
    add_part("2. Backward: reverse mode, vertex by vertex")
        .intro.push_back(
            "The sweep (Graph::last_sweep) visits a vertex only after every op that consumes it, "
            "so the gradient arriving at it is complete: where a value feeds several ops, the "
            "gradients their VJPs send back add up. g is the gradient arriving at the output of "
            "an op; ga, gb are the gradients it sends to its inputs a, b.");
    std::set<Vertex> swept(recorded_.graph->last_sweep().begin(),
                           recorded_.graph->last_sweep().end());
    for (Vertex v : recorded_.graph->last_sweep()) {
      const VertexData& d = g_[v];
      ExplanationStep& step = add_step(StepKind::Backward, label(v));
      step.vertices.push_back(v);
      if (d.node) {
        step.op = d.op->name;
        step.forward = d.op->forward;
        step.vjp = d.op->vjp;
      }
      arriving(v, step);
      if (d.node) leaving(v, swept, step);
    }
  }

  void arriving(Vertex v, ExplanationStep& step) {
    const Tensor& grad = g_[v].grad.value();
    const auto it = contributions_.find(v);
    if (v == root()) {
      step.tensors.push_back({order_ == 2 ? "g arriving = 1, H's gradient with respect to itself"
                                          : "g arriving = dy, the upstream gradient",
                              TensorRole::Arriving, grad});
      return;
    }
    if (it == contributions_.end()) {
      step.tensors.push_back({"g arriving", TensorRole::Arriving, grad});
      return;
    }
    const std::vector<Contribution>& parts = it->second;
    for (const Contribution& c : parts) {
      if (parts.size() > 1) {
        step.tensors.push_back(
            {"from " + names_(c.consumer) + " (as its " + arg_letter(c.arg) + ")",
             TensorRole::Contribution, c.grad});
      }
      add_edge(step, v, c.consumer, static_cast<int>(c.arg));
    }
    if (parts.size() > 1) {
      step.tensors.push_back(
          {"g arriving = the sum of " + std::to_string(parts.size()) + " contributions",
           TensorRole::Sum, grad});
    } else {
      step.tensors.push_back(
          {"g arriving, from " + names_(parts.front().consumer), TensorRole::Arriving, grad});
    }
  }

  void leaving(Vertex v, const std::set<Vertex>& swept, ExplanationStep& step) {
    const VertexData& d = g_[v];
    // The VJP again, as backward ran it (the graph was retained), to show
    // what it sends to each input.
    const Tensors out = recorded_.graph->replay_vjp(v, d.grad.value());
    const std::vector<Vertex> in = inputs_of(g_, v);
    for (std::size_t arg = 0; arg < in.size(); ++arg) {
      const std::string to = "g" + arg_letter(arg) + " -> " + names_(in[arg]);
      add_edge(step, in[arg], v, static_cast<int>(arg));
      if (!swept.count(in[arg]) || arg >= out.size() || !out[arg].defined()) {
        step.tensors.push_back({to, TensorRole::Leaving, Tensor()});
        continue;
      }
      contributions_[in[arg]].push_back({v, arg, out[arg]});
      step.tensors.push_back({to, TensorRole::Leaving, out[arg]});
    }
  }

  void branches() {
    ExplanationPart& part =
        add_part(order_ == 2 ? "3. Where branches add up" : "3. Where two branches add up");
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
      ExplanationStep& step = add_step(
          StepKind::Branch, names_(v) + " feeds " + std::to_string(consumers.size()) + " ops");
      step.text.push_back(names_(v) + " feeds " + std::to_string(consumers.size()) +
                          " ops, so its gradient is the sum " + ops +
                          ". Largest difference between that sum and the gradient backward "
                          "stored: " +
                          format_number(math::max_abs_diff(sum, g_[v].grad.value()).abs) + ".");
      step.vertices.push_back(v);
      for (const Contribution& c : parts) {
        add_edge(step, v, c.consumer, static_cast<int>(c.arg));
        if (const auto s = step_about(StepKind::Backward, c.consumer)) step.uses.push_back(*s);
      }
      if (const auto s = step_about(StepKind::Backward, v)) step.uses.push_back(*s);
    }
    if (order_ == 2) return;
    part.outro.push_back(
        "xmu = x - mean feeds both the variance (through xmu^2) and xhat; x feeds both mean and "
        "xmu. Reverse mode gets these sums from the order of the sweep alone; a derivation by "
        "hand must remember to add both branches (step 6 below).");
  }

  // The gradient leaving xmu for mean, split by the branch it came through.
  void vanishing_path() {
    add_part("4. Why the path from the variance through the mean adds nothing");
    const auto xmu = names_.find("xmu"), squared = names_.find("xmu^2");
    const auto xhat = names_.find("xhat"), mean = names_.find("mean");
    Tensor through_var, through_xhat;
    if (xmu && squared && xhat && mean && g_[*xmu].node) {
      for (const Contribution& c : contributions_[*xmu]) {
        Tensor& part = c.consumer == *squared ? through_var : through_xhat;
        part = part.defined() ? math::add(part, c.grad) : c.grad;
      }
    }
    if (!through_var.defined() || !through_xhat.defined()) {
      add_step(StepKind::Vanishing, "Skipped")
          .text.push_back("(The graph does not have the expected shape; this part is skipped.)");
      return;
    }
    auto to_mean = [&](const Tensor& part) {
      const Tensors out = recorded_.graph->replay_vjp(*xmu, part);
      return out.size() > 1 ? out[1] : Tensor();
    };
    ExplanationStep& split = add_step(StepKind::Vanishing, "The gradient at xmu, by branch");
    split.text.push_back(
        "sub's VJP sends gb = -sum(g) over the reduced axes to mean. Split the gradient "
        "arriving at xmu by the branch it came through and send each part alone:");
    split.op = g_[*xmu].op->name;
    split.forward = g_[*xmu].op->forward;
    split.vjp = g_[*xmu].op->vjp;
    split.tensors = {
        {"through xhat: gb -> mean =", TensorRole::Result, to_mean(through_xhat)},
        {"through the variance (xmu^2): gb -> mean =", TensorRole::Result, to_mean(through_var)}};
    add_edge(split, *xmu, *xhat, 0);
    add_edge(split, *xmu, *squared, 0);
    add_edge(split, *mean, *xmu, 1);
    if (const auto s = step_about(StepKind::Backward, *xmu)) split.uses.push_back(*s);

    ExplanationStep& zero = add_step(StepKind::Vanishing, "sum(xmu) = 0");
    zero.text.push_back(
        "The variance branch sends 2 * dvar * xmu / M to xmu, so its sum is 2 * dvar / M * "
        "sum(xmu), and sum(xmu) = sum(x - mean) = 0 by the definition of the mean:");
    zero.tensors = {{"sum(xmu) over the reduced axes =", TensorRole::Result,
                     math::sum(g_[*xmu].value, p_.layout.reduced_axes)}};
    zero.remark =
        "What is left is rounding (about 1e-16 times the size of the values for float64): in "
        "exact arithmetic the path from the variance back through the mean contributes "
        "nothing, which is why the fused formula below has no term for it.";
    zero.vertices = {*xmu};
    zero.uses.push_back(e_.steps.size() - 2);
  }

  void derivation(const std::string& heading, const std::vector<layers::DerivationStep>& steps) {
    add_part(heading).intro.push_back(
        "The same walk on symbols, per feature, sums over the M reduced elements:");
    const std::size_t first = e_.steps.size();
    std::map<std::string, std::size_t> defined;  // symbol -> latest step defining it
    for (const layers::DerivationStep& s : steps) {
      ExplanationStep& step = add_step(StepKind::Derivation, s.title);
      step.formula = s.formula;
      step.text.push_back(s.why);
      const std::string symbol = s.formula.substr(0, s.formula.find(' '));
      step.uses = derivation_uses(s, symbol, defined, first);
      show_gradient(step, s, symbol);
      defined[symbol] = e_.steps.size() - 1;
      if (s.title.find("fused") != std::string::npos) e_.fused_step = e_.steps.size() - 1;
    }
  }

  // The steps a derivation step builds on: those defining the symbols it
  // uses or restates (the latest one for each), those its reason cites by
  // number, and the backward step whose gradient it shows.
  std::vector<std::size_t> derivation_uses(const layers::DerivationStep& s,
                                           const std::string& symbol,
                                           const std::map<std::string, std::size_t>& defined,
                                           std::size_t first) const {
    std::set<std::size_t> uses;
    for (const std::string& word : identifiers(s.formula + " " + s.why)) {
      const auto it = defined.find(word);
      if (it != defined.end()) uses.insert(it->second);
    }
    const auto restated = defined.find(symbol);
    if (restated != defined.end()) uses.insert(restated->second);
    for (int cited : cited_steps(s.why)) {
      const std::size_t at = first + static_cast<std::size_t>(cited) - 1;
      if (cited >= 1 && at < e_.steps.size() - 1) uses.insert(at);
    }
    return {uses.begin(), uses.end()};
  }

  // The vertex whose gradient a derivation step's symbol is: "dvar" at
  // first order, "dL2/ddy" at second.
  std::optional<Vertex> differentiated(const std::string& symbol) const {
    const std::string second_order = "dL2/d";
    if (order_ == 2) {
      return symbol.rfind(second_order, 0) == 0 ? names_.find(symbol.substr(second_order.size()))
                                                : std::nullopt;
    }
    return symbol.size() > 1 && symbol[0] == 'd' ? names_.find(symbol.substr(1)) : std::nullopt;
  }

  // The number a step computes, from the walk: the step "dvar" is the
  // gradient that arrived at var. The fused formula's is the fused dx; at
  // second order, the fused steps show the hand-derived double backward.
  void show_gradient(ExplanationStep& step, const layers::DerivationStep& s,
                     const std::string& symbol) {
    const auto v = differentiated(symbol);
    if (v) {
      step.vertices.push_back(*v);
      // The gradient comes back along v's edges to its consumers.
      for (auto [out, end] = boost::out_edges(*v, g_); out != end; ++out) {
        add_edge(step, *v, boost::target(*out, g_), g_[*out].arg);
      }
      describe_consumer_ops(*v, step);
    }
    if (order_ == 2 && s.title.find("fused") != std::string::npos) {
      show_hand_double_backward(step, s.title);
    } else if (s.title.find("fused") != std::string::npos) {
      step.tensors.push_back(
          {"the fused backward's dx (the kernel in layers/batch_norm/kernels.cpp)",
           TensorRole::Result, fused_gradients(p_)[0]});
    } else if (s.title.find("substitute") == std::string::npos && v &&
               g_[*v].grad.value().defined()) {
      step.tensors.push_back({"the gradient at " + names_(*v) + " in part 2", TensorRole::Result,
                              g_[*v].grad.value()});
      if (const auto b = step_about(StepKind::Backward, *v)) {
        step.uses.insert(std::upper_bound(step.uses.begin(), step.uses.end(), *b), *b);
      }
    }
  }

  // What the hand-derived double backward (the kernel in
  // layers/batch_norm/double_backward.cpp) gives for the gradients a fused
  // step names.
  void show_hand_double_backward(ExplanationStep& step, const std::string& title) {
    const std::vector<Tensor> hand = second_order_gradients(p_, SecondOrderWay::Hand);
    const char* names[] = {"dL2/dx", "dL2/dgamma", "dL2/ddy"};
    for (std::size_t i = 0; i < hand.size() && i < 3; ++i) {
      if (title.find(names[i]) == std::string::npos) continue;
      step.tensors.push_back({std::string("the hand-derived double backward's ") + names[i],
                              TensorRole::Result, hand[i]});
    }
  }

  // The ops whose VJPs send v its gradient ("mul, square"), what they
  // compute and their VJPs, each prefixed by its op when there are several.
  void describe_consumer_ops(Vertex v, ExplanationStep& step) const {
    std::map<std::string, const OpInfo*> ops;
    for (auto [out, end] = boost::out_edges(v, g_); out != end; ++out) {
      const OpInfo* op = g_[boost::target(*out, g_)].op;
      ops[op->name] = op;
    }
    for (const auto& [name, op] : ops) {
      const std::string prefix = ops.size() > 1 ? name + ": " : "";
      const std::string separator = step.op.empty() ? "" : "; ";
      step.op += (step.op.empty() ? "" : ", ") + name;
      step.forward += separator + prefix + op->forward;
      step.vjp += separator + prefix + op->vjp;
    }
  }

  void second_order_comparison() {
    add_part("5. Autodiff, recorded, hand-derived and finite differences side by side");
    e_.agreements = compare_second_order(p_, second_order_gradients(p_, SecondOrderWay::Autodiff),
                                         second_order_gradients(p_, SecondOrderWay::Recorded),
                                         second_order_gradients(p_, SecondOrderWay::Hand),
                                         numeric_second_order_gradients(p_));
    ExplanationStep& step =
        add_step(StepKind::Comparison, "Autodiff, recorded, hand-derived and finite differences");
    step.text.push_back(
        "The gradients of H with respect to x, gamma and dy: the composite differentiated twice "
        "by reverse mode (autodiff, the walk above), the fused backward recorded from primitives "
        "and differentiated (recorded), the hand-derived double backward (hand) and float64 "
        "central differences of the first derivative (finite diff). max rel diff is `max |diff| "
        "/ max |reference|`. exact: identical; close: within the dtype's tolerance; MISMATCH: "
        "beyond it.");
    conclude(step, "Verdict: all four agree for d/dx, d/dgamma and d/ddy.");
  }

  // The verdict of the comparison `step` shows, which builds on the last
  // fused step.
  void conclude(ExplanationStep& step, const std::string& agreement) {
    e_.agree = std::all_of(e_.agreements.begin(), e_.agreements.end(),
                           [](const GradientAgreement& a) { return a.ok(); });
    e_.verdict = e_.agree ? agreement : "Verdict: MISMATCH (see the table).";
    step.remark = e_.verdict;
    e_.comparison_step = e_.steps.size() - 1;
    step.uses.push_back(e_.fused_step);
    step.vertices.push_back(recorded_.x.vertex());
    for (const char* leaf : {"gamma", "beta", "dy"}) {
      if (const auto v = names_.find(leaf)) step.vertices.push_back(*v);
    }
  }

  void comparison() {
    add_part("6. Autodiff, fused and finite differences side by side");
    e_.agreements =
        compare_gradients(p_, autodiff_gradients(p_), fused_gradients(p_), numeric_gradients(p_));
    ExplanationStep& step =
        add_step(StepKind::Comparison, "Autodiff, fused and finite differences");
    step.text.push_back(
        "The gradients of sum(y * dy) with respect to x, gamma and beta: reverse mode through "
        "the primitives (autodiff), the fused formula (fused) and float64 central differences "
        "(finite diff, step 1e-6). max rel diff is `max |diff| / max |reference|`. exact: "
        "identical; close: within the dtype's tolerance; MISMATCH: beyond it.");
    conclude(step, "Verdict: all three agree for dx, dgamma and dbeta.");
  }

  const BatchNormProblem& p_;
  int order_;  // 1: the gradient; 2: the gradient of the gradient
  RecordedBatchNorm recorded_;
  const GraphImpl& g_;
  VertexNames names_;
  std::map<Vertex, std::vector<Contribution>> contributions_;
  Explanation e_;
};

}  // namespace

const char* role_name(TensorRole role) {
  switch (role) {
    case TensorRole::Input:
      return "input";
    case TensorRole::Value:
      return "value";
    case TensorRole::Arriving:
      return "arriving";
    case TensorRole::Contribution:
      return "contribution";
    case TensorRole::Sum:
      return "sum";
    case TensorRole::Leaving:
      return "leaving";
    case TensorRole::Result:
      return "result";
  }
  return "result";
}

const char* kind_name(StepKind kind) {
  switch (kind) {
    case StepKind::Problem:
      return "problem";
    case StepKind::Graph:
      return "graph";
    case StepKind::Forward:
      return "forward";
    case StepKind::Backward:
      return "backward";
    case StepKind::Branch:
      return "branch";
    case StepKind::Vanishing:
      return "vanishing";
    case StepKind::Derivation:
      return "derivation";
    case StepKind::Comparison:
      return "comparison";
  }
  return "problem";
}

const GraphVertex* Explanation::find(const std::string& name) const {
  for (const GraphVertex& v : vertices) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

DotOptions batchnorm_dot_options() {
  DotOptions options;
  options.values = true;
  options.gradients = true;
  return options;
}

Explanation explain_batchnorm(const BatchNormProblem& problem, int order) {
  return ExplanationBuilder(problem, order).build();
}

}  // namespace npdl::cli
