// The explanation as text for an 80-column terminal, or as Markdown: each
// step laid out by its kind (cli/explanation.hpp), the graph drawn in ASCII.
#include <algorithm>
#include <ostream>

#include "cli/explain_views.hpp"

namespace npdl::cli {
namespace {

// Backquoted code spans stay backquoted in Markdown; text drops the quotes.
std::string inline_code(const std::string& text, Format format) {
  if (format == Format::Markdown) return text;
  std::string out = text;
  out.erase(std::remove(out.begin(), out.end(), '`'), out.end());
  return out;
}

std::vector<std::string> indented(const std::vector<std::string>& lines, const std::string& by) {
  std::vector<std::string> out;
  for (const std::string& l : lines) out.push_back(by + l);
  return out;
}

void append(std::vector<std::string>& lines, const std::vector<std::string>& more) {
  lines.insert(lines.end(), more.begin(), more.end());
}

std::string shape_of(const Tensor& t) { return to_string(t.shape()); }

class TextView {
 public:
  TextView(const Explanation& e, Report& report) : e_(e), report_(report) {}

  void write() {
    report_.title(e_.title);
    for (std::size_t part = 0; part < e_.parts.size(); ++part) {
      const ExplanationPart& p = e_.parts[part];
      if (!p.heading.empty()) report_.section(p.heading);
      for (const std::string& text : p.intro) report_.paragraph(text);
      std::size_t number_in_part = 0;
      for (const ExplanationStep& step : e_.steps) {
        if (step.part == part) write_step(step, ++number_in_part);
      }
      for (const std::string& text : p.outro) report_.paragraph(text);
    }
  }

 private:
  void write_step(const ExplanationStep& step, std::size_t number_in_part) {
    switch (step.kind) {
      case StepKind::Problem:
        return problem(step);
      case StepKind::Graph:
        return picture(step);
      case StepKind::Forward:
        return forward(step);
      case StepKind::Backward:
        return backward(step);
      case StepKind::Derivation:
        return derivation(step, number_in_part);
      case StepKind::Branch:
      case StepKind::Vanishing:
      case StepKind::Comparison:
        return prose(step);
    }
  }

  void paragraphs(const std::vector<std::string>& texts) {
    for (const std::string& text : texts) report_.paragraph(inline_code(text, report_.format()));
  }

  void problem(const ExplanationStep& step) {
    paragraphs(step.text);
    for (const ShownTensor& t : step.tensors) {
      report_.entry(t.label + "  " + shape_of(t.value) + " " + to_string(t.value.dtype()),
                    format_tensor(t.value, kMaxShownElements));
    }
  }

  void prose(const ExplanationStep& step) {
    paragraphs(step.text);
    for (const ShownTensor& t : step.tensors) {
      report_.entry(t.label, format_tensor(t.value, kMaxShownElements));
    }
    if (step.kind == StepKind::Comparison) report_.table(agreement_table(e_.agreements));
    if (!step.remark.empty()) report_.paragraph(step.remark);
  }

  void forward(const ExplanationStep& step) {
    const Tensor& value = step.tensors.front().value;
    std::vector<std::string> lines{step.op + ": " + step.forward};
    append(lines, format_tensor(value, kMaxShownElements));
    report_.entry(step.title + "   " + shape_of(value), lines);
  }

  void backward(const ExplanationStep& step) {
    std::vector<std::string> lines;
    if (!step.vjp.empty()) lines.push_back("VJP: " + step.vjp);
    std::vector<std::string> contributions;
    for (const ShownTensor& t : step.tensors) {
      const std::vector<std::string> numbers = format_tensor(t.value, kMaxShownElements);
      switch (t.role) {
        case TensorRole::Contribution:
          contributions.push_back("  " + t.label + ":");
          append(contributions, indented(numbers, "  "));
          break;
        case TensorRole::Sum:
          lines.push_back(t.label + ":");
          append(lines, contributions);
          lines.push_back("  sum:");
          append(lines, indented(numbers, "  "));
          break;
        case TensorRole::Leaving:
          if (!t.value.defined()) {
            lines.push_back(t.label + ": none (no gradient wanted there)");
            break;
          }
          lines.push_back(t.label + "  " + shape_of(t.value) + ":");
          append(lines, numbers);
          break;
        default:
          lines.push_back(t.label + ":");
          append(lines, numbers);
      }
    }
    report_.entry(step.title + (step.op.empty() ? "  (leaf)" : "  (" + step.op + ")"), lines);
  }

  void derivation(const ExplanationStep& step, std::size_t number_in_part) {
    std::vector<std::string> lines = wrap(step.formula, kTextWidth - 4);
    for (const std::string& text : step.text) {
      append(lines, indented(wrap(text, kTextWidth - 6), "  "));
    }
    for (const ShownTensor& t : step.tensors) {
      lines.push_back("  = " + t.label + ":");
      append(lines, indented(format_tensor(t.value, kMaxShownElements), "  "));
    }
    report_.entry("Step " + std::to_string(number_in_part) + ": " + step.title, lines);
  }

  // The graph drawn top-down, each vertex with the op that computes it, when
  // every vertex has its name from the derivation.
  void picture(const ExplanationStep& step) {
    if (e_.order != 1) return paragraphs(step.text);  // too many vertices to draw in text
    for (const char* role :
         {"mean", "xmu", "xmu^2", "var", "var+eps", "invstd", "xhat", "gamma*xhat", "y"}) {
      if (!e_.find(role)) return;
    }
    auto at = [&](const char* role) {
      return std::string(role) + " = " + e_.find(role)->expression;
    };
    paragraphs(step.text);
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

  const Explanation& e_;
  Report& report_;
};

}  // namespace

void write_text(const Explanation& explanation, Report& report) {
  TextView(explanation, report).write();
}

}  // namespace npdl::cli
