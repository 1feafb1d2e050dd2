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

#include "autodiff/graph.hpp"
#include "autodiff/tensor_math.hpp"

namespace npdl {
namespace {

// Adds a gradient contribution, in place when the accumulator is not shared
// (a VJP may return the upstream gradient itself, as add's does).
void accumulate(Tensor& acc, const Tensor& g) {
  if (!acc.defined()) {
    acc = g;
  } else if (acc.unique()) {
    math::add_inplace(acc, g);
  } else {
    acc = math::add(acc, g);
  }
}

// Vertex filter of the swept subgraph (Boost wants a default-constructible,
// assignable predicate, which a capturing lambda is not).
struct InMask {
  const std::vector<char>* mask = nullptr;
  bool operator()(Vertex v) const { return (*mask)[v] != 0; }
};

}  // namespace

std::vector<char> Graph::relevant_vertices(Vertex output) const {
  // Vertices whose value depends on a leaf that wants a gradient
  // (requires_grad) and that the output depends on.
  std::vector<char> relevant(boost::num_vertices(g_), 0);
  std::vector<Vertex> stack{output};
  relevant[output] = 1;
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
          "' were freed by the first backward; pass retain_graph = true to the first call");
    }
  }
}

void Graph::backward(const Var& output, const Tensor& upstream, bool retain_graph) {
  if (output.graph() != this) {
    throw GraphError("backward: the output is not a value of this graph");
  }
  const Vertex out = output.vertex();
  if (!g_[out].requires_grad) {
    throw GraphError(
        "backward: the output depends on no variable or parameter, so there is no "
        "gradient to compute; expected a value computed from a Graph::variable or "
        "Graph::param");
  }
  Tensor seed;
  const Tensor& value = output.value();
  if (upstream.defined()) {
    check_same_shape(value.shape(), upstream.shape(), "backward: upstream gradient");
    check_same_dtype(value, upstream, "backward: upstream gradient");
    seed = upstream;
  } else if (value.size() == 1) {
    seed = Tensor::ones(value.shape(), value.dtype());
  } else {
    throw GraphError("backward from a non-scalar output of shape " + to_string(value.shape()) +
                     " needs an upstream gradient of that shape");
  }

  const std::vector<char> relevant = relevant_vertices(out);
  boost::filtered_graph<GraphImpl, boost::keep_all, InMask> sub(g_, boost::keep_all(),
                                                                InMask{&relevant});
  std::vector<Vertex> order;
  order.reserve(boost::num_vertices(g_));
  boost::topological_sort(sub, std::back_inserter(order));
  check_not_released(order);

  for (Vertex v : boost::make_iterator_range(boost::vertices(g_))) g_[v].grad = Tensor();
  g_[out].grad = seed;

  const bool free_as_we_go = !retain_graph && !options_.keep_intermediates;
  for (Vertex v : order) {
    VertexData& d = g_[v];
    if (!d.node || !d.grad.defined()) continue;
    Node& node = *d.node;
    const VjpArgs args{d.grad, d.value, node.saved, node.input_shapes};
    const Tensors grads = node.vjp(args);
    for (auto [e, end] = boost::in_edges(v, g_); e != end; ++e) {
      const Vertex u = boost::source(*e, g_);
      const int arg = g_[*e].arg;
      if (!relevant[u] || arg >= static_cast<int>(grads.size()) || !grads[arg].defined()) continue;
      if (grads[arg].shape() != node.input_shapes[arg]) {
        throw GraphError(std::string("internal: the VJP of '") + node.info->name +
                         "' returned a gradient of shape " + to_string(grads[arg].shape()) +
                         " for an input of shape " + to_string(node.input_shapes[arg]));
      }
      accumulate(g_[u].grad, grads[arg]);
    }
    if (!retain_graph) {
      node.saved.clear();
      node.released = true;
    }
    if (free_as_we_go) {  // Note [Lean graphs]: this vertex's last use was its VJP
      d.grad = Tensor();
      d.value = Tensor();
    }
  }

  for (Vertex v : order) {
    VertexData& d = g_[v];
    if (d.param) d.param->grad = d.grad;
  }
  last_sweep_ = std::move(order);
}

}  // namespace npdl
