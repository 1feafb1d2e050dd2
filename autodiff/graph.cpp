#include "autodiff/graph.hpp"

#include "tensor/tensor_math.hpp"

namespace npdl {
namespace {

const OpInfo kInput{"input", "a leaf holding data", "none: inputs want no gradient"};
const OpInfo kVariable{"variable", "a leaf whose gradient is wanted", "receives g"};
const OpInfo kParameter{"parameter", "a leaf bound to a parameter", "receives g"};
const OpInfo kConstant{"constant", "a value from outside the graph", "none"};

thread_local bool grad_mode = true;

}  // namespace

ParameterPtr make_parameter(Tensor value, std::string name) {
  auto p = std::make_shared<Parameter>();
  p->name = std::move(name);
  p->value = std::move(value);
  return p;
}

Var VjpArgs::input(int i) const {
  const Tensor& v = (*inputs)[i];
  if (!v.defined()) {
    throw GraphError(std::string("internal: the VJP of '") + graph->impl()[vertex].op->name +
                     "' reads input " + std::to_string(i) + ", which its OpInfo does not save");
  }
  return create_graph ? Var(graph, sources[i], v) : Var(v);
}

Var VjpArgs::output() const {
  if (value == nullptr || !value->defined()) {
    throw GraphError(std::string("internal: the VJP of '") + graph->impl()[vertex].op->name +
                     "' reads its output, which its OpInfo does not keep");
  }
  return create_graph ? Var(graph, vertex, *value) : Var(*value);
}

bool grad_enabled() { return grad_mode; }
GradModeGuard::GradModeGuard(bool enabled) : previous_(grad_mode) { grad_mode = enabled; }
GradModeGuard::~GradModeGuard() { grad_mode = previous_; }

bool Var::requires_grad() const {
  return graph_ != nullptr && graph_->impl()[vertex_].requires_grad;
}

Tensor Var::grad() const { return graph_ != nullptr ? graph_->grad(*this) : Tensor(); }

Var Var::grad_var() const { return graph_ != nullptr ? graph_->grad_var(*this) : Var(); }

namespace {
void check_on_graph(const Var& v) {
  if (!v.tracked()) {
    throw GraphError(
        "backward from a value that is on no graph (recorded in no-gradient mode "
        "or made outside a graph): expected a value recorded on a Graph");
  }
}
}  // namespace

void Var::backward(const Tensor& upstream, bool retain_graph) const {
  check_on_graph(*this);
  graph_->backward(*this, upstream, retain_graph);
}

void Var::backward(const Var& upstream, const BackwardOptions& options) const {
  check_on_graph(*this);
  graph_->backward(*this, upstream, options);
}

namespace {
template <class Range>
Graph* common_graph_of(const Range& inputs, const char* op) {
  Graph* graph = nullptr;
  for (const Var* v : inputs) {
    if (!v->tracked()) continue;
    if (graph != nullptr && graph != v->graph()) {
      throw GraphError(std::string(op) +
                       ": values of two different graphs mixed; expected every input on one graph");
    }
    graph = v->graph();
  }
  return graph;
}
}  // namespace

Graph* common_graph(std::initializer_list<const Var*> inputs, const char* op) {
  return common_graph_of(inputs, op);
}

Graph* common_graph(const std::vector<const Var*>& inputs, const char* op) {
  return common_graph_of(inputs, op);
}

// A vertex is several hundred bytes, moved each time the vertex vector
// grows: graphs start with room for this many (a batch norm's composite and
// its leaves fit), which saves most of those moves on small graphs.
constexpr std::size_t kInitialVertices = 64;

namespace {

// Note [Recycled graph storage]
// A training loop records one graph per step, each about as large as the
// last. Growing a graph's vertex vector from kInitialVertices moves every
// vertex (several hundred bytes) about once, and the large buffers it
// reallocates come from fresh pages: together about a sixth of the cost of
// recording an op. So a graph, when destroyed, leaves its emptied vertex and
// edge vectors (their capacity) and its Node chunks to the next graph made
// on the same thread. Only storage below kRecycledBytesLimit is kept, so
// that one huge graph does not pin its memory for the rest of the thread.
using VertexStorage = decltype(GraphImpl::m_vertices);
using EdgeStorage = decltype(GraphImpl::m_edges);
constexpr std::size_t kRecycledBytesLimit = std::size_t{16} << 20;

thread_local bool recycled_storage_gone = false;

struct RecycledStorage {
  VertexStorage vertices;
  EdgeStorage edges;
  NodeArena nodes;
  ~RecycledStorage() { recycled_storage_gone = true; }
};

thread_local RecycledStorage recycled_storage;

template <class Container>
std::size_t capacity_bytes(const Container& c) {
  return c.capacity() * sizeof(typename Container::value_type);
}

// Hands the recycled storage (empty, with capacity) to a new graph, if any.
void take_recycled_storage(GraphImpl& g, NodeArena& nodes) {
  if (recycled_storage_gone || recycled_storage.vertices.capacity() < kInitialVertices) {
    g.m_vertices.reserve(kInitialVertices);
  } else {
    g.m_vertices.swap(recycled_storage.vertices);
    g.m_edges.swap(recycled_storage.edges);
  }
  if (!recycled_storage_gone) nodes.swap(recycled_storage.nodes);
}

// Empties a graph's storage and keeps each part for the next graph when it
// is larger than what is kept already and not too large.
void recycle_storage(GraphImpl& g, NodeArena& nodes) {
  g.m_vertices.clear();
  g.m_edges.clear();
  nodes.clear();
  if (recycled_storage_gone) return;
  if (capacity_bytes(g.m_vertices) <= kRecycledBytesLimit &&
      g.m_vertices.capacity() > recycled_storage.vertices.capacity()) {
    g.m_vertices.swap(recycled_storage.vertices);
    if (capacity_bytes(g.m_edges) <= kRecycledBytesLimit) g.m_edges.swap(recycled_storage.edges);
  }
  if (nodes.capacity_bytes() <= kRecycledBytesLimit &&
      nodes.capacity() > recycled_storage.nodes.capacity()) {
    nodes.swap(recycled_storage.nodes);
  }
}

}  // namespace

void Node::reset() {
  inputs.clear();
  saved.clear();
  input_shapes.clear();
  vjp = nullptr;
  released = false;
}

Node* NodeArena::make() {
  // new[] default-initialises: std::make_unique<Node[]> would zero-fill
  // every Node's inline buffers before constructing them.
  if (used_ == capacity()) chunks_.emplace_back(new Node[kChunkNodes]);
  Node* node = &chunks_[used_ / kChunkNodes][used_ % kChunkNodes];
  ++used_;
  return node;
}

void NodeArena::clear() {
  for (std::size_t i = 0; i < used_; ++i) chunks_[i / kChunkNodes][i % kChunkNodes].reset();
  used_ = 0;
}

Graph::Graph(GraphOptions options) : options_(options) { take_recycled_storage(g_, nodes_); }

Graph::~Graph() { recycle_storage(g_, nodes_); }

namespace {
void check_leaf_value(const OpInfo& info, const Tensor& value, const std::string& name) {
  if (!value.defined()) {
    throw ValueError(std::string("Graph: a ") + info.name + " leaf" +
                     (name.empty() ? "" : " '" + name + "'") +
                     " expects a defined tensor, got an undefined one (default-constructed, or a "
                     "gradient that never arrived)");
  }
}
}  // namespace

Vertex Graph::add_leaf(const OpInfo& info, Tensor value, std::string name, bool requires_grad) {
  check_leaf_value(info, value, name);
  const Vertex v = boost::add_vertex(g_);
  VertexData& d = g_[v];
  d.op = &info;
  d.label = std::move(name);
  d.shape = value.shape();
  d.dtype = value.dtype();
  d.value = std::move(value);
  d.requires_grad = requires_grad;
  d.composite = current_composite_;
  return v;
}

Var Graph::input(Tensor value, std::string name) {
  const Vertex v = add_leaf(kInput, value, std::move(name), false);
  return Var(this, v, std::move(value));
}

Var Graph::variable(Tensor value, std::string name) {
  check_floating(value.dtype(), "a variable (a value whose gradient is wanted)");
  const Vertex v = add_leaf(kVariable, value, std::move(name), true);
  return Var(this, v, std::move(value));
}

Var Graph::param(const ParameterPtr& parameter) {
  auto it = param_vertices_.find(parameter.get());
  if (it != param_vertices_.end() && g_[it->second].value.same_storage(parameter->value) &&
      g_[it->second].value.shape() == parameter->value.shape()) {
    return Var(this, it->second, parameter->value);
  }
  check_floating(parameter->value.dtype(), "a parameter");
  const Vertex v = add_leaf(kParameter, parameter->value, parameter->name, true);
  g_[v].param = parameter;
  param_vertices_[parameter.get()] = v;
  return Var(this, v, parameter->value);
}

Var Graph::record(const OpInfo& info, std::initializer_list<const Var*> inputs, Tensor value,
                  Tensors saved, VjpFn vjp) {
  return record_inputs(info, inputs.begin(), inputs.size(), std::move(value), std::move(saved),
                       std::move(vjp));
}

Var Graph::record(const OpInfo& info, const std::vector<const Var*>& inputs, Tensor value,
                  Tensors saved, VjpFn vjp) {
  return record_inputs(info, inputs.data(), inputs.size(), std::move(value), std::move(saved),
                       std::move(vjp));
}

// Note [Vertex storage moves]: every read of the inputs happens before the
// graph grows (constant leaves, then the op's vertex), so that an input may
// even be a Var stored on this graph's vertices.
Var Graph::record_inputs(const OpInfo& info, const Var* const* first, std::size_t count,
                         Tensor value, Tensors saved, VjpFn vjp) {
  if (!grad_mode) return Var(std::move(value));
  constexpr Vertex kConstantInput = static_cast<Vertex>(-1);
  boost::container::small_vector<Vertex, 3> sources(count, kConstantInput);
  boost::container::small_vector<Tensor, 3> constants(count);
  bool requires_grad = false;
  for (std::size_t i = 0; i < count; ++i) {
    const Var& in = *first[i];
    if (in.graph() == this) {
      sources[i] = in.vertex();
      requires_grad = requires_grad || g_[in.vertex()].requires_grad;
    } else if (in.tracked()) {
      throw GraphError(std::string(info.name) +
                       ": values of two different graphs mixed; expected every input on one graph");
    } else {
      check_leaf_value(kConstant, in.value(), "");
      constants[i] = in.value();
    }
  }
  Node* node =
      requires_grad ? make_node(info, first, count, std::move(saved), std::move(vjp)) : nullptr;
  for (std::size_t i = 0; i < count; ++i) {
    if (sources[i] == kConstantInput) sources[i] = add_leaf(kConstant, constants[i], "", false);
  }
  const Vertex v = boost::add_vertex(g_);
  // One allocation for the in-edges instead of one per edge (recording cost).
  g_.m_vertices[v].m_in_edges.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    boost::add_edge(sources[i], v, EdgeData{static_cast<int>(i)}, g_);
  }
  VertexData& d = g_[v];
  d.op = &info;
  d.shape = value.shape();
  d.dtype = value.dtype();
  if (options_.keep_intermediates || (requires_grad && info.vjp_reads_output)) d.value = value;
  d.requires_grad = requires_grad;
  d.composite = current_composite_;
  d.node = node;
  return Var(this, v, std::move(value));
}

Node* Graph::make_node(const OpInfo& info, const Var* const* first, std::size_t count,
                       Tensors saved, VjpFn vjp) {
  Node* node = nodes_.make();
  node->info = &info;
  node->saved = std::move(saved);
  if (info.saves_inputs != 0) {
    // Copy-constructed in place: resize() then assignment would build
    // each Tensor twice.
    for (std::size_t i = 0; i < count; ++i) {
      if (info.saves_inputs & (1u << i)) {
        node->inputs.push_back(first[i]->value());
      } else {
        node->inputs.emplace_back();
      }
    }
  }
  for (std::size_t i = 0; i < count; ++i) node->input_shapes.push_back(first[i]->shape());
  node->vjp = std::move(vjp);
  return node;
}

Tensor Graph::grad(const Var& v) const {
  if (v.graph() != this) {
    throw GraphError("grad(): the value is not on this graph");
  }
  return g_[v.vertex()].grad.value();
}

Var Graph::grad_var(const Var& v) const {
  if (v.graph() != this) {
    throw GraphError("grad_var(): the value is not on this graph");
  }
  return g_[v.vertex()].grad;
}

Graph::CompositeScope::CompositeScope(Graph& graph, std::string name)
    : graph_(graph), previous_(graph.current_composite_) {
  graph.composites_.push_back(Composite{std::move(name), previous_});
  graph.current_composite_ = static_cast<int>(graph.composites_.size()) - 1;
}

Graph::CompositeScope::~CompositeScope() { graph_.current_composite_ = previous_; }

}  // namespace npdl
