// Equivalence under MPI (run by CTest through mpirun with 2 and 3 ranks):
// the all-reduce op and its VJP, SyncBatchNormal on shards against
// BatchNormal on the whole batch for every feature-axis case (0, 1, the last, negative),
// and data-parallel training against one process on the global batch;
// and (FitAgreement, run alone on 2 ranks) ranks that pass fit different
// data failing together.
//
// Every rank builds the whole batch from the same seeds, trains or runs its
// shard, and compares with the single-process reference it computes itself,
// so each rank's assertions are about its own numbers. Shards are uneven
// (rank r has 2 + r samples) wherever the layer allows it, or of one sample
// each where that is the case under test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "npdl.hpp"

namespace npdl {
namespace {

dist::CommunicatorPtr comm() { return dist::world(); }

// Largest |a - b| relative to the largest |b| (1 when b is all zeros).
double relative_error(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return diff / std::max(scale, 1e-300);
}

double tolerance(DType dtype) { return dtype == DType::Float64 ? 1e-10 : 1e-4; }

// First row of each rank's shard when rank r holds rows_of(r) rows.
std::int64_t first_row(int rank, std::int64_t (*rows_of)(int)) {
  std::int64_t at = 0;
  for (int r = 0; r < rank; ++r) at += rows_of(r);
  return at;
}
std::int64_t uneven(int r) { return 2 + r; }

// The same bits on every rank (the statistics and the weights must be).
void expect_identical_on_every_rank(const Tensor& t, const std::string& what) {
  const std::vector<double> mine = t.to_vector();
  const std::vector<double> all = comm()->allgather(mine.data(), std::int64_t(mine.size()));
  for (int r = 0; r < comm()->size(); ++r) {
    for (std::size_t i = 0; i < mine.size(); ++i) {
      ASSERT_EQ(all[r * mine.size() + i], all[i]) << what << " differs on rank " << r;
    }
  }
}

// ---------------------------------------------------------------- all-reduce op

TEST(AllReduceOp, ForwardSumsAndVjpSumsTheGradients) {
  const int rank = comm()->rank(), n = comm()->size();
  Graph g;
  const Var x = g.variable(Tensor::full({2, 3}, rank + 1.0, DType::Float64), "x");
  const Var y = dist::all_reduce_sum(x, comm());
  // y = sum over ranks of (r + 1) = n (n + 1) / 2, on every rank.
  EXPECT_EQ(y.value().at(0), n * (n + 1) / 2.0);
  // L = sum_r sum(y_r * u_r) with u_r = r + 1: dL/dx_s = sum_r u_r.
  y.backward(Tensor::full({2, 3}, rank + 1.0, DType::Float64));
  EXPECT_EQ(x.grad().at(5), n * (n + 1) / 2.0);
}

TEST(AllReduceOp, ShapesThatDifferAreNamedByRank) {
  const Tensor x = Tensor::zeros({2, comm()->rank() + 1});
  try {
    dist::all_reduce_sum(Var(x), comm());
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 has (2, 2)"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- SyncBatchNormal

std::int64_t one_each(int) { return 1; }

struct AxisCase {
  Shape sample;  // without the samples axis
  int axis;
  std::int64_t (*rows_of)(int) = uneven;  // samples of rank r's shard
};
const AxisCase kSpecTable[] = {
    {{4}, 0},
    {{4}, 1},
    {{4}, -1},
    {{4, 2, 3}, 1},
    {{4, 2, 3}, 0},
    {{5, 4}, -1},
    // Axes of size 1 are axes like any other.
    {{3, 1, 1}, 1},            // (N, C, 1, 1)
    {{3, 1, 1}, 0},            // every position a feature
    {{3, 1}, 1},               // (N, C, 1)
    {{3, 1}, -1},              // one feature, last
    {{1, 2, 3}, 1},            // (N, 1, H, W)
    {{2, 3, 1}, 1},            // (N, C, H, 1)
    {{2, 1, 3}, 1},            // (N, C, 1, W)
    {{2, 1, 3}, 2},            // a feature axis of size 1
    {{3, 1, 1}, 1, one_each},  // (1, C, 1, 1): M = 1 per rank, legal over the ranks
    {{2, 3, 2}, 1, one_each},  // (1, C, H, W)
};

struct SyncCase {
  AxisCase axes;
  DType dtype;
  layers::BackwardMode mode;
};

std::string sync_case_name(const ::testing::TestParamInfo<SyncCase>& info) {
  std::string n;
  for (auto d : info.param.axes.sample) n += std::to_string(d) + "_";
  n += "axis_" + (info.param.axes.axis < 0 ? "m" + std::to_string(-info.param.axes.axis)
                                           : std::to_string(info.param.axes.axis));
  if (info.param.axes.rows_of == one_each) n += "_one_sample_each";
  n += info.param.dtype == DType::Float64 ? "_f64_" : "_f32_";
  return n + layers::backward_mode_name(info.param.mode);
}

// What GoogleTest prints for a failing case's parameter (its bytes otherwise).
void PrintTo(const SyncCase& c, std::ostream* os) {
  *os << sync_case_name(::testing::TestParamInfo<SyncCase>(c, 0));
}

class SyncBatchNormalEquivalence : public ::testing::TestWithParam<SyncCase> {};

TEST_P(SyncBatchNormalEquivalence, ShardsGiveTheWholeBatchsForwardAndBackward) {
  const SyncCase& c = GetParam();
  const int rank = comm()->rank(), n = comm()->size();
  const std::int64_t total = first_row(n, c.axes.rows_of);
  Shape whole{total};
  whole.insert(whole.end(), c.axes.sample.begin(), c.axes.sample.end());
  // Offset data (mean 5, spread 0.5): E[x^2] - E[x]^2 would lose digits here.
  const Tensor x = Tensor::randn(whole, 11, c.dtype, 5.0, 0.5);
  const Tensor dy = Tensor::randn(whole, 12, c.dtype);
  const std::int64_t lo = first_row(rank, c.axes.rows_of), hi = lo + c.axes.rows_of(rank);

  layers::BatchNormal reference(1e-5, 0.8, c.axes.axis);
  reference.set_backward_mode(layers::BackwardMode::Fused);
  const Tensor y_ref = reference.forward(x);
  const Tensor dx_ref = reference.backward(dy);

  layers::SyncBatchNormal sync(1e-5, 0.8, c.axes.axis, "zero", "one", comm());
  sync.set_backward_mode(c.mode);
  const Tensor y = sync.forward(model::slice_rows(x, lo, hi));
  const Tensor dx = sync.backward(model::slice_rows(dy, lo, hi));

  const double tol = tolerance(c.dtype);
  EXPECT_LE(relative_error(y, model::slice_rows(y_ref, lo, hi)), tol);
  EXPECT_LE(relative_error(dx, model::slice_rows(dx_ref, lo, hi)), tol);
  // Parameter gradients are the rank's own sums; over the ranks they are
  // the whole batch's.
  const std::vector<Tensor> grads = sync.grads(), grads_ref = reference.grads();
  for (std::size_t i = 0; i < grads.size(); ++i) {
    Tensor summed = grads[i].clone();
    comm()->allreduce_sum(summed);
    EXPECT_LE(relative_error(summed, grads_ref[i]), tol) << (i == 0 ? "dbeta" : "dgamma");
  }
  EXPECT_LE(relative_error(sync.running_mean(), reference.running_mean()), tol);
  EXPECT_LE(relative_error(sync.running_var(), reference.running_var()), tol);
  expect_identical_on_every_rank(sync.running_mean(), "running_mean");
  expect_identical_on_every_rank(sync.running_var(), "running_var");
  // Inference uses those statistics: the same output as the reference's.
  EXPECT_LE(relative_error(sync.forward(model::slice_rows(x, lo, hi), false),
                           model::slice_rows(reference.forward(x, false), lo, hi)),
            tol);
}

// A shard of one element per feature makes M the number of ranks. With
// two, x - mean = +-sqrt(var) and dx is O(epsilon): float32 would compare
// rounding noise, so such cases run in float64 only.
bool one_element_per_feature_each(const AxisCase& a) {
  Shape shard{a.rows_of(0)};
  shard.insert(shard.end(), a.sample.begin(), a.sample.end());
  return a.rows_of == one_each && layers::batchnorm_layout(shard, a.axis).M == 1;
}

std::vector<SyncCase> all_sync_cases() {
  std::vector<SyncCase> out;
  for (const AxisCase& a : kSpecTable) {
    for (DType d : {DType::Float64, DType::Float32}) {
      if (d == DType::Float32 && one_element_per_feature_each(a)) continue;
      for (auto m : {layers::BackwardMode::Fused, layers::BackwardMode::Autodiff,
                     layers::BackwardMode::Checked}) {
        out.push_back({a, d, m});
      }
    }
  }
  return out;
}
INSTANTIATE_TEST_SUITE_P(SpecAxes, SyncBatchNormalEquivalence,
                         ::testing::ValuesIn(all_sync_cases()), sync_case_name);

TEST(SyncBatchNormal, AMismatchedShardStopsEveryRankAndNamesIt) {
  const int rank = comm()->rank();
  layers::SyncBatchNormal bn(1e-5, 0.9, 1, "zero", "one", comm());
  bn.forward(Tensor::randn({3, 4}, 1));
  const Tensor mean = bn.running_mean().clone(), var = bn.running_var().clone();
  // The last rank brings 5 features instead of 4.
  const bool odd_one = rank == comm()->size() - 1;
  const Tensor x = Tensor::randn({3, odd_one ? 5 : 4}, 2);
  try {
    bn.forward(x);
    FAIL() << "expected ShapeError on every rank";
  } catch (const ShapeError& e) {
    const std::string expected = "rank " + std::to_string(comm()->size() - 1) + " of " +
                                 std::to_string(comm()->size()) + " has an input of shape (3, 5)";
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
  EXPECT_EQ(relative_error(bn.running_mean(), mean), 0.0);
  EXPECT_EQ(relative_error(bn.running_var(), var), 0.0);
}

// Note [Statistics overflow] on the global statistics: one rank's values
// near 1e30 are finite in float32, but their squared deviations are not.
// Every rank must throw the same error at the same point (none left waiting
// in a collective), with the running statistics as they were.
TEST(SyncBatchNormal, AVarianceThatOverflowsOnOneRankStopsEveryRank) {
  const int rank = comm()->rank(), n = comm()->size();
  for (auto mode : {layers::BackwardMode::Fused, layers::BackwardMode::Autodiff,
                    layers::BackwardMode::Checked}) {
    layers::SyncBatchNormal bn(1e-5, 0.9, 1, "zero", "one", comm());
    bn.set_backward_mode(mode);
    bn.forward(Tensor::randn({3, 4}, 1));
    const Tensor mean = bn.running_mean().clone(), var = bn.running_var().clone();
    Tensor x = Tensor::randn({3, 4}, 2 + rank);
    if (rank == n - 1) x = math::scale(x, 1e30);
    ASSERT_EQ(x.dtype(), DType::Float32);
    ASSERT_TRUE(math::all_finite(x));
    try {
      bn.forward(x);
      ADD_FAILURE() << "expected ValueError on every rank";
    } catch (const ValueError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("SyncBatchNormal: the variance of the global training batch"),
                std::string::npos)
          << what;
      EXPECT_NE(what.find("overflowed float32"), std::string::npos) << what;
      EXPECT_EQ(what.find("NaN"), std::string::npos) << what;
    }
    EXPECT_EQ(relative_error(bn.running_mean(), mean), 0.0);
    EXPECT_EQ(relative_error(bn.running_var(), var), 0.0);
    EXPECT_EQ(bn.running_mean().dtype(), DType::Float32);
    // Every rank is at the same point: the next batch trains normally.
    EXPECT_TRUE(math::all_finite(bn.forward(Tensor::randn({3, 4}, 5 + rank))));
  }
}

TEST(SyncBatchNormal, NaNOnOneRankIsNamedOnEveryRank) {
  const int rank = comm()->rank(), n = comm()->size();
  layers::SyncBatchNormal bn(1e-5, 0.9, 1, "zero", "one", comm());
  bn.forward(Tensor::randn({3, 4}, 1));
  const Tensor mean = bn.running_mean().clone(), var = bn.running_var().clone();
  Tensor x = Tensor::randn({3, 4}, 2 + rank);
  if (rank == n - 1) x.data<float>()[5] = std::nanf("");
  try {
    bn.forward(x);
    FAIL() << "expected ValueError on every rank";
  } catch (const ValueError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("contains NaN or Inf (rank " + std::to_string(n - 1) + " of " +
                        std::to_string(n) + ": input of shape (3, 4))"),
              std::string::npos)
        << what;
    EXPECT_EQ(what.find("overflowed"), std::string::npos) << what;
  }
  EXPECT_EQ(relative_error(bn.running_mean(), mean), 0.0);
  EXPECT_EQ(relative_error(bn.running_var(), var), 0.0);
}

TEST(SyncBatchNormal, OneSamplePerRankIsEnoughWhenTheGlobalBatchHasTwo) {
  layers::SyncBatchNormal bn(1e-5, 0.9, 0, "zero", "one", comm());
  const Tensor y = bn.forward(Tensor::randn({1, 3}, 7 + comm()->rank(), DType::Float64));
  EXPECT_TRUE(math::all_finite(y));
}

// ---------------------------------------------------------------- data-parallel fit

// 784-like MLP in miniature: Linear - (Sync)BatchNormal - sigmoid - Dense softmax.
std::unique_ptr<model::Model> small_network(bool sync, DType dtype, const std::string& optimizer) {
  // Different seeds per rank: rank 0's weights must reach every rank.
  set_seed(sync ? 100 + comm()->rank() : 100);
  auto m = std::make_unique<model::Model>();
  m->add<layers::Linear>(6, 5);
  if (sync) {
    m->add<layers::SyncBatchNormal>(1e-5, 0.9, 0, "zero", "one", comm());
  } else {
    m->add<layers::BatchNormal>(1e-5, 0.9, 0);
  }
  m->add<layers::Activation>("sigmoid");
  m->add<layers::Dense>(3, 0, "glorot_uniform", "softmax");
  model::OptimizerOptions o;
  o.lr = 0.1;
  m->compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
             model::get_optimizer(optimizer, o));
  if (sync) m->set_communicator(comm());
  (void)dtype;
  return m;
}

Tensor all_weights(const model::Model& m) {
  std::vector<double> all;
  for (const ParameterPtr& p : m.params()) {
    const std::vector<double> v = p->value.to_vector();
    all.insert(all.end(), v.begin(), v.end());
  }
  return Tensor::from_vector({std::int64_t(all.size())}, all, DType::Float64);
}

struct TrainingData {
  Tensor X, Y;
  model::FitOptions options;
};

constexpr std::int64_t kPerRank = 4, kSteps = 20;

// kSteps global batches of kPerRank samples per rank (one epoch, silent),
// 5 features with an offset, 3 classes from `seed` and the label stride.
TrainingData twenty_global_batches(DType dtype, std::uint64_t seed, int label_stride) {
  const std::int64_t global_batch = kPerRank * comm()->size(), steps = kSteps;
  const Tensor X = Tensor::randn({global_batch * steps, 5}, seed, dtype, 1.0, 2.0);
  std::vector<int> labels;
  for (std::int64_t i = 0; i < global_batch * steps; ++i) {
    labels.push_back(int((i * label_stride) % 3));
  }
  model::FitOptions o;
  o.epochs = 1;
  o.batch_size = global_batch;
  o.log = nullptr;
  return {X, model::one_hot(labels, 3, dtype), o};
}

class DataParallelFit : public ::testing::TestWithParam<std::pair<DType, std::string>> {};

TEST_P(DataParallelFit, TwentyStepsEqualOneProcessOnTheGlobalBatch) {
  const auto [dtype, optimizer] = GetParam();
  const TrainingData data = twenty_global_batches(dtype, 21, 7);
  const Tensor& X = data.X;
  const Tensor& Y = data.Y;
  const model::FitOptions& o = data.options;

  // The reference first, silently and in one process, on every rank.
  auto single = small_network(false, dtype, optimizer);
  set_seed(7);
  const std::vector<model::EpochStats> h_single = single->fit(X, Y, o);
  auto parallel = small_network(true, dtype, optimizer);
  set_seed(7);
  const std::vector<model::EpochStats> h_parallel = parallel->fit(X, Y, o);

  ASSERT_EQ(parallel->steps(), kSteps);
  const double tol = tolerance(dtype);
  EXPECT_LE(std::abs(h_parallel[0].loss - h_single[0].loss) / std::abs(h_single[0].loss), tol);
  // Normwise over all weights: the Linear bias before BatchNormal has a
  // zero gradient in exact arithmetic, so on its own it holds round-off only.
  const double weights_error = relative_error(all_weights(*parallel), all_weights(*single));
  EXPECT_LE(weights_error, tol);
  if (comm()->rank() == 0) {  // the figures the README quotes
    std::cout << "  " << comm()->size() << " ranks x " << kPerRank << " vs 1 x " << o.batch_size
              << ", 20 steps: weights " << weights_error << ", epoch loss "
              << std::abs(h_parallel[0].loss - h_single[0].loss) / std::abs(h_single[0].loss)
              << ", running mean "
              << relative_error(
                     dynamic_cast<layers::BatchNormal&>(*parallel->layers()[1]).running_mean(),
                     dynamic_cast<layers::BatchNormal&>(*single->layers()[1]).running_mean())
              << " (relative)\n";
  }
  for (const ParameterPtr& p : parallel->params()) {
    expect_identical_on_every_rank(p->value, "parameter " + p->name);
  }
  auto* bn = dynamic_cast<layers::BatchNormal*>(parallel->layers()[1].get());
  auto* bn_ref = dynamic_cast<layers::BatchNormal*>(single->layers()[1].get());
  EXPECT_LE(relative_error(bn->running_mean(), bn_ref->running_mean()), tol);
  EXPECT_LE(relative_error(bn->running_var(), bn_ref->running_var()), tol);
  // Test-time outputs agree as well (inference: running statistics).
  EXPECT_LE(relative_error(parallel->predict(X), single->predict(X)), tol);
}

// Not Adam: it divides by the root of the squared gradients, so the bias
// before BatchNormal (gradient zero but for round-off) moves by lr times the
// round-off's sign, and any two summation orders part ways. That is Adam's
// nature, the same between 1 and 2 threads.
INSTANTIATE_TEST_SUITE_P(Optimisers, DataParallelFit,
                         ::testing::Values(std::make_pair(DType::Float64, std::string("sgd")),
                                           std::make_pair(DType::Float64, std::string("momentum")),
                                           std::make_pair(DType::Float32, std::string("momentum"))),
                         [](const auto& info) {
                           return std::string(info.param.first == DType::Float64 ? "f64_"
                                                                                 : "f32_") +
                                  info.param.second;
                         });

// Note [Overlapped gradient all-reduce]: the same training, the gradient
// all-reduces started during the backward sweep instead of after it. On 2
// ranks every element is a + b either way: the same bits. With more ranks
// MPI may associate a sum differently for another message size.
class OverlappedAllReduce : public ::testing::TestWithParam<DType> {};

TEST_P(OverlappedAllReduce, TwentyStepsGiveTheBlockingPathsWeights) {
  const DType dtype = GetParam();
  const TrainingData data = twenty_global_batches(dtype, 22, 5);
  const int n = comm()->size();
  auto train = [&](bool overlap, std::size_t bucket_bytes) {
    auto m = small_network(true, dtype, "momentum");
    model::GradientAllReduce options;
    options.overlap = overlap;
    options.bucket_bytes = bucket_bytes;
    m->set_gradient_allreduce(options);
    set_seed(9);
    m->fit(data.X, data.Y, data.options);
    EXPECT_EQ(m->steps(), kSteps);
    return all_weights(*m);
  };
  const Tensor blocking = train(false, model::Model::kGradientBucketBytes);
  // One bucket for everything, and one per gradient (each started as soon
  // as the sweep finishes it).
  for (std::size_t bucket_bytes : {model::Model::kGradientBucketBytes, std::size_t{1}}) {
    const Tensor overlapped = train(true, bucket_bytes);
    const double error = relative_error(overlapped, blocking);
    if (n == 2) {
      EXPECT_EQ(overlapped.to_vector(), blocking.to_vector()) << "buckets of " << bucket_bytes;
    } else {
      EXPECT_LE(error, tolerance(dtype)) << "buckets of " << bucket_bytes;
    }
    expect_identical_on_every_rank(overlapped, "overlapped weights");
    if (comm()->rank() == 0 && n != 2) {
      std::cout << "  overlapped vs blocking, " << n << " ranks, buckets of " << bucket_bytes
                << " bytes: weights " << error << " (relative)\n";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, OverlappedAllReduce,
                         ::testing::Values(DType::Float64, DType::Float32), [](const auto& info) {
                           return std::string(info.param == DType::Float64 ? "f64" : "f32");
                         });

// The CNN example's path in miniature (examples/fashion_mnist_cnn.cpp with
// --distributed): convolution - SyncBatchNormal over channels (axis 1, M
// over samples and positions) - relu - max-pool - flatten - Dense -
// SyncBatchNormal - relu - Dense softmax, momentum, float64. In float32 the
// example's curves part ways after some steps, as two summation orders do
// once a max-pool or relu decision flips (docs/distributed.md); in float64 none flips.
std::unique_ptr<model::Model> small_cnn(bool sync) {
  set_seed(sync ? 300 + comm()->rank() : 300);  // rank 0's weights must reach every rank
  auto m = std::make_unique<model::Model>();
  auto normalised = [&](int axis) {
    if (sync) {
      m->add<layers::SyncBatchNormal>(1e-5, 0.9, axis, "zero", "one", comm());
    } else {
      m->add<layers::BatchNormal>(1e-5, 0.9, axis);
    }
    m->add<layers::Activation>("relu");
  };
  m->add<layers::Convolution>(3, 3, Shape{1, 8, 8}, 1, "glorot_uniform", "linear");
  normalised(1);
  m->add<layers::MaxPooling>(2);
  m->add<layers::Flatten>();
  m->add<layers::Dense>(6, 0, "glorot_uniform", "linear");
  normalised(0);
  m->add<layers::Dense>(3, 0, "glorot_uniform", "softmax");
  model::OptimizerOptions o;
  o.lr = 0.05;
  m->compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
             model::get_optimizer("momentum", o));
  if (sync) m->set_communicator(comm());
  return m;
}

TEST(DataParallelCnn, TwentyStepsEqualOneProcessOnTheGlobalBatch) {
  const int n = comm()->size();
  const std::int64_t per_rank = 3, global_batch = per_rank * n, steps = 20;
  const Tensor X = Tensor::uniform({global_batch * steps, 1, 8, 8}, 31, DType::Float64, 0.0, 1.0);
  std::vector<int> labels;
  for (std::int64_t i = 0; i < global_batch * steps; ++i) labels.push_back(int((i * 5) % 3));
  const Tensor Y = model::one_hot(labels, 3, DType::Float64);
  model::FitOptions o;
  o.epochs = 1;
  o.batch_size = global_batch;
  o.log = nullptr;
  auto single = small_cnn(false);
  set_seed(8);
  const std::vector<model::EpochStats> h_single = single->fit(X, Y, o);
  auto parallel = small_cnn(true);
  set_seed(8);
  const std::vector<model::EpochStats> h_parallel = parallel->fit(X, Y, o);
  ASSERT_EQ(parallel->steps(), kSteps);
  EXPECT_LE(std::abs(h_parallel[0].loss - h_single[0].loss) / std::abs(h_single[0].loss), 1e-10);
  const double weights_error = relative_error(all_weights(*parallel), all_weights(*single));
  EXPECT_LE(weights_error, 1e-10);
  if (comm()->rank() == 0) {
    std::cout << "  CNN, " << n << " ranks x " << per_rank << " vs 1 x " << global_batch
              << ", 20 steps: weights " << weights_error << " (relative)\n";
  }
  for (const ParameterPtr& p : parallel->params()) {
    expect_identical_on_every_rank(p->value, "parameter " + p->name);
  }
  auto* bn = dynamic_cast<layers::BatchNormal*>(parallel->layers()[1].get());
  auto* bn_ref = dynamic_cast<layers::BatchNormal*>(single->layers()[1].get());
  ASSERT_NE(bn, nullptr);
  EXPECT_LE(relative_error(bn->running_var(), bn_ref->running_var()), 1e-10);
  EXPECT_LE(relative_error(parallel->predict(X), single->predict(X)), 1e-10);
}

TEST(DataParallel, SaveWritesOnceFromRankZeroAndEveryRankCanLoadIt) {
  auto m = small_network(true, DType::Float64, "sgd");
  m->train_on_batch(Tensor::randn({3, 5}, 1 + comm()->rank(), DType::Float64),
                    model::one_hot({0, 1, 2}, 3, DType::Float64));
  const std::string path = "dist_save_test_" + std::to_string(comm()->size()) + ".npdl";
  m->save(path);  // returns on every rank once rank 0 has written the file
  auto copy = small_network(true, DType::Float64, "sgd");  // other initial weights
  copy->predict(Tensor::zeros({1, 5}, DType::Float64));    // sized, and float64 as m
  copy->load(path);
  const std::vector<ParameterPtr> p = m->params(), q = copy->params();
  for (std::size_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(relative_error(q[i]->value.astype(DType::Float64), p[i]->value), 0.0);
  }
  comm()->barrier();  // everyone has read it before rank 0 removes it
  if (comm()->rank() == 0) std::remove(path.c_str());
}

// ---------------------------------------------------------------- fit's agreement

// Note [Data-parallel training]: every rank passes fit the same X, Y and
// options. Ranks that did not once parted ways: with more samples on one
// rank it trained a step more while the others waited for ever, or rank 0's
// larger shuffle ended in MPI_ERR_TRUNCATE. Now every rank throws the same
// ShapeError before any step, naming what each rank has, and the model is
// as it was. CTest runs these alone with a short timeout
// (mpi_fit_agreement_2_ranks), so that a hang shows as a failure.

std::string rank_of(int r) {
  return "rank " + std::to_string(r) + " of " + std::to_string(comm()->size());
}

// `rows` samples of `features` features, 3 classes; the global batch is
// 4 samples per rank.
TrainingData data_of(std::int64_t rows, std::int64_t features = 5, DType dtype = DType::Float64) {
  std::vector<int> labels;
  for (std::int64_t i = 0; i < rows; ++i) labels.push_back(int(i % 3));
  model::FitOptions o;
  o.epochs = 1;
  o.batch_size = 4 * comm()->size();
  o.log = nullptr;
  return {Tensor::randn({rows, features}, 50, dtype), model::one_hot(labels, 3, dtype), o};
}

// A model with state to lose: one data-parallel step taken (rank 0's
// weights broadcast, momentum's velocities, running statistics).
std::unique_ptr<model::Model> after_one_step() {
  auto m = small_network(true, DType::Float64, "momentum");
  const TrainingData d = data_of(3);
  m->train_on_batch(d.X, d.Y);
  return m;
}

std::vector<double> state_of(const model::Model& m) {
  std::vector<double> all = all_weights(m).to_vector();
  for (const auto& l : m.layers()) {
    if (const auto* bn = dynamic_cast<const layers::BatchNormal*>(l.get())) {
      for (const Tensor& t : {bn->running_mean(), bn->running_var()}) {
        if (!t.defined()) continue;  // not built yet
        const std::vector<double> v = t.to_vector();
        all.insert(all.end(), v.begin(), v.end());
      }
    }
  }
  all.push_back(double(m.steps()));
  all.push_back(double(m.optimizer()->iterations()));
  return all;
}

// fit must throw the same ShapeError on every rank, holding every needle,
// and leave the model as it was.
void expect_refused_on_every_rank(model::Model& m, const TrainingData& d,
                                  const std::vector<std::string>& needles) {
  const std::vector<double> before = state_of(m);
  std::string message;
  try {
    m.fit(d.X, d.Y, d.options);
    ADD_FAILURE() << "expected a ShapeError on " << rank_of(comm()->rank());
  } catch (const ShapeError& e) {
    message = e.what();
  }
  for (const std::string& needle : needles) {
    EXPECT_NE(message.find(needle), std::string::npos) << "'" << needle << "' not in " << message;
  }
  for (const std::string& other : comm()->allgather(message)) EXPECT_EQ(other, message);
  EXPECT_EQ(state_of(m), before);
}

TEST(FitAgreement, RankZeroWithMoreSamplesStopsEveryRank) {
  const int n = comm()->size();
  auto m = after_one_step();
  const TrainingData d = data_of(comm()->rank() == 0 ? 12 * n : 8 * n);
  expect_refused_on_every_rank(
      *m, d,
      {"every rank must pass fit the same X and Y",
       rank_of(0) + " has X of shape (" + std::to_string(12 * n) + ", 5) float64",
       rank_of(n - 1) + " has X of shape (" + std::to_string(8 * n) + ", 5) float64"});
}

TEST(FitAgreement, LastRankWithMoreSamplesStopsEveryRank) {
  const int n = comm()->size();
  auto m = after_one_step();
  const TrainingData d = data_of(comm()->rank() == n - 1 ? 12 * n : 8 * n);
  expect_refused_on_every_rank(
      *m, d,
      {rank_of(0) + " has X of shape (" + std::to_string(8 * n) + ", 5)",
       rank_of(n - 1) + " has X of shape (" + std::to_string(12 * n) + ", 5)"});
}

// Unbuilt, so that no rank's first layer refuses its samples on its own:
// only the comparison of the ranks' shapes can find the odd one.
TEST(FitAgreement, AnotherFeatureShapeOnTheLastRankStopsEveryRank) {
  const int n = comm()->size();
  auto m = std::make_unique<model::Model>();
  m->add<layers::Linear>(6);
  m->add<layers::SyncBatchNormal>(1e-5, 0.9, 0, "zero", "one", comm());
  m->add<layers::Dense>(3, 0, "glorot_uniform", "softmax");
  m->compile("scce", "momentum");
  m->set_communicator(comm());
  const TrainingData d = data_of(8 * n, comm()->rank() == n - 1 ? 6 : 5);
  expect_refused_on_every_rank(
      *m, d,
      {rank_of(0) + " has X of shape (" + std::to_string(8 * n) + ", 5)",
       rank_of(n - 1) + " has X of shape (" + std::to_string(8 * n) + ", 6)"});
  EXPECT_TRUE(m->params().empty()) << "built despite the error";
}

TEST(FitAgreement, AnotherDtypeOnTheLastRankStopsEveryRank) {
  const int n = comm()->size();
  auto m = after_one_step();
  const TrainingData d =
      data_of(8 * n, 5, comm()->rank() == n - 1 ? DType::Float32 : DType::Float64);
  expect_refused_on_every_rank(
      *m, d,
      {rank_of(0) + " has X of shape (" + std::to_string(8 * n) + ", 5) float64 and Y of shape (" +
           std::to_string(8 * n) + ", 3) float64",
       rank_of(n - 1) + " has X of shape (" + std::to_string(8 * n) +
           ", 5) float32 and Y of shape (" + std::to_string(8 * n) + ", 3) float32"});
}

TEST(FitAgreement, OtherOptionsOnTheLastRankStopEveryRank) {
  const int n = comm()->size();
  auto m = after_one_step();
  TrainingData d = data_of(8 * n);
  if (comm()->rank() == n - 1) d.options.epochs = 2;
  expect_refused_on_every_rank(*m, d,
                               {"batch_size " + std::to_string(4 * n) + ", epochs 1",
                                rank_of(n - 1) + " has X", "epochs 2"});
}

// A check that fails on one rank only (its Y one sample short) fails on
// every rank, naming the rank, instead of leaving the others in a step.
TEST(FitAgreement, ABadBatchOnOneRankStopsEveryRank) {
  const int n = comm()->size();
  auto m = after_one_step();
  TrainingData d = data_of(8 * n);
  if (comm()->rank() == n - 1) d.Y = model::slice_rows(d.Y, 0, 8 * n - 1);
  expect_refused_on_every_rank(
      *m, d,
      {rank_of(n - 1) + ": Model.fit: X and Y must hold the same number of samples",
       std::to_string(8 * n - 1) + " samples"});
}

}  // namespace
}  // namespace npdl

int main(int argc, char** argv) {
  npdl::dist::MpiSession session(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  double failed = ::testing::UnitTest::GetInstance()->Run() != 0 ? 1.0 : 0.0;
  session.world()->allreduce_max(&failed, 1);
  return failed != 0.0 ? 1 : 0;
}
