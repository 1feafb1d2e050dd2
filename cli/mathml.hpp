#pragma once
// The derivation's plain-text formulas ("dvar = -1/2 * invstd^3 * dinvstd")
// as MathML, which browsers render natively: gamma as γ, xhat as x̂, * as a
// centred dot, ^ as a superscript, sum as ∑.
#include <string>

namespace npdl::cli {

/// `formula` as <math display="block"> elements, one per equation (the
/// top-level commas separate them); words in a row are prose. Throws
/// ValueError on a character outside the formulas' alphabet (letters,
/// digits, _ + - * / ^ = , parentheses, spaces) or unbalanced parentheses.
std::string formula_mathml(const std::string& formula);

}  // namespace npdl::cli
