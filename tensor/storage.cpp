// Note [Storage cache]
// Buffers freed to the C allocator can go back to the kernel: glibc maps
// large ones (128 KiB and up, until its threshold adapts) with mmap and
// unmaps them on free, and it trims free memory at the top of its heap. The
// next allocation of the same size then faults in fresh zeroed pages: on a
// 51 MB batch-norm input that page-fault cost is larger than the
// arithmetic, and on the MLP's batch-60 training step (a 784 x 100 weight
// gradient is 314 KB) the faults took half the step, in some processes and
// not others. Freed buffers of kCacheMinBytes and more are therefore kept
// in a cache keyed by their rounded size and handed out again; of several
// of one size, the one freed last (likeliest still in the CPU's caches).
//
// What the cache keeps is bounded by what the program needs: at most twice
// the most bytes ever in use at once (live tensors), and never less than
// kCacheFloorBytes (glibc's own arenas reserve 64 MiB each). Twice, because
// buffers are matched by exact size: a loop that repeats its shapes needs
// one buffer per size for as many as were live together, which sums to more
// than its peak when sizes take turns. The benchmarks' training steps needed
// 1.0 (MLP, LSTM) to 1.8 (CNN, batch 256) times their peak, and allocate
// nothing large from their third step on
// (`StorageCache.TrainingStepsAllocateNothingLargeOnceWarm`).
//
// A buffer that would take the cache past its bound makes room by freeing
// buffers not asked for in the last kStaleAfter, the oldest first: sizes a
// program saw once (predictions on batches of every size from 1 to 512 left
// 917 MB of them, for 2 MB in use, when the cache had a fixed 2 GiB cap and
// turned every new size away once full) and a finished phase's shapes give
// way to new ones. Buffers freed more recently than that are a loop's, kept
// to be asked for again: if there is still no room, the new buffer is the
// one freed. A loop that needs more than the bound then keeps most of its
// buffers and loses the rest, instead of each evicting the one its next
// step needs first. `release_cached_storage()` empties the cache (between a
// program's phases, say); an allocation that fails does too, and is tried
// once more.
//
// Small buffers (the values of ops on small tensors, which a graph records
// by the thousand) come from per-thread free lists, one per 64-byte size
// class: no lock and no aligned_alloc on the path that recording an op
// takes. Each list holds at most kSmallListLength buffers; the rest go back
// to the C allocator, as does everything when the thread ends. (Longer lists
// were measured slower: 650 instead of 350 ns per recorded op.) Buffers of
// 1 KiB to 64 KiB bypass both: malloc's own free lists serve them faster
// than a locked map, and at that size they sit among other blocks rather
// than alone in fresh pages (the batch-60 MLP benchmark's process faulted
// 52,000 pages with the cache's minimum at 1 MiB, 18,000 at 64 KiB, about as
// many as loading the program costs, and its step took half the time).
//
// Bytes in use (live buffers), their peak and their all-time most are
// counted with relaxed atomics for memory measurements (tensor/storage.hpp).
#include "tensor/storage.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.hpp"

namespace npdl {
namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kCacheFloorBytes = std::size_t{64} << 20;
constexpr std::size_t kCacheMinBytes = std::size_t{64} << 10;
constexpr std::chrono::milliseconds kStaleAfter{1000};

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
      if (void* p = take(bytes)) return p;
      ++large_allocations_;
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

  void release(void* p, std::size_t bytes) {
    if (std::vector<void*>* list = small_list(bytes);
        list != nullptr && list->size() < kSmallListLength) {
      list->push_back(p);
      return;
    }
    if (bytes >= kCacheMinBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      const Clock::time_point now = Clock::now();
      const std::size_t limit = limit_bytes();
      while (cached_bytes_ + bytes > limit && !by_age_.empty() &&
             now - by_age_.begin()->second.freed_at > kStaleAfter) {
        free_oldest();
      }
      if (cached_bytes_ + bytes <= limit) {
        keep(p, bytes, now);
        return;
      }
    }
    std::free(p);
  }

  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!by_size_.empty()) free_oldest();
  }

  void count_acquired(std::size_t bytes) {
    const std::size_t now = in_use_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    raise_to(peak_, now);
    raise_to(most_, now);
  }
  void count_released(std::size_t bytes) { in_use_.fetch_sub(bytes, std::memory_order_relaxed); }

  StorageStats stats() {
    StorageStats s;
    s.bytes_in_use = in_use_.load(std::memory_order_relaxed);
    s.peak_bytes_in_use = peak_.load(std::memory_order_relaxed);
    s.most_bytes_in_use = most_.load(std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mutex_);
    s.cached_bytes = cached_bytes_;
    s.cache_limit_bytes = limit_bytes();
    s.large_allocations = large_allocations_;
    return s;
  }
  void reset_peak() {
    peak_.store(in_use_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }

  ~StorageCache() { release_cached(); }

 private:
  // Kept buffers are found by (size, order of release), to hand out the
  // newest of a size, and by order of release, to free the oldest first.
  using Clock = std::chrono::steady_clock;
  using Order = std::uint64_t;
  struct Freed {
    std::size_t bytes;
    Clock::time_point freed_at;
  };

  std::size_t limit_bytes() const {
    return std::max(kCacheFloorBytes, 2 * most_.load(std::memory_order_relaxed));
  }

  // The kept buffer of `bytes` freed last, or nullptr. Caller holds mutex_.
  void* take(std::size_t bytes) {
    const auto after = by_size_.lower_bound({bytes + 1, 0});
    if (after == by_size_.begin()) return nullptr;
    const auto it = std::prev(after);
    if (it->first.first != bytes) return nullptr;
    void* p = it->second;
    by_age_.erase(it->first.second);
    by_size_.erase(it);
    cached_bytes_ -= bytes;
    return p;
  }

  void keep(void* p, std::size_t bytes, Clock::time_point now) {
    const Order order = next_order_++;
    by_size_.emplace(std::make_pair(bytes, order), p);
    by_age_.emplace(order, Freed{bytes, now});
    cached_bytes_ += bytes;
  }

  // Caller holds mutex_ and the cache is not empty.
  void free_oldest() {
    const auto oldest = by_age_.begin();
    const auto it = by_size_.find({oldest->second.bytes, oldest->first});
    std::free(it->second);
    cached_bytes_ -= oldest->second.bytes;
    by_size_.erase(it);
    by_age_.erase(oldest);
  }

  static void raise_to(std::atomic<std::size_t>& most, std::size_t now) {
    std::size_t seen = most.load(std::memory_order_relaxed);
    while (now > seen && !most.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
  }

  std::mutex mutex_;
  std::map<std::pair<std::size_t, Order>, void*> by_size_;
  std::map<Order, Freed> by_age_;
  Order next_order_ = 0;
  std::size_t cached_bytes_ = 0;
  std::uint64_t large_allocations_ = 0;
  std::atomic<std::size_t> in_use_{0}, peak_{0}, most_{0};
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

void release_cached_storage() {
  cache().release_cached();
#ifdef __GLIBC__
  // glibc keeps freed blocks from its heap (not only mmap'd ones) for
  // itself: hand the free pages back to the system too.
  malloc_trim(0);
#endif
}

}  // namespace npdl
