// The cache of freed tensor buffers (Note [Storage cache] in
// tensor/storage.cpp): what it keeps, what it frees first, that it stays
// within its bound whatever shapes a program sees, and that training loops
// still find every large buffer again after their first step.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "layers/activation.hpp"
#include "layers/batch_norm/batch_normal.hpp"
#include "layers/convolution.hpp"
#include "layers/linear.hpp"
#include "layers/pooling.hpp"
#include "layers/recurrent.hpp"
#include "layers/reshape.hpp"
#include "model/model.hpp"
#include "model/objectives.hpp"
#include "model/optimizers.hpp"
#include "tensor/parallel.hpp"
#include "tensor/random.hpp"
#include "tensor/storage.hpp"
#include "tensor/tensor.hpp"

namespace npdl {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kFloor = 64 * kMiB;

// A float32 buffer of exactly `bytes` (a multiple of 64: no rounding).
Tensor buffer_of(std::size_t bytes) { return Tensor::empty({std::int64_t(bytes / 4)}); }

// Frees buffers of distinct sizes (64 KiB and up, none of them asked for
// again) until `total` bytes have gone through the cache.
void churn_sizes_seen_once(std::size_t total, std::size_t first_size = 96 * 1024) {
  std::size_t size = first_size;
  for (std::size_t freed = 0; freed < total; freed += size, size += 64) buffer_of(size);
}

TEST(StorageCache, ItsBoundIsTwiceTheMostInUseAndNeverUnder64MiB) {
  const StorageStats before = storage_stats();
  EXPECT_EQ(before.cache_limit_bytes, std::max(kFloor, 2 * before.most_bytes_in_use));
  {
    // Raise the most in use past the floor's half: the bound follows.
    const Tensor big = buffer_of(std::max(40 * kMiB, before.most_bytes_in_use + 8 * kMiB));
    const StorageStats during = storage_stats();
    EXPECT_GE(during.most_bytes_in_use, before.bytes_in_use + big.nbytes());
    EXPECT_EQ(during.cache_limit_bytes, 2 * during.most_bytes_in_use);
  }
  // Freeing lowers the bytes in use, not the most ever in use.
  const StorageStats after = storage_stats();
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_EQ(after.cache_limit_bytes, 2 * after.most_bytes_in_use);
}

// Sizes freed once each, quickly (a burst of new shapes): the cache never
// goes past its bound; once full, the newest are the ones freed (the kept
// ones are recent: they may be a loop's). After a second (Note [Storage
// cache]'s kStaleAfter), a new size takes the place of the oldest.
TEST(StorageCache, ABurstOfNewSizesStaysWithinTheBoundAndGivesWayAfterASecond) {
  release_cached_storage();  // no buffer of an earlier test in the way
  const std::size_t limit = std::max(kFloor, 2 * storage_stats().most_bytes_in_use);
  const std::size_t first = 96 * 1024;
  std::size_t size = first;
  for (std::size_t freed = 0; freed < limit + 32 * kMiB; freed += size, size += 64) {
    buffer_of(size);
    ASSERT_LE(storage_stats().cached_bytes, limit) << "after " << freed << " bytes";
  }
  const std::size_t last = size - 64;
  const std::uint64_t allocations = storage_stats().large_allocations;
  buffer_of(first);  // kept
  EXPECT_EQ(storage_stats().large_allocations, allocations);
  buffer_of(last);  // turned away when it was freed
  EXPECT_EQ(storage_stats().large_allocations, allocations + 1);

  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const std::size_t new_size = size + 64 * 1024;
  buffer_of(new_size);  // frees the oldest to make room, and is kept
  EXPECT_LE(storage_stats().cached_bytes, limit);
  buffer_of(new_size);
  EXPECT_EQ(storage_stats().large_allocations, allocations + 2);
}

// A loop whose buffers take turns and need half again the bound: after its
// first pass it keeps what fitted and loses only the rest, pass after pass
// (freeing the oldest to keep each new one would lose every one of them).
TEST(StorageCache, ALoopThatNeedsMoreThanTheBoundKeepsWhatFits) {
  release_cached_storage();
  const std::size_t limit = storage_stats().cache_limit_bytes;
  std::vector<std::size_t> sizes;
  std::size_t total = 0;
  for (std::size_t s = 4 * kMiB; total < limit + limit / 2; s += 64) {
    sizes.push_back(s);
    total += s;
  }
  auto pass = [&] {
    const std::uint64_t before = storage_stats().large_allocations;
    for (std::size_t s : sizes) buffer_of(s);
    return storage_stats().large_allocations - before;
  };
  pass();
  const std::uint64_t lost = sizes.size() / 3 + 1;
  EXPECT_LE(pass(), lost);
  EXPECT_LE(pass(), lost);
}

TEST(StorageCache, ReleasingItFreesEveryKeptBufferAndNoLiveOne) {
  const Tensor live = Tensor::full({1 << 18}, 2.5);
  churn_sizes_seen_once(16 * kMiB);
  ASSERT_GT(storage_stats().cached_bytes, 0u);
  const std::size_t in_use = storage_stats().bytes_in_use;
  release_cached_storage();
  EXPECT_EQ(storage_stats().cached_bytes, 0u);
  EXPECT_EQ(storage_stats().bytes_in_use, in_use);
  EXPECT_EQ(live.at(0), 2.5);
  EXPECT_EQ(live.at((1 << 18) - 1), 2.5);
  // The cache works as before afterwards.
  buffer_of(1 * kMiB);
  const std::uint64_t allocations = storage_stats().large_allocations;
  buffer_of(1 * kMiB);
  EXPECT_EQ(storage_stats().large_allocations, allocations);
}

// Predictions on batches of every size (an inference server's load): each
// batch size is a new set of buffer sizes. With a fixed 2 GiB cap the cache
// kept 917 MB of them for 2 MB in use.
TEST(StorageCache, PredictionsOnEveryBatchSizeStayWithinTheBound) {
  set_seed(1);
  model::Model m;
  m.add<layers::Linear>(100, 784);
  m.add<layers::Activation>("sigmoid");
  m.add<layers::Dense>(10, 0, "glorot_uniform", "softmax");
  m.build({784});
  const Tensor x = Tensor::uniform({512, 784}, 1);
  for (std::int64_t batch = 1; batch <= 512; batch += 3) {
    m.predict(model::slice_rows(x, 0, batch));
    const StorageStats now = storage_stats();
    ASSERT_LE(now.cached_bytes, std::max(kFloor, 2 * now.most_bytes_in_use)) << "batch " << batch;
  }
}

Tensor labels_for(std::int64_t batch) {
  std::vector<int> labels;
  for (std::int64_t i = 0; i < batch; ++i) labels.push_back(int(i % 10));
  return model::one_hot(labels, 10);
}

// From its third step on, a training loop asks the C allocator for no large
// buffer: everything earlier steps freed is found again. (The first step
// allocates everything; the second still a few buffers of the parameters'
// sizes, which the optimiser's state keeps from one step to the next.)
// Batch 256: the CNN's steps need more than the 64 MiB floor (85 MB at most
// in use at once, 1.6 times that in buffers), so the bound itself is tested.
void expect_no_large_allocation_once_warm(model::Model& m, const Tensor& x) {
  // The previous model's buffers, freed less than a second ago, would still
  // hold the cache (they might be a loop's): start from an empty one.
  release_cached_storage();
  const int threads = get_num_threads();
  set_num_threads(1);
  const Tensor y = labels_for(x.shape()[0]);
  m.train_on_batch(x, y);
  m.train_on_batch(x, y);
  const std::uint64_t warm = storage_stats().large_allocations;
  m.train_on_batch(x, y);
  m.train_on_batch(x, y);
  EXPECT_EQ(storage_stats().large_allocations, warm);
  EXPECT_GT(storage_stats().cache_limit_bytes, kFloor);
  set_num_threads(threads);
}

TEST(StorageCache, TrainingStepsAllocateNothingLargeOnceWarm) {
  set_seed(2);
  {
    model::Model cnn;
    cnn.add<layers::Convolution>(32, 3, Shape{1, 28, 28}, 1, "glorot_uniform", "linear");
    cnn.add<layers::BatchNormal>(1e-6, 0.9, 1);
    cnn.add<layers::Activation>("relu");
    cnn.add<layers::MaxPooling>(2);
    cnn.add<layers::Convolution>(64, 3, Shape{}, 1, "glorot_uniform", "relu");
    cnn.add<layers::MaxPooling>(2);
    cnn.add<layers::Flatten>();
    cnn.add<layers::Dense>(10, 0, "glorot_uniform", "softmax");
    cnn.compile("scce", "momentum");
    expect_no_large_allocation_once_warm(cnn, Tensor::uniform({256, 1, 28, 28}, 3));
  }
  {
    layers::RecurrentBatchNorm bn;
    bn.enabled = true;
    model::Model lstm;
    lstm.add<layers::LSTM>(128, layers::RecurrentOptions{}, layers::GateOptions{}, bn);
    lstm.add<layers::Dense>(10, 0, "glorot_uniform", "softmax");
    lstm.compile("scce", "momentum");
    expect_no_large_allocation_once_warm(lstm, Tensor::uniform({256, 28, 28}, 4));
  }
}

}  // namespace
}  // namespace npdl
