#pragma once
// The views of the explanation (cli/explanation.hpp): each lays out the same
// model, so that the text, the JSON and the page cannot say different things.
#include <iosfwd>
#include <string>

#include "cli/explanation.hpp"
#include "cli/report.hpp"

namespace npdl::cli {

/// Text for an 80-column terminal, or Markdown (the report's format).
void write_text(const Explanation& explanation, Report& report);

/// The explanation as one JSON object: its parts and steps, the graph, the
/// fused formula and the comparison with its verdict (docs/batchnorm.md).
void write_json(const Explanation& explanation, std::ostream& os);

/// One self-contained HTML page: the JSON embedded and rendered by a small
/// script, `svg` (the graph drawn by Graphviz) inline, no external resource.
std::string explanation_page(const Explanation& explanation, const std::string& svg);

}  // namespace npdl::cli
