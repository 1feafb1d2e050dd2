// The optimisers' updates at every instruction-set level
// (model/detail/optimizer_level.cpp; Note [Kernels per instruction set] in
// tensor/kernels/kernels.hpp). Every level this CPU runs must give the
// default level's parameters: bit for bit where an update is elementwise
// +, -, *, /, max and abs (SGD, the momenta, Adamax, clipping), within a few
// units in the last place where it takes square roots, which Eigen computes
// at the AVX levels from an estimate and a Newton step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "npdl.hpp"
#include "tensor/kernels/per_level.hpp"

namespace npdl::model {
namespace {

using kernels::Capability;

constexpr std::int64_t kN = 1003;  // not a multiple of any vector width: tails run too
constexpr int kSteps = 3;

// The parameters after kSteps updates of optimiser `name` (clipping at 0.5),
// each from another gradient, at `level`.
std::vector<double> trained(const std::string& name, DType dtype, Capability level) {
  const kernels::ScopedLevel scoped(level);
  OptimizerOptions options;
  options.lr = 0.01;
  options.clip = 0.5;
  const OptimizerPtr optimizer = get_optimizer(name, options);
  const ParameterPtr p = make_parameter(Tensor::randn({kN}, 1, dtype), "w");
  for (int t = 0; t < kSteps; ++t) {
    p->grad = Tensor::randn({kN}, 2 + t, dtype, 0.0, 0.4);
    optimizer->update({p});
  }
  const Tensor values = p->value.astype(DType::Float64);
  return std::vector<double>(values.data<double>(), values.data<double>() + kN);
}

bool takes_square_roots(const std::string& name) {
  for (const char* rule : {"adagrad", "rmsprop", "adadelta", "adam"}) {
    if (name == rule) return true;
  }
  return false;
}

class OptimizerLevels : public ::testing::TestWithParam<DType> {};

TEST_P(OptimizerLevels, MatchDefault) {
  const DType dtype = GetParam();
  const double eps = dtype == DType::Float32 ? std::numeric_limits<float>::epsilon()
                                             : std::numeric_limits<double>::epsilon();
  for (const std::string& name : optimizer_names()) {
    if (std::isupper(static_cast<unsigned char>(name[0]))) continue;  // an alias
    const std::vector<double> want = trained(name, dtype, Capability::Default);
    for (Capability level : kernels::supported_capabilities()) {
      if (level == Capability::Default) continue;
      const std::vector<double> got = trained(name, dtype, level);
      const std::string what = kernels::to_string(level) + " " + name;
      if (!takes_square_roots(name)) {
        EXPECT_EQ(got, want) << what;
        continue;
      }
      // A few ulps of a step of size lr = 0.01 per update, on parameters of
      // magnitude about 1.
      for (std::int64_t i = 0; i < kN; ++i) {
        ASSERT_NEAR(got[i], want[i], 16 * eps * std::max(1.0, std::fabs(want[i])))
            << what << ", element " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, OptimizerLevels,
                         ::testing::Values(DType::Float32, DType::Float64));

}  // namespace
}  // namespace npdl::model
