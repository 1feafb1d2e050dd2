// Tensors and eager numerics: construction, broadcasting, reductions.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "npdl.hpp"

namespace npdl {
namespace {

TEST(Tensor, FromVectorAndElementAccess) {
  const Tensor t = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}, DType::Float64);
  EXPECT_EQ(t.rank(), 2);
  EXPECT_EQ(t.size(), 6);
  EXPECT_EQ(t.at({1, 2}), 6.0);
  EXPECT_EQ(t.at({-1, 0}), 4.0);
  EXPECT_EQ(t.at(4), 5.0);
  EXPECT_THROW(t.at({2, 0}), ShapeError);
  EXPECT_THROW(Tensor::from_vector({2, 2}, {1, 2, 3}), ShapeError);
}

TEST(Tensor, IndexTensorsHoldIntegersExactlyAndTakeNoArithmetic) {
  const std::int64_t big = (std::int64_t{1} << 53) + 1;  // not a double
  const Tensor idx = Tensor::from_indices({3}, {2, -7, big});
  EXPECT_EQ(idx.dtype(), DType::Int64);
  EXPECT_EQ(idx.data<std::int64_t>()[2], big);
  EXPECT_EQ(idx.at(1), -7.0);
  EXPECT_EQ(to_string(DType::Int32), "int32");
  EXPECT_EQ(element_size(DType::Int32), 4u);
  EXPECT_FALSE(is_floating(DType::Int64));
  // Conversions: truncated toward zero; what an integer cannot hold is named.
  EXPECT_EQ(Tensor::from_vector({3}, {1.9, -1.9, 0.0}, DType::Int32).to_vector(),
            (std::vector<double>{1, -1, 0}));
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), 3e9}) {
    EXPECT_THROW(Tensor::from_vector({1}, {bad}, DType::Int32), ValueError) << bad;
    EXPECT_THROW(Tensor::from_vector({1}, {bad}).astype(DType::Int32), ValueError) << bad;
  }
  EXPECT_THROW(Tensor::from_indices({1}, {std::int64_t{1} << 40}).astype(DType::Int32), ValueError);
  EXPECT_EQ(idx.astype(DType::Float64).to_vector()[0], 2.0);
  // Numeric ops refuse them by dtype, naming it.
  try {
    math::add(idx, idx);
    ADD_FAILURE() << "int64 added";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("got int64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tensor::randn({2}, 1, DType::Int64), DTypeError);
  Graph graph;
  EXPECT_THROW(graph.variable(idx), DTypeError);
  EXPECT_THROW(graph.param(make_parameter(idx, "w")), DTypeError);
  EXPECT_NO_THROW(graph.input(idx));
}

TEST(Tensor, RanksZeroToSix) {
  for (int rank = 0; rank <= 6; ++rank) {
    Shape shape(rank, 2);
    const Tensor t = Tensor::ones(shape, DType::Float32);
    EXPECT_EQ(t.size(), 1 << rank);
    EXPECT_EQ(math::sum(t).item(), static_cast<double>(1 << rank));
  }
}

TEST(Tensor, SeededRandomIsReproducible) {
  const Tensor a = Tensor::randn({100}, 7), b = Tensor::randn({100}, 7),
               c = Tensor::randn({100}, 8);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), c.to_vector());
  const Tensor u = Tensor::uniform({1000}, 3, DType::Float64, -2.0, 5.0);
  for (double v : u.to_vector()) {
    EXPECT_GE(v, -2.0);
    EXPECT_LT(v, 5.0);
  }
}

TEST(Tensor, PrintsReadably) {
  const Tensor t = Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  const std::string s = to_string(t);
  EXPECT_NE(s.find("shape=(2, 2)"), std::string::npos);
  EXPECT_NE(s.find("float32"), std::string::npos);
  EXPECT_NE(s.find('4'), std::string::npos);
}

TEST(Tensor, ReshapeSharesStorageCloneDoesNot) {
  Tensor t = Tensor::zeros({2, 3});
  Tensor v = t.reshape({3, 2});
  EXPECT_TRUE(v.same_storage(t));
  EXPECT_FALSE(t.clone().same_storage(t));
  EXPECT_THROW(t.reshape({4, 2}), ShapeError);
}

TEST(Tensor, WrongDtypeAccessThrows) {
  Tensor t = Tensor::zeros({2}, DType::Float32);
  EXPECT_THROW(t.data<double>(), DTypeError);
}

TEST(Broadcast, ShapesFollowNumPy) {
  EXPECT_EQ(broadcast_shapes({4, 1, 3}, {5, 1}), (Shape{4, 5, 3}));
  EXPECT_EQ(broadcast_shapes({}, {2, 3}), (Shape{2, 3}));
  EXPECT_THROW(broadcast_shapes({2, 3}, {4, 3}), ShapeError);
  try {
    broadcast_shapes({2, 3}, {4, 3});
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("(2, 3)"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("(4, 3)"), std::string::npos);
  }
}

TEST(Broadcast, BinaryValuesMatchAHandLoop) {
  const Tensor a = Tensor::randn({2, 1, 4}, 1, DType::Float64);
  const Tensor b = Tensor::randn({3, 1}, 2, DType::Float64);
  const Tensor c = math::mul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 4}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_DOUBLE_EQ(c.at({i, j, k}), a.at({i, 0, k}) * b.at({j, 0}));
  EXPECT_THROW(math::add(Tensor::zeros({2}), Tensor::zeros({2}, DType::Float64)), DTypeError);
}

TEST(Reduce, SumOverAnyAxesMatchesAHandLoop) {
  const Tensor x = Tensor::randn({2, 3, 4, 5}, 3, DType::Float64);
  const Tensor s = math::sum(x, {0, 2});
  ASSERT_EQ(s.shape(), (Shape{3, 5}));
  for (int j = 0; j < 3; ++j)
    for (int l = 0; l < 5; ++l) {
      double expected = 0;
      for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 4; ++k) expected += x.at({i, j, k, l});
      EXPECT_NEAR(s.at({j, l}), expected, 1e-12);
    }
  EXPECT_EQ(math::sum(x, {1, 3}, true).shape(), (Shape{2, 1, 4, 1}));
  EXPECT_NEAR(math::mean(x).item(), math::sum(x).item() / 120.0, 1e-12);
  EXPECT_THROW(math::sum(x, {4}), AxisError);
  EXPECT_THROW(math::sum(x, {1, -3}), AxisError);  // repeated
}

TEST(Reduce, Float32SumAccumulatesInDouble) {
  // 1e7 ones: a float accumulator stalls at 2^24; a double one is exact.
  const Tensor x = Tensor::ones({10'000'000}, DType::Float32);
  EXPECT_EQ(math::sum(x).item(), 1e7);
}

TEST(Transpose, PermutesAxes) {
  const Tensor x = Tensor::randn({2, 3, 4}, 4, DType::Float64);
  const Tensor t = math::transpose(x, {2, 0, 1});
  ASSERT_EQ(t.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(t.at({3, 1, 2}), x.at({1, 2, 3}));
  EXPECT_THROW(math::transpose(x, {0, 0, 1}), AxisError);
  EXPECT_THROW(math::transpose(x, {0, 1}), AxisError);
}

TEST(Matmul, MatchesHandComputation) {
  const Tensor a = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}, DType::Float64);
  const Tensor b = Tensor::from_vector({3, 1}, {1, 0, -1}, DType::Float64);
  const Tensor c = math::matmul(a, b);
  EXPECT_EQ(c.to_vector(), (std::vector<double>{-2, -2}));
  EXPECT_THROW(math::matmul(a, a), ShapeError);
}

TEST(Softmax, RowsSumToOneAndSurviveLargeInputs) {
  const Tensor x = Tensor::from_vector({2, 3}, {1000, 1001, 1002, -5, 0, 5}, DType::Float64);
  const Tensor y = math::softmax(x, 1);
  EXPECT_TRUE(math::all_finite(y));
  EXPECT_NEAR(y.at({0, 0}) + y.at({0, 1}) + y.at({0, 2}), 1.0, 1e-12);
  const Tensor ly = math::log_softmax(x, 1);
  EXPECT_NEAR(std::exp(ly.at({1, 2})), y.at({1, 2}), 1e-12);
}

TEST(Domain, FollowsIeee) {
  const Tensor x = Tensor::from_vector({3}, {0.0, -1.0, 4.0}, DType::Float64);
  const Tensor l = math::log(x), s = math::sqrt(x), r = math::rsqrt(x);
  EXPECT_TRUE(std::isinf(l.at(0)) && l.at(0) < 0);
  EXPECT_TRUE(std::isnan(l.at(1)));
  EXPECT_TRUE(std::isnan(s.at(1)));
  EXPECT_TRUE(std::isinf(r.at(0)) && r.at(0) > 0);
  EXPECT_DOUBLE_EQ(r.at(2), 0.5);
}

TEST(Threads, ResultsAreIdenticalAcrossRunsAndThreadCounts) {
  const Tensor a = Tensor::randn({300, 1000}, 5), b = Tensor::randn({1, 1000}, 6);
  set_num_threads(2);
  const Tensor two = math::mul(a, b);
  set_num_threads(1);
  const Tensor one = math::mul(a, b);
  EXPECT_EQ(math::max_abs_diff(one, two).abs, 0.0);
  EXPECT_THROW(set_num_threads(0), ValueError);
}

}  // namespace
}  // namespace npdl
