// Note [Storage cache]
// Large buffers freed to the C allocator go back to the kernel (glibc uses
// mmap above 128 KiB), so the next allocation of the same size faults in
// fresh zeroed pages: on a 51 MB batch-norm input that page-fault cost is
// larger than the arithmetic. Freed buffers are therefore kept in a cache
// keyed by their rounded size and handed out again. The cache holds at most
// kCacheLimitBytes; beyond that, buffers are really freed. Buffers below
// kCacheMinBytes bypass the cache: malloc's own free lists serve them faster
// than a locked map, and they never come from fresh pages.
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#include "autodiff/tensor.hpp"

namespace npdl {
namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kCacheLimitBytes = std::size_t{2} << 30;
constexpr std::size_t kCacheMinBytes = std::size_t{1} << 20;

class StorageCache {
 public:
  void* acquire(std::size_t bytes) {
    if (bytes >= kCacheMinBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_bytes_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlignment, bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }

  void release(void* p, std::size_t bytes) {
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

  ~StorageCache() {
    for (auto& entry : free_) std::free(entry.second);
  }

 private:
  std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;
  std::size_t cached_bytes_ = 0;
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

Storage::Storage(std::size_t bytes) : bytes_(rounded(bytes)) { data_ = cache().acquire(bytes_); }

Storage::~Storage() { cache().release(data_, bytes_); }

}  // namespace npdl
