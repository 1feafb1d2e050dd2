// distributed/ in one process (no mpirun): the single-process communicator, the
// all-reduce op's forward and VJP, the error agreement, and SyncBatchNormal
// on one rank, which must be BatchNormal exactly. The same things across 2
// and 3 ranks are in tests/mpi/distributed_tests.cpp.
#include <gtest/gtest.h>

#include <limits>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl {
namespace {

const dist::CommunicatorPtr kSingle = std::make_shared<dist::SingleProcessCommunicator>();

TEST(Communicator, WorldIsOneProcessWithoutAnMpiSession) {
  const dist::CommunicatorPtr w = dist::world();
  EXPECT_EQ(w->size(), 1);
  EXPECT_EQ(w->rank(), 0);
  EXPECT_EQ(w->backend(), "single process");
}

TEST(Communicator, DisagreementIsEmptyWhenAllPassAndNamesTheRankOtherwise) {
  EXPECT_EQ(dist::disagreement(*kSingle, true, "unused"), "");
  EXPECT_EQ(dist::disagreement(*kSingle, false, "input (3, 5)"), "rank 0 of 1: input (3, 5)");
}

TEST(AllReduceOp, OneRankIsTheIdentityAndItsVjpPassesTheGradient) {
  EXPECT_GRADCHECK(
      [](const std::vector<Var>& v) { return ops::square(dist::all_reduce_sum(v[0], kSingle)); },
      {Tensor::randn({3, 2}, 4, DType::Float64)});
  EXPECT_STREQ(dist::kAllReduceSum.vjp,
               "gx = sum over ranks of g (the all-reduce of the gradient)");
}

struct AxisCase {
  Shape shape;
  int axis;
};

class SyncBatchNormalOneRank : public ::testing::TestWithParam<AxisCase> {};

// One rank: the global batch is the local one, so the distributed layer must
// give BatchNormal's numbers (Chan's merge of one part is that part).
TEST_P(SyncBatchNormalOneRank, EqualsBatchNormalInEveryMode) {
  const AxisCase c = GetParam();
  const Tensor x = Tensor::randn(c.shape, 1, DType::Float64, 3.0, 2.0);
  const Tensor dy = Tensor::randn(c.shape, 2, DType::Float64);
  for (auto mode : {layers::BackwardMode::Fused, layers::BackwardMode::Autodiff,
                    layers::BackwardMode::Checked}) {
    layers::BatchNormal bn(1e-5, 0.9, c.axis);
    layers::SyncBatchNormal sync(1e-5, 0.9, c.axis, "zero", "one", kSingle);
    sync.set_backward_mode(mode);
    const Tensor y = sync.forward(x), y_ref = bn.forward(x);
    EXPECT_LT(math::max_abs_diff(y, y_ref).abs, 1e-12);
    EXPECT_LT(math::max_abs_diff(sync.backward(dy), bn.backward(dy)).abs, 1e-12);
    EXPECT_LT(math::max_abs_diff(sync.grads()[1], bn.grads()[1]).abs, 1e-12);
    EXPECT_LT(math::max_abs_diff(sync.running_var(), bn.running_var()).abs, 1e-12);
  }
}

INSTANTIATE_TEST_SUITE_P(SpecAxes, SyncBatchNormalOneRank,
                         ::testing::Values(AxisCase{{6, 4}, 0}, AxisCase{{6, 4}, -1},
                                           AxisCase{{3, 4, 2, 3}, 1}, AxisCase{{3, 4, 2, 3}, 0},
                                           AxisCase{{3, 5, 4}, -1}));

TEST(SyncBatchNormal, BadInputThrowsAndLeavesTheStateAsItWas) {
  layers::SyncBatchNormal bn(1e-5, 0.9, 1, "zero", "one", kSingle);
  bn.forward(Tensor::randn({4, 3}, 1));
  const Tensor mean = bn.running_mean().clone(), var = bn.running_var().clone();
  EXPECT_THROW(bn.forward(Tensor::randn({4, 5}, 2)), ShapeError);
  EXPECT_THROW(bn.forward(Tensor::randn({1, 3}, 2)), ValueError);  // M = 1
  Tensor bad = Tensor::randn({4, 3}, 3);
  bad.data<float>()[4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(bn.forward(bad), ValueError);
  EXPECT_THROW(layers::SyncBatchNormal(1e-5, 0.9, 0, "zero", "one", nullptr), ValueError);
  EXPECT_EQ(math::max_abs_diff(bn.running_mean(), mean).abs, 0.0);
  EXPECT_EQ(math::max_abs_diff(bn.running_var(), var).abs, 0.0);
}

// Note [Statistics overflow]: the same rule and messages as BatchNormal's,
// on the (here one-rank) global statistics; the state is left as it was.
TEST(SyncBatchNormal, AVarianceThatOverflowsSaysSoAndNaNIsNamedAsSuch) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const double big = dtype == DType::Float32 ? 3e37 : 1e300;
    const Tensor x =
        Tensor::from_vector({4, 2}, {big, -big, -big, big, big, big, -big, -big}, dtype);
    for (auto mode : {layers::BackwardMode::Fused, layers::BackwardMode::Autodiff,
                      layers::BackwardMode::Checked}) {
      layers::SyncBatchNormal bn(1e-5, 0.9, 0, "zero", "one", kSingle);
      bn.set_backward_mode(mode);
      try {
        bn.forward(x);
        ADD_FAILURE() << "accepted a batch whose variance overflows";
      } catch (const ValueError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("the variance of the global training batch (M = 4 elements per "
                            "feature over 1 rank) overflowed " +
                            to_string(dtype)),
                  std::string::npos)
            << what;
      }
      EXPECT_FALSE(bn.connected());
    }
  }
  layers::SyncBatchNormal bn(1e-5, 0.9, 0, "zero", "one", kSingle);
  try {
    bn.forward(Tensor::from_vector({2, 1}, {1.0, std::numeric_limits<double>::infinity()}));
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(
        std::string(e.what()).find("contains NaN or Inf (rank 0 of 1: input of shape (2, 1))"),
        std::string::npos)
        << e.what();
  }
}

TEST(DataParallel, OneRankCommunicatorTrainsAsWithoutOne) {
  auto make = [](bool with_comm) {
    set_seed(5);
    auto m = std::make_unique<model::Model>();
    m->add<layers::Linear>(4, 3);
    m->add<layers::Dense>(2, 0, "glorot_uniform", "softmax");
    m->compile("scce", "sgd");
    if (with_comm) m->set_communicator(kSingle);
    return m;
  };
  auto a = make(false), b = make(true);
  const Tensor x = Tensor::randn({5, 3}, 6);
  const Tensor y = model::one_hot({0, 1, 1, 0, 1}, 2);
  EXPECT_EQ(a->train_on_batch(x, y).loss, b->train_on_batch(x, y).loss);
  EXPECT_EQ(math::max_abs_diff(a->params()[0]->value, b->params()[0]->value).abs, 0.0);
}

}  // namespace
}  // namespace npdl
