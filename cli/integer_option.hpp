#pragma once
// Integer options of `npdl`: every one is declared through add_integer_option.
//
// CLI11's own conversion (2.1: strtoull / strtoll with base 0) cannot be
// trusted with the edges: "-1" wraps to 2^64 - 1 for an unsigned option,
// 18446744073709551616 saturates to 2^64 - 1 instead of failing, and "010"
// is read as octal 8. The validator below runs before that conversion (as
// a CLI11 transform), accepts only a decimal whole number within the
// option's range, and hands CLI11 the number's canonical text, so the
// conversion can only reproduce it. A value it refuses is a usage error
// (exit status kUsage), "--seed: expected a whole number in [0,
// 18446744073709551615], got '-1'": CLI11 puts the option's name in front.
#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace npdl::cli {

/// A CLI11 validator: `text` must be a decimal whole number in [min, max].
template <class Int>
CLI::Validator whole_number_in(Int min, Int max) {
  static_assert(std::is_integral_v<Int> && !std::is_same_v<Int, bool>);
  auto check = [min, max](std::string& text) -> std::string {
    Int value{};
    const char* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    if (error == std::errc() && stop == end && value >= min && value <= max) {
      text = std::to_string(value);
      return "";
    }
    return "expected a whole number in [" + std::to_string(min) + ", " + std::to_string(max) +
           "], got '" + text + "'";
  };
  // No description: the help keeps its type column (INT, UINT) narrow.
  return CLI::Validator(check, "");
}

template <class T>
struct ElementOf {
  using type = T;
};
template <class T>
struct ElementOf<std::vector<T>> {
  using type = T;
};

/// Ranges that several commands share. An axis is any int here; x's rank
/// decides later which ones name an axis (exit status kFailed otherwise).
inline constexpr int kMinAxis = std::numeric_limits<int>::min();
inline constexpr int kMaxAxis = std::numeric_limits<int>::max();
inline constexpr std::uint64_t kMinSeed = 0;
inline constexpr std::uint64_t kMaxSeed = std::numeric_limits<std::uint64_t>::max();

/// The option `name` bound to `variable` (an integer, or a list of them
/// with each element checked), values limited to [min, max].
template <class Variable, class Int>
CLI::Option* add_integer_option(CLI::App& app, const std::string& name, Variable& variable,
                                const std::string& description, Int min, Int max) {
  static_assert(std::is_same_v<typename ElementOf<Variable>::type, Int>,
                "min and max must have the option's integer type");
  // transform, not check: check would discard the canonical text.
  return app.add_option(name, variable, description)->transform(whole_number_in(min, max));
}

}  // namespace npdl::cli
