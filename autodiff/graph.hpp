#pragma once
// The dynamic computation graph (define-by-run).
//
// Every op computes its value at once and adds a vertex to a Boost.Graph
// adjacency_list, with one edge from each input (edge property: which
// argument it is). Leaves are inputs (no gradient), variables (gradient
// wanted, for checks and experiments) and parameters (gradient wanted, and
// owned outside the graph: a model's weights serve many graphs).
//
// A Var is a handle: the graph it lives on, its vertex, and its value. The
// Graph must outlive its Vars, as a tape outlives its entries.
#include <boost/container/small_vector.hpp>
#include <boost/graph/adjacency_list.hpp>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor/tensor.hpp"

namespace npdl {

class Graph;
struct BackwardOptions;
using Vertex = std::size_t;  // boost::adjacency_list<vecS, vecS, ...>'s vertex_descriptor

/// A trainable tensor that outlives graphs; backward writes its gradient.
struct Parameter {
  std::string name;
  Tensor value;
  Tensor grad;
};
using ParameterPtr = std::shared_ptr<Parameter>;
ParameterPtr make_parameter(Tensor value, std::string name = "");

/// A value: on a graph (tracked) or, in no-gradient mode, just a tensor.
class Var {
 public:
  Var() = default;
  /// An untracked value (a constant when it meets a graph).
  explicit Var(Tensor value) : value_(std::move(value)) {}

  const Tensor& value() const { return value_; }
  const Shape& shape() const { return value_.shape(); }
  DType dtype() const { return value_.dtype(); }
  int rank() const { return value_.rank(); }
  bool tracked() const { return graph_ != nullptr; }
  Graph* graph() const { return graph_; }
  Vertex vertex() const { return vertex_; }
  bool requires_grad() const;
  /// Gradient from the last backward of its graph (undefined if none reached
  /// it). A handle, not a reference into the graph (Note [Vertex storage moves]).
  Tensor grad() const;
  /// The same gradient as a value: after a backward with create_graph it is
  /// on the graph and can be differentiated again.
  Var grad_var() const;
  /// Reverse mode from this value; see Graph::backward.
  void backward(const Tensor& upstream = {}, bool retain_graph = false) const;
  void backward(const Var& upstream, const BackwardOptions& options) const;

 private:
  friend class Graph;
  friend struct VjpArgs;
  Var(Graph* graph, Vertex vertex, Tensor value)
      : graph_(graph), vertex_(vertex), value_(std::move(value)) {}
  Graph* graph_ = nullptr;
  Vertex vertex_ = 0;
  Tensor value_;
};

/// What an op is, in the words the teaching tools print: its forward and its
/// vector-Jacobian product (g is the gradient arriving at the output).
struct OpInfo {
  const char* name;
  const char* forward;
  const char* vjp;
  /// The VJP reads the op's output (VjpArgs::output): a lean graph keeps it.
  bool vjp_reads_output = false;
  /// Bit i set: the VJP reads input i (VjpArgs::input), so the node keeps it.
  unsigned saves_inputs = 0;
  /// The VJP is written with differentiable ops (Note [Differentiable VJPs]).
  /// When false, a gradient it makes under create_graph is recorded as a
  /// value that refuses a further derivative with a GraphError naming the op.
  bool twice_differentiable = true;
};

using Tensors = boost::container::small_vector<Tensor, 3>;
using Vars = boost::container::small_vector<Var, 3>;
using Shapes = boost::container::small_vector<Shape, 3>;

/// Note [Differentiable VJPs]
/// A VJP is written once, with the same ops a user writes forwards with,
/// and serves two sweeps:
///   first order      its arguments are untracked Vars, so its ops compute
///                    values and record nothing: the cost of a tensor VJP;
///   create_graph     its arguments are the graph's own vertices (the
///                    upstream gradient, the op's inputs and output), so its
///                    ops record, and the gradient it returns is a value on
///                    the graph that can be differentiated again.
/// A VJP must therefore read the op's inputs through input(i) and its output
/// through output(), never through tensors captured at record time; what it
/// keeps in `saved` (masks, indices) is a constant to the next derivative.
struct VjpArgs {
  const Var& grad;       // upstream gradient, output's shape
  const Tensors& saved;  // constants the op kept (masks, statistics)
  const Shapes& input_shapes;
  bool create_graph = false;

  /// Input i (its bit set in OpInfo::saves_inputs).
  Var input(int i) const;
  /// The op's value (OpInfo::vjp_reads_output).
  Var output() const;
  /// Whether input i's gradient is wanted (it leads to a variable or a
  /// parameter the sweep differentiates): a VJP may skip the others.
  bool needs_input_grad(int i) const { return needs == nullptr || needs[i] != 0; }

  // Set by the sweep.
  Graph* graph = nullptr;
  Vertex vertex = 0;
  const Vertex* sources = nullptr;  // input i's vertex
  const Tensors* inputs = nullptr;  // input i's value when saved
  const Tensor* value = nullptr;    // the op's value when kept
  const char* needs = nullptr;      // per input: its gradient is wanted
};

/// Returns one gradient per input (an undefined Var for none).
using VjpFn = std::function<Vars(const VjpArgs&)>;

/// Backward state of one recorded op.
struct Node {
  const OpInfo* info;
  Tensors inputs;  // input i's value when OpInfo::saves_inputs has bit i
  Tensors saved;
  Shapes input_shapes;
  VjpFn vjp;
  bool released = false;

  /// Drops what the node holds, for its reuse by another op (NodeArena).
  void reset();
};

/// Note [Node arena]
/// Every recorded op needs a Node, about a kilobyte (inline room for three
/// inputs, saved tensors and shapes). A graph hands them out from chunks it
/// owns rather than allocating one per op, and a Node keeps its address
/// while the vertex vector grows, which a VJP recording under create_graph
/// relies on. A destroyed graph leaves its chunks, emptied, to the next
/// graph on its thread (Note [Recycled graph storage] in graph.cpp).
class NodeArena {
 public:
  /// An empty Node, valid until clear().
  Node* make();
  /// Empties every Node handed out, keeping the chunks for reuse.
  void clear();
  std::size_t capacity() const { return chunks_.size() * kChunkNodes; }
  std::size_t capacity_bytes() const { return capacity() * sizeof(Node); }
  void swap(NodeArena& other) noexcept {
    chunks_.swap(other.chunks_);
    std::swap(used_, other.used_);
  }

 private:
  static constexpr std::size_t kChunkNodes = 32;
  std::vector<std::unique_ptr<Node[]>> chunks_;
  std::size_t used_ = 0;
};

struct VertexData {
  const OpInfo* op = nullptr;
  std::string label;  // user name of a leaf, or empty
  Shape shape;        // of the value, kept when a lean graph drops the value
  DType dtype = DType::Float32;
  Tensor value;          // undefined in a lean graph unless the VJP reads it
  Var grad;              // filled by backward; on the graph after create_graph
  Node* node = nullptr;  // in the graph's NodeArena; null for leaves
  ParameterPtr param;    // set for parameter leaves
  int composite = -1;    // innermost composite group, or -1
  bool requires_grad = false;
};

/// Note [Vertex storage moves]
/// The vertices live in one std::vector (Boost.Graph's vecS), which moves
/// when an op records a vertex beyond its capacity; with them move each
/// vertex's edge lists. So no reference, pointer or iterator into vertex or
/// edge storage may be held across anything that can record: an op, a VJP
/// under create_graph, a gradient sum under create_graph. Code that must
/// write to a vertex after such a call looks it up again by its index (the
/// sweep's `accumulate(u, g)`), copies what it reads first (a VJP's upstream
/// gradient and the op's value, edge targets collected before the VJPs
/// record), and record() reads everything it needs from its inputs before
/// the graph grows. Nodes do not move (Note [Node arena]), and Var::grad()
/// returns a handle, not a reference. A graph of 8 ops rarely crosses a
/// capacity boundary (graphs start with room for 64 vertices, or more on a
/// thread whose last graph was larger), which is why only tests on graphs of
/// every size from 1 to hundreds of ops, after unrelated vertices, see a
/// mistake here (tests/test_second_order_at_size.cpp, and create_graph
/// programs in fuzz/graph_diff.cpp).
struct EdgeData {
  int arg = 0;  // which argument of the consumer this edge feeds
};

/// Note [Inline edge lists]
/// Boost.Graph keeps each vertex's out-edges and in-edges in a container its
/// OutEdgeListS selector names. With vecS each is a std::vector: recording an
/// op then allocates for its in-edges and for the first consumer of each
/// input, two of the few heap allocations per recorded op. Most values have
/// one or two inputs and one or two consumers, so the selector below keeps
/// two edges inline and allocates only beyond that (the container_gen route
/// Boost.Graph documents for custom edge containers).
struct inline_edgesS {};

template <class StoredEdge>
class InlineEdgeList : public boost::container::small_vector<StoredEdge, 2> {
 public:
  using boost::container::small_vector<StoredEdge, 2>::small_vector;
};
// Boost.Graph's container operations (push, erase) dispatch on these, found
// by argument-dependent lookup: a vector's.
template <class StoredEdge>
boost::graph_detail::vector_tag container_category(const InlineEdgeList<StoredEdge>&) {
  return {};
}
template <class StoredEdge>
boost::graph_detail::unstable_tag iterator_stability(const InlineEdgeList<StoredEdge>&) {
  return {};
}

}  // namespace npdl

namespace boost {
template <class StoredEdge>
struct container_gen<npdl::inline_edgesS, StoredEdge> {
  using type = npdl::InlineEdgeList<StoredEdge>;
};
template <>
struct parallel_edge_traits<npdl::inline_edgesS> {
  using type = allow_parallel_edge_tag;
};
namespace graph_detail {
template <class StoredEdge>
struct container_traits<npdl::InlineEdgeList<StoredEdge>> {
  using category = vector_tag;
  using iterator_stability = unstable_tag;
};
}  // namespace graph_detail
}  // namespace boost

namespace npdl {

using GraphImpl = boost::adjacency_list<inline_edgesS, boost::vecS, boost::bidirectionalS,
                                        VertexData, EdgeData, boost::no_property, boost::vecS>;
static_assert(std::is_same_v<Vertex, GraphImpl::vertex_descriptor>);

/// A group of primitives recorded under one name (BatchNormal, a layer...).
struct Composite {
  std::string name;
  int parent = -1;
};

/// Sets whether ops record (gradient mode) for its scope, per thread.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled);
  ~GradModeGuard();
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

/// Inside its scope no op records anything: values only (inference).
class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};
bool grad_enabled();

/// Note [Lean graphs]
/// By default a graph keeps every vertex's value and, after backward, its
/// gradient, so that they can be inspected (teaching tools, DOT export).
/// A lean graph (keep_intermediates = false) keeps an op's value only when
/// its VJP reads it, and a backward without retain_graph frees each
/// intermediate gradient once it has been passed on: peak memory is then what
/// the VJPs need, as in PyTorch. Leaves keep values and gradients either way,
/// and a Var always holds its own value.
struct GraphOptions {
  bool keep_intermediates = true;
};

/// See BackwardOptions::on_leaf_grad_ready.
using LeafGradHook =
    std::function<void(Vertex leaf, const ParameterPtr& parameter, const Var& grad)>;

/// How a backward sweep runs.
struct BackwardOptions {
  /// Keep the saved tensors, so that the graph can be swept again.
  bool retain_graph = false;
  /// Record the sweep itself on the graph (Note [Differentiable VJPs]), so
  /// that the gradients can be differentiated again; implies retain_graph.
  bool create_graph = false;
  /// Called once for each leaf that wants a gradient (a variable, or a
  /// parameter: `parameter` is then its Parameter, else null) as soon as the
  /// sweep has finished that leaf's gradient, before the rest of the sweep
  /// runs (Note [Leaf gradient hook]). Leaves the sweep gives no gradient
  /// are not reported. Unset: no cost.
  LeafGradHook on_leaf_grad_ready;
};

/// Note [Leaf gradient hook]
/// A leaf's gradient is final once every op that consumes it has run its
/// VJP: a leaf has no VJP of its own, so nothing later in the sweep writes
/// its gradient, and the hook sees the one backward stores. The sweep's
/// order (Note [Backward order]) is no help in finding that moment: the
/// depth-first search emits a leaf only when it is a root of the search,
/// so leaves come after every op, in creation order. With a hook set, the
/// sweep therefore counts each leaf's consumers still to be swept (run or
/// skipped for want of a gradient) and reports the leaf as the last one
/// is done: the last layer's weights while the sweep is still on its way
/// to the first. That lets data-parallel training start a bucket's
/// all-reduce while the sweep continues. Without a hook nothing is counted.
/// Under create_graph the gradient is a value on the graph. The hook must
/// not record on the graph or sweep it.
class Graph {
 public:
  explicit Graph(GraphOptions options = {});
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  /// A leaf without gradient (data).
  Var input(Tensor value, std::string name = "");
  /// A leaf whose gradient is wanted.
  Var variable(Tensor value, std::string name = "");
  /// The leaf of a parameter: one vertex per parameter and graph.
  Var param(const ParameterPtr& parameter);

  /// Records an op: its value is already computed; `vjp` runs in backward.
  /// The inputs named by info.saves_inputs are kept for it, with `saved`.
  /// Inputs that are untracked become constant leaves. Throws GraphError when
  /// inputs live on another graph.
  Var record(const OpInfo& info, std::initializer_list<const Var*> inputs, Tensor value,
             Tensors saved, VjpFn vjp);
  /// The same for an op of any number of inputs (concat).
  Var record(const OpInfo& info, const std::vector<const Var*>& inputs, Tensor value, Tensors saved,
             VjpFn vjp);

  /// Reverse mode from `output`. Without `upstream` the output must hold one
  /// element (its gradient is 1). Gradients of every vertex between the
  /// output and the leaves that want one are stored on the vertices
  /// (read them with grad()); parameters receive theirs in Parameter::grad.
  /// Each call starts from zero, so calling it twice (with retain_graph)
  /// gives the same gradients. Without retain_graph, the saved tensors of
  /// the swept ops are freed and a second backward throws GraphError.
  void backward(const Var& output, const Tensor& upstream = {}, bool retain_graph = false);
  /// The same, with options; with create_graph the stored gradients are
  /// values on this graph (grad_var()), and `upstream` may be one too.
  void backward(const Var& output, const Var& upstream, const BackwardOptions& options);

  /// Gradients of `outputs` (weighted by `upstreams`, one per output; none
  /// for scalar outputs) with respect to `inputs`, returned rather than
  /// stored in Parameter::grad. An input may be any value that wants a
  /// gradient: a leaf, an intermediate value or an output (its gradient is
  /// kept even on a lean graph). An input the outputs do not depend on gets
  /// zeros, and so does every input when no output depends on a variable
  /// (an untracked output is a constant).
  /// With create_graph the results are values on this graph.
  std::vector<Var> gradients(const std::vector<Var>& outputs, const std::vector<Var>& inputs,
                             const std::vector<Var>& upstreams, const BackwardOptions& options);

  Tensor grad(const Var& v) const;
  Var grad_var(const Var& v) const;
  /// Runs the first-order VJP of op vertex `v` again on `upstream` (the graph
  /// must have been retained): what it sends to each input. For teaching tools.
  Tensors replay_vjp(Vertex v, const Tensor& upstream) const;
  std::size_t size() const { return boost::num_vertices(g_); }
  const GraphImpl& impl() const { return g_; }
  const std::vector<Composite>& composites() const { return composites_; }

  /// RAII scope: ops recorded inside belong to a composite named `name`.
  class CompositeScope {
   public:
    CompositeScope(Graph& graph, std::string name);
    ~CompositeScope();
    CompositeScope(const CompositeScope&) = delete;
    CompositeScope& operator=(const CompositeScope&) = delete;

   private:
    Graph& graph_;
    int previous_;
  };

  /// Every vertex swept by the last backward, in sweep order (output first).
  const std::vector<Vertex>& last_sweep() const { return last_sweep_; }

 private:
  Vertex add_leaf(const OpInfo& info, Tensor value, std::string name, bool requires_grad);
  Node* make_node(const OpInfo& info, const Var* const* inputs, std::size_t count, Tensors saved,
                  VjpFn vjp);
  Var record_inputs(const OpInfo& info, const Var* const* inputs, std::size_t count, Tensor value,
                    Tensors saved, VjpFn vjp);
  std::vector<char> relevant_vertices(const std::vector<Vertex>& outputs) const;
  void check_not_released(const std::vector<Vertex>& order) const;
  std::vector<Vertex> sweep(const std::vector<Var>& outputs, std::vector<Var> seeds,
                            const BackwardOptions& options,
                            const std::vector<Var>& kept_grads = {});
  Vars run_vjp(Vertex v, const Var& grad, bool create_graph, const std::vector<char>& relevant);
  Var add_gradients(Var acc, Var g);
  void accumulate(Vertex u, Var g);

  GraphOptions options_;
  GraphImpl g_;
  NodeArena nodes_;
  std::vector<Composite> composites_;
  int current_composite_ = -1;
  std::unordered_map<const Parameter*, Vertex> param_vertices_;
  std::vector<Vertex> last_sweep_;
};

/// Gradients of `outputs` with respect to `inputs` (see Graph::gradients);
/// with create_graph they can be differentiated again, to any order.
std::vector<Var> grad(const std::vector<Var>& outputs, const std::vector<Var>& inputs,
                      const std::vector<Var>& upstreams = {}, bool create_graph = false);

/// The graph that `inputs` live on (nullptr if none is tracked); throws
/// GraphError when they live on different graphs.
Graph* common_graph(std::initializer_list<const Var*> inputs, const char* op);
Graph* common_graph(const std::vector<const Var*>& inputs, const char* op);

}  // namespace npdl
