#pragma once
// A strict JSON reader for the tests of the program's JSON output: the whole
// grammar (RFC 8259) but nothing beyond it, so that output it accepts is
// valid JSON. Values are a tree of JsonValue; a syntax error throws
// std::runtime_error naming the offset.
#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace npdl::testing {

struct JsonValue {
  enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<JsonValue> array;
  std::map<std::string, JsonValue> object;

  /// The member `key` of an object; throws when there is none.
  const JsonValue& operator[](const std::string& key) const {
    const auto it = object.find(key);
    if (kind != Kind::Object || it == object.end()) {
      throw std::runtime_error("no member '" + key + "'");
    }
    return it->second;
  }
  const JsonValue& operator[](std::size_t i) const { return array.at(i); }
  bool is_null() const { return kind == Kind::Null; }
};

class JsonReader {
 public:
  /// Parses `text`, which must hold exactly one value (and white space).
  static JsonValue parse(const std::string& text) {
    JsonReader reader(text);
    JsonValue value = reader.value();
    reader.space();
    if (reader.at_ != text.size()) reader.fail("text after the value");
    return value;
  }

 private:
  explicit JsonReader(const std::string& text) : text_(text) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("invalid JSON at offset " + std::to_string(at_) + ": " + what);
  }
  char peek() const { return at_ < text_.size() ? text_[at_] : '\0'; }
  void space() {
    while (at_ < text_.size() &&
           (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\r' || text_[at_] == '\t')) {
      ++at_;
    }
  }
  void expect(const std::string& word) {
    if (text_.compare(at_, word.size(), word) != 0) fail("expected " + word);
    at_ += word.size();
  }

  JsonValue value() {
    space();
    JsonValue v;
    switch (peek()) {
      case '{':
        return object();
      case '[':
        return array();
      case '"':
        v.kind = JsonValue::Kind::String;
        v.string = string();
        return v;
      case 't':
        expect("true");
        v.kind = JsonValue::Kind::Bool;
        v.boolean = true;
        return v;
      case 'f':
        expect("false");
        v.kind = JsonValue::Kind::Bool;
        return v;
      case 'n':
        expect("null");
        return v;
      default:
        return number();
    }
  }

  JsonValue object() {
    JsonValue v;
    v.kind = JsonValue::Kind::Object;
    ++at_;  // {
    space();
    if (peek() == '}') {
      ++at_;
      return v;
    }
    while (true) {
      space();
      if (peek() != '"') fail("expected a key");
      const std::string key = string();
      space();
      expect(":");
      if (!v.object.emplace(key, value()).second) fail("duplicate key '" + key + "'");
      space();
      if (peek() == '}') {
        ++at_;
        return v;
      }
      expect(",");
    }
  }

  JsonValue array() {
    JsonValue v;
    v.kind = JsonValue::Kind::Array;
    ++at_;  // [
    space();
    if (peek() == ']') {
      ++at_;
      return v;
    }
    while (true) {
      v.array.push_back(value());
      space();
      if (peek() == ']') {
        ++at_;
        return v;
      }
      expect(",");
    }
  }

  std::string string() {
    ++at_;  // "
    std::string out;
    while (true) {
      if (at_ >= text_.size()) fail("unterminated string");
      const char c = text_[at_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = peek();
      ++at_;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u':
          out += code_point();
          break;
        default:
          fail("bad escape");
      }
    }
  }

  // \uXXXX as UTF-8 (the tests' text is ASCII and BMP symbols).
  std::string code_point() {
    if (at_ + 4 > text_.size()) fail("short \\u escape");
    for (std::size_t i = 0; i < 4; ++i) {
      if (!std::isxdigit(static_cast<unsigned char>(text_[at_ + i]))) fail("bad \\u escape");
    }
    const unsigned long cp = std::strtoul(text_.substr(at_, 4).c_str(), nullptr, 16);
    at_ += 4;
    std::string out;
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return out;
  }

  // -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?
  JsonValue number() {
    const std::size_t start = at_;
    auto digits = [&] {
      const std::size_t from = at_;
      while (std::isdigit(static_cast<unsigned char>(peek()))) ++at_;
      if (at_ == from) fail("expected a digit");
    };
    if (peek() == '-') ++at_;
    if (peek() == '0') {
      ++at_;
    } else {
      digits();
    }
    if (peek() == '.') {
      ++at_;
      digits();
    }
    if (peek() == 'e' || peek() == 'E') {
      ++at_;
      if (peek() == '+' || peek() == '-') ++at_;
      digits();
    }
    JsonValue v;
    v.kind = JsonValue::Kind::Number;
    v.number = std::strtod(text_.substr(start, at_ - start).c_str(), nullptr);
    return v;
  }

  const std::string& text_;
  std::size_t at_ = 0;
};

}  // namespace npdl::testing
