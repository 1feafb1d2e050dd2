#pragma once
// What the teaching and checking commands print, written once and rendered
// either as plain text for an 80-column terminal or as Markdown.
#include <iosfwd>
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace npdl::cli {

enum class Format { Text, Markdown };
/// "text" or "markdown"; throws ValueError otherwise.
Format parse_format(const std::string& name);

/// Text lines are at most this wide, so that the output fits an 80-column
/// terminal with room to spare.
constexpr std::size_t kTextWidth = 78;

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

class Report {
 public:
  Report(std::ostream& os, Format format) : os_(os), format_(format) {}

  Format format() const { return format_; }
  void title(const std::string& text);
  void section(const std::string& text);
  /// A paragraph, word-wrapped in text.
  void paragraph(const std::string& text);
  /// A paragraph hanging under a label ("v4 xmu = sub(x, mean)").
  void entry(const std::string& label, const std::vector<std::string>& lines);
  /// Preformatted lines (a tensor, a formula), indented in text and fenced
  /// in Markdown.
  void block(const std::vector<std::string>& lines);
  void table(const Table& table);
  /// `text` as inline code in Markdown, as it is in text.
  std::string code(const std::string& text) const;

 private:
  std::ostream& os_;
  Format format_;
};

/// A number in at most 11 characters, 5 significant digits.
std::string format_number(double value);
/// A tensor as lines of numbers (rows of its last axis, labelled with their
/// leading indices when the rank is above 2, wrapped to leave room for two
/// indents); a summary (mean, min, max) when it has more than `max_elements`.
std::vector<std::string> format_tensor(const Tensor& t, std::int64_t max_elements = 48);
/// Words of `text` in lines of at most `width` characters.
std::vector<std::string> wrap(const std::string& text, std::size_t width);

}  // namespace npdl::cli
