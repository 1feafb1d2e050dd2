#pragma once
// What the tensor storage holds, for memory measurements (benchmarks, tests),
// and the cache of freed buffers it keeps for reuse (Note [Storage cache] in
// tensor/storage.cpp). Every Tensor buffer counts from its allocation to its
// release, whether it came from the cache or from the C allocator.
#include <cstddef>
#include <cstdint>

namespace npdl {

struct StorageStats {
  std::size_t bytes_in_use = 0;       // live buffers (rounded to the alignment)
  std::size_t peak_bytes_in_use = 0;  // largest bytes_in_use since the last reset
  std::size_t most_bytes_in_use = 0;  // largest bytes_in_use since the program began
  std::size_t cached_bytes = 0;       // freed buffers kept for reuse
  /// The most the cache keeps: twice most_bytes_in_use, or 64 MiB if that
  /// is more.
  std::size_t cache_limit_bytes = 0;
  /// Buffers of 64 KiB or more that the C allocator provided because the
  /// cache had none of their size (a loop that repeats its shapes stops
  /// adding to this after its first pass).
  std::uint64_t large_allocations = 0;
};

StorageStats storage_stats();
/// Restarts the peak at the current bytes in use (measure one computation).
void reset_storage_peak();
/// Gives every buffer the cache keeps back to the C allocator (and so, for
/// large ones, to the system): after a phase whose shapes will not come
/// again, say. Live tensors are untouched; later allocations start afresh.
void release_cached_storage();

}  // namespace npdl
