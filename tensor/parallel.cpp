#include "tensor/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "tensor/error.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace npdl {
namespace {

// More threads than this are a mistake, not a tuning choice: each spins
// (Note [Spinning hand-off]) and the kernels split work at most that many ways.
int max_threads() { return 4 * std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

void check_thread_count(long long n, const std::string& source) {
  if (n < 1 || n > max_threads()) {
    throw ValueError(source + " expects a thread count in [1, " + std::to_string(max_threads()) +
                     "] (4 x the " + std::to_string(std::thread::hardware_concurrency()) +
                     " hardware threads), got " + std::to_string(n));
  }
}

int threads_from_environment() {
  const char* env = std::getenv("NPDL_NUM_THREADS");
  if (env == nullptr || *env == '\0') return 1;
  errno = 0;
  char* end = nullptr;
  const long long n = std::strtoll(env, &end, 10);
  if (errno != 0 || end == env || *end != '\0') {
    throw ValueError(std::string("NPDL_NUM_THREADS must be a whole number of threads, got '") +
                     env + "'");
  }
  check_thread_count(n, "NPDL_NUM_THREADS");
  return static_cast<int>(n);
}

// A fixed set of workers that each run one chunk of the current job. Kept
// alive between jobs: starting threads per kernel would cost more than the
// kernels on small tensors.
//
// Note [Spinning hand-off]
// Waking a sleeping thread (a futex, and on a virtual machine an interrupt
// to an idle virtual CPU) takes tens of microseconds, longer than a whole
// kernel on a megabyte tensor; measured on a 256 x 1024 batch norm, two
// threads were slower than one. So a worker that finished a job spins for
// up to kSpinTime watching for the next one before it sleeps, and the
// caller spins the same way while it waits for the workers' chunks, as
// OpenMP runtimes do.
constexpr auto kSpinTime = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__SSE2__)
  _mm_pause();
#endif
}

// Spins until done() or kSpinTime has passed; true when done() held.
template <class Done>
bool spin_until(Done done) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (done()) return true;
    cpu_relax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() - start > kSpinTime) return done();
  }
}

// Runs chunk c of the current job.
using ChunkFn = detail::CallRef<int>;

class Pool {
 public:
  ~Pool() { resize(1); }

  int size() const { return size_.load(std::memory_order_acquire); }

  // Note [Resizing while work runs]
  // set_num_threads may be called on one thread while another runs kernels.
  // resize therefore takes run_mutex_: it waits for the job in flight to
  // finish and no job starts until the new workers are up. A job whose
  // chunk count was decided before a shrink still runs every chunk: run()
  // gives the chunks that have no worker to the caller.
  void resize(int threads) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    resize_locked(threads);
  }

  // Note [Claimed chunks]
  // Chunks are not assigned to threads: the caller and every awake worker
  // claim the next unclaimed chunk until none is left. A worker the system
  // has not scheduled yet (another process holds its core) therefore never
  // makes the caller wait: the caller runs that worker's share itself, and
  // two threads on a contended machine cost about what one does. Which
  // thread runs a chunk does not change its bits (Note [Chunk boundaries]).
  // A claim carries the job's generation, so a worker that read one job and
  // was descheduled before claiming cannot claim a chunk of the next.
  //
  // Note [Exceptions across threads]
  // An exception from a chunk must reach the caller of parallel_for, on
  // whichever thread the chunk ran, and only when no chunk of the job can
  // touch the caller's data any more: unwinding destroys the caller's frame
  // and whatever the chunks point into. (An exception left to escape a
  // worker ends the process; one that unwound the caller while workers ran
  // had them call a destroyed job.) So each thread runs a chunk under a
  // catch. The first exception of a job is kept (std::exception_ptr keeps
  // its type and the object itself), later ones are dropped, and the thread
  // that caught it claims every chunk nobody has claimed yet, which then
  // never starts. Those count as finished, so the caller's wait for all
  // chunks ends as soon as the chunks that did start have ended; only then
  // does run() rethrow, after clearing the job, and the workers wait for the
  // next one as after any job. A parallel_for within a chunk runs inline
  // in the chunk's thread (ParallelRegion below), so its exceptions leave
  // through the outer chunk like any other. On success a chunk costs a try
  // block, no allocation and no lock.
  void run(int chunks, ChunkFn job) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    const std::uint64_t generation = publish(chunks, job);
    if (size() > 1) wake_.notify_all();
    run_claimed(generation, chunks, job, /*by_worker=*/false);
    const auto all_finished = [&] { return finished_.load(std::memory_order_acquire) == chunks; };
    if (!spin_until(all_finished)) {
      std::unique_lock<std::mutex> g(mutex_);
      done_.wait(g, all_finished);
    }
    if (std::exception_ptr error = retire()) std::rethrow_exception(std::move(error));
  }

 private:
  void resize_locked(int threads) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    size_.store(1, std::memory_order_release);
    stop_ = false;
    // Workers start having seen the current generation, so they wait for the next job.
    const std::uint64_t g = generation_.load(std::memory_order_relaxed);
    try {
      for (int i = 1; i < threads; ++i) workers_.emplace_back([this, g] { work(g); });
      size_.store(threads, std::memory_order_release);
    } catch (const std::system_error& e) {
      const int started = static_cast<int>(workers_.size()) + 1;
      resize_locked(1);  // joins the workers that did start
      throw ValueError("cannot start " + std::to_string(threads) + " threads (the system " +
                       "refused after " + std::to_string(started) + "): " + e.what() +
                       "; running on 1 thread");
    }
  }

  // Makes `job` the current job; returns its generation.
  std::uint64_t publish(int chunks, ChunkFn job) {
    std::lock_guard<std::mutex> g(mutex_);
    job_ = job;
    chunks_ = chunks;
    finished_.store(0, std::memory_order_relaxed);
    const std::uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
    next_claim_.store(claim_tag(generation), std::memory_order_relaxed);
    generation_.store(generation, std::memory_order_release);
    return generation;
  }

  // Ends the current job, whose chunks have all finished; returns its first
  // exception, if any.
  std::exception_ptr retire() {
    std::lock_guard<std::mutex> g(mutex_);
    job_ = ChunkFn();
    return std::exchange(error_, nullptr);
  }

  // The upper 32 bits of next_claim_ tag the job's generation, the lower
  // count the chunks claimed (Note [Claimed chunks]).
  static std::uint64_t claim_tag(std::uint64_t generation) { return generation << 32; }

  static bool claimable(std::uint64_t claim, std::uint64_t tag, int chunks) {
    return (claim & ~kClaimCountMask) == tag && static_cast<int>(claim & kClaimCountMask) < chunks;
  }

  // Claims and runs chunks of the job of `generation` until none is left or
  // another job has begun.
  void run_claimed(std::uint64_t generation, int chunks, ChunkFn job, bool by_worker) {
    const std::uint64_t tag = claim_tag(generation);
    for (;;) {
      std::uint64_t claim = next_claim_.load(std::memory_order_acquire);
      do {
        if (!claimable(claim, tag, chunks)) return;
      } while (!next_claim_.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel));
      int finished = 1;
      if (!run_chunk(job, static_cast<int>(claim & kClaimCountMask))) {
        finished += claim_the_rest(tag, chunks);
      }
      report_finished(finished, by_worker);
    }
  }

  // Runs one chunk; false when it threw (Note [Exceptions across threads]).
  bool run_chunk(ChunkFn job, int chunk) {
    try {
      job(chunk);
      return true;
    } catch (...) {
      std::lock_guard<std::mutex> g(mutex_);
      if (!error_) error_ = std::current_exception();
      return false;
    }
  }

  // Claims every chunk of the job not claimed yet, so that none of them
  // starts; returns how many.
  int claim_the_rest(std::uint64_t tag, int chunks) {
    std::uint64_t claim = next_claim_.load(std::memory_order_acquire);
    do {
      if (!claimable(claim, tag, chunks)) return 0;
    } while (!next_claim_.compare_exchange_weak(claim, tag + static_cast<std::uint64_t>(chunks),
                                                std::memory_order_acq_rel));
    return chunks - static_cast<int>(claim & kClaimCountMask);
  }

  void report_finished(int finished, bool by_worker) {
    if (by_worker) {
      // Under the lock, so that a caller about to sleep on done_ cannot
      // miss the notification.
      {
        std::lock_guard<std::mutex> g(mutex_);
        finished_.fetch_add(finished, std::memory_order_release);
      }
      done_.notify_one();
    } else {
      finished_.fetch_add(finished, std::memory_order_release);
    }
  }

  void work(std::uint64_t seen) {
    for (;;) {
      ChunkFn job;
      int chunks = 0;
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> g(mutex_);
        wake_.wait(g, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
        chunks = chunks_;
      }
      if (job) run_claimed(seen, chunks, job, /*by_worker=*/true);
    }
  }

  static constexpr std::uint64_t kClaimCountMask = 0xffffffffu;

  std::vector<std::thread> workers_;
  std::mutex mutex_, run_mutex_;
  std::condition_variable wake_, done_;
  ChunkFn job_;  // the current job's chunks; refers to the caller's frame
  int chunks_ = 0;
  std::exception_ptr error_;                  // the current job's first, under mutex_
  std::atomic<int> finished_{0};              // chunks of the current job run to the end
  std::atomic<std::uint64_t> next_claim_{0};  // Note [Claimed chunks]
  std::atomic<std::uint64_t> generation_{0};
  bool stop_ = false;
  std::atomic<int> size_{1};  // workers + the caller; read without run_mutex_
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

// Marks the calling thread as running a chunk while alive, so that a
// parallel_for within the chunk runs inline (parallel_chunks), and unmarks
// it however the chunk ends.
class ParallelRegion {
 public:
  ParallelRegion() : outer_(in_parallel_region) { in_parallel_region = true; }
  ~ParallelRegion() { in_parallel_region = outer_; }
  ParallelRegion(const ParallelRegion&) = delete;
  ParallelRegion& operator=(const ParallelRegion&) = delete;

 private:
  bool outer_;
};

}  // namespace

void set_num_threads(int n) {
  check_thread_count(n, "set_num_threads");
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

// Note [Chunk boundaries]
// Eigen runs an elementwise expression in SIMD packets and finishes a range
// whose length is not a multiple of the packet with scalar code, and it
// peels scalars off a start that is not aligned; packet and scalar exp,
// tanh, ... differ in the last bit. A boundary between chunks at an
// arbitrary element would therefore send that element down another path at
// 2 threads than at 1 (the graph fuzzer found it). Boundaries are rounded
// down to a multiple of kChunkAlignment elements: 64 bytes of float, the
// widest packet, and the storage's alignment, so every element takes the
// same path whatever the thread count. Ranges of rows or features (fewer
// than kAlignedChunk items per chunk) are split exactly: their kernels run
// Eigen per row, and rounding would leave chunks empty.
constexpr std::int64_t kChunkAlignment = 16;
constexpr std::int64_t kAlignedChunk = 1024;

std::int64_t chunk_boundary(std::int64_t n, std::int64_t c, std::int64_t chunks) {
  if (c >= chunks) return n;
  const std::int64_t exact = n * c / chunks;
  return n / chunks >= kAlignedChunk ? exact / kChunkAlignment * kChunkAlignment : exact;
}

void run_chunks(std::int64_t n, std::int64_t chunks, CallRef<std::int64_t, std::int64_t> fn) {
  const auto chunk = [&](int c) {
    const ParallelRegion region;
    fn(chunk_boundary(n, c, chunks), chunk_boundary(n, c + 1, chunks));
  };
  pool().run(static_cast<int>(chunks), ChunkFn(chunk));
}

}  // namespace detail

}  // namespace npdl
