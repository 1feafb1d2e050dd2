#pragma once
// What the tensor storage holds, for memory measurements (benchmarks, tests).
// Every Tensor buffer counts from its allocation to its release, whether it
// came from the cache (Note [Storage cache]) or from the C allocator.
#include <cstddef>

namespace npdl {

struct StorageStats {
  std::size_t bytes_in_use = 0;       // live buffers (rounded to the alignment)
  std::size_t peak_bytes_in_use = 0;  // largest bytes_in_use since the last reset
  std::size_t cached_bytes = 0;       // freed buffers kept for reuse
};

StorageStats storage_stats();
/// Restarts the peak at the current bytes in use (measure one computation).
void reset_storage_peak();

}  // namespace npdl
