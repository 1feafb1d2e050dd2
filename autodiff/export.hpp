#pragma once
// Graphviz DOT export of a graph, through boost::write_graphviz.
#include <iosfwd>
#include <string>

#include "autodiff/graph.hpp"

namespace npdl {

struct DotOptions {
  bool values = false;     // a summary of each vertex's value
  bool gradients = false;  // a summary of each vertex's gradient (after backward)
};

/// Writes `graph` as DOT: one box per vertex (op, shape, leaf name), edges
/// labelled with the shape they carry, composite nodes as clusters. Vertices
/// and edges carry stable ids (dot_vertex_id, dot_edge_id), which Graphviz
/// gives to their elements in SVG, so that a page can point at them.
void write_dot(std::ostream& os, const Graph& graph, const DotOptions& options = {});
std::string to_dot(const Graph& graph, const DotOptions& options = {});

/// "v4": the DOT id of vertex 4.
std::string dot_vertex_id(Vertex v);
/// "e3_4_1": the DOT id of the edge from vertex 3 into argument 1 of vertex 4.
std::string dot_edge_id(Vertex from, Vertex to, int arg);

/// A one-line summary: the values of a tensor of up to 4 elements,
/// otherwise its mean, min and max.
std::string summarize(const Tensor& t);

}  // namespace npdl
