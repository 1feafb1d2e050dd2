// Note [Storage cache]
// Buffers freed to the C allocator can go back to the kernel: glibc maps
// large ones (128 KiB and up, until its threshold adapts) with mmap and
// unmaps them on free, and it trims free memory at the top of its heap. The
// next allocation of the same size then faults in fresh zeroed pages: on a
// 51 MB batch-norm input that page-fault cost is larger than the
// arithmetic, and on the MLP's batch-60 training step (a 784 x 100 weight
// gradient is 314 KB) the faults took half the step, in some processes and
// not others. Freed buffers of kCacheMinBytes and more are therefore kept
// in a cache keyed by their rounded size and handed out again. The cache
// holds at most kCacheLimitBytes; beyond that, buffers are really freed.
// Smaller buffers bypass the cache: malloc's own free lists serve them
// faster than a locked map, and at that size they sit among other blocks
// rather than alone in fresh pages (the batch-60 MLP benchmark's process
// faulted 52,000 pages with the limit at 1 MiB, 18,000 at 64 KiB, about
// as many as loading the program costs, and its step took half the time).
//
// Small buffers (the values of ops on small tensors, which a graph records
// by the thousand) come from per-thread free lists, one per 64-byte size
// class: no lock and no aligned_alloc on the path that recording an op
// takes. Each list holds at most kSmallListLength buffers; the rest go back
// to the C allocator, as does everything when the thread ends. (Longer lists
// were measured slower: 650 instead of 350 ns per recorded op.)
//
// Bytes in use (live buffers) and their peak are counted with relaxed
// atomics for memory measurements (tensor/storage.hpp).
#include "tensor/storage.hpp"

#include <array>
#include <atomic>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace npdl {
namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kCacheLimitBytes = std::size_t{2} << 30;
constexpr std::size_t kCacheMinBytes = std::size_t{64} << 10;

constexpr std::size_t kSmallMaxBytes = 1024;
constexpr std::size_t kSmallClasses = kSmallMaxBytes / kAlignment;
constexpr std::size_t kSmallListLength = 256;

thread_local bool small_lists_gone = false;

struct SmallLists {
  std::array<std::vector<void*>, kSmallClasses> free;
  ~SmallLists() {
    small_lists_gone = true;
    for (auto& list : free) {
      for (void* p : list) std::free(p);
    }
  }
};

thread_local SmallLists small_lists;

// The free list of `bytes` (a multiple of kAlignment), or nullptr.
std::vector<void*>* small_list(std::size_t bytes) {
  if (bytes > kSmallMaxBytes || small_lists_gone) return nullptr;
  return &small_lists.free[bytes / kAlignment - 1];
}

class StorageCache {
 public:
  void* acquire(std::size_t bytes) {
    if (std::vector<void*>* list = small_list(bytes); list != nullptr && !list->empty()) {
      void* p = list->back();
      list->pop_back();
      return p;
    }
    if (bytes >= kCacheMinBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      // The buffer freed last: the likeliest to be still in cache.
      const auto [first, last] = free_.equal_range(bytes);
      if (first != last) {
        const auto it = std::prev(last);
        void* p = it->second;
        free_.erase(it);
        cached_bytes_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlignment, bytes);
    if (p == nullptr) {
      release_cached();  // buffers kept for reuse may be what is missing
      p = std::aligned_alloc(kAlignment, bytes);
    }
    if (p == nullptr) {
      throw MemoryError("cannot allocate " + std::to_string(bytes) +
                        " bytes for a tensor: the system has no memory left for it");
    }
    return p;
  }

  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& entry : free_) std::free(entry.second);
    free_.clear();
    cached_bytes_ = 0;
  }

  void release(void* p, std::size_t bytes) {
    if (std::vector<void*>* list = small_list(bytes);
        list != nullptr && list->size() < kSmallListLength) {
      list->push_back(p);
      return;
    }
    if (bytes >= kCacheMinBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + bytes <= kCacheLimitBytes) {
        free_.emplace(bytes, p);
        cached_bytes_ += bytes;
        return;
      }
    }
    std::free(p);
  }

  void count_acquired(std::size_t bytes) {
    const std::size_t now = in_use_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    std::size_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  void count_released(std::size_t bytes) { in_use_.fetch_sub(bytes, std::memory_order_relaxed); }

  StorageStats stats() {
    StorageStats s;
    s.bytes_in_use = in_use_.load(std::memory_order_relaxed);
    s.peak_bytes_in_use = peak_.load(std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mutex_);
    s.cached_bytes = cached_bytes_;
    return s;
  }
  void reset_peak() {
    peak_.store(in_use_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }

  ~StorageCache() {
    for (auto& entry : free_) std::free(entry.second);
  }

 private:
  std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;
  std::size_t cached_bytes_ = 0;
  std::atomic<std::size_t> in_use_{0}, peak_{0};
};

StorageCache& cache() {
  // Leaked on purpose: tensors in static objects may die after the cache.
  static StorageCache* instance = new StorageCache();
  return *instance;
}

std::size_t rounded(std::size_t bytes) {
  const std::size_t n = bytes == 0 ? kAlignment : bytes;
  return (n + kAlignment - 1) / kAlignment * kAlignment;
}

}  // namespace

Storage::Storage(std::size_t bytes) : bytes_(rounded(bytes)) {
  data_ = cache().acquire(bytes_);
  cache().count_acquired(bytes_);
}

Storage::~Storage() {
  cache().count_released(bytes_);
  cache().release(data_, bytes_);
}

StorageStats storage_stats() { return cache().stats(); }

void reset_storage_peak() { cache().reset_peak(); }

}  // namespace npdl
