#pragma once
// Names to values of one kind (activations, initialisers, objectives,
// optimisers): what npdl's by-name lookups (`get`) find, with every
// spelling npdl accepts, and one error for a name that is not there.
#include <initializer_list>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/error.hpp"

namespace npdl::layers {

template <class Value>
class Registry {
 public:
  /// `kind` is what the error calls an entry ("activation").
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  /// Registers `value` under each of `spellings`.
  void add(std::initializer_list<const char*> spellings, const Value& value) {
    for (const char* s : spellings) entries_[s] = value;
    names_.clear();
    for (const auto& entry : entries_) names_.push_back(entry.first);
  }

  /// The value registered as `name`; ValueError listing every spelling
  /// otherwise.
  const Value& get(const std::string& name) const {
    const auto it = entries_.find(name);
    if (it != entries_.end()) return it->second;
    std::string valid;
    for (const std::string& n : names_) valid += (valid.empty() ? "" : ", ") + n;
    throw ValueError("unknown " + kind_ + " '" + name + "'; expected one of: " + valid);
  }

  /// Every spelling, sorted.
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::string kind_;
  std::map<std::string, Value> entries_;
  std::vector<std::string> names_;
};

}  // namespace npdl::layers
