// The explanation as JSON: the data the page renders, for any other tool.
// Steps are numbered from 1 (the page's #step-N); a step's `uses` are such
// numbers; vertices and edges are named by the ids of the graph's picture.
#include <ostream>

#include "cli/explain_views.hpp"
#include "cli/json_writer.hpp"
#include "cli/mathml.hpp"

namespace npdl::cli {
namespace {

void write_shape(JsonWriter& json, const Shape& shape) {
  json.begin_array();
  for (std::int64_t d : shape) json.value(d);
  json.end_array();
}

// A tensor's numbers, row-major; beyond kMaxShownElements a summary instead
// (as the text shows it); without a value, null.
void write_numbers(JsonWriter& json, const Tensor& t) {
  if (!t.defined()) {
    json.null();
    return;
  }
  json.begin_object();
  json.key("shape");
  write_shape(json, t.shape());
  json.field("dtype", to_string(t.dtype()));
  if (t.size() > kMaxShownElements) {
    json.field("summary", summarize(t) + " (" + std::to_string(t.size()) + " elements)");
  } else {
    json.key("values");
    json.begin_array();
    for (double v : t.to_vector()) json.value(v);
    json.end_array();
  }
  json.end_object();
}

void write_strings(JsonWriter& json, const std::vector<std::string>& texts) {
  json.begin_array();
  for (const std::string& t : texts) json.value(t);
  json.end_array();
}

void write_step(JsonWriter& json, const ExplanationStep& step, std::size_t index) {
  json.begin_object();
  json.field("number", index + 1);
  json.field("part", step.part);
  json.field("kind", kind_name(step.kind));
  json.field("title", step.title);
  json.key("text");
  write_strings(json, step.text);
  json.field("formula", step.formula);
  json.field("mathml", step.formula.empty() ? "" : formula_mathml(step.formula));
  json.key("op");
  if (step.op.empty()) {
    json.null();
  } else {
    json.begin_object();
    json.field("name", step.op);
    json.field("forward", step.forward);
    json.field("vjp", step.vjp);
    json.end_object();
  }
  json.key("vertices");
  json.begin_array();
  for (Vertex v : step.vertices) json.value(vertex_id(v));
  json.end_array();
  json.key("edges");
  write_strings(json, step.edges);
  json.key("tensors");
  json.begin_array();
  for (const ShownTensor& t : step.tensors) {
    json.begin_object();
    json.field("label", t.label);
    json.field("role", role_name(t.role));
    json.key("numbers");
    write_numbers(json, t.value);
    json.end_object();
  }
  json.end_array();
  json.field("remark", step.remark);
  json.key("uses");
  json.begin_array();
  for (std::size_t used : step.uses) json.value(used + 1);
  json.end_array();
  json.end_object();
}

void write_graph(JsonWriter& json, const Explanation& e) {
  json.begin_object();
  json.key("vertices");
  json.begin_array();
  for (const GraphVertex& v : e.vertices) {
    json.begin_object();
    json.field("id", vertex_id(v.vertex));
    json.field("name", v.name);
    json.field("op", v.op);
    json.field("expression", v.expression);
    json.key("value");
    write_numbers(json, v.value);
    json.key("grad");
    write_numbers(json, v.grad);
    json.end_object();
  }
  json.end_array();
  json.key("edges");
  json.begin_array();
  for (const GraphEdge& edge : e.edges) {
    json.begin_object();
    json.field("id", edge.id);
    json.field("from", vertex_id(edge.from));
    json.field("to", vertex_id(edge.to));
    json.field("arg", edge.arg);
    json.end_object();
  }
  json.end_array();
  json.end_object();
}

void write_comparison(JsonWriter& json, const Explanation& e) {
  json.begin_object();
  json.key("rows");
  json.begin_array();
  for (const GradientAgreement& a : e.agreements) {
    json.begin_object();
    json.field("gradient", a.tensor);
    json.field("pair", a.pair);
    json.field("max_abs", a.max_abs);
    json.field("max_rel", a.max_rel);
    json.field("verdict", a.verdict);
    json.field("informational", a.informational);
    json.field("ok", a.ok());
    json.end_object();
  }
  json.end_array();
  json.field("agree", e.agree);
  json.field("verdict", e.verdict);
  json.field("step", e.comparison_step + 1);
  json.end_object();
}

void write_problem(JsonWriter& json, const Explanation& e) {
  json.begin_object();
  json.key("shape");
  write_shape(json, e.shape);
  json.field("dtype", to_string(e.dtype));
  json.field("axis", e.axis);
  json.field("epsilon", e.epsilon);
  json.field("M", e.reduced_count);
  json.field("origin", e.origin);
  json.end_object();
}

}  // namespace

void write_json(const Explanation& e, std::ostream& os) {
  JsonWriter json(os);
  json.begin_object();
  json.field("order", e.order);
  json.field("title", e.title);
  json.key("problem");
  write_problem(json, e);
  json.key("parts");
  json.begin_array();
  for (const ExplanationPart& part : e.parts) {
    json.begin_object();
    json.field("heading", part.heading);
    json.key("intro");
    write_strings(json, part.intro);
    json.key("outro");
    write_strings(json, part.outro);
    json.end_object();
  }
  json.end_array();
  json.key("steps");
  json.begin_array();
  for (std::size_t i = 0; i < e.steps.size(); ++i) write_step(json, e.steps[i], i);
  json.end_array();
  json.key("graph");
  write_graph(json, e);
  json.key("fused");
  json.begin_object();
  const ExplanationStep& fused = e.steps[e.fused_step];
  json.field("formula", fused.formula);
  json.field("mathml", formula_mathml(fused.formula));
  json.field("step", e.fused_step + 1);
  json.end_object();
  json.key("comparison");
  write_comparison(json, e);
  json.end_object();
  os << '\n';
}

}  // namespace npdl::cli
