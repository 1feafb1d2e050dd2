#pragma once
// The explanation of the batch-norm gradient as data: one model of steps,
// built once from the recorded graph, of which the text, Markdown, JSON and
// HTML outputs of `npdl explain batchnorm` are views. Building it runs
// everything (the forward and backward walks, the fused backward, finite
// differences); the views only lay it out.
#include <cstddef>
#include <string>
#include <vector>

#include "autodiff/export.hpp"
#include "cli/batchnorm_problem.hpp"

namespace npdl::cli {

/// What a tensor shown in a step is, which decides how a view lays it out.
enum class TensorRole {
  Input,         // of the problem: x, gamma, beta, dy
  Value,         // a vertex's forward value
  Arriving,      // the gradient arriving at a vertex from its one consumer
  Contribution,  // one of several gradients that add up to the arriving one
  Sum,           // their sum, the gradient arriving
  Leaving,       // what a VJP sends to one input (undefined: nothing)
  Result,        // a number a step computes or looks at
};
const char* role_name(TensorRole role);

/// A tensor a step shows as numbers.
struct ShownTensor {
  std::string label;  // "ga -> mean", "the gradient at var in part 2"
  TensorRole role = TensorRole::Result;
  Tensor value;  // undefined when a VJP sent nothing
};

/// A tensor shown whole up to this many elements, summarised (mean, min,
/// max) beyond: a 200 x 100 input would drown every step in numbers.
constexpr std::int64_t kMaxShownElements = 48;

enum class StepKind {
  Problem,
  Graph,
  Forward,
  Backward,
  Branch,
  Vanishing,
  Derivation,
  Comparison
};
const char* kind_name(StepKind kind);

/// One step of the explanation: what a reader takes in at once.
struct ExplanationStep {
  StepKind kind = StepKind::Problem;
  std::size_t part = 0;              // index into Explanation::parts
  std::string title;                 // "v4 xmu = sub(x, mean)", "dvar"
  std::vector<std::string> text;     // paragraphs; `code` spans in backquotes
  std::string formula;               // plain text, "dvar = -1/2 * invstd^3 * dinvstd"
  std::string op, forward, vjp;      // the op the step is about: what it computes, its VJP
  std::vector<Vertex> vertices;      // of the graph, that the step concerns
  std::vector<std::string> edges;    // edge ids (edge_id), that the step concerns
  std::vector<ShownTensor> tensors;  // its numbers
  std::string remark;                // a paragraph after the numbers
  std::vector<std::size_t> uses;     // indices of earlier steps it builds on
};

/// A part of the explanation: a heading and its steps.
struct ExplanationPart {
  std::string heading;  // "1. Forward: every vertex, in creation order"; empty: introduction
  std::vector<std::string> intro, outro;  // paragraphs before and after its steps
};

struct GraphVertex {
  Vertex vertex = 0;
  std::string name;        // the derivation's symbol: "xmu", "gamma'", or "v7"
  std::string op;          // "sub"
  std::string expression;  // "sub(x, mean)"; empty for a leaf
  Tensor value, grad;      // grad undefined where backward sent none
};

struct GraphEdge {
  std::string id;  // edge_id(from, to, arg)
  Vertex from = 0, to = 0;
  int arg = 0;  // which argument of `to` it feeds
};

/// The ids by which the graph's picture names its elements (DOT `id`
/// attributes), so that a view can point at them.
inline std::string vertex_id(Vertex v) { return dot_vertex_id(v); }
inline std::string edge_id(Vertex from, Vertex to, int arg) { return dot_edge_id(from, to, arg); }

struct Explanation {
  int order = 1;  // 1: the gradient; 2: the gradient of the gradient
  std::string title;
  std::vector<ExplanationPart> parts;
  std::vector<ExplanationStep> steps;
  std::vector<GraphVertex> vertices;  // in creation order
  std::vector<GraphEdge> edges;
  std::string dot;                  // the graph as `npdl graph batchnorm` writes it
  std::size_t fused_step = 0;       // the step with the fused formula
  std::size_t comparison_step = 0;  // the step with the three-way table
  std::vector<GradientAgreement> agreements;
  bool agree = false;   // every comparison passed
  std::string verdict;  // in words
  // The problem, as a view states it.
  Shape shape;
  DType dtype = DType::Float64;
  int axis = 0;
  double epsilon = 0.0;
  std::int64_t reduced_count = 0;  // M
  std::string origin;

  /// The vertex named `name` in the derivation, or nullptr.
  const GraphVertex* find(const std::string& name) const;
};

/// Records BatchNormal on `problem`, walks its graph forward and backward,
/// derives the fused formula and compares the three ways of computing the
/// gradient: the whole explanation, ready for any view. With `order` 2, the
/// same for the gradient of the gradient: the first backward recorded on the
/// graph and walked, the hand-derived double backward derived, and the four
/// ways of computing it compared (training only).
Explanation explain_batchnorm(const BatchNormProblem& problem, int order = 1);

/// The DOT options both `npdl graph batchnorm` and the explanation's
/// picture use: values and gradients on the vertices.
DotOptions batchnorm_dot_options();

}  // namespace npdl::cli
