// What may run concurrently (README, "Threads"), each case exactly as the
// README states it, on std::threads. The results must be those of the same
// work done on one thread, bit for bit; run under ThreadSanitizer
// (scripts/run-tests.sh --tsan) these tests also prove the absence of data
// races on those paths.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "npdl.hpp"

namespace npdl {
namespace {

using model::FitOptions;
using model::Model;

bool bit_identical(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

/// Restores the thread count a test changed.
class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(get_num_threads()) {}
  ~ThreadCountGuard() { set_num_threads(saved_); }

 private:
  int saved_;
};

/// One graph's work: a loss of the shared weight (read only, as a constant)
/// and the thread's own variable; returns the variable's gradient.
Tensor gradient_through_shared(const ParameterPtr& shared, const Tensor& x) {
  Graph g;
  const Var v = g.variable(x);
  const Var w(shared->value);  // untracked: the graph reads it, never writes
  const Var loss = ops::sum(ops::tanh(ops::matmul(v, w)));
  g.backward(loss);
  return v.grad();
}

TEST(Threads, TwoGraphsOnTwoThreadsShareAParameterReadOnly) {
  const ParameterPtr shared = make_parameter(Tensor::randn({64, 32}, 1), "W");
  const Tensor x0 = Tensor::randn({16, 64}, 2), x1 = Tensor::randn({16, 64}, 3);
  const Tensor expected0 = gradient_through_shared(shared, x0);
  const Tensor expected1 = gradient_through_shared(shared, x1);
  const Tensor weight_before = shared->value.clone();
  for (int round = 0; round < 20; ++round) {
    Tensor got0, got1;
    std::thread t0([&] { got0 = gradient_through_shared(shared, x0); });
    std::thread t1([&] { got1 = gradient_through_shared(shared, x1); });
    t0.join();
    t1.join();
    ASSERT_TRUE(bit_identical(got0, expected0)) << "round " << round;
    ASSERT_TRUE(bit_identical(got1, expected1)) << "round " << round;
  }
  EXPECT_TRUE(bit_identical(shared->value, weight_before));
}

void build_small_mlp(Model& m) {
  m.add<layers::Linear>(24, 12);
  m.add<layers::BatchNormal>();
  m.add<layers::Activation>("relu");
  m.add<layers::Dense>(3, 0, "glorot_uniform", "softmax");
}

/// Trains a fresh model from `seed` (the generator is per thread: seeding
/// one thread does not disturb another) and returns its predictions.
Tensor train_from_seed(std::uint64_t seed) {
  set_seed(seed);
  Model m;
  build_small_mlp(m);
  m.compile("scce", "momentum");
  const Tensor x = Tensor::randn({64, 12}, seed + 1);
  std::vector<int> labels;
  for (int i = 0; i < 64; ++i) labels.push_back(static_cast<int>((seed + i) % 3));
  FitOptions quiet;
  quiet.epochs = 3;
  quiet.batch_size = 16;
  quiet.log = nullptr;
  m.fit(x, model::one_hot(labels, 3), quiet);
  return m.predict(x);
}

TEST(Threads, TwoModelsTrainOnTwoThreadsAtOnce) {
  const Tensor expected0 = train_from_seed(10), expected1 = train_from_seed(20);
  Tensor got0, got1;
  std::thread t0([&] { got0 = train_from_seed(10); });
  std::thread t1([&] { got1 = train_from_seed(20); });
  t0.join();
  t1.join();
  EXPECT_TRUE(bit_identical(got0, expected0));
  EXPECT_TRUE(bit_identical(got1, expected1));
}

/// Elementwise work large enough that kernels split across the pool; its
/// result does not depend on how it is split.
Tensor pool_work(const Tensor& a, const Tensor& b) {
  NoGradGuard no_grad;
  return ops::add(ops::mul(ops::exp(Var(a)), Var(b)), Var(a)).value();
}

// Regression (graph fuzzer): exp of a float32 (98265, 2) tensor differed in
// the last bit between 1 and 2 threads, because the chunk boundary sent the
// elements around it through Eigen's scalar path instead of its packets.
// Odd sizes, both dtypes, every elementwise op whose packet and scalar
// versions can round differently.
TEST(Threads, KernelsGiveTheSameBitsAtOneAndTwoThreads) {
  ThreadCountGuard restore;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (std::int64_t n : {std::int64_t{196530}, 2 * kElementGrain + 6, 3 * kElementGrain + 14}) {
      const Tensor x = Tensor::uniform({n}, 8, dtype, -3, 3);
      auto all_ops = [&] {
        NoGradGuard no_grad;
        const Var v(x);
        return std::vector<Tensor>{ops::exp(v).value(),
                                   ops::tanh(v).value(),
                                   ops::sigmoid(v).value(),
                                   ops::softplus(v).value(),
                                   ops::log(ops::add_scalar(ops::square(v), 1.0)).value(),
                                   ops::rsqrt(ops::add_scalar(ops::square(v), 1.0)).value(),
                                   ops::log_softmax(ops::reshape(v, {-1, 2})).value()};
      };
      set_num_threads(1);
      const std::vector<Tensor> one = all_ops();
      set_num_threads(2);
      const std::vector<Tensor> two = all_ops();
      for (std::size_t i = 0; i < one.size(); ++i) {
        EXPECT_TRUE(bit_identical(one[i], two[i]))
            << "op " << i << ", " << to_string(dtype) << ", " << n << " elements";
      }
    }
  }
}

TEST(Threads, SetNumThreadsWhileOtherThreadsRunKernels) {
  ThreadCountGuard restore;
  const std::int64_t n = 4 * kElementGrain;
  const Tensor a = Tensor::randn({n}, 6), b = Tensor::randn({n}, 7);
  set_num_threads(1);
  const Tensor expected = pool_work(a, b);
  std::atomic<bool> stop{false};
  std::atomic<int> mismatches{0}, runs{0};
  auto worker = [&] {
    while (!stop.load()) {
      if (!bit_identical(pool_work(a, b), expected)) ++mismatches;
      ++runs;
    }
  };
  std::thread w0(worker), w1(worker);
  for (int i = 0; i < 60; ++i) {
    set_num_threads(1 + i % 3);  // 1, 2, 3: shrinking and growing the pool
    std::this_thread::yield();
  }
  // Make sure both workers overlapped with the changes at least a little.
  while (runs.load() < 4) std::this_thread::yield();
  stop = true;
  w0.join();
  w1.join();
  EXPECT_EQ(mismatches.load(), 0) << "of " << runs.load() << " runs";
}

// Note [Claimed chunks] in autodiff/parallel.cpp: whoever is awake claims
// the next chunk. Many short jobs in a row (so workers wake late and meet
// the next job), three threads on two cores, and a slow item now and then:
// every item of every job must run exactly once.
TEST(Threads, EveryChunkRunsExactlyOnceWhateverThreadClaimsIt) {
  ThreadCountGuard restore;
  set_num_threads(3);
  constexpr int kJobs = 2000, kChunks = 5;
  std::vector<std::atomic<int>> runs(kJobs * kChunks);
  for (int job = 0; job < kJobs; ++job) {
    parallel_for(kChunks, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t c = first; c < last; ++c) {
        if ((job + c) % 97 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        runs[static_cast<std::size_t>(job * kChunks + c)].fetch_add(1);
      }
    });
  }
  int wrong = 0;
  for (const std::atomic<int>& r : runs) wrong += r.load() != 1;
  EXPECT_EQ(wrong, 0) << "items run other than once";
}

}  // namespace
}  // namespace npdl
