#include "cli/report.hpp"

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <sstream>

#include "autodiff/export.hpp"

namespace npdl::cli {
namespace {

constexpr std::size_t kNumberWidth = 12;  // format_number's 11 characters and a space
// Tensor lines leave room for two levels of indentation within kTextWidth.
constexpr std::size_t kTensorLineWidth = kTextWidth - 10;
constexpr const char* kIndent = "    ";

std::string pad(const std::string& s, std::size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

// The numbers of one row of the last axis, wrapped to kTensorLineWidth.
void append_row(const std::vector<double>& values, std::int64_t begin, std::int64_t count,
                const std::string& prefix, std::vector<std::string>& lines) {
  const std::size_t per_line =
      std::max<std::size_t>(1, (kTensorLineWidth - prefix.size() - 3) / kNumberWidth);
  std::string line = prefix + "[";
  const std::string continuation(line.size(), ' ');
  for (std::int64_t i = 0; i < count; ++i) {
    if (i > 0 && static_cast<std::size_t>(i) % per_line == 0) {
      lines.push_back(line);
      line = continuation;
    }
    const std::string number = format_number(values[begin + i]);
    line += std::string(kNumberWidth - std::min(number.size(), kNumberWidth - 1), ' ') + number;
  }
  lines.push_back(line + " ]");
}

std::string leading_index(const Shape& shape, std::int64_t row) {
  // Row-major position of the row among the leading axes.
  std::vector<std::int64_t> index(shape.size() - 1);
  for (int d = static_cast<int>(index.size()) - 1; d >= 0; --d) {
    index[d] = row % shape[d];
    row /= shape[d];
  }
  std::string s = "[";
  for (std::int64_t i : index) s += std::to_string(i) + ", ";
  return s + ":] ";
}

}  // namespace

Format parse_format(const std::string& name) {
  if (name == "text") return Format::Text;
  if (name == "markdown") return Format::Markdown;
  throw ValueError("unknown format '" + name + "'; expected text or markdown");
}

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.5g", value);
  return buffer;
}

std::vector<std::string> format_tensor(const Tensor& t, std::int64_t max_elements) {
  if (!t.defined()) return {"(none)"};
  if (t.size() > max_elements) {
    return {summarize(t) + " (" + std::to_string(t.size()) + " elements)"};
  }
  const std::vector<double> values = t.to_vector();
  std::vector<std::string> lines;
  if (t.rank() == 0) {
    append_row(values, 0, 1, "", lines);
    return lines;
  }
  const std::int64_t row_length = t.shape().back();
  const std::int64_t rows = row_length == 0 ? 0 : t.size() / row_length;
  for (std::int64_t r = 0; r < rows; ++r) {
    append_row(values, r * row_length, row_length, t.rank() > 2 ? leading_index(t.shape(), r) : "",
               lines);
  }
  if (rows == 0) lines.push_back("[ ]");
  return lines;
}

std::vector<std::string> wrap(const std::string& text, std::size_t width) {
  std::vector<std::string> lines;
  std::istringstream words(text);
  std::string word, line;
  while (words >> word) {
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      lines.push_back(line);
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

void Report::title(const std::string& text) {
  if (format_ == Format::Markdown) {
    os_ << "# " << text << "\n\n";
  } else {
    os_ << text << '\n' << std::string(std::min(text.size(), kTextWidth), '=') << "\n\n";
  }
}

void Report::section(const std::string& text) {
  if (format_ == Format::Markdown) {
    os_ << "## " << text << "\n\n";
  } else {
    os_ << text << '\n' << std::string(std::min(text.size(), kTextWidth), '-') << "\n\n";
  }
}

void Report::paragraph(const std::string& text) {
  for (const std::string& line : wrap(text, kTextWidth)) os_ << line << '\n';
  os_ << '\n';
}

void Report::entry(const std::string& label, const std::vector<std::string>& lines) {
  if (format_ == Format::Markdown) {
    os_ << "**`" << label << "`**\n\n";  // code: names such as gamma*xhat stay literal
    block(lines);
    return;
  }
  os_ << label << '\n';
  for (const std::string& line : lines) os_ << kIndent << line << '\n';
  os_ << '\n';
}

void Report::block(const std::vector<std::string>& lines) {
  if (format_ == Format::Markdown) {
    os_ << "```\n";
    for (const std::string& line : lines) os_ << line << '\n';
    os_ << "```\n\n";
    return;
  }
  for (const std::string& line : lines) os_ << kIndent << line << '\n';
  os_ << '\n';
}

void Report::table(const Table& table) {
  if (format_ == Format::Markdown) {
    auto row = [&](const std::vector<std::string>& cells) {
      os_ << '|';
      for (const std::string& c : cells) os_ << ' ' << c << " |";
      os_ << '\n';
    };
    row(table.header);
    os_ << '|';
    for (std::size_t i = 0; i < table.header.size(); ++i) os_ << "---|";
    os_ << '\n';
    for (const auto& r : table.rows) row(r);
    os_ << '\n';
    return;
  }
  std::vector<std::size_t> widths(table.header.size(), 0);
  auto measure = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], cells[i].size());
    }
  };
  measure(table.header);
  for (const auto& r : table.rows) measure(r);
  auto row = [&](const std::vector<std::string>& cells) {
    std::string line = "  ";
    for (std::size_t i = 0; i < cells.size(); ++i) {
      line += (i + 1 < cells.size() ? pad(cells[i], widths[i] + 2) : cells[i]);
    }
    os_ << line << '\n';
  };
  row(table.header);
  for (const auto& r : table.rows) row(r);
  os_ << '\n';
}

std::string Report::code(const std::string& text) const {
  return format_ == Format::Markdown ? "`" + text + "`" : text;
}

}  // namespace npdl::cli
