// The sequence ops' values and their bad input (ops/sequence.hpp). Their
// derivatives of first and second order are checked from their catalogue
// entries (tests/test_primitives.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "npdl.hpp"

namespace npdl {
namespace {

Tensor table() { return Tensor::from_vector({3, 2}, {0, 1, 10, 11, 20, 21}, DType::Float64); }

TEST(Embedding, PicksRowsAndItsGradientAccumulatesRepeatedIndices) {
  Graph graph;
  const Var t = graph.variable(table());
  const Tensor idx = Tensor::from_indices({2, 2}, {2, 0, 2, 2});
  const Var y = ops::embedding(t, idx);
  EXPECT_EQ(y.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{20, 21, 0, 1, 20, 21, 20, 21}));
  const Tensor g = Tensor::from_vector({2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8}, DType::Float64);
  y.backward(g);
  // Row 2 gets positions 0, 2 and 3; row 0 position 1; row 1 nothing.
  EXPECT_EQ(t.grad().to_vector(), (std::vector<double>{3, 4, 0, 0, 13, 16}));
}

// Bad input: a typed error naming what was expected and given, and nothing
// recorded on the graph.
template <class Error, class Fn>
void expect_refused(Fn fn, const std::string& fragment) {
  Graph graph;
  const Var t = graph.variable(table());
  const std::size_t before = graph.size();
  try {
    fn(t);
    ADD_FAILURE() << "accepted; expected an error with '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
  EXPECT_EQ(graph.size(), before);
}

TEST(Embedding, RefusesIndicesOutOfRangeOrOfAFloatDtypeAndARankZeroTable) {
  expect_refused<IndexError>(
      [](const Var& t) {
        ops::embedding(t, Tensor::from_indices({2, 2}, {0, 1, 3, 0}));
      },
      "index 3 at position (1, 0) is out of range for 3 rows: expected [0, 3)");
  expect_refused<IndexError>(
      [](const Var& t) { ops::embedding(t, Tensor::from_indices({1}, {-1})); }, "index -1");
  expect_refused<DTypeError>(
      [](const Var& t) { ops::embedding(t, Tensor::from_vector({1}, {1.0})); },
      "expected indices of int32 or int64, got float32");
  expect_refused<ShapeError>(
      [](const Var&) { ops::embedding(Var(Tensor::scalar(1.0)), Tensor::from_indices({1}, {0})); },
      "rank >= 1");
  expect_refused<ShapeError>(
      [](const Var& t) {
        ops::embedding_backward(t, Tensor::from_indices({2}, {0, 1}), 4);  // t is (3, 2)
      },
      "starts with the indices' (2,), got (3, 2)");
}

TEST(Slice, TakesARangeAndSelectATimeStep) {
  const Tensor x = Tensor::from_vector({2, 3}, {0, 1, 2, 3, 4, 5}, DType::Float64);
  EXPECT_EQ(ops::slice(Var(x), 1, 1, 3).value().to_vector(), (std::vector<double>{1, 2, 4, 5}));
  EXPECT_EQ(ops::slice(Var(x), 0, 1, 1).shape(), (Shape{0, 3}));
  EXPECT_EQ(ops::select(Var(x), 1, 2).value().to_vector(), (std::vector<double>{2, 5}));
  EXPECT_EQ(ops::select(Var(x), -1, 0).shape(), (Shape{2}));
  EXPECT_EQ(ops::slice_backward(Var(Tensor::ones({2, 1}, DType::Float64)), {2, 3}, 1, 2)
                .value()
                .to_vector(),
            (std::vector<double>{0, 0, 1, 0, 0, 1}));
}

TEST(Slice, RefusesPositionsOutsideTheAxis) {
  expect_refused<IndexError>([](const Var& t) { ops::slice(t, 0, 2, 4); },
                             "positions [2, 4) of axis 0 of size 3");
  expect_refused<IndexError>([](const Var& t) { ops::slice(t, 1, 1, 0); }, "begin <= end");
  expect_refused<IndexError>([](const Var& t) { ops::select(t, 1, 2); },
                             "position 2 of axis 1 of size 2: expected [0, 2)");
  expect_refused<AxisError>([](const Var& t) { ops::slice(t, 2, 0, 1); }, "axis");
  expect_refused<ShapeError>(
      [](const Var& t) {
        ops::slice_backward(t, {4, 3}, 1, 0);
      },
      "expected shape (4, 2), got (3, 2)");
}

TEST(Concat, JoinsAlongAnAxisAndStackAddsOne) {
  const Var a(Tensor::from_vector({2, 1}, {1, 2}, DType::Float64));
  const Var b(Tensor::from_vector({2, 2}, {3, 4, 5, 6}, DType::Float64));
  EXPECT_EQ(ops::concat({a, b}, 1).value().to_vector(), (std::vector<double>{1, 3, 4, 2, 5, 6}));
  EXPECT_EQ(ops::concat({b, b}, 0).shape(), (Shape{4, 2}));
  const Var s = ops::stack({a, a, a}, 0);
  EXPECT_EQ(s.shape(), (Shape{3, 2, 1}));
  EXPECT_EQ(ops::stack({a, a}, 2).shape(), (Shape{2, 1, 2}));
}

TEST(Concat, RefusesNothingAndShapesOrDtypesThatDoNotFit) {
  expect_refused<ValueError>([](const Var&) { ops::concat({}, 0); }, "at least one value");
  expect_refused<ShapeError>(
      [](const Var& t) {
        ops::concat({t, Var(Tensor::zeros({3, 2, 1}, DType::Float64))}, 1);
      },
      "value 1");
  expect_refused<ShapeError>(
      [](const Var& t) {
        ops::concat({t, Var(Tensor::zeros({2, 2}, DType::Float64))}, 1);
      },
      "expected shape (3, 2), got (2, 2)");
  expect_refused<DTypeError>(
      [](const Var& t) {
        ops::concat({t, Var(Tensor::zeros({3, 2}))}, 0);
      },
      "float64 and float32");
  expect_refused<ShapeError>(
      [](const Var& t) {
        ops::stack({t, Var(Tensor::zeros({2, 3}, DType::Float64))}, 0);
      },
      "stack: value 1");
  // Empty values may be 2^63 - 1 long along the axis; two of them do not fit.
  expect_refused<ShapeError>(
      [](const Var&) {
        const Var empty(Tensor::zeros({0, std::numeric_limits<std::int64_t>::max()}));
        ops::concat({empty, empty}, 1);
      },
      "sizes along axis 1 add up to more than 2^63 - 1 (value 1 of size 9223372036854775807)");
}

TEST(Where, ChoosesBySetMaskAndRoutesTheGradient) {
  Graph graph;
  const Var a = graph.variable(Tensor::from_vector({2, 2}, {1, 2, 3, 4}, DType::Float64));
  const Var b = graph.variable(Tensor::from_vector({2}, {-1, -2}, DType::Float64));
  // NaN is non-zero: set.
  const Tensor mask = Tensor::from_vector({2, 2}, {1, 0, std::nan(""), 0}, DType::Float64);
  const Var y = ops::where(mask, a, b);
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{1, -2, 3, -2}));
  y.backward(Tensor::from_vector({2, 2}, {1, 2, 3, 4}, DType::Float64));
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{1, 0, 3, 0}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{0, 6}));
  expect_refused<ShapeError>([](const Var& t) { ops::where(Tensor::ones({4}), t, t); }, "");
  expect_refused<DTypeError>(
      [](const Var& t) {
        ops::where(Tensor::ones({3, 2}), t, Var(Tensor::zeros({3, 2})));
      },
      "float64 and float32");
}

}  // namespace
}  // namespace npdl
