#include "cli/mathml.hpp"

#include <cctype>
#include <map>
#include <vector>

#include "tensor/error.hpp"

namespace npdl::cli {
namespace {

// The derivation's names that have a mathematical symbol.
const std::map<std::string, std::string>& symbols() {
  static const std::map<std::string, std::string> table{
      {"gamma", "<mi>γ</mi>"},
      {"beta", "<mi>β</mi>"},
      {"epsilon", "<mi>ε</mi>"},
      {"xhat", "<mover accent=\"true\"><mi>x</mi><mo>^</mo></mover>"},
      {"xmu", "<msub><mi>x</mi><mi>μ</mi></msub>"},
      {"sum", "<mo>∑</mo>"},
  };
  return table;
}

// A name, with the gradient's d split off a name that has a symbol (dgamma
// as dγ); other names as they are (dvar, invstd, M).
std::string identifier(const std::string& name) {
  const auto& table = symbols();
  if (const auto it = table.find(name); it != table.end()) return it->second;
  if (name.size() > 1 && name[0] == 'd') {
    if (const auto it = table.find(name.substr(1)); it != table.end() && name != "dsum") {
      return "<mrow><mi>d</mi>" + it->second + "</mrow>";
    }
  }
  return "<mi>" + name + "</mi>";
}

std::string operator_symbol(char c) {
  switch (c) {
    case '*':
      return "<mo>⋅</mo>";
    case '-':
      return "<mo>−</mo>";
    default:
      return std::string("<mo>") + c + "</mo>";
  }
}

class Converter {
 public:
  explicit Converter(const std::string& formula) : formula_(formula) {}

  // One <math> block per equation: the formula's top-level commas separate
  // them ("dL2/ds = g * P / M, h = ...").
  std::string convert() {
    for (std::size_t i = 0; i < formula_.size();) i = read_token(i);
    if (!open_.empty()) fail("a '(' is not closed");
    finish_block();
    return blocks_;
  }

 private:
  void finish_block() {
    std::string body;
    for (const std::string& item : items_) body += item;
    blocks_ += "<math display=\"block\"><mrow>" + body + "</mrow></math>";
    items_.clear();
    last_start_ = 0;
    word_run_.clear();
  }

  // Reads the token at `i`; returns where the next one starts.
  std::size_t read_token(std::size_t i) {
    const char c = formula_[i];
    if (c == ' ') return i + 1;
    if (c != '_' && !std::isalnum(static_cast<unsigned char>(c))) word_run_.clear();
    if (c == ',') {
      if (open_.empty()) {
        finish_block();
      } else {
        push(operator_symbol(c));
      }
      return i + 1;
    }
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t end = i;
      while (end < formula_.size() &&
             (std::isalnum(static_cast<unsigned char>(formula_[end])) || formula_[end] == '_')) {
        ++end;
      }
      atom(formula_.substr(i, end - i));
      return end;
    }
    switch (c) {
      case '(':
        open_.push_back(items_.size());
        push(operator_symbol(c));
        break;
      case ')':
        if (open_.empty()) fail("a ')' has no '('");
        push(operator_symbol(c));
        last_start_ = open_.back();
        open_.pop_back();
        break;
      case '^':
        superscript_ = true;
        break;
      case '+':
      case '-':
      case '*':
      case '/':
      case '=':
        push(operator_symbol(c));
        break;
      default:
        fail(std::string("unexpected character '") + c + "'");
    }
    return i + 1;
  }

  void atom(const std::string& word) {
    const bool number = std::isdigit(static_cast<unsigned char>(word[0])) != 0;
    // Words in a row are prose ("the first backward of"), not a product.
    if (!number && !superscript_ && !word_run_.empty()) {
      word_run_ += " " + word;
      items_.back() = "<mtext>" + word_run_ + "</mtext>";
      return;
    }
    word_run_ = number ? "" : word;
    const std::string rendered = number ? "<mn>" + word + "</mn>" : identifier(word);
    if (!superscript_) return push(rendered);
    superscript_ = false;
    // The base is the last atom or parenthesised group.
    std::string base;
    for (std::size_t k = last_start_; k < items_.size(); ++k) base += items_[k];
    items_.resize(last_start_);
    push("<msup><mrow>" + base + "</mrow>" + rendered + "</msup>");
  }

  void push(const std::string& item) {
    last_start_ = items_.size();
    items_.push_back(item);
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw ValueError("cannot write the formula '" + formula_ + "' as MathML: " + what);
  }

  const std::string& formula_;
  std::vector<std::string> items_;
  std::vector<std::size_t> open_;  // items_ index of each unclosed '('
  std::size_t last_start_ = 0;     // where the last atom or group starts in items_
  bool superscript_ = false;
  std::string word_run_;  // the words read in a row, up to the last item
  std::string blocks_;    // the finished <math> elements
};

}  // namespace

std::string formula_mathml(const std::string& formula) { return Converter(formula).convert(); }

}  // namespace npdl::cli
