// What may run concurrently (docs/reliability.md, "Threads"), each case
// exactly as that page states it, on std::threads. The results must be those of the same
// work done on one thread, bit for bit; run under ThreadSanitizer
// (scripts/run-tests.sh --tsan) these tests also prove the absence of data
// races on those paths.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
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

// Note [Claimed chunks] in tensor/parallel.cpp: whoever is awake claims
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

// Note [Exceptions across threads] in tensor/parallel.cpp. The tests below
// run jobs of get_num_threads() one-item chunks. The caller's chunk waits
// until a worker has started one, so that both kinds of thread hold a chunk
// of the job when one of them throws.

/// What one job's chunks did. Made afresh for each job and freed as soon as
/// parallel_for returns: a chunk that ran after that would touch freed
/// memory (AddressSanitizer) or still count as running.
struct JobLog {
  explicit JobLog(int items) : runs(static_cast<std::size_t>(items)) {}
  std::vector<std::atomic<int>> runs;  // per item, times run
  std::atomic<int> running{0};
  std::atomic<bool> caller_ran{false}, worker_ran{false};
  std::atomic<bool> caller_throwing{false};
};

struct JobOutcome {
  std::exception_ptr error;  // what reached the caller of parallel_for
  bool caller_ran = false, worker_ran = false;
};

// Long enough for any scheduler to run a woken worker, short enough that a
// pool that never runs one fails the test instead of hanging it.
void wait_for(const std::atomic<bool>& flag) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!flag.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
}

/// Runs such a job with body(on_caller, log) in every chunk. Fails the test
/// when a chunk still runs after parallel_for returned or an item ran twice.
template <class Body>
JobOutcome run_split_job(Body&& body) {
  const int items = get_num_threads();
  auto log = std::make_unique<JobLog>(items);
  const std::thread::id caller = std::this_thread::get_id();
  JobOutcome outcome;
  try {
    parallel_for(items, 1, [&](std::int64_t first, std::int64_t last) {
      ++log->running;
      struct Leave {
        std::atomic<int>& running;
        ~Leave() { --running; }
      } leave{log->running};
      for (std::int64_t i = first; i < last; ++i) ++log->runs[static_cast<std::size_t>(i)];
      const bool on_caller = std::this_thread::get_id() == caller;
      (on_caller ? log->caller_ran : log->worker_ran) = true;
      if (on_caller && last - first < items) wait_for(log->worker_ran);
      body(on_caller, *log);
    });
  } catch (...) {
    outcome.error = std::current_exception();
  }
  EXPECT_EQ(log->running.load(), 0) << "a chunk still ran after parallel_for returned";
  for (const std::atomic<int>& r : log->runs) EXPECT_LE(r.load(), 1) << "an item ran twice";
  outcome.caller_ran = log->caller_ran;
  outcome.worker_ran = log->worker_ran;
  return outcome;
}

/// The message of `error` if it is an E, else a description of what it is.
template <class E>
std::string message_if(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("another type: ") + e.what();
  } catch (...) {
    return "not a std::exception";
  }
}

constexpr int kJobsPerCase = 200;

TEST(Threads, AnErrorInAWorkersChunkReachesTheCallerOnceWithItsType) {
  ThreadCountGuard restore;
  for (int threads : {2, 4}) {
    set_num_threads(threads);
    int worker_failures = 0;
    for (int job = 0; job < kJobsPerCase; ++job) {
      const bool bad_alloc = job % 2 == 1;
      const JobOutcome out = run_split_job([&](bool on_caller, JobLog&) {
        if (on_caller) return;
        if (bad_alloc) throw std::bad_alloc();
        throw ShapeError("worker chunk");
      });
      ASSERT_EQ(out.error != nullptr, out.worker_ran) << threads << " threads, job " << job;
      if (out.error == nullptr) continue;
      ++worker_failures;
      if (bad_alloc) {
        EXPECT_EQ(message_if<std::bad_alloc>(out.error), std::bad_alloc().what());
      } else {
        EXPECT_EQ(message_if<ShapeError>(out.error), "worker chunk");
      }
    }
    EXPECT_GT(worker_failures, 0) << "no worker ran a chunk at " << threads << " threads";
  }
}

/// Throws from the caller's chunk while the workers' chunks are still busy
/// (each lasts until a little after the caller's has thrown).
void throw_from_the_callers_chunk(bool on_caller, JobLog& log) {
  if (on_caller) {
    log.caller_throwing = true;
    throw ValueError("caller chunk");
  }
  wait_for(log.caller_throwing);
  std::this_thread::sleep_for(std::chrono::microseconds(200));
}

TEST(Threads, AnErrorInTheCallersChunkWaitsForTheWorkersChunks) {
  ThreadCountGuard restore;
  // The first exception of a process is slow to unwind (the unwinder reads
  // its tables): outside the jobs, so that the caller's error leaves its
  // chunk while the workers' chunks still run.
  EXPECT_THROW(throw ValueError("warm-up"), ValueError);
  for (int threads : {2, 4}) {
    set_num_threads(threads);
    int caller_failures = 0;
    for (int job = 0; job < kJobsPerCase / 4; ++job) {
      const JobOutcome out = run_split_job(throw_from_the_callers_chunk);
      ASSERT_EQ(out.error != nullptr, out.caller_ran) << threads << " threads, job " << job;
      if (out.error == nullptr) continue;
      ++caller_failures;
      EXPECT_EQ(message_if<ValueError>(out.error), "caller chunk");
    }
    EXPECT_GT(caller_failures, 0) << "the caller ran no chunk at " << threads << " threads";
  }
}

// Every chunk throws: one error reaches the caller, whichever came first.
TEST(Threads, WhenEveryChunkThrowsOneErrorReachesTheCaller) {
  ThreadCountGuard restore;
  set_num_threads(4);
  for (int job = 0; job < kJobsPerCase; ++job) {
    const JobOutcome out = run_split_job(
        [&](bool on_caller, JobLog&) { throw GraphError(on_caller ? "caller" : "worker"); });
    const std::string what = message_if<GraphError>(out.error);
    EXPECT_TRUE(what == "caller" || what == "worker") << what;
  }
}

/// How many chunks parallel_for splits a large range into.
int chunks_of_a_large_range() {
  std::atomic<int> calls{0};
  parallel_for(1 << 20, 1, [&](std::int64_t, std::int64_t) { ++calls; });
  return calls.load();
}

// A chunk marks its thread as inside a parallel region (nested parallel_for
// runs inline there); an error thrown out of the caller's chunk used to
// leave the mark, and every later parallel_for on that thread ran as one
// chunk.
TEST(Threads, ThePoolSplitsWorkAgainAfterAnError) {
  ThreadCountGuard restore;
  set_num_threads(2);
  ASSERT_EQ(chunks_of_a_large_range(), 2);
  bool caller_threw = false;
  for (int job = 0; job < kJobsPerCase && !caller_threw; ++job) {
    caller_threw = run_split_job(throw_from_the_callers_chunk).error != nullptr;
  }
  ASSERT_TRUE(caller_threw) << "the caller ran no chunk";
  EXPECT_EQ(chunks_of_a_large_range(), 2);
  std::atomic<int> nested_splits{0};
  parallel_for(2, 1, [&](std::int64_t, std::int64_t) {
    if (chunks_of_a_large_range() != 1) ++nested_splits;
  });
  EXPECT_EQ(nested_splits.load(), 0) << "a parallel_for within a chunk must run inline";
}

// A parallel_for within a chunk runs inline, in that chunk's thread: an
// error thrown there leaves through the outer chunk like any other.
TEST(Threads, AnErrorInANestedParallelForReachesTheOutermostCaller) {
  ThreadCountGuard restore;
  for (int threads : {2, 4}) {
    set_num_threads(threads);
    int failures = 0;
    for (int job = 0; job < kJobsPerCase / 2; ++job) {
      const JobOutcome out = run_split_job([&](bool on_caller, JobLog&) {
        int inner_chunks = 0;
        parallel_for(1 << 16, 1, [&](std::int64_t, std::int64_t) {
          ++inner_chunks;
          if (!on_caller) throw AxisError("nested");
        });
        EXPECT_EQ(inner_chunks, 1);
      });
      ASSERT_EQ(out.error != nullptr, out.worker_ran);
      if (out.error == nullptr) continue;
      ++failures;
      EXPECT_EQ(message_if<AxisError>(out.error), "nested");
    }
    EXPECT_GT(failures, 0) << "no worker ran a chunk at " << threads << " threads";
    EXPECT_EQ(chunks_of_a_large_range(), threads);
  }
}

Tensor small_convolution(const Tensor& x, const Tensor& w) {
  NoGradGuard no_grad;
  return ops::conv2d(Var(x), Var(w), 1, {1, 1, 1, 1}).value();
}

// The failure first reported: a convolution whose im2col buffer cannot be
// allocated, while its input, filters and output can. 65,536 channels and
// an output plane of 4097 x 4097 (from padding) make a 4 TiB buffer per
// sample; the output (128 MiB) is never written. Each sample is a chunk of
// its own, so the MemoryError is thrown on the caller and on workers.
TEST(Threads, AConvolutionWhoseBufferCannotBeAllocatedIsAMemoryErrorAtAnyThreadCount) {
  ThreadCountGuard restore;
  const std::int64_t channels = 1 << 16;
  const Tensor x = Tensor::randn({2, channels, 1, 1}, 1);
  const ParameterPtr w = make_parameter(Tensor::randn({1, channels, 1, 1}, 2), "w");
  const Tensor w_before = w->value.clone();
  const ops::Padding2d padding{2048, 2048, 2048, 2048};
  const Tensor small_x = Tensor::randn({8, 3, 9, 9}, 3), small_w = Tensor::randn({4, 3, 3, 3}, 4);
  set_num_threads(1);
  const Tensor expected = small_convolution(small_x, small_w);
  for (int threads : {1, 2, 4}) {
    set_num_threads(threads);
    for (int round = 0; round < 10; ++round) {
      Graph g;
      const Var xv = g.input(x), wv = g.param(w);
      const std::size_t vertices = g.size();
      EXPECT_THROW(ops::conv2d(xv, wv, 1, padding), MemoryError) << threads << " threads";
      EXPECT_EQ(g.size(), vertices) << "the failed op left a vertex";
    }
    EXPECT_EQ(chunks_of_a_large_range(), threads);
    EXPECT_TRUE(bit_identical(small_convolution(small_x, small_w), expected)) << threads;
  }
  EXPECT_TRUE(bit_identical(w->value, w_before));
  EXPECT_FALSE(w->grad.defined());
}

}  // namespace
}  // namespace npdl
