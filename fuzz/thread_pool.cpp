// Fuzz target for the thread pool's handling of exceptions: parallel_for
// jobs whose chunks throw, on the caller's thread or a worker's, nested or
// not, at 1 to 4 threads.
//
// The input decides the thread count and up to 8 jobs. Each job has a size
// and a grain, up to 3 items that throw (each its own kind: npdl's
// ShapeError, ValueError or MemoryError, std::bad_alloc, a std::exception
// that is not npdl's, or an int), whether every item runs a nested
// parallel_for (the throw then happens inside it), and items that pause,
// so that chunks overlap in different ways. After each job the harness
// checks:
//   - no item ran twice, and no chunk was still running when parallel_for
//     returned (nor starts later: the log is checked again after the next
//     job);
//   - an exception reached the caller exactly when an item threw, and it is
//     one of the thrown ones, with its type and message;
//   - with no throw, every item ran once.
// After the jobs, a large range still splits into get_num_threads() chunks
// (a failed job once left its thread running everything as one chunk), and
// a matrix product and a convolution that need the pool give the same bits
// as at one thread. Any other outcome prints the case and aborts.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "autodiff/graph.hpp"
#include "ops/conv.hpp"
#include "ops/ops.hpp"
#include "tensor/error.hpp"
#include "tensor/parallel.hpp"
#include "tensor/tensor_math.hpp"

namespace {

using npdl::Tensor;

enum class Throw : std::uint8_t { kShape, kValue, kMemory, kBadAlloc, kStd, kInt, kCount };

struct Thrower {
  std::int64_t item;
  Throw kind;
};

struct Job {
  std::int64_t items = 0, grain = 1;
  std::vector<Thrower> throwers;
  bool nested = false;
  std::vector<std::int64_t> pauses;  // items that yield for a while first
};

/// What a job's chunks did; outlives the job so that a late chunk is seen.
struct Log {
  explicit Log(std::int64_t items) : runs(static_cast<std::size_t>(items)) {}
  std::vector<std::atomic<int>> runs;
  std::atomic<int> running{0};
  std::atomic<std::int64_t> thrown_mask{0};  // bit i: throwers[i] threw
};

[[noreturn]] void finding(const Job& job, int threads, const std::string& what) {
  std::fprintf(stderr, "thread_pool: %s\n  threads %d, items %lld, grain %lld, nested %d\n",
               what.c_str(), threads, static_cast<long long>(job.items),
               static_cast<long long>(job.grain), job.nested ? 1 : 0);
  for (const Thrower& t : job.throwers) {
    std::fprintf(stderr, "  item %lld throws kind %d\n", static_cast<long long>(t.item),
                 static_cast<int>(t.kind));
  }
  std::abort();
}

std::string message_of(std::int64_t item) { return "item " + std::to_string(item); }

[[noreturn]] void throw_kind(Throw kind, std::int64_t item) {
  switch (kind) {
    case Throw::kShape:
      throw npdl::ShapeError(message_of(item));
    case Throw::kValue:
      throw npdl::ValueError(message_of(item));
    case Throw::kMemory:
      throw npdl::MemoryError(message_of(item));
    case Throw::kBadAlloc:
      throw std::bad_alloc();
    case Throw::kStd:
      throw std::runtime_error(message_of(item));
    default:
      throw static_cast<int>(item);
  }
}

Job read_job(FuzzedDataProvider& in) {
  Job job;
  job.items = in.ConsumeIntegralInRange<std::int64_t>(0, 4096);
  job.grain = in.ConsumeIntegralInRange<std::int64_t>(1, std::max<std::int64_t>(1, job.items));
  if (in.ConsumeBool()) job.grain = 1;  // as many chunks as threads
  const int throwers = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < throwers && job.items > 0; ++i) {
    const std::int64_t item = in.ConsumeIntegralInRange<std::int64_t>(0, job.items - 1);
    bool taken = false;
    for (const Thrower& t : job.throwers) taken = taken || t.item == item;
    if (taken) continue;
    const auto kind =
        static_cast<Throw>(in.ConsumeIntegralInRange<int>(0, static_cast<int>(Throw::kCount) - 1));
    job.throwers.push_back({item, kind});
  }
  job.nested = in.ConsumeBool();
  const int pauses = in.ConsumeIntegralInRange(0, 2);
  for (int i = 0; i < pauses && job.items > 0; ++i) {
    job.pauses.push_back(in.ConsumeIntegralInRange<std::int64_t>(0, job.items - 1));
  }
  return job;
}

/// Runs item `i` of `job`: counts it, pauses or throws as the job says.
void run_item(const Job& job, Log& log, std::int64_t i) {
  ++log.runs[static_cast<std::size_t>(i)];
  for (std::int64_t p : job.pauses) {
    if (p == i) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  for (std::size_t t = 0; t < job.throwers.size(); ++t) {
    if (job.throwers[t].item != i) continue;
    log.thrown_mask |= std::int64_t{1} << t;
    throw_kind(job.throwers[t].kind, i);
  }
}

/// Whether `error` is what throwers[t] threw, for some t that did throw.
bool is_one_thrown(const Job& job, std::int64_t mask, const std::exception_ptr& error) {
  for (std::size_t t = 0; t < job.throwers.size(); ++t) {
    if ((mask >> t & 1) == 0) continue;
    const std::string expected = message_of(job.throwers[t].item);
    try {
      std::rethrow_exception(error);
    } catch (const npdl::ShapeError& e) {
      if (job.throwers[t].kind == Throw::kShape && e.what() == expected) return true;
    } catch (const npdl::ValueError& e) {
      if (job.throwers[t].kind == Throw::kValue && e.what() == expected) return true;
    } catch (const npdl::MemoryError& e) {
      if (job.throwers[t].kind == Throw::kMemory && e.what() == expected) return true;
    } catch (const std::bad_alloc&) {
      if (job.throwers[t].kind == Throw::kBadAlloc) return true;
    } catch (const std::runtime_error& e) {
      if (job.throwers[t].kind == Throw::kStd && e.what() == expected) return true;
    } catch (int item) {
      if (job.throwers[t].kind == Throw::kInt && item == job.throwers[t].item) return true;
    } catch (...) {
      return false;
    }
  }
  return false;
}

void run_and_check(const Job& job, Log& log, int threads) {
  std::exception_ptr error;
  try {
    npdl::parallel_for(job.items, job.grain, [&](std::int64_t first, std::int64_t last) {
      ++log.running;
      struct Leave {
        std::atomic<int>& running;
        ~Leave() { --running; }
      } leave{log.running};
      if (!job.nested) {
        for (std::int64_t i = first; i < last; ++i) run_item(job, log, i);
        return;
      }
      // Within a chunk a parallel_for runs inline, on this thread.
      npdl::parallel_for(last - first, 1, [&](std::int64_t lo, std::int64_t hi) {
        for (std::int64_t i = first + lo; i < first + hi; ++i) run_item(job, log, i);
      });
    });
  } catch (...) {
    error = std::current_exception();
  }
  if (log.running.load() != 0)
    finding(job, threads, "a chunk still ran after parallel_for returned");
  bool all_once = true;
  for (const std::atomic<int>& r : log.runs) {
    if (r.load() > 1) finding(job, threads, "an item ran twice");
    all_once = all_once && r.load() == 1;
  }
  const std::int64_t mask = log.thrown_mask.load();
  if ((mask != 0) != (error != nullptr)) {
    finding(job, threads,
            mask != 0 ? "an item threw and parallel_for returned normally"
                      : "parallel_for threw though no item did");
  }
  if (error != nullptr && !is_one_thrown(job, mask, error)) {
    finding(job, threads, "the exception that reached the caller is not one that was thrown");
  }
  if (error == nullptr && !all_once) finding(job, threads, "an item did not run");
}

/// Chunks a large range is split into.
int chunks_of_a_large_range() {
  std::atomic<int> chunks{0};
  npdl::parallel_for(1 << 20, 1, [&](std::int64_t, std::int64_t) { ++chunks; });
  return chunks.load();
}

/// A product and a convolution large enough to be shared among threads.
std::vector<Tensor> pool_users() {
  npdl::NoGradGuard no_grad;
  static const Tensor a = Tensor::randn({256, 128}, 1), b = Tensor::randn({128, 96}, 2);
  static const Tensor x = Tensor::randn({8, 3, 12, 12}, 3), w = Tensor::randn({4, 3, 3, 3}, 4);
  return {npdl::math::matmul(a, b),
          npdl::ops::conv2d(npdl::Var(x), npdl::Var(w), 1, {1, 1, 1, 1}).value()};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  return x == y;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<Tensor> expected = [] {
    npdl::set_num_threads(1);
    return pool_users();
  }();
  FuzzedDataProvider in(data, size);
  const int threads = in.ConsumeIntegralInRange(1, 4);
  npdl::set_num_threads(threads);
  const int jobs = in.ConsumeIntegralInRange(1, 8);
  std::unique_ptr<Log> previous;
  Job previous_job;
  std::vector<int> previous_runs;
  for (int j = 0; j < jobs; ++j) {
    const Job job = read_job(in);
    auto log = std::make_unique<Log>(job.items);
    run_and_check(job, *log, threads);
    // A chunk of the previous job must not have started since it returned.
    if (previous != nullptr) {
      for (std::size_t i = 0; i < previous_runs.size(); ++i) {
        if (previous->runs[i].load() != previous_runs[i]) {
          finding(previous_job, threads, "a chunk ran after parallel_for returned");
        }
      }
    }
    previous_runs.assign(log->runs.size(), 0);
    for (std::size_t i = 0; i < log->runs.size(); ++i) previous_runs[i] = log->runs[i].load();
    previous = std::move(log);
    previous_job = job;
  }
  if (chunks_of_a_large_range() != threads) {
    finding(previous_job, threads, "after the jobs a large range is not split among the threads");
  }
  const std::vector<Tensor> got = pool_users();
  for (std::size_t k = 0; k < got.size(); ++k) {
    if (!same_bits(got[k], expected[k])) {
      finding(previous_job, threads, "after the jobs a product or convolution changed its bits");
    }
  }
  return 0;
}
