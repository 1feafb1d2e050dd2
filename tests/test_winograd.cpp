// Winograd's F(2x2, 3x3) and F(4x4, 3x3) convolutions (Note [Winograd
// convolution]): which geometries take which, their float32 rounding
// against the stated bounds, and their bits across thread counts and
// between the fused and separate VJPs.
// Values and VJPs on edge shapes are in test_conv_ops.cpp (winograd_* cases).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "npdl.hpp"
#include "tensor/detail/winograd.hpp"
#include "tensor/kernels/per_level.hpp"
#include "tests/conv_reference.hpp"

namespace npdl {
namespace {

using math::Padding2d;
using math::Size2;
using math::detail::ConvGeometry;

ConvGeometry geometry(const Shape& x, const Shape& w, const Padding2d& p, std::int64_t stride = 1) {
  const std::int64_t oh = (x[2] + p.top + p.bottom - w[2]) / stride + 1;
  const std::int64_t ow = (x[3] + p.left + p.right - w[3]) / stride + 1;
  return {x[0], x[1], x[2], x[3], w[0], w[2], w[3], oh, ow, stride, stride, p.top, p.left};
}

TEST(Winograd, AppliesTo3x3AtStrideOneWithEnoughChannelsOnly) {
  using math::detail::winograd_applies;
  const Padding2d same{1, 1, 1, 1};
  EXPECT_TRUE(winograd_applies(geometry({8, 16, 14, 14}, {16, 16, 3, 3}, same)));
  EXPECT_TRUE(winograd_applies(geometry({1, 64, 1, 1}, {32, 64, 3, 3}, same)));
  EXPECT_FALSE(winograd_applies(geometry({8, 16, 14, 14}, {16, 16, 3, 3}, same, 2)));
  EXPECT_FALSE(winograd_applies(geometry({8, 15, 14, 14}, {16, 15, 3, 3}, same)));  // C
  EXPECT_FALSE(winograd_applies(geometry({8, 16, 14, 14}, {15, 16, 3, 3}, same)));  // F
  EXPECT_FALSE(winograd_applies(geometry({8, 16, 14, 14}, {16, 16, 5, 5}, same)));
  EXPECT_FALSE(winograd_applies(geometry({8, 16, 14, 14}, {16, 16, 3, 1}, same)));
}

// F(4x4) where its 36 multiplies a tile of 4x4 outputs come to fewer than
// F(2x2)'s 16 a tile of 2x2, tiles past the edge counted whole.
TEST(Winograd, TakesFourByFourTilesWhereTheyNeedFewerMultiplies) {
  using math::detail::winograd_tile_outputs;
  const Padding2d valid{0, 0, 0, 0};
  auto tile_outputs = [&](std::int64_t oh, std::int64_t ow) {
    return winograd_tile_outputs(geometry({2, 16, oh + 2, ow + 2}, {16, 16, 3, 3}, valid));
  };
  // Square maps: 1, 2, 5 and 6 (a tie, 144 each) take F(2x2).
  const std::int64_t want[] = {2, 2, 4, 4, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4};
  for (std::int64_t n = 1; n <= 14; ++n) EXPECT_EQ(tile_outputs(n, n), want[n - 1]) << n;
  EXPECT_EQ(tile_outputs(3, 1), 2);    // 36 against 2 * 16
  EXPECT_EQ(tile_outputs(2, 30), 2);   // 8 * 36 against 15 * 16
  EXPECT_EQ(tile_outputs(3, 12), 4);   // 3 * 36 against 12 * 16
  EXPECT_EQ(tile_outputs(11, 11), 4);  // the CNN's second layer: 9 * 36 against 36 * 16
}

// The elementwise bounds of Note [Winograd convolution]: gamma_n times a
// constant K times the number of terms times the largest magnitudes, with
// n the terms plus the transforms' roundings; per tiling, that Note's table.
struct Bounds {
  double k_y, k_x, k_w;
  std::int64_t n_y, n_x, n_w;  // roundings beyond the sums' terms
};
Bounds bounds_for(std::int64_t tile_outputs) {
  if (tile_outputs == 2) return {64, 64, 36, 10, 13, 8};
  return {2304, 1482.25, 25600.0 / 9, 18, 23, 18};
}

double gamma_float32(std::int64_t n) {
  const double u = std::ldexp(1.0, -24);
  return n * u / (1 - n * u);
}

double max_abs(const Tensor& t) {
  const Tensor t64 = t.astype(DType::Float64);
  const double* p = t64.data<double>();
  double m = 0;
  for (std::int64_t i = 0; i < t64.size(); ++i) m = std::max(m, std::abs(p[i]));
  return m;
}

double max_abs_error(const Tensor& got, const Tensor& expected) {
  return max_abs(math::sub(got.astype(DType::Float64), expected));
}

struct BoundCase {
  Shape x, w;
  Padding2d padding;
  std::int64_t tile_outputs;  // the tiling the case is meant to take
};

class WinogradRounding : public ::testing::TestWithParam<BoundCase> {};

TEST_P(WinogradRounding, Float32ErrorsStayWithinTheStatedBounds) {
  const BoundCase& c = GetParam();
  const ConvGeometry g = geometry(c.x, c.w, c.padding);
  ASSERT_TRUE(math::detail::winograd_applies(g));
  const std::int64_t m = math::detail::winograd_tile_outputs(g);
  ASSERT_EQ(m, c.tile_outputs);
  // An offset input and scales unlike 1, so the bound's factors all count.
  const Tensor x = Tensor::uniform(c.x, 1, DType::Float64, -2.5, 3.5);
  const Tensor w = Tensor::uniform(c.w, 2, DType::Float64, -0.25, 0.25);
  const Tensor gy =
      Tensor::uniform(math::conv2d(x, w, 1, c.padding).shape(), 3, DType::Float64, -2.0, 2.0);
  const Tensor x32 = x.astype(DType::Float32), w32 = w.astype(DType::Float32),
               gy32 = gy.astype(DType::Float32);
  // The float32 inputs are what is convolved: the references take the
  // rounded inputs' exact products, so only the kernel's rounding is measured.
  const Tensor xr = x32.astype(DType::Float64), wr = w32.astype(DType::Float64),
               gyr = gy32.astype(DType::Float64);
  const Tensor y_ref = testing::reference_conv2d(xr, wr, 1, c.padding);
  const math::Conv2dGrads g_ref = testing::reference_conv2d_backward(gyr, xr, wr, 1, c.padding);

  const Tensor y = math::conv2d(x32, w32, 1, c.padding);
  const math::Conv2dGrads grads = math::conv2d_backward(gy32, x32, w32, 1, c.padding);
  const std::int64_t tiles = g.N * ((g.OH + m - 1) / m) * ((g.OW + m - 1) / m);
  const Bounds b = bounds_for(m);
  const double y_bound = gamma_float32(g.C + b.n_y) * b.k_y * g.C * max_abs(wr) * max_abs(xr);
  const double gx_bound = gamma_float32(g.F + b.n_x) * b.k_x * g.F * max_abs(wr) * max_abs(gyr);
  const double gw_bound = gamma_float32(tiles + b.n_w) * b.k_w * tiles * max_abs(gyr) * max_abs(xr);
  const double y_err = max_abs_error(y, y_ref), gx_err = max_abs_error(grads.gx, g_ref.gx),
               gw_err = max_abs_error(grads.gw, g_ref.gw);
  EXPECT_LE(y_err, y_bound);
  EXPECT_LE(gx_err, gx_bound);
  EXPECT_LE(gw_err, gw_bound);
  // And far inside them on random data (errors grow like the square root
  // of the number of roundings, the bounds like their number).
  EXPECT_LE(y_err, y_bound / 20);
  EXPECT_LE(gx_err, gx_bound / 20);
  EXPECT_LE(gw_err, gw_bound / 20);
}

INSTANTIATE_TEST_SUITE_P(Shapes, WinogradRounding,
                         ::testing::Values(
                             // F(2x2): 6x6, 6x5 (a tie with F(4x4)) and 2x30 outputs.
                             BoundCase{{12, 16, 6, 6}, {16, 16, 3, 3}, {1, 1, 1, 1}, 2},
                             BoundCase{{2, 24, 8, 7}, {20, 24, 3, 3}, {0, 0, 0, 0}, 2},
                             BoundCase{{2, 16, 4, 32}, {16, 16, 3, 3}, {0, 0, 0, 0}, 2},
                             // F(4x4): 9x7, 10x10, 5x8 outputs, the CNN's second layer (11x11,
                             // 32 -> 64), and large planes (one sample a group) whose last rows
                             // and columns of tiles are partly used.
                             BoundCase{{3, 16, 9, 7}, {16, 16, 3, 3}, {1, 1, 1, 1}, 4},
                             BoundCase{{2, 40, 12, 12}, {24, 40, 3, 3}, {0, 0, 0, 0}, 4},
                             BoundCase{{1, 17, 5, 6}, {33, 17, 3, 3}, {2, 0, 1, 3}, 4},
                             BoundCase{{4, 32, 13, 13}, {64, 32, 3, 3}, {0, 0, 0, 0}, 4},
                             BoundCase{{2, 16, 52, 47}, {16, 16, 3, 3}, {2, 1, 0, 3}, 4},
                             BoundCase{{1, 16, 71, 50}, {17, 16, 3, 3}, {0, 0, 1, 1}, 4}));

Tensor with_threads(int threads, const std::function<Tensor()>& fn) {
  const int saved = get_num_threads();
  set_num_threads(threads);
  Tensor out = fn();
  set_num_threads(saved);
  return out;
}

void expect_same_bits(const Tensor& a, const Tensor& b, const char* what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  EXPECT_TRUE(std::equal(pa, pa + a.size(), pb)) << what;
}

// In F(4x4): one group (its samples and products share the threads), of
// 1, 30 and 3 samples; groups of one large sample, more groups than chains
// (10 samples of 529 tiles: one a group, two chains of two); groups of
// several samples (60 of 36 tiles: 22, 22 and 16). In F(2x2): 250 samples
// of 6x6 maps, groups of 202 and 48.
TEST(Winograd, SameBitsAtAnyThreadCountAndWhetherTheGradientsComeTogetherOrAlone) {
  for (const Shape& xs : {Shape{1, 16, 11, 10}, Shape{30, 16, 11, 10}, Shape{3, 16, 61, 40},
                          Shape{10, 16, 92, 92}, Shape{60, 16, 22, 22}, Shape{250, 16, 6, 6}}) {
    const std::int64_t n = xs[0];
    const Shape ws{20, 16, 3, 3};
    const Padding2d same{1, 1, 1, 1};
    const Tensor x = Tensor::randn(xs, 4), w = Tensor::randn(ws, 5);
    const Tensor gy = Tensor::randn({n, 20, xs[2], xs[3]}, 6);
    for (int threads : {2, 3}) {
      auto conv = [&] { return math::conv2d(x, w, 1, same); };
      auto gx = [&] { return math::conv2d_input_grad(gy, w, xs, 1, same); };
      auto gw = [&] { return math::conv2d_weight_grad(x, gy, ws, 1, same); };
      expect_same_bits(with_threads(1, conv), with_threads(threads, conv), "y");
      expect_same_bits(with_threads(1, gx), with_threads(threads, gx), "gx");
      expect_same_bits(with_threads(1, gw), with_threads(threads, gw), "gw");
    }
    const math::Conv2dGrads both = math::conv2d_backward(gy, x, w, 1, same);
    expect_same_bits(both.gx, math::conv2d_input_grad(gy, w, xs, 1, same), "gx alone");
    expect_same_bits(both.gw, math::conv2d_weight_grad(x, gy, ws, 1, same), "gw alone");
  }
}

// float32 widens to float64 exactly: equal doubles are equal floats.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor a64 = a.astype(DType::Float64), b64 = b.astype(DType::Float64);
  return std::equal(a64.data<double>(), a64.data<double>() + a64.size(), b64.data<double>());
}

// The transforms and transposes (tensor/detail/winograd_level.cpp) move,
// add, subtract and multiply by constants, without FMAs: every level gives
// the default level's bits (the products are the start-up level's in both
// runs), for both tilings (12x12 outputs take F(4x4), 5x6 ones F(2x2)).
// Channel and pixel counts that are not multiples of 8 take the
// transposes' edge paths.
TEST(Winograd, EveryInstructionSetLevelGivesTheDefaultLevelsBits) {
  for (const auto& [dtype, xs] : {std::pair{DType::Float32, Shape{3, 20, 13, 11}},
                                  std::pair{DType::Float64, Shape{3, 20, 13, 11}},
                                  std::pair{DType::Float32, Shape{3, 20, 6, 5}},
                                  std::pair{DType::Float64, Shape{3, 20, 6, 5}}}) {
    const Shape ws{17, 20, 3, 3};
    const Padding2d padding{1, 0, 2, 1};
    const Tensor x = Tensor::randn(xs, 12, dtype), w = Tensor::randn(ws, 13, dtype);
    auto run = [&](kernels::Capability level) {
      const kernels::ScopedLevel scoped(level);
      const Tensor y = math::conv2d(x, w, 1, padding);
      const math::Conv2dGrads g =
          math::conv2d_backward(Tensor::randn(y.shape(), 14, dtype), x, w, 1, padding);
      return std::vector<Tensor>{y, g.gx, g.gw};
    };
    const std::vector<Tensor> want = run(kernels::Capability::Default);
    for (kernels::Capability level : kernels::supported_capabilities()) {
      const std::vector<Tensor> got = run(level);
      for (std::size_t i = 0; i < want.size(); ++i) {
        EXPECT_TRUE(same_bits(got[i], want[i]))
            << to_string(dtype) << " level " << static_cast<int>(level) << " result " << i;
      }
    }
  }
}

Tensor sample(const Tensor& t, std::int64_t n) {
  Shape one = t.shape();
  one[0] = 1;
  Tensor out(one, t.dtype());
  const std::int64_t size = out.size();
  const double* from = t.data<double>() + n * size;
  std::copy(from, from + size, out.data<double>());
  return out;
}

// gw sums over the batch: with more groups than chains, a chain adds its
// groups' products in place and the chains' sums are added after. The
// same sum taken sample by sample (each call a single group) agrees.
TEST(Winograd, WeightGradientsOfManyGroupsAddUpAcrossChains) {
  const Shape xs{10, 16, 92, 92}, ws{16, 16, 3, 3};
  const Padding2d same{1, 1, 1, 1};
  const Tensor x = Tensor::randn(xs, 15, DType::Float64);
  const Tensor gy = Tensor::randn({10, 16, 92, 92}, 16, DType::Float64);
  const Tensor gw = math::conv2d_weight_grad(x, gy, ws, 1, same);
  Tensor by_sample = Tensor::zeros(ws, DType::Float64);
  for (std::int64_t n = 0; n < xs[0]; ++n) {
    math::add_inplace(by_sample,
                      math::conv2d_weight_grad(sample(x, n), sample(gy, n), ws, 1, same));
  }
  EXPECT_LT(max_abs_error(gw, by_sample), 1e-12 * max_abs(by_sample));
}

// conv2d takes the Winograd kernel where winograd_applies says so: the
// same bits as calling it directly, and not the bits of im2col's sums.
TEST(Winograd, Conv2dTakesItWhereItApplies) {
  const Shape xs{2, 16, 8, 8}, ws{16, 16, 3, 3};
  const Padding2d same{1, 1, 1, 1};
  const Tensor x = Tensor::randn(xs, 7), w = Tensor::randn(ws, 8);
  const Tensor y = math::conv2d(x, w, 1, same);
  Tensor direct(y.shape(), DType::Float32);
  math::detail::winograd_forward(geometry(xs, ws, same), x.data<float>(), w.data<float>(),
                                 math::detail::OutputStage<float>{}, direct.data<float>());
  expect_same_bits(y, direct, "conv2d against winograd_forward");
}

// A size users run (a ResNet stage at batch 8): float32 against float64
// sums, relative to the output's scale.
TEST(Winograd, AResNetStageAgreesWithFloat64) {
  const Shape xs{8, 64, 14, 14}, ws{64, 64, 3, 3};
  const Padding2d same{1, 1, 1, 1};
  const Tensor x = Tensor::randn(xs, 9), w = math::scale(Tensor::randn(ws, 10), 0.05);
  const Tensor y = math::conv2d(x, w, 1, same);
  const Tensor y64 = math::conv2d(x.astype(DType::Float64), w.astype(DType::Float64), 1, same);
  const Tensor gy = Tensor::randn(y.shape(), 11);
  const math::Conv2dGrads g = math::conv2d_backward(gy, x, w, 1, same);
  const math::Conv2dGrads g64 = math::conv2d_backward(
      gy.astype(DType::Float64), x.astype(DType::Float64), w.astype(DType::Float64), 1, same);
  EXPECT_LT(max_abs_error(y, y64), 2e-5 * max_abs(y64));
  EXPECT_LT(max_abs_error(g.gx, g64.gx), 2e-5 * max_abs(g64.gx));
  EXPECT_LT(max_abs_error(g.gw, g64.gw), 2e-5 * max_abs(g64.gw));
}

}  // namespace
}  // namespace npdl
