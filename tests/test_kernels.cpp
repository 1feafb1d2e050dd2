// The kernels compiled per instruction-set level (Note [Kernels per
// instruction set] in tensor/kernels/kernels.hpp). Every level this CPU
// can run must give the default level's results: bit for bit where the
// arithmetic and its order are the same (elementwise +, -, *, /, negation,
// squares, square roots, max, comparisons, float64 accumulation), within a
// few units in the last place where a level evaluates a polynomial with
// fused multiply-adds (exp, log, tanh, sigmoid, rsqrt) or sums in another
// order (vector width: sums, dot products, matrix products, softmax), and
// for square roots: Eigen computes them at the AVX levels from the
// reciprocal-square-root estimate and a Newton step (EIGEN_FAST_MATH),
// within an ulp or two of the correctly rounded root the default level gives.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "autodiff/catalogue.hpp"
#include "tensor/error.hpp"
#include "tensor/kernels/kernels.hpp"

namespace npdl::kernels {
namespace {

constexpr std::int64_t kN = 1003;  // not a multiple of any vector width: tails run too

template <class T>
std::vector<T> random_values(std::uint32_t seed, double lo, double hi, std::int64_t n = kN) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (T& x : v) x = static_cast<T>(dist(gen));
  return v;
}

template <class T>
std::string describe(const std::vector<T>& got, const std::vector<T>& want, std::size_t i) {
  return "element " + std::to_string(i) + ": " + std::to_string(got[i]) + " vs default " +
         std::to_string(want[i]);
}

template <class T>
void expect_bitwise(const std::vector<T>& got, const std::vector<T>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])))) {
      ADD_FAILURE() << what << ", " << describe(got, want, i);
      return;
    }
  }
}

// |got - want| <= ulps * eps * max(|want|, scale): relative, with an absolute
// floor for results that are sums of terms larger than the result.
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double ulps, double scale,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  const double eps = std::numeric_limits<T>::epsilon();
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double bound = ulps * eps * std::max(std::fabs(double(want[i])), scale);
    if (!(std::fabs(double(got[i]) - double(want[i])) <= bound)) {
      ADD_FAILURE() << what << ", " << describe(got, want, i) << ", tolerance " << bound;
      return;
    }
  }
}

std::vector<Capability> levels_above_default() {
  std::vector<Capability> levels = supported_capabilities();
  levels.erase(levels.begin());
  return levels;
}

template <class T>
const TypedKernels<T>& typed(Capability level) {
  if constexpr (std::is_same_v<T, float>) {
    return table_for(level).f32;
  } else {
    return table_for(level).f64;
  }
}

template <class T>
class KernelLevels : public ::testing::Test {};
using Dtypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(KernelLevels, Dtypes);

// The unary kernels: each primitive's entry names its kernel, the range to
// draw from and the tolerance (Note [One entry per primitive] in
// autodiff/catalogue.hpp); `step`, the mask relu's VJP multiplies by, is no
// primitive and is stated here.
struct UnaryCase {
  UnaryOp op;
  std::string name;
  double lo, hi;
  double ulps;  // 0: bit for bit
};

std::vector<UnaryCase> unary_cases() {
  std::vector<UnaryCase> cases{{UnaryOp::Step, "step", -5, 5, 0}};
  for (const catalogue::Primitive* p : catalogue::primitives()) {
    if (p->kernel.unary == nullptr) continue;
    const std::optional<UnaryOp> op = parse_unary_op(p->kernel.unary);
    if (!op) {
      ADD_FAILURE() << p->name() << " names the kernel '" << p->kernel.unary
                    << "', which does not exist";
      continue;
    }
    cases.push_back({*op, p->kernel.unary, p->kernel.lo, p->kernel.hi, p->kernel.ulps});
  }
  return cases;
}

TEST(KernelLevelCases, EveryUnaryKernelIsCheckedOnce) {
  std::vector<std::string> names;
  for (const UnaryCase& c : unary_cases()) names.push_back(c.name);
  std::sort(names.begin(), names.end());
  std::vector<std::string> all;
  for (int i = 0; i < kUnaryOpCount; ++i) all.push_back(to_string(static_cast<UnaryOp>(i)));
  std::sort(all.begin(), all.end());
  EXPECT_EQ(names, all);
}

TYPED_TEST(KernelLevels, UnaryMatchesDefault) {
  using T = TypeParam;
  const std::vector<UnaryCase> cases = unary_cases();
  for (Capability level : levels_above_default()) {
    for (const UnaryCase& c : cases) {
      const std::vector<T> x = random_values<T>(7, c.lo, c.hi);
      std::vector<T> want(x.size()), got(x.size());
      typed<T>(Capability::Default).unary(c.op, x.data(), want.data(), kN);
      typed<T>(level).unary(c.op, x.data(), got.data(), kN);
      const std::string what = to_string(level) + " " + c.name;
      if (c.ulps == 0) {
        expect_bitwise(got, want, what);
      } else {
        expect_close(got, want, c.ulps, 0.0, what);
      }
    }
  }
}

TYPED_TEST(KernelLevels, ElementwiseArithmeticIsBitwiseEqual) {
  using T = TypeParam;
  const std::vector<T> x = random_values<T>(1, -10, 10), y = random_values<T>(2, 0.5, 10);
  const T s = T(1.75);
  for (Capability level : levels_above_default()) {
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
      const std::string what = to_string(level) + " op " + std::to_string(int(op));
      const TypedKernels<T>& d = typed<T>(Capability::Default);
      const TypedKernels<T>& k = typed<T>(level);
      std::vector<T> want(x.size()), got(x.size());
      d.binary(op, x.data(), y.data(), want.data(), kN);
      k.binary(op, x.data(), y.data(), got.data(), kN);
      expect_bitwise(got, want, what + " array-array");
      d.binary_scalar_rhs(op, x.data(), s, want.data(), kN);
      k.binary_scalar_rhs(op, x.data(), s, got.data(), kN);
      expect_bitwise(got, want, what + " array-scalar");
      d.binary_scalar_lhs(op, s, y.data(), want.data(), kN);
      k.binary_scalar_lhs(op, s, y.data(), got.data(), kN);
      expect_bitwise(got, want, what + " scalar-array");
    }
  }
}

// step(y) (relu's mask) and g * step(y) (relu's VJP) at every level, on
// the special values, against their definitions: 1 where y > 0, else 0 (a
// NaN y gives 0), and a true product by 1 or 0 (inf * 0 is a NaN, the sign
// of a zero kept). The specials fill the first 60 elements, in whole
// vectors, and the last six, which reach into the scalar tail past the
// last whole vector (1 to 11 elements long, by level and dtype).
TYPED_TEST(KernelLevels, StepAndMulStepMatchTheirDefinitions) {
  using T = TypeParam;
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> g = random_values<T>(21, -3, 3), y = random_values<T>(22, -1, 1);
  const std::vector<T> special{inf, -inf, nan, T(0), T(-0.0), T(2)};
  for (std::size_t i = 0; i < 60; ++i) {
    g[i] = special[i % special.size()];
    y[i] = special[(i / special.size()) % special.size()];
  }
  for (std::size_t i = 0; i < special.size(); ++i) {
    g[g.size() - 1 - i] = special[(i + 1) % special.size()];
    y[y.size() - 1 - i] = special[i];
  }
  auto same = [](T got, T want) {
    return std::isnan(want) ? std::isnan(got)
                            : got == want && std::signbit(got) == std::signbit(want);
  };
  for (Capability level : supported_capabilities()) {
    std::vector<T> product(g.size()), step(y.size());
    typed<T>(level).mul_step(g.data(), y.data(), product.data(), kN);
    typed<T>(level).unary(UnaryOp::Step, y.data(), step.data(), kN);
    for (std::size_t i = 0; i < g.size(); ++i) {
      const T want_step = y[i] > T(0) ? T(1) : T(0);
      ASSERT_TRUE(same(step[i], want_step))
          << to_string(level) << " element " << i << ": step(" << y[i] << ") gives " << step[i];
      ASSERT_TRUE(same(product[i], g[i] * want_step))
          << to_string(level) << " element " << i << ": g " << g[i] << ", y " << y[i] << " gives "
          << product[i] << ", want " << g[i] * want_step;
    }
  }
}

// Max pooling, 2 x 2 windows at stride 2, against a scan of each window in
// row-major order that keeps the first maximum and the first NaN. Values
// from a few integers make ties common; widths run from one window to
// several vector steps with odd tails, up to an ImageNet-sized 225 x 224
// plane; each plane sits in a buffer of its own size, so the last row's
// reads end at the buffer's end (the vector kernels must mask them:
// AddressSanitizer builds would report a read past it).
TYPED_TEST(KernelLevels, MaxPool2x2KeepsTheFirstMaximumAndTheFirstNaN) {
  using T = TypeParam;
  std::mt19937 gen(23);
  std::uniform_int_distribution<int> pick(-2, 3);  // 3: a NaN
  for (Capability level : supported_capabilities()) {
    for (std::int64_t h : {2, 3, 6, 26, 225}) {
      for (std::int64_t w : {2, 3, 11, 26, 31, 32, 33, 34, 70, 224}) {
        std::vector<T> plane(static_cast<std::size_t>(h * w));
        for (T& v : plane) {
          const int k = pick(gen);
          v = k == 3 ? std::numeric_limits<T>::quiet_NaN() : T(k);
        }
        const std::int64_t oh = h / 2, ow = w / 2;
        std::vector<T> got(static_cast<std::size_t>(oh * ow));
        std::vector<std::int32_t> got_at(got.size(), -1);
        typed<T>(level).max_pool_2x2(plane.data(), h, w, got.data(), got_at.data());
        for (std::int64_t r = 0; r < oh; ++r) {
          for (std::int64_t c = 0; c < ow; ++c) {
            std::int64_t best = 2 * r * w + 2 * c;
            for (std::int64_t at : {best + 1, best + w, best + w + 1}) {
              const T v = plane[static_cast<std::size_t>(at)],
                      b = plane[static_cast<std::size_t>(best)];
              if (v > b || (std::isnan(v) && !std::isnan(b))) best = at;
            }
            const std::size_t o = static_cast<std::size_t>(r * ow + c);
            ASSERT_EQ(got_at[o], best)
                << to_string(level) << " " << h << "x" << w << " window " << r << "," << c;
            const T want = plane[static_cast<std::size_t>(best)];
            ASSERT_TRUE(std::isnan(want) ? std::isnan(got[o]) : got[o] == want);
          }
        }
      }
    }
  }
}

// im2col's rows and their adjoint, against loops written here: the strides
// convolutions use (1 and 2 have loops of their own, 3 and 7 the general
// one), runs from empty to several vector steps with odd tails, padding on
// either side, several rows. The input buffer ends at the last element a
// row reads, so a vector step that read or wrote past it would be reported
// by AddressSanitizer builds.
TYPED_TEST(KernelLevels, UnrolledRowsGatherAndFoldEachElementOnce) {
  using T = TypeParam;
  for (Capability level : supported_capabilities()) {
    for (std::int64_t stride : {1, 2, 3, 7}) {
      for (std::int64_t n : {0, 1, 7, 15, 16, 17, 28, 33, 64, 113}) {
        for (std::int64_t count : {0, 1, 3}) {
          const std::int64_t lo = n % 3, width = lo + n + n % 2, step = n * stride + 5;
          const StridedRows rows{count, width, lo, lo + n, stride, step};
          const std::int64_t span =
              count == 0 || n == 0 ? 0 : (count - 1) * step + (n - 1) * stride + 1;
          const std::string what = to_string(level) + ", stride " + std::to_string(stride) +
                                   ", n " + std::to_string(n) + ", rows " + std::to_string(count);
          const std::vector<T> input = random_values<T>(31, -2, 2, span);
          std::vector<T> unrolled(static_cast<std::size_t>(count * width), T(7));
          typed<T>(level).unroll_rows(input.data(), rows, unrolled.data());
          std::vector<T> want_unrolled(unrolled.size(), T(0));
          for (std::int64_t r = 0; r < count; ++r) {
            for (std::int64_t i = 0; i < n; ++i) {
              want_unrolled[r * width + lo + i] = input[r * step + i * stride];
            }
          }
          expect_bitwise(unrolled, want_unrolled, what + ": unroll");

          const std::vector<T> col = random_values<T>(32, -2, 2, count * width);
          std::vector<T> folded = input, want_folded = input;
          typed<T>(level).fold_rows_add(col.data(), rows, folded.data());
          for (std::int64_t r = 0; r < count; ++r) {
            for (std::int64_t i = 0; i < n; ++i) {
              want_folded[r * step + i * stride] += col[r * width + lo + i];
            }
          }
          expect_bitwise(folded, want_folded, what + ": fold");
        }
      }
    }
  }
}

TYPED_TEST(KernelLevels, Float64AccumulationIsBitwiseEqual) {
  using T = TypeParam;
  const std::vector<T> x = random_values<T>(3, -10, 10), y = random_values<T>(4, -10, 10);
  for (Capability level : levels_above_default()) {
    const TypedKernels<T>& d = typed<T>(Capability::Default);
    const TypedKernels<T>& k = typed<T>(level);
    const std::vector<double> start = random_values<double>(5, -1, 1);
    std::vector<double> want = start, got = start;
    d.accumulate(want.data(), x.data(), kN);
    k.accumulate(got.data(), x.data(), kN);
    d.accumulate_product(want.data(), x.data(), y.data(), kN);
    k.accumulate_product(got.data(), x.data(), y.data(), kN);
    d.accumulate_scaled(want.data(), x.data(), T(0.3), kN);
    k.accumulate_scaled(got.data(), x.data(), T(0.3), kN);
    expect_bitwise(got, want, to_string(level) + " accumulate");
  }
}

TYPED_TEST(KernelLevels, SumsMatchDefaultWithinRounding) {
  using T = TypeParam;
  const std::vector<T> x = random_values<T>(6, -1, 1), y = random_values<T>(8, -1, 1);
  for (Capability level : levels_above_default()) {
    const TypedKernels<T>& d = typed<T>(Capability::Default);
    const TypedKernels<T>& k = typed<T>(level);
    // Summation order differs with the vector width: error bound n * eps * sum |x|.
    const double scale = double(kN);
    expect_close<T>({k.sum(x.data(), kN)}, {d.sum(x.data(), kN)}, 2.0 * kN, scale,
                    to_string(level) + " sum");
    expect_close<T>({k.dot(x.data(), y.data(), kN)}, {d.dot(x.data(), y.data(), kN)}, 2.0 * kN,
                    scale, to_string(level) + " dot");
  }
}

TYPED_TEST(KernelLevels, MatrixProductsMatchDefaultWithinRounding) {
  using T = TypeParam;
  // The MLP's shapes (batch x 784 by 784 x 100) and every transpose case.
  const std::int64_t m = 60, k = 784, n = 100;
  const std::vector<T> a = random_values<T>(9, -1, 1, m * k),
                       b = random_values<T>(10, -1, 1, k * n);
  for (Capability level : levels_above_default()) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
        std::vector<T> want(static_cast<std::size_t>(m * n)), got(want.size());
        typed<T>(Capability::Default)
            .gemm(m, n, k, a.data(), lda, ta, b.data(), ldb, tb, want.data(), n);
        typed<T>(level).gemm(m, n, k, a.data(), lda, ta, b.data(), ldb, tb, got.data(), n);
        // Each entry sums k products of magnitude <= 1.
        expect_close(
            got, want, 2.0 * double(k), double(k),
            to_string(level) + " gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
      }
    }
  }
}

// gemm_add adds the product to what c holds: c0 + op(a) @ op(b), for the
// blocked products and for the tiny ones Eigen computes coefficient-wise.
TYPED_TEST(KernelLevels, MatrixProductsAddToTheirOutputWhenAsked) {
  using T = TypeParam;
  for (Capability level : kernels::supported_capabilities()) {
    const TypedKernels<T>& kern = typed<T>(level);
    for (std::int64_t k : {std::int64_t{3}, std::int64_t{300}}) {
      const std::int64_t m = 7, n = 5 + k / 10;
      const std::vector<T> a = random_values<T>(11, -1, 1, m * k),
                           b = random_values<T>(12, -1, 1, k * n),
                           c0 = random_values<T>(13, -1, 1, m * n);
      for (bool ta : {false, true}) {
        const std::int64_t lda = ta ? m : k;
        std::vector<T> product(c0.size()), got = c0;
        kern.gemm(m, n, k, a.data(), lda, ta, b.data(), n, false, product.data(), n);
        kern.gemm_add(m, n, k, a.data(), lda, ta, b.data(), n, false, got.data(), n);
        std::vector<T> want(c0.size());
        for (std::size_t i = 0; i < want.size(); ++i) want[i] = c0[i] + product[i];
        expect_close(got, want, 2.0 * double(k + 1), double(k + 1),
                     to_string(level) + " gemm_add k=" + std::to_string(k));
      }
    }
  }
}

// Note [Reused GEMM blocks] (tensor/kernels/level.cpp): a thread keeps the
// blocks its products pack their operands into. A product must give the
// same bits on a fresh thread, after a larger product grew the blocks and
// after a tall one that lays them out otherwise; the others must be right.
TYPED_TEST(KernelLevels, MatrixProductsDoNotDependOnWhatTheThreadRanBefore) {
  using T = TypeParam;
  struct Product {
    std::int64_t m, k, n;
    std::vector<T> a, b;
  };
  const auto product = [](std::int64_t m, std::int64_t k, std::int64_t n) {
    return Product{m, k, n, random_values<T>(12, -1, 1, m * k), random_values<T>(13, -1, 1, k * n)};
  };
  // The MLP's first layer; a product with larger blocks (2.8 MiB at
  // AVX-512); a tall one, 8000 x 1000 by 1000 x 24, whose blocks are small
  // and shaped otherwise (Eigen 3.4's blocking: 24 x 504 and 504 x 72).
  const Product small = product(60, 784, 100), kept = product(700, 900, 650),
                tall = product(8000, 1000, 24);
  const auto run = [](Capability level, const Product& p, bool ta, bool tb) {
    std::vector<T> c(static_cast<std::size_t>(p.m * p.n));
    typed<T>(level).gemm(p.m, p.n, p.k, p.a.data(), ta ? p.m : p.k, ta, p.b.data(), tb ? p.k : p.n,
                         tb, c.data(), p.n);
    return c;
  };
  // A sample of entries against float64 sums: each sums k products of
  // magnitude <= 1.
  const auto expect_right = [](const std::vector<T>& c, const Product& p, bool ta, bool tb,
                               const std::string& what) {
    for (std::int64_t s = 0; s < 64; ++s) {
      const std::int64_t i = (s * 7919) % p.m, j = (s * 104729) % p.n;
      double want = 0;
      for (std::int64_t q = 0; q < p.k; ++q) {
        want += double(p.a[ta ? q * p.m + i : i * p.k + q]) *
                double(p.b[tb ? j * p.k + q : q * p.n + j]);
      }
      const double tolerance = 2.0 * double(p.k) * std::numeric_limits<T>::epsilon();
      ASSERT_NEAR(double(c[i * p.n + j]), want, tolerance) << what << " entry " << i << ", " << j;
    }
  };
  for (Capability level : supported_capabilities()) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const std::string what =
            to_string(level) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb);
        std::vector<T> on_fresh_thread;
        std::thread([&] { on_fresh_thread = run(level, small, ta, tb); }).join();
        expect_right(run(level, kept, ta, tb), kept, ta, tb, what + " kept-size product");
        expect_bitwise(run(level, small, ta, tb), on_fresh_thread, what + " after a larger");
        expect_right(run(level, tall, ta, tb), tall, ta, tb, what + " tall product");
        expect_bitwise(run(level, small, ta, tb), on_fresh_thread, what + " after a tall one");
      }
    }
  }
}

// A product whose blocks are over the 16 MiB a thread keeps gets blocks of
// its own (Note [Reused GEMM blocks]): 24 x 2000 by 2000 x 16000 in float
// needs 25-31 MiB of blocks at every level by Eigen 3.4's blocking on this
// machine's caches (its operand b alone is 128 MB). It must be right, and a
// kept-size product after it must keep its bits.
TEST(GemmBlocks, AProductTooLargeToKeepItsBlocksIsRight) {
  const std::int64_t m = 24, k = 2000, n = 16000;
  std::vector<float> a(static_cast<std::size_t>(m * k)), b(static_cast<std::size_t>(k * n));
  // Values in [-1, 1] from a cheap hash: 32 million of them.
  const auto fill = [](std::vector<float>& v, std::uint64_t seed) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      v[i] = float(double((i * 2654435761u + seed) % 2001) / 1000.0 - 1.0);
    }
  };
  fill(a, 1);
  fill(b, 2);
  const std::vector<float> small_a = random_values<float>(14, -1, 1, 60 * 784),
                           small_b = random_values<float>(15, -1, 1, 784 * 100);
  for (Capability level : supported_capabilities()) {
    const TypedKernels<float>& kernels = typed<float>(level);
    std::vector<float> small_before(60 * 100), small_after(60 * 100);
    kernels.gemm(60, 100, 784, small_a.data(), 784, false, small_b.data(), 100, false,
                 small_before.data(), 100);
    std::vector<float> c(static_cast<std::size_t>(m * n));
    kernels.gemm(m, n, k, a.data(), k, false, b.data(), n, false, c.data(), n);
    for (std::int64_t s = 0; s < 64; ++s) {
      const std::int64_t i = (s * 7919) % m, j = (s * 104729) % n;
      double want = 0;
      for (std::int64_t q = 0; q < k; ++q) want += double(a[i * k + q]) * double(b[q * n + j]);
      ASSERT_NEAR(double(c[i * n + j]), want, 2.0 * double(k) * 1.2e-7)
          << to_string(level) << " entry " << i << ", " << j;
    }
    kernels.gemm(60, 100, 784, small_a.data(), 784, false, small_b.data(), 100, false,
                 small_after.data(), 100);
    expect_bitwise(small_after, small_before, to_string(level) + " after the large product");
  }
}

TYPED_TEST(KernelLevels, SoftmaxMatchesDefaultWithinRounding) {
  using T = TypeParam;
  const std::int64_t outer = 3, n = 10, inner = 37;
  const std::vector<T> x = random_values<T>(11, -20, 20, outer * n * inner);
  for (Capability level : levels_above_default()) {
    for (bool log : {false, true}) {
      std::vector<T> want(x.size()), got(x.size());
      typed<T>(Capability::Default).softmax(x.data(), want.data(), outer, n, inner, log);
      typed<T>(level).softmax(x.data(), got.data(), outer, n, inner, log);
      expect_close(got, want, 16.0, 1.0, to_string(level) + (log ? " log_softmax" : " softmax"));
    }
  }
}

// Note [exp underflow] (tensor/kernels/level.cpp): at every level, and in
// every position of a vector (lanes and the scalar tail), exp of an argument
// whose result is below the smallest normal number rounds as libm's does.
TYPED_TEST(KernelLevels, ExpUnderflowDoesNotDependOnPosition) {
  using T = TypeParam;
  const T lowest = std::is_same_v<T, float> ? T(-200) : T(-1000);
  const T inf = std::numeric_limits<T>::infinity();
  for (Capability level : supported_capabilities()) {
    for (std::int64_t n : {1, 3, 8, 17, 64, 300}) {
      std::vector<T> x(static_cast<std::size_t>(n), lowest), out(x.size());
      x[0] = -inf;
      typed<T>(level).unary(UnaryOp::Exp, x.data(), out.data(), n);
      for (std::int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(out[i], T(0)) << to_string(level) << " n=" << n << " position " << i;
      }
      if (n == 1) continue;  // softmax of {-inf} alone is NaN, as NumPy's
      x.assign(x.size(), T(0));
      x[x.size() - 1] = -inf;
      typed<T>(level).softmax(x.data(), out.data(), 1, n, 1, /*log=*/false);
      EXPECT_EQ(out[x.size() - 1], T(0)) << to_string(level) << " softmax n=" << n;
    }
  }
}

TYPED_TEST(KernelLevels, AlphaActivationsMatchDefault) {
  using T = TypeParam;
  const std::vector<T> x = random_values<T>(12, -20, 5);
  for (Capability level : levels_above_default()) {
    std::vector<T> want(x.size()), got(x.size());
    typed<T>(Capability::Default)
        .unary_alpha(AlphaOp::LeakyRelu, x.data(), T(0.1), want.data(), kN);
    typed<T>(level).unary_alpha(AlphaOp::LeakyRelu, x.data(), T(0.1), got.data(), kN);
    expect_bitwise(got, want, to_string(level) + " leaky_relu");
    // expm1 is a polynomial with fused multiply-adds at the FMA levels.
    typed<T>(Capability::Default).unary_alpha(AlphaOp::Elu, x.data(), T(1.5), want.data(), kN);
    typed<T>(level).unary_alpha(AlphaOp::Elu, x.data(), T(1.5), got.data(), kN);
    expect_close(got, want, 4, 0.0, to_string(level) + " elu");
  }
}

TEST(KernelDispatch, EachTableReportsItsLevel) {
  for (Capability level : supported_capabilities()) {
    EXPECT_EQ(table_for(level).capability, level);
  }
  EXPECT_EQ(supported_capabilities().front(), Capability::Default);
}

TEST(KernelDispatch, ActiveLevelFollowsTheEnvironment) {
  const Capability expected = choose_capability(std::getenv("NPDL_CPU_CAPABILITY"));
  EXPECT_EQ(active().capability, expected);
}

TEST(KernelDispatch, WithoutARequestTheBestLevelIsChosen) {
  EXPECT_EQ(choose_capability(nullptr), supported_capabilities().back());
  EXPECT_EQ(choose_capability(""), supported_capabilities().back());
  for (Capability level : supported_capabilities()) {
    EXPECT_EQ(choose_capability(to_string(level).c_str()), level);
  }
}

TEST(KernelDispatch, UnknownLevelIsAValueErrorNamingTheChoices) {
  try {
    choose_capability("sse9");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("default, avx2, avx512"), std::string::npos) << message;
    EXPECT_NE(message.find("'sse9'"), std::string::npos) << message;
  }
}

TEST(KernelDispatch, LevelTheCpuLacksIsAValueError) {
  const std::vector<Capability> supported = supported_capabilities();
  for (Capability level : {Capability::Avx2, Capability::Avx512}) {
    if (std::find(supported.begin(), supported.end(), level) != supported.end()) continue;
    EXPECT_THROW(choose_capability(to_string(level).c_str()), ValueError);
    EXPECT_THROW(table_for(level), ValueError);
  }
}

}  // namespace
}  // namespace npdl::kernels
