#pragma once
// Threads for kernels. The count is set by npdl::set_num_threads or, before
// the first kernel runs, by the environment variable NPDL_NUM_THREADS
// (default 1). Work is split into contiguous, fixed chunks that depend only
// on the size and the thread count, so results are identical bit for bit
// from run to run at a fixed thread count. Elementwise chunks start at
// multiples of 16 elements (Note [Chunk boundaries] in parallel.cpp) and
// reductions split by size alone, so the primitives in ops/ also give the
// same bits at any thread count (fuzz/graph_diff.cpp checks 1 against 2).
// set_num_threads may be called while other threads run kernels.
#include <cstdint>
#include <functional>

namespace npdl {

/// Sets the number of threads kernels use, in [1, 4 x hardware threads];
/// throws ValueError otherwise (NPDL_NUM_THREADS is held to the same bound
/// and must be a whole number).
void set_num_threads(int n);
int get_num_threads();

/// Elements below which an elementwise kernel is not worth splitting.
inline constexpr std::int64_t kElementGrain = 1 << 15;

namespace detail {
/// How many chunks parallel_for splits [0, n) into (1: run inline).
std::int64_t parallel_chunks(std::int64_t n, std::int64_t grain);
void run_chunks(std::int64_t n, std::int64_t chunks,
                const std::function<void(std::int64_t, std::int64_t)>& fn);
}  // namespace detail

/// Runs fn(begin, end) over [0, n) in at most get_num_threads() chunks of at
/// least `grain` items each; in the calling thread alone when that is one
/// (then without wrapping fn in a std::function: small tensors pay nothing).
template <class Fn>
void parallel_for(std::int64_t n, std::int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  const std::int64_t chunks = detail::parallel_chunks(n, grain);
  if (chunks == 1) {
    fn(std::int64_t{0}, n);
  } else {
    detail::run_chunks(n, chunks, fn);
  }
}

}  // namespace npdl
