// Batch norm's fused kernels at every instruction-set level
// (layers/batch_norm/detail/level.cpp; Note [Kernels per instruction set] in
// tensor/kernels/kernels.hpp). Every level this CPU runs must give the
// default level's results within the dtype's rounding (a wider vector sums
// a block in another order), and at each level the results must be the
// same bit for bit at any thread count (Note [Feature groups]).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "npdl.hpp"
#include "tensor/kernels/per_level.hpp"

namespace npdl::layers {
namespace {

using kernels::Capability;

struct Case {
  const char* name;
  Shape shape;
  int axis;
};

// Every path of the kernels: inner == 1 (columns and rows), inner > 1 with
// segments shorter and longer than a reduction block.
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"columns", {67, 37}, 0},
      {"groups", {6, 5, 7, 9}, 1},
      {"long_segments", {3, 4, 70, 70}, 1},
  };
  return c;
}

// Above the streaming-store threshold (16 MiB of float32), for the
// comparison with the default level only: streaming changes no value, and
// FusedBatchNorm.SameBitsAtAnyThreadCountWithStreamingStores checks threads.
const Case kStreamed{"streamed", {2, 4, 1024, 520}, 1};

std::vector<double> values(const Tensor& t) {
  const Tensor d = t.astype(DType::Float64);
  return std::vector<double>(d.data<double>(), d.data<double>() + d.size());
}

// Every output of every batch-norm kernel, in one list per output.
std::vector<std::vector<double>> run_all(const Case& c, DType dtype) {
  const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
  const Tensor x = Tensor::randn(c.shape, 11, dtype, 2.0, 3.0);
  const Tensor dy = Tensor::randn(c.shape, 12, dtype);
  const Tensor gamma = Tensor::uniform(L.param_shape, 13, dtype, 0.5, 1.5);
  const Tensor beta = Tensor::randn(L.param_shape, 14, dtype);
  const Tensor running_var = Tensor::uniform(L.param_shape, 15, DType::Float64, 0.5, 2.0);
  BatchNormStats stats;
  const Tensor y = batchnorm_forward_train(x, gamma, beta, L, 1e-5, stats);
  const BatchNormGrads g = batchnorm_backward_train(dy, x, gamma, stats, L);
  const Tensor y_infer = batchnorm_forward_infer(x, gamma, beta, stats.mean, running_var, L, 1e-5);
  const BatchNormGrads gi =
      batchnorm_backward_infer(dy, x, gamma, stats.mean, running_var, L, 1e-5);
  const BatchNormMoments moments = batchnorm_moments(x, L);
  const BatchNormSums sums = batchnorm_backward_sums(dy, x, stats, L);
  const Tensor dx = batchnorm_backward_dx(dy, x, gamma, stats, sums, 2 * L.M, L);
  return {values(y),          values(stats.mean),  values(stats.var),        values(stats.invstd),
          values(g.dx),       values(g.dgamma),    values(g.dbeta),          values(y_infer),
          values(gi.dx),      values(gi.dgamma),   values(gi.dbeta),         values(moments.mean),
          values(moments.m2), values(sums.sum_dy), values(sums.sum_dy_xhat), values(dx)};
}

std::vector<std::vector<double>> run_at(Capability level, const Case& c, DType dtype) {
  const kernels::ScopedLevel scoped(level);
  return run_all(c, dtype);
}

// max |got - want| <= tolerance * max |want| per output: the outputs are
// sums (or built from sums) whose rounding scales with their largest terms.
void expect_close(const std::vector<std::vector<double>>& got,
                  const std::vector<std::vector<double>>& want, double tolerance,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t k = 0; k < got.size(); ++k) {
    ASSERT_EQ(got[k].size(), want[k].size());
    double scale = 0, worst = 0;
    for (std::size_t i = 0; i < got[k].size(); ++i) {
      scale = std::max(scale, std::fabs(want[k][i]));
      worst = std::max(worst, std::fabs(got[k][i] - want[k][i]));
    }
    EXPECT_LE(worst, tolerance * std::max(scale, 1e-300)) << what << ", output " << k;
  }
}

class BatchNormLevels : public ::testing::TestWithParam<DType> {};

TEST_P(BatchNormLevels, MatchDefaultWithinRounding) {
  const DType dtype = GetParam();
  const double tolerance = dtype == DType::Float32 ? 1e-5 : 1e-13;
  std::vector<Case> all = cases();
  if (dtype == DType::Float32) all.push_back(kStreamed);
  for (const Case& c : all) {
    const auto want = run_at(Capability::Default, c, dtype);
    for (Capability level : kernels::supported_capabilities()) {
      if (level == Capability::Default) continue;
      expect_close(run_at(level, c, dtype), want, tolerance,
                   kernels::to_string(level) + " " + c.name);
    }
  }
}

TEST_P(BatchNormLevels, BitwiseEqualAtAnyThreadCount) {
  const DType dtype = GetParam();
  const int threads = get_num_threads();
  for (const Case& c : cases()) {
    for (Capability level : kernels::supported_capabilities()) {
      set_num_threads(1);
      const auto one = run_at(level, c, dtype);
      set_num_threads(2);
      const auto two = run_at(level, c, dtype);
      EXPECT_EQ(one, two) << kernels::to_string(level) << " " << c.name;
    }
  }
  set_num_threads(threads);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, BatchNormLevels,
                         ::testing::Values(DType::Float32, DType::Float64));

TEST(ScopedLevel, RestoresTheLevelBefore) {
  const Capability before = kernels::level_for_this_thread();
  {
    const kernels::ScopedLevel scoped(Capability::Default);
    EXPECT_EQ(kernels::level_for_this_thread(), Capability::Default);
  }
  EXPECT_EQ(kernels::level_for_this_thread(), before);
}

}  // namespace
}  // namespace npdl::layers
