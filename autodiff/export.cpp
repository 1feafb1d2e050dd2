#include "autodiff/export.hpp"

#include <algorithm>
#include <boost/graph/graphviz.hpp>
#include <iomanip>
#include <sstream>

namespace npdl {
namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(4) << v;
  return os.str();
}

class VertexWriter {
 public:
  VertexWriter(const GraphImpl& g, const DotOptions& o) : g_(g), o_(o) {}
  void operator()(std::ostream& os, Vertex v) const {
    const VertexData& d = g_[v];
    // Parts are escaped one by one: the "\\n" between them is DOT's line break.
    std::string label = escape(d.op->name);
    if (!d.label.empty()) label += " '" + escape(d.label) + "'";
    label += "\\n" + to_string(d.shape) + " " + to_string(d.dtype);
    if (o_.values) label += "\\nvalue " + escape(summarize(d.value));
    if (o_.gradients && d.grad.value().defined()) {
      label += "\\ngrad " + escape(summarize(d.grad.value()));
    }
    const bool leaf = boost::in_degree(v, g_) == 0;
    os << "[id=\"" << dot_vertex_id(v) << "\", label=\"" << label
       << "\", shape=" << (leaf ? "ellipse" : "box");
    if (d.param) os << ", style=filled, fillcolor=\"#fde9b6\"";
    if (d.op->name == std::string("variable")) os << ", style=filled, fillcolor=\"#d6ecfa\"";
    os << ']';
  }

 private:
  const GraphImpl& g_;
  const DotOptions& o_;
};

class EdgeWriter {
 public:
  explicit EdgeWriter(const GraphImpl& g) : g_(g) {}
  template <class Edge>
  void operator()(std::ostream& os, const Edge& e) const {
    const Vertex from = boost::source(e, g_);
    os << "[id=\"" << dot_edge_id(from, boost::target(e, g_), g_[e].arg) << "\", label=\""
       << to_string(g_[from].shape) << "\"]";
  }

 private:
  const GraphImpl& g_;
};

// Writes the composite clusters (nested as recorded) before the vertices:
// DOT lets a vertex be placed in a subgraph before its attributes appear.
class ClusterWriter {
 public:
  ClusterWriter(const Graph& graph) : graph_(graph) {}
  void operator()(std::ostream& os) const {
    os << "rankdir=TB;\nnode [fontname=\"Helvetica\", fontsize=10];\n"
          "edge [fontname=\"Helvetica\", fontsize=9];\n";
    const auto& composites = graph_.composites();
    for (int c = 0; c < static_cast<int>(composites.size()); ++c) {
      if (composites[c].parent < 0) write_cluster(os, c);
    }
  }

 private:
  void write_cluster(std::ostream& os, int c) const {
    const auto& composites = graph_.composites();
    os << "subgraph cluster_" << c << " {\nlabel=\"" << escape(composites[c].name)
       << "\";\nstyle=rounded;\ncolor=\"#3b7dd8\";\n";
    for (Vertex v : boost::make_iterator_range(boost::vertices(graph_.impl()))) {
      if (graph_.impl()[v].composite == c) os << v << ";\n";
    }
    for (int child = 0; child < static_cast<int>(composites.size()); ++child) {
      if (composites[child].parent == c) write_cluster(os, child);
    }
    os << "}\n";
  }
  const Graph& graph_;
};

}  // namespace

std::string summarize(const Tensor& t) {
  if (!t.defined()) return "undefined";
  if (t.size() == 0) return "empty";
  const std::vector<double> v = t.to_vector();
  std::ostringstream os;
  if (v.size() <= 4) {
    os << '[';
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << fmt(v[i]);
    os << ']';
    return os.str();
  }
  double sum = 0.0;
  for (double x : v) sum += x;
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  os << "mean " << fmt(sum / static_cast<double>(v.size())) << ", min " << fmt(*lo) << ", max "
     << fmt(*hi);
  return os.str();
}

std::string dot_vertex_id(Vertex v) { return "v" + std::to_string(v); }

std::string dot_edge_id(Vertex from, Vertex to, int arg) {
  return "e" + std::to_string(from) + "_" + std::to_string(to) + "_" + std::to_string(arg);
}

void write_dot(std::ostream& os, const Graph& graph, const DotOptions& options) {
  boost::write_graphviz(os, graph.impl(), VertexWriter(graph.impl(), options),
                        EdgeWriter(graph.impl()), ClusterWriter(graph));
}

std::string to_dot(const Graph& graph, const DotOptions& options) {
  std::ostringstream os;
  write_dot(os, graph, options);
  return os.str();
}

}  // namespace npdl
