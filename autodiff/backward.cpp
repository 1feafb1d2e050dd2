// The reverse-mode sweep.
//
// Note [Backward order]
// The order comes from the graph: boost::topological_sort over the vertices
// that lie between the output and a leaf that wants a gradient. It emits
// vertices in reverse topological order, which is exactly the order of the
// sweep: a vertex is emitted only after every consumer of it, so its
// gradient is complete (all fan-out contributions summed) when its VJP runs.
// The depth-first search visits vertices in creation order (vecS), so the
// order, and with it every floating-point sum, is the same in every run.
#include <boost/graph/filtered_graph.hpp>
#include <boost/graph/topological_sort.hpp>
#include <optional>

#include "autodiff/graph.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl {
namespace {

// Two gradient contributions summed under create_graph: the sum is itself a
// value on the graph. Its VJP hands the gradient to both, as add's does.
const OpInfo kAccumulate{"accumulate_grad", "a + b (two contributions to one gradient)",
                         "ga = g, gb = g"};
// A gradient made under create_graph by a VJP written with tensors (Note
// [Differentiable VJPs]): a value whose own derivative is refused.
const OpInfo kNotTwiceDifferentiable{"not_twice_differentiable",
                                     "the gradient of an op whose VJP is not differentiable",
                                     "none: a GraphError naming the op"};

// Vertex filter of the swept subgraph (Boost wants a default-constructible,
// assignable predicate, which a capturing lambda is not).
struct InMask {
  const std::vector<char>* mask = nullptr;
  bool operator()(Vertex v) const { return (*mask)[v] != 0; }
};

// Note [Leaf gradient hook]: reports each leaf that wants a gradient as
// soon as the last of its consumers in the sweep is done.
class LeafReports {
 public:
  LeafReports(const GraphImpl& g, const std::vector<char>& relevant, const LeafGradHook& hook)
      : g_(g), relevant_(relevant), hook_(hook), consumers_left_(relevant.size(), 0) {
    for (Vertex v = 0; v < relevant.size(); ++v) {
      if (!relevant[v] || g[v].node) continue;
      for (auto [e, end] = boost::out_edges(v, g); e != end; ++e) {
        consumers_left_[v] += relevant[boost::target(*e, g)];
      }
    }
  }
  /// Op `v` has run its VJP, or was skipped: its inputs have one consumer less.
  void swept(Vertex v) {
    for (auto [e, end] = boost::in_edges(v, g_); e != end; ++e) {
      const Vertex u = boost::source(*e, g_);
      if (relevant_[u] && !g_[u].node && --consumers_left_[u] == 0) report(u);
    }
  }
  /// The sweep's order reached leaf `v`: a leaf without consumers (the
  /// output itself) is reported here, the others already were.
  void reached(Vertex v) {
    if (consumers_left_[v] == 0) report(v);
  }

 private:
  static constexpr int kReported = -1;
  void report(Vertex leaf) {
    consumers_left_[leaf] = kReported;
    const VertexData& d = g_[leaf];
    if (d.grad.value().defined()) hook_(leaf, d.param, d.grad);
  }
  const GraphImpl& g_;
  const std::vector<char>& relevant_;
  const LeafGradHook& hook_;
  std::vector<int> consumers_left_;
};

}  // namespace

Var Graph::add_gradients(Var acc, Var g) {
  if (!acc.value().defined()) return g;
  if (acc.tracked() || g.tracked()) {
    Tensor sum = math::add(acc.value(), g.value());
    const Var* inputs[] = {&acc, &g};
    return record_inputs(kAccumulate, inputs, 2, std::move(sum), {}, [](const VjpArgs& c) -> Vars {
      return {c.grad, c.grad};
    });
  }
  if (acc.value_.unique()) {
    // In place when nobody else holds the accumulator (a VJP may return the
    // upstream gradient itself, as add's does).
    math::add_inplace(acc.value_, g.value());
    return acc;
  }
  return Var(math::add(acc.value_, g.value()));
}

void Graph::accumulate(Vertex u, Var g) {
  // Note [Vertex storage moves]: the sum may record a vertex, so the
  // gradient is taken out of the storage and put back by index afterwards.
  Var sum = add_gradients(std::move(g_[u].grad), std::move(g));
  g_[u].grad = std::move(sum);
}

std::vector<char> Graph::relevant_vertices(const std::vector<Vertex>& outputs) const {
  // Vertices whose value depends on a leaf that wants a gradient
  // (requires_grad) and that an output depends on.
  std::vector<char> relevant(boost::num_vertices(g_), 0);
  std::vector<Vertex> stack = outputs;
  for (Vertex out : outputs) relevant[out] = 1;
  while (!stack.empty()) {
    const Vertex v = stack.back();
    stack.pop_back();
    for (auto [e, end] = boost::in_edges(v, g_); e != end; ++e) {
      const Vertex u = boost::source(*e, g_);
      if (!relevant[u] && g_[u].requires_grad) {
        relevant[u] = 1;
        stack.push_back(u);
      }
    }
  }
  return relevant;
}

void Graph::check_not_released(const std::vector<Vertex>& order) const {
  for (Vertex v : order) {
    const auto& node = g_[v].node;
    if (node && node->released) {
      throw GraphError(
          "Trying to backward through the graph a second time: the saved tensors of '" +
          std::string(node->info->name) +
          "' were freed by the first backward; pass retain_graph = true (or create_graph = "
          "true) to the first call");
    }
  }
}

namespace {

// The gradient that starts a sweep at `output`: `upstream`, or 1 for a
// one-element output.
Var seed_for(const Var& output, const Var& upstream, const Graph& graph) {
  const Tensor& value = output.value();
  if (output.graph() != &graph) {
    throw GraphError("backward: the output is not a value of this graph");
  }
  if (!graph.impl()[output.vertex()].requires_grad) {
    throw GraphError(
        "backward: the output depends on no variable or parameter, so there is no "
        "gradient to compute; expected a value computed from a Graph::variable or "
        "Graph::param");
  }
  if (upstream.value().defined()) {
    if (upstream.tracked() && upstream.graph() != &graph) {
      throw GraphError("backward: the upstream gradient lives on another graph");
    }
    check_same_shape(value.shape(), upstream.shape(), "backward: upstream gradient");
    check_same_dtype(value, upstream.value(), "backward: upstream gradient");
    return upstream;
  }
  if (value.size() == 1) return Var(Tensor::ones(value.shape(), value.dtype()));
  throw GraphError("backward from a non-scalar output of shape " + to_string(value.shape()) +
                   " needs an upstream gradient of that shape");
}

}  // namespace

Vars Graph::run_vjp(Vertex v, const Var& grad, bool create_graph,
                    const std::vector<char>& relevant) {
  // Under create_graph the VJP's ops add vertices, which may move the vertex
  // storage: it works on a copy of the value then (the Node does not move,
  // Note [Node arena]). At first order nothing moves, and the reference
  // saves a reference count per VJP.
  Tensor kept_value;
  if (create_graph) kept_value = g_[v].value;
  const Node* node = g_[v].node;
  const Tensor& value = create_graph ? kept_value : g_[v].value;
  boost::container::small_vector<Vertex, 3> sources(node->input_shapes.size());
  boost::container::small_vector<char, 3> needs(node->input_shapes.size(), 0);
  for (auto [e, end] = boost::in_edges(v, g_); e != end; ++e) {
    sources[g_[*e].arg] = boost::source(*e, g_);
    needs[g_[*e].arg] = relevant[boost::source(*e, g_)];
  }
  VjpArgs args{grad, node->saved, node->input_shapes, create_graph};
  args.graph = this;
  args.vertex = v;
  args.sources = sources.data();
  args.inputs = &node->inputs;
  args.value = &value;
  args.needs = needs.data();
  if (!create_graph || node->info->twice_differentiable) return node->vjp(args);

  // A VJP written with tensors: its gradients are values, then recorded as
  // depending on everything they were made from, so that a derivative
  // through them is refused by name rather than silently zero.
  Vars grads;
  {
    GradModeGuard values_only(false);
    args.create_graph = false;
    grads = node->vjp(args);
  }
  boost::container::small_vector<Var, 4> made_from{grad};
  for (std::size_t i = 0; i < node->inputs.size(); ++i) {
    if (node->inputs[i].defined()) made_from.push_back(Var(this, sources[i], node->inputs[i]));
  }
  boost::container::small_vector<const Var*, 4> from;
  for (const Var& m : made_from) from.push_back(&m);
  const char* op = node->info->name;
  for (Var& g : grads) {
    if (!g.value().defined()) continue;
    g = record_inputs(
        kNotTwiceDifferentiable, from.data(), from.size(), g.value(), {},
        [op](const VjpArgs&) -> Vars {
          throw GraphError(std::string("cannot differentiate the gradient of '") + op +
                           "' again: its VJP is not twice differentiable (it is computed "
                           "from tensors, not recorded from ops); expected a graph whose "
                           "ops are all twice differentiable");
        });
  }
  return grads;
}

std::vector<Vertex> Graph::sweep(const std::vector<Var>& outputs, std::vector<Var> seeds,
                                 const BackwardOptions& options,
                                 const std::vector<Var>& kept_grads) {
  std::vector<Vertex> roots;
  for (const Var& out : outputs) roots.push_back(out.vertex());
  const std::vector<char> relevant = relevant_vertices(roots);
  boost::filtered_graph<GraphImpl, boost::keep_all, InMask> sub(g_, boost::keep_all(),
                                                                InMask{&relevant});
  std::vector<Vertex> order;
  order.reserve(boost::num_vertices(g_));
  boost::topological_sort(sub, std::back_inserter(order));
  check_not_released(order);

  const bool create_graph = options.create_graph;
  const bool retain = options.retain_graph || create_graph;
  // Under create_graph the VJPs' ops record; otherwise nothing does.
  GradModeGuard mode(create_graph);
  for (Vertex v : boost::make_iterator_range(boost::vertices(g_))) g_[v].grad = Var();
  for (std::size_t i = 0; i < roots.size(); ++i) accumulate(roots[i], std::move(seeds[i]));

  const bool free_as_we_go = !retain && !options_.keep_intermediates;
  // The gradients a caller asked for (gradients() with respect to an
  // intermediate value, or an output) stay, even on a lean graph.
  std::vector<char> kept;
  if (free_as_we_go) {
    kept.assign(relevant.size(), 0);
    for (const Var& k : kept_grads) kept[k.vertex()] = 1;
  }
  boost::container::small_vector<std::pair<Vertex, int>, 3> targets;
  std::optional<LeafReports> leaf_reports;
  if (options.on_leaf_grad_ready) leaf_reports.emplace(g_, relevant, options.on_leaf_grad_ready);
  for (Vertex v : order) {
    if (leaf_reports) {
      if (!g_[v].node)
        leaf_reports->reached(v);
      else if (!g_[v].grad.value().defined())
        leaf_reports->swept(v);
    }
    if (!g_[v].node || !g_[v].grad.value().defined()) continue;
    Var kept_grad;  // as in run_vjp: a copy only when vertices may move
    if (create_graph) kept_grad = g_[v].grad;
    Vars grads = run_vjp(v, create_graph ? kept_grad : g_[v].grad, create_graph, relevant);
    const Node& node = *g_[v].node;
    targets.clear();
    for (auto [e, end] = boost::in_edges(v, g_); e != end; ++e) {
      targets.emplace_back(boost::source(*e, g_), g_[*e].arg);
    }
    for (const auto& [u, arg] : targets) {
      if (!relevant[u] || arg >= static_cast<int>(grads.size()) || !grads[arg].value().defined()) {
        continue;
      }
      if (grads[arg].shape() != node.input_shapes[arg]) {
        throw GraphError(std::string("internal: the VJP of '") + node.info->name +
                         "' returned a gradient of shape " + to_string(grads[arg].shape()) +
                         " for an input of shape " + to_string(node.input_shapes[arg]));
      }
      accumulate(u, std::move(grads[arg]));
    }
    if (!retain) {
      Node& swept = *g_[v].node;
      swept.saved.clear();
      swept.inputs.clear();
      swept.released = true;
    }
    if (free_as_we_go) {  // Note [Lean graphs]: this vertex's last use was its VJP
      if (!kept[v]) g_[v].grad = Var();
      g_[v].value = Tensor();
    }
    if (leaf_reports) leaf_reports->swept(v);
  }
  return order;
}

void Graph::backward(const Var& output, const Tensor& upstream, bool retain_graph) {
  BackwardOptions options;
  options.retain_graph = retain_graph;
  backward(output, Var(upstream), options);
}

void Graph::backward(const Var& output, const Var& upstream, const BackwardOptions& options) {
  Var seed = seed_for(output, upstream, *this);
  std::vector<Vertex> order = sweep({output}, {std::move(seed)}, options);
  for (Vertex v : order) {
    VertexData& d = g_[v];
    if (d.param) d.param->grad = d.grad.value();
  }
  last_sweep_ = std::move(order);
}

std::vector<Var> Graph::gradients(const std::vector<Var>& outputs, const std::vector<Var>& inputs,
                                  const std::vector<Var>& upstreams,
                                  const BackwardOptions& options) {
  if (outputs.empty()) throw GraphError("gradients: expected at least one output, got none");
  if (!upstreams.empty() && upstreams.size() != outputs.size()) {
    throw GraphError("gradients: expected one upstream gradient per output (" +
                     std::to_string(outputs.size()) + "), got " + std::to_string(upstreams.size()));
  }
  for (const Var& in : inputs) {
    if (in.graph() != this || !in.requires_grad()) {
      throw GraphError(
          "gradients: every input must be a value of this graph that wants a gradient (a "
          "variable, a parameter, or computed from one); got " +
          std::string(in.graph() != this ? "a value of no graph or another one"
                                         : "a value that depends on no variable"));
    }
  }
  // An output that depends on no variable (a constant, or a gradient that
  // turned out constant, as max pooling's is in x) contributes zero.
  std::vector<Var> differentiable, seeds;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].tracked() || (outputs[i].graph() == this && !outputs[i].requires_grad())) {
      continue;
    }
    seeds.push_back(seed_for(outputs[i], upstreams.empty() ? Var() : upstreams[i], *this));
    differentiable.push_back(outputs[i]);
  }
  if (differentiable.empty()) {
    std::vector<Var> zeros;
    for (const Var& in : inputs) zeros.push_back(Var(Tensor::zeros(in.shape(), in.dtype())));
    return zeros;
  }
  last_sweep_ = sweep(differentiable, std::move(seeds), options, inputs);
  std::vector<Var> result;
  for (const Var& in : inputs) {
    const Var& g = g_[in.vertex()].grad;
    result.push_back(g.value().defined() ? g : Var(Tensor::zeros(in.shape(), in.dtype())));
  }
  return result;
}

std::vector<Var> grad(const std::vector<Var>& outputs, const std::vector<Var>& inputs,
                      const std::vector<Var>& upstreams, bool create_graph) {
  // The inputs' graph: an output may be a constant (its gradient is zero).
  Graph* graph = inputs.empty() ? nullptr : inputs.front().graph();
  if (graph == nullptr) {
    throw GraphError(
        "grad: expected inputs that are values of a Graph (variables, parameters, or computed "
        "from them), got " +
        std::string(inputs.empty() ? "none" : "a value on no graph"));
  }
  BackwardOptions options;
  options.retain_graph = create_graph;
  options.create_graph = create_graph;
  return graph->gradients(outputs, inputs, upstreams, options);
}

Tensors Graph::replay_vjp(Vertex v, const Tensor& upstream) const {
  const Node& node = *g_[v].node;
  if (node.released) check_not_released({v});
  const Var grad(upstream);
  boost::container::small_vector<Vertex, 3> sources(node.input_shapes.size());
  VjpArgs args{grad, node.saved, node.input_shapes, false};
  args.graph = const_cast<Graph*>(this);
  args.vertex = v;
  args.sources = sources.data();
  args.inputs = &node.inputs;
  args.value = &g_[v].value;
  GradModeGuard values_only(false);
  Tensors out;
  for (const Var& g : node.vjp(args)) out.push_back(g.value());
  return out;
}

}  // namespace npdl
