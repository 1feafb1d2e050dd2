#pragma once
// A small streaming JSON writer: objects, arrays, strings, numbers. Strings
// escape <, > and & as \u sequences, so that the output can be embedded in
// an HTML <script> element as it is.
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace npdl::cli {

class JsonWriter {
 public:
  explicit JsonWriter(std::ostream& os) : os_(os) {}

  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  /// The key of the next value in the current object.
  void key(const std::string& name);

  void value(const std::string& text);
  void value(const char* text) { value(std::string(text)); }
  /// Written with 17 significant digits (read back exactly); NaN and the
  /// infinities, which JSON cannot hold, as null.
  void value(double number);
  void value(std::int64_t number);
  void value(int number) { value(static_cast<std::int64_t>(number)); }
  void value(std::size_t number) { value(static_cast<std::int64_t>(number)); }
  void value(bool flag);
  void null();

  /// key(name) then value(v).
  template <class T>
  void field(const std::string& name, const T& v) {
    key(name);
    value(v);
  }

 private:
  // Before a value: a comma unless it is the first of its container or
  // follows its key.
  void separate();
  void write_string(const std::string& text);

  std::ostream& os_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

}  // namespace npdl::cli
