#include "autodiff/parallel.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "autodiff/error.hpp"

namespace npdl {
namespace {

int threads_from_environment() {
  const char* env = std::getenv("NPDL_NUM_THREADS");
  if (env == nullptr) return 1;
  const int n = std::atoi(env);
  return n >= 1 ? n : 1;
}

// A fixed set of workers that each run one chunk of the current job. Kept
// alive between jobs: starting threads per kernel would cost more than the
// kernels on small tensors.
class Pool {
 public:
  ~Pool() { resize(0); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    stop_ = false;
    // Workers start having seen the current generation, so they wait for the next job.
    for (int i = 1; i < threads; ++i)
      workers_.emplace_back([this, i, g = generation_] { work(i, g); });
  }

  void run(int chunks, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    {
      std::lock_guard<std::mutex> g(mutex_);
      job_ = &job;
      chunks_ = chunks;
      pending_ = chunks - 1;
      ++generation_;
    }
    wake_.notify_all();
    job(0);
    std::unique_lock<std::mutex> g(mutex_);
    done_.wait(g, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void work(int index, std::uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* job = nullptr;
      {
        std::unique_lock<std::mutex> g(mutex_);
        wake_.wait(g, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= chunks_) continue;
        job = job_;
      }
      (*job)(index);
      {
        std::lock_guard<std::mutex> g(mutex_);
        --pending_;
      }
      done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_, run_mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int chunks_ = 0;
  int pending_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool instance;
  static const bool initialised = [] {
    instance.resize(threads_from_environment());
    return true;
  }();
  (void)initialised;
  return instance;
}

thread_local bool in_parallel_region = false;

}  // namespace

void set_num_threads(int n) {
  if (n < 1) {
    throw ValueError("set_num_threads expects a thread count >= 1, got " + std::to_string(n));
  }
  if (pool().size() != n) pool().resize(n);
}

int get_num_threads() { return pool().size(); }

namespace detail {

std::int64_t parallel_chunks(std::int64_t n, std::int64_t grain) {
  if (in_parallel_region) return 1;
  const std::int64_t by_size = n / std::max<std::int64_t>(grain, 1);
  if (by_size <= 1) return 1;
  return std::min<std::int64_t>(by_size, get_num_threads());
}

void run_chunks(std::int64_t n, std::int64_t chunks,
                const std::function<void(std::int64_t, std::int64_t)>& fn) {
  pool().run(static_cast<int>(chunks), [&](int c) {
    in_parallel_region = true;
    const std::int64_t lo = n * c / chunks, hi = n * (c + 1) / chunks;
    fn(lo, hi);
    in_parallel_region = false;
  });
}

}  // namespace detail

}  // namespace npdl
