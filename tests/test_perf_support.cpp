// What the performance work  added to the library: the storage
// pool's byte counters, and kernels whose results do not depend on the
// thread count (Note [Feature groups], Note [Parallel reductions]).
#include <gtest/gtest.h>

#include "layers/batch_norm/kernels.hpp"
#include "tensor/parallel.hpp"
#include "tensor/storage.hpp"
#include "tensor/tensor.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl {
namespace {

// Restores the thread count a test changed.
class ThreadCount {
 public:
  ThreadCount() : saved_(get_num_threads()) {}
  ~ThreadCount() { set_num_threads(saved_); }

 private:
  int saved_;
};

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && math::max_abs_diff(a, b).abs == 0.0;
}

TEST(StorageStats, CountsBytesInUseAndTheirPeak) {
  const StorageStats before = storage_stats();
  EXPECT_GE(before.peak_bytes_in_use, before.bytes_in_use);
  reset_storage_peak();
  EXPECT_EQ(storage_stats().peak_bytes_in_use, before.bytes_in_use);
  {
    const Tensor big = Tensor::zeros({1 << 20});  // 4 MiB
    const StorageStats during = storage_stats();
    EXPECT_GE(during.bytes_in_use, before.bytes_in_use + big.nbytes());
    EXPECT_GE(during.peak_bytes_in_use, during.bytes_in_use);
  }
  const StorageStats after = storage_stats();
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_GE(after.peak_bytes_in_use, before.bytes_in_use + (std::size_t{4} << 20));
  reset_storage_peak();
  EXPECT_EQ(storage_stats().peak_bytes_in_use, after.bytes_in_use);
}

TEST(StorageStats, SmallBuffersAreRecycledAndCounted) {
  const std::size_t before = storage_stats().bytes_in_use;
  for (int i = 0; i < 1000; ++i) {
    const Tensor t = Tensor::full({3}, double(i));
    EXPECT_EQ(t.at(2), double(i));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.raw_data()) % 64, 0u);  // still aligned
  }
  EXPECT_EQ(storage_stats().bytes_in_use, before);
}

TEST(StorageStats, CachedBuffersAreReusedWithoutCountingAsInUse) {
  { const Tensor t = Tensor::zeros({1 << 19}); }
  const StorageStats s = storage_stats();
  EXPECT_GE(s.cached_bytes, std::size_t{2} << 20);
}

// Note [Storage cache]: a 314 KB buffer (the MLP's 784 x 100 weight
// gradient) is kept, not given back to glibc, and of two kept buffers of
// one size the one freed last, likelier still in cache, comes back first.
TEST(StorageStats, MidSizeBuffersAreCachedAndTheLastFreedComesBackFirst) {
  const Shape weight_gradient{784, 100};
  const void* freed_last = nullptr;
  std::size_t cached = 0;
  {
    const Tensor first = Tensor::zeros(weight_gradient);
    const Tensor second = Tensor::zeros(weight_gradient);
    freed_last = first.raw_data();  // destroyed after `second`
    cached = storage_stats().cached_bytes;
  }
  EXPECT_GE(storage_stats().cached_bytes, cached + 2 * 784 * 100 * sizeof(float));
  const Tensor again = Tensor::zeros(weight_gradient);
  EXPECT_EQ(again.raw_data(), freed_last);
}

// Runs fn at 1 and at 2 threads, twice each, and expects the same bits.
template <class Fn>
void expect_same_at_any_thread_count(Fn fn) {
  ThreadCount restore;
  set_num_threads(1);
  const std::vector<Tensor> one = fn();
  const std::vector<Tensor> again = fn();
  set_num_threads(2);
  const std::vector<Tensor> two = fn();
  ASSERT_EQ(one.size(), two.size());
  for (std::size_t i = 0; i < one.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(one[i], again[i])) << "output " << i << " differs between runs";
    EXPECT_TRUE(bitwise_equal(one[i], two[i])) << "output " << i << " differs at 2 threads";
  }
}

std::vector<Tensor> fused_batchnorm(const Shape& shape, int axis, DType dtype) {
  const Tensor x = Tensor::randn(shape, 11, dtype, 3.0, 2.0);
  const Tensor dy = Tensor::randn(shape, 12, dtype);
  const layers::BatchNormLayout L = layers::batchnorm_layout(shape, axis);
  const Tensor gamma = Tensor::uniform(L.param_shape, 13, dtype, 0.5, 1.5);
  const Tensor beta = Tensor::randn(L.param_shape, 14, dtype);
  layers::BatchNormStats stats;
  const Tensor y = layers::batchnorm_forward_train(x, gamma, beta, L, 1e-5, stats);
  const layers::BatchNormGrads g = layers::batchnorm_backward_train(dy, x, gamma, stats, L);
  return {y, stats.mean, stats.var, g.dx, g.dgamma, g.dbeta};
}

TEST(FusedBatchNorm, SameBitsAtAnyThreadCountPerChannel) {
  // Several feature groups, and an odd number of them.
  expect_same_at_any_thread_count([] {
    return fused_batchnorm({8, 37, 30, 30}, 1, DType::Float32);
  });
}

TEST(FusedBatchNorm, SameBitsAtAnyThreadCountWithStreamingStores) {
  // 16 x 64 x 64 x 68 float32 is above the 16 MiB streaming threshold.
  expect_same_at_any_thread_count([] {
    return fused_batchnorm({16, 64, 64, 68}, 1, DType::Float32);
  });
}

TEST(FusedBatchNorm, SameBitsAtAnyThreadCountFloat64AndLastAxis) {
  expect_same_at_any_thread_count([] { return fused_batchnorm({64, 12, 300}, 1, DType::Float64); });
}

TEST(FusedBatchNorm, StatisticsMatchAFloat64TwoPassReference) {
  const Shape shape{6, 5, 7, 9};
  const Tensor x = Tensor::randn(shape, 21, DType::Float32, 100.0, 0.01);  // large offset
  const layers::BatchNormLayout L = layers::batchnorm_layout(shape, 1);
  layers::BatchNormStats stats;
  layers::batchnorm_forward_train(x, Tensor::ones({5}), Tensor::zeros({5}), L, 1e-5, stats);
  const Tensor xd = x.astype(DType::Float64);
  const Tensor mean = math::mean(xd, {0, 2, 3}, true);
  const Tensor var = math::mean(math::square(math::sub(xd, mean)), {0, 2, 3});
  for (int c = 0; c < 5; ++c) {
    EXPECT_NEAR(stats.mean.at(c), mean.at(c), 1e-9);
    EXPECT_NEAR(stats.var.at(c), var.at(c), 1e-9 + 1e-6 * var.at(c));
  }
}

TEST(ParallelReductions, SumHasTheSameBitsAtAnyThreadCount) {
  expect_same_at_any_thread_count([] {
    const Tensor a = Tensor::randn({32, 16, 40, 40}, 31);
    const Tensor b = Tensor::randn({1, 16, 1, 1}, 32);
    return std::vector<Tensor>{math::sum(a, {0, 2, 3}, true), math::sum(a),
                               math::mul_unbroadcast(a, a, b.shape()),
                               math::broadcast_to(b, a.shape())};
  });
}

TEST(ParallelReductions, SumOfAChunkedReductionIsAccurate) {
  ThreadCount restore;
  set_num_threads(2);
  const Tensor a = Tensor::randn({64, 8, 64, 64}, 41);
  const Tensor got = math::sum(a, {0, 2, 3});
  const Tensor want = math::sum(a.astype(DType::Float64), {0, 2, 3});
  for (int c = 0; c < 8; ++c) EXPECT_NEAR(got.at(c), want.at(c), 1e-3);
}

// Shapes that Note [Splitting matrix products] cuts by rows (784 x 60 @
// 60 x 100: the weight gradient), by columns (60 x 784 @ 784 x 100 cuts
// c's 100 columns), with extents that are not multiples of the block
// alignment, and one too small to cut.
struct ProductCase {
  std::int64_t m, k, n;
};
const ProductCase kProductCases[] = {{784, 60, 100}, {60, 784, 100}, {257, 300, 45}, {5, 7, 3}};

// op(a) @ op(b) for stored a and b, summed in float64 by nested loops.
Tensor reference_product(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const Tensor ad = a.astype(DType::Float64), bd = b.astype(DType::Float64);
  const std::int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  const std::int64_t n = tb ? b.dim(0) : b.dim(1);
  Tensor c = Tensor::zeros({m, n}, DType::Float64);
  const double* ap = ad.data<double>();
  const double* bp = bd.data<double>();
  double* cp = c.data<double>();
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (std::int64_t p = 0; p < k; ++p) {
        acc += (ta ? ap[p * m + i] : ap[i * k + p]) * (tb ? bp[j * k + p] : bp[p * n + j]);
      }
      cp[i * n + j] = acc;
    }
  }
  return c;
}

TEST(SplitMatrixProducts, MatchANestedLoopReferenceInEveryTransposeCase) {
  ThreadCount restore;
  set_num_threads(2);
  for (const ProductCase& pc : kProductCases) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const Tensor a = Tensor::randn(ta ? Shape{pc.k, pc.m} : Shape{pc.m, pc.k}, 51);
        const Tensor b = Tensor::randn(tb ? Shape{pc.n, pc.k} : Shape{pc.k, pc.n}, 52);
        const Tensor got = math::matmul(a, b, ta, tb);
        const Tensor want = reference_product(a, b, ta, tb);
        ASSERT_EQ(got.shape(), want.shape());
        // float32 products of unit normals: each entry's rounding grows like sqrt(k).
        EXPECT_LT(math::max_abs_diff(got.astype(DType::Float64), want).abs, 1e-5 * double(pc.k))
            << pc.m << "x" << pc.k << "x" << pc.n << " ta=" << ta << " tb=" << tb;
      }
    }
  }
}

TEST(SplitMatrixProducts, HaveTheSameBitsAtAnyThreadCount) {
  expect_same_at_any_thread_count([] {
    std::vector<Tensor> out;
    for (const ProductCase& pc : kProductCases) {
      for (DType dtype : {DType::Float32, DType::Float64}) {
        const Tensor a = Tensor::randn({pc.k, pc.m}, 53, dtype);
        const Tensor b = Tensor::randn({pc.k, pc.n}, 54, dtype);
        out.push_back(math::matmul(a, b, true, false));
        out.push_back(math::matmul(b, a, true, false));
      }
    }
    return out;
  });
}

}  // namespace
}  // namespace npdl
