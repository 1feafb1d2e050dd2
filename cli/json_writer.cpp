#include "cli/json_writer.hpp"

#include <cmath>
#include <cstdio>
#include <ostream>

namespace npdl::cli {

void JsonWriter::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) os_ << ',';
    first_.back() = false;
  }
}

void JsonWriter::begin_object() {
  separate();
  os_ << '{';
  first_.push_back(true);
}

void JsonWriter::end_object() {
  first_.pop_back();
  os_ << '}';
}

void JsonWriter::begin_array() {
  separate();
  os_ << '[';
  first_.push_back(true);
}

void JsonWriter::end_array() {
  first_.pop_back();
  os_ << ']';
}

void JsonWriter::key(const std::string& name) {
  separate();
  write_string(name);
  os_ << ':';
  after_key_ = true;
}

void JsonWriter::value(const std::string& text) {
  separate();
  write_string(text);
}

void JsonWriter::value(double number) {
  separate();
  if (!std::isfinite(number)) {
    os_ << "null";
    return;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.17g", number);
  os_ << buffer;
}

void JsonWriter::value(std::int64_t number) {
  separate();
  os_ << number;
}

void JsonWriter::value(bool flag) {
  separate();
  os_ << (flag ? "true" : "false");
}

void JsonWriter::null() {
  separate();
  os_ << "null";
}

void JsonWriter::write_string(const std::string& text) {
  os_ << '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        os_ << "\\\"";
        break;
      case '\\':
        os_ << "\\\\";
        break;
      case '\n':
        os_ << "\\n";
        break;
      case '\t':
        os_ << "\\t";
        break;
      case '<':
      case '>':
      case '&': {
        char buffer[8];
        std::snprintf(buffer, sizeof buffer, "\\u%04x", byte);
        os_ << buffer;
        break;
      }
      default:
        if (byte < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", byte);
          os_ << buffer;
        } else {
          os_ << c;
        }
    }
  }
  os_ << '"';
}

}  // namespace npdl::cli
