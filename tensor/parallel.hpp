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
#include <memory>

namespace npdl {

/// Sets the number of threads kernels use, in [1, 4 x hardware threads];
/// throws ValueError otherwise (NPDL_NUM_THREADS is held to the same bound
/// and must be a whole number).
void set_num_threads(int n);
int get_num_threads();

/// Elements below which an elementwise kernel is not worth splitting.
inline constexpr std::int64_t kElementGrain = 1 << 15;

namespace detail {
/// A callable's address and how to call it with Args: what the pool needs of
/// a body that outlives the call, without the copy (and the allocation) a
/// std::function would make.
template <class... Args>
class CallRef {
 public:
  CallRef() = default;
  template <class Fn>
  explicit CallRef(Fn& fn)
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(fn)))),
        call_([](void* object, Args... args) { (*static_cast<Fn*>(object))(args...); }) {}
  void operator()(Args... args) const { call_(object_, args...); }
  explicit operator bool() const { return call_ != nullptr; }

 private:
  void* object_ = nullptr;
  void (*call_)(void*, Args...) = nullptr;
};

/// How many chunks parallel_for splits [0, n) into (1: run inline).
std::int64_t parallel_chunks(std::int64_t n, std::int64_t grain);
void run_chunks(std::int64_t n, std::int64_t chunks, CallRef<std::int64_t, std::int64_t> fn);
}  // namespace detail

/// Runs fn(begin, end) over [0, n) in at most get_num_threads() chunks of at
/// least `grain` items each; in the calling thread alone when that is one.
/// An exception from fn in any chunk, on any thread, reaches the caller with
/// its type (the first one when several chunks throw), once every chunk that
/// started has ended; chunks not yet started by then are skipped (Note
/// [Exceptions across threads] in parallel.cpp).
template <class Fn>
void parallel_for(std::int64_t n, std::int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  const std::int64_t chunks = detail::parallel_chunks(n, grain);
  if (chunks == 1) {
    fn(std::int64_t{0}, n);
  } else {
    detail::run_chunks(n, chunks, detail::CallRef<std::int64_t, std::int64_t>(fn));
  }
}

}  // namespace npdl
