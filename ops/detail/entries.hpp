#pragma once
// What the ops' catalogue entries (autodiff/catalogue.hpp) share: samples over
// the edge shapes, and arguments drawn from a fuzzer's random Choices (each
// derived from the bits; the op itself refuses what does not fit, as it
// would a user's).
#include <cstdint>
#include <string>
#include <utility>

#include "autodiff/catalogue.hpp"
#include "ops/ops.hpp"

namespace npdl::ops::detail {

/// f's output squared: a sample of a linear op whose second derivative is
/// then not zero.
inline GraphFunction squared(GraphFunction f) {
  return [f](const std::vector<Var>& v) { return square(f(v)); };
}

using UnaryFn = Var (*)(const Var&);
using BinaryFn = Var (*)(const Var&, const Var&);

/// A unary elementwise op on every rank from a scalar to 4 (a size-1 axis
/// among them), its input drawn from `domain`.
inline catalogue::Samples unary_samples(UnaryFn op, catalogue::Domain domain) {
  catalogue::Samples s;
  std::uint64_t seed = 1;
  for (const Shape& shape : {Shape{}, Shape{5}, Shape{2, 3}, Shape{2, 1, 3, 2}}) {
    const Tensor x = domain == catalogue::Domain::Positive ? catalogue::sample::positive(shape, seed)
                                                        : catalogue::sample::normal(shape, seed);
    s.push_back({"shape " + to_string(shape), [op](const std::vector<Var>& v) { return op(v[0]); }, {x}});
    ++seed;
  }
  return s;
}

/// A broadcasting binary op over equal shapes, a row, a column, a scalar,
/// and both operands stretched; b drawn from `b_domain`.
inline catalogue::Samples binary_samples(BinaryFn op, catalogue::Domain b_domain) {
  const std::pair<Shape, Shape> shapes[] = {
      {{3}, {3}},       {{2, 3}, {2, 3}}, {{2, 3}, {3}},          {{2, 3}, {2, 1}},
      {{4, 1, 3}, {2, 1}}, {{2, 3, 4}, {}}, {{1, 3, 1}, {2, 1, 4}}};
  catalogue::Samples s;
  std::uint64_t seed = 10;
  for (const auto& [a, b] : shapes) {
    const Tensor bv = b_domain == catalogue::Domain::Positive ? catalogue::sample::positive(b, seed + 1)
                                                         : catalogue::sample::normal(b, seed + 1);
    s.push_back({to_string(a) + " with " + to_string(b),
                 [op](const std::vector<Var>& v) { return op(v[0], v[1]); },
                 {catalogue::sample::normal(a, seed), bv}});
    seed += 2;
  }
  return s;
}

/// A subset of the axes of a rank-`rank` tensor: bit i picks axis i; bit 8
/// writes them as negative indices.
inline Axes random_axes(int rank, std::uint32_t bits) {
  Axes a;
  for (int i = 0; i < rank; ++i) {
    if (bits & (1u << i)) a.push_back((bits >> 8) & 1 ? i - rank : i);
  }
  return a;
}

/// A permutation of 0..rank-1 (Fisher-Yates driven by the bits).
inline Axes random_permutation(int rank, std::uint32_t bits) {
  Axes p;
  for (int i = 0; i < rank; ++i) p.push_back(i);
  for (int i = rank - 1; i > 0; --i) {
    std::swap(p[i], p[bits % static_cast<std::uint32_t>(i + 1)]);
    bits /= static_cast<std::uint32_t>(i + 1);
  }
  return p;
}

/// The same number of elements in another shape: {-1} when `flag`, else
/// the axes reversed with a 1 inserted.
inline Shape random_reshape_target(const Shape& s, bool flag, std::uint32_t bits) {
  if (flag) return Shape{-1};
  Shape t(s.rbegin(), s.rend());
  t.insert(t.begin() + (s.empty() ? 0 : bits % (s.size() + 1)), 1);
  return t;
}

/// A shape `s` broadcasts to: each size-1 axis stretched to 0..3, and a
/// leading axis of 1..3 when `prepend`.
inline Shape random_broadcast_target(const Shape& s, std::uint32_t bits, bool prepend) {
  Shape target = s;
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 1) target[i] = (bits >> (2 * i)) % 4;
  }
  if (prepend) target.insert(target.begin(), (bits >> 20) % 3 + 1);
  return target;
}

/// Refuses a result larger than the caller allows: {L, 1} + {1, L} of a long
/// axis is valid, but is gigabytes.
inline void check_random_size(std::int64_t elements, const catalogue::Choices& c, const char* op) {
  if (c.max_elements > 0 && elements > c.max_elements) {
    throw ValueError(std::string(op) + ": a random application would make " +
                     std::to_string(elements) + " elements; the caller allows " +
                     std::to_string(c.max_elements));
  }
}

/// `a` as a matrix: its first axis as rows (one row for a scalar).
inline Var as_matrix(const Var& a) {
  const Shape& s = a.shape();
  const std::int64_t rows = s.empty() ? 1 : s[0];
  return reshape(a, {rows, rows == 0 ? 1 : -1});
}

}  // namespace npdl::ops::detail
