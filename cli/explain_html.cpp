// The explanation as one self-contained HTML page: the graph drawn by
// Graphviz inline as SVG, the JSON view embedded as data, and a small script
// that renders one step at a time from that data (so that the page and the
// JSON cannot drift apart). A Content-Security-Policy forbids the page
// every request: whatever it shows is in the file.
#include <sstream>

#include "cli/explain_page_assets.hpp"
#include "cli/explain_views.hpp"
#include "tensor/error.hpp"

namespace npdl::cli {
namespace {

std::string escape_html(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Removes the attribute `name="..."` from the start tag `tag`, if there.
void remove_attribute(std::string& tag, const std::string& name) {
  const std::size_t at = tag.find(" " + name + "=\"");
  if (at == std::string::npos) return;
  const std::size_t end = tag.find('"', at + name.size() + 3);
  if (end != std::string::npos) tag.erase(at, end + 1 - at);
}

// Graphviz's SVG document as an element to inline: without the XML prolog
// and doctype, and without its fixed width and height, so that the page's
// style scales it (its viewBox keeps the proportions).
std::string inline_svg(const std::string& svg) {
  const std::size_t start = svg.find("<svg");
  const std::size_t tag_end = start == std::string::npos ? start : svg.find('>', start);
  if (tag_end == std::string::npos) {
    throw IOError("cannot make the page: Graphviz's output has no <svg> element");
  }
  std::string tag = svg.substr(start, tag_end - start);
  remove_attribute(tag, "width");
  remove_attribute(tag, "height");
  return tag + " role=\"img\" aria-label=\"BatchNormal's graph\"" + svg.substr(tag_end);
}

}  // namespace

std::string explanation_page(const Explanation& explanation, const std::string& svg) {
  std::ostringstream json;
  write_json(explanation, json);  // escapes <, > and &: safe inside <script>
  std::ostringstream page;
  page << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
       << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
       << "<title>" << escape_html(explanation.title) << "</title>\n"
       << "<style>\n"
       << kPageStyle << "</style>\n</head>\n<body>\n"
       << "<header>\n<h1>" << escape_html(explanation.title) << "</h1>\n"
       << "<p id=\"problem\"></p>\n"
       << "<nav>\n<button id=\"previous\" type=\"button\" title=\"Previous step (left arrow)\">"
          "&larr; Previous</button>\n<span id=\"counter\"></span>\n"
          "<button id=\"next\" type=\"button\" title=\"Next step (right arrow)\">Next "
          "&rarr;</button>\n<button id=\"zoom\" type=\"button\" aria-pressed=\"false\" "
          "title=\"The graph whole, or as wide as its column\">Zoom graph</button>\n</nav>\n"
          "</header>\n"
       << "<main>\n<figure id=\"graph\">\n"
       << inline_svg(svg) << "</figure>\n"
       << "<article id=\"step\" aria-live=\"polite\"></article>\n</main>\n"
       << "<script type=\"application/json\" id=\"explanation\">" << json.str() << "</script>\n"
       << "<script>\n"
       << kPageScript << "</script>\n</body>\n</html>\n";
  return page.str();
}

}  // namespace npdl::cli
