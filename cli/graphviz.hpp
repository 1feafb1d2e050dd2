#pragma once
// Graphviz's dot, run as a program (Debian package graphviz): the pictures
// of `npdl graph batchnorm --svg` and of the explanation's page.
#include <string>

namespace npdl::cli {

/// The path of `dot` on PATH; throws IOError naming `target` (what was to be
/// made) and the Debian package graphviz when it is not there.
std::string require_dot(const std::string& target, const std::string& alternative);

/// Runs `dot -Tsvg -o svg_file dot_file` (no shell); throws IOError naming
/// `target` when it cannot start or fails.
void run_dot(const std::string& dot, const std::string& dot_file, const std::string& svg_file,
             const std::string& target);

/// `dot_text` drawn as SVG, through files in a fresh temporary folder that is
/// removed after; throws IOError naming `target`.
std::string render_svg(const std::string& dot, const std::string& dot_text,
                       const std::string& target);

}  // namespace npdl::cli
