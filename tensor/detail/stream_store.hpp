#pragma once
// Note [Streaming stores]
// A normal store first reads the cache line it writes into (write
// allocate): for y = f(x) over a tensor larger than the last-level cache
// that is a third of the memory traffic, spent on a line that will not stay
// in cache anyway. A kernel may therefore write a large output with
// non-temporal stores (x86 SSE2; elsewhere a normal store) through store()
// below. Values are the same either way; only the path to memory differs.
// Small outputs should be stored normally, so that the next op finds them
// in cache: the caller decides where that line lies. Today only batch
// norm's kernels stream (layers/batch_norm/kernels.cpp holds the threshold);
// tensor math's elementwise kernels store normally.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace npdl::detail {

// Everything here has internal linkage (static, non-inline constexpr): the
// per-level kernel sources include this header too, compiled with AVX-2 or
// AVX-512 flags, and a weak or unique symbol shared with the baseline's copy
// could hand wider instructions to a CPU that lacks them (Note [Kernels per
// instruction set]; tests/kernel_symbols.sh checks it).

constexpr std::int64_t kStreamChunk = 1024;

static inline void stream_copy(float* q, const float* tmp, std::int64_t n) {
  std::int64_t i = 0;
#if defined(__SSE2__)
  for (; i < n && (reinterpret_cast<std::uintptr_t>(q + i) & 15) != 0; ++i) q[i] = tmp[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(q + i, _mm_loadu_ps(tmp + i));
#endif
  for (; i < n; ++i) q[i] = tmp[i];
}

static inline void stream_copy(double* q, const double* tmp, std::int64_t n) {
  std::int64_t i = 0;
#if defined(__SSE2__)
  for (; i < n && (reinterpret_cast<std::uintptr_t>(q + i) & 15) != 0; ++i) q[i] = tmp[i];
  for (; i + 2 <= n; i += 2) _mm_stream_pd(q + i, _mm_loadu_pd(tmp + i));
#endif
  for (; i < n; ++i) q[i] = tmp[i];
}

/// Orders streamed stores before what follows (call once a thread is done).
static inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

/// q[0, n) = expr(offset, length), an Eigen array expression over that
/// range; evaluated in L1-sized chunks and streamed when `stream`. The
/// caller calls stream_fence() after its last streamed store.
template <class T, class Expr>
static void store(T* q, std::int64_t n, bool stream, Expr&& expr) {
  using Map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  if (!stream) {
    Map(q, n) = expr(std::int64_t{0}, n);
    return;
  }
  alignas(64) T tmp[kStreamChunk];
  for (std::int64_t i = 0; i < n; i += kStreamChunk) {
    const std::int64_t len = std::min(kStreamChunk, n - i);
    Map(tmp, len) = expr(i, len);
    stream_copy(q + i, tmp, len);
  }
}

}  // namespace npdl::detail
