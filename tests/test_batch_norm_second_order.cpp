// Batch norm at second order, three ways, against float64 central
// differences of the first derivative: the composite differentiated twice by
// reverse mode, the fused backward recorded from primitives, and the
// hand-derived double backward; checked mode at second order; Hessian-vector
// products through the layer in every backward mode.
#include <gtest/gtest.h>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl::layers {
namespace {

struct AxisCase {
  Shape shape;
  int axis;
};

// Every feature-axis case (0, 1, the last, negative), small enough for finite differences of
// a gradient (two first-order sweeps per element of every input); the last
// three have axes of size 1 after the feature axis, or as the feature axis.
const AxisCase kCases[] = {
    {{5, 3}, 0}, {{5, 3}, -1},      {{3, 2, 2, 3}, 1}, {{3, 2, 2, 2}, 0}, {{3, 4, 2}, -1},
    {{2, 3}, 0}, {{4, 3, 1, 1}, 1}, {{4, 3, 1}, 1},    {{3, 2, 1, 2}, 2},
};

std::string case_name(const ::testing::TestParamInfo<AxisCase>& info) {
  std::string n = "shape";
  for (auto d : info.param.shape) n += "_" + std::to_string(d);
  return n + "_axis_" + (info.param.axis < 0 ? "m1" : std::to_string(info.param.axis));
}

std::vector<Tensor> inputs_for(const BatchNormLayout& L, const Shape& shape, DType dtype) {
  return {Tensor::randn(shape, 3, dtype, 2.0, 3.0),
          Tensor::uniform(L.param_shape, 4, dtype, 0.5, 1.5),
          Tensor::randn(L.param_shape, 5, dtype)};
}

constexpr double kEps = 1e-3;  // large enough that it matters in the algebra

GraphFunction composite(const BatchNormLayout& L) {
  return [L](const std::vector<Var>& v) {
    return batchnorm_composite_train(v[0], v[1], v[2], L, kEps);
  };
}
GraphFunction fused(const BatchNormLayout& L, DoubleBackward how, bool checked = false) {
  FusedOptions options;
  options.checked = checked;
  options.double_backward = how;
  return [L, options](const std::vector<Var>& v) {
    return batchnorm_fused_train(v[0], v[1], v[2], L, kEps, options);
  };
}

class SecondOrderBatchNorm : public ::testing::TestWithParam<AxisCase> {};

TEST_P(SecondOrderBatchNorm, TheCompositeDifferentiatedTwiceMatchesFiniteDifferences) {
  const BatchNormLayout L = batchnorm_layout(GetParam().shape, GetParam().axis);
  EXPECT_GRADGRADCHECK(composite(L), inputs_for(L, GetParam().shape, DType::Float64));
}

TEST_P(SecondOrderBatchNorm, TheFusedBackwardRecordedFromPrimitivesMatches) {
  const BatchNormLayout L = batchnorm_layout(GetParam().shape, GetParam().axis);
  EXPECT_GRADGRADCHECK(fused(L, DoubleBackward::Recorded),
                       inputs_for(L, GetParam().shape, DType::Float64));
}

TEST_P(SecondOrderBatchNorm, TheHandDerivedDoubleBackwardMatches) {
  const BatchNormLayout L = batchnorm_layout(GetParam().shape, GetParam().axis);
  EXPECT_GRADGRADCHECK(fused(L, DoubleBackward::Hand),
                       inputs_for(L, GetParam().shape, DType::Float64));
}

TEST_P(SecondOrderBatchNorm, CheckedModeAgreesAtSecondOrder) {
  const BatchNormLayout L = batchnorm_layout(GetParam().shape, GetParam().axis);
  EXPECT_GRADGRADCHECK(fused(L, DoubleBackward::Hand, /*checked=*/true),
                       inputs_for(L, GetParam().shape, DType::Float64));
}

INSTANTIATE_TEST_SUITE_P(AxisCases, SecondOrderBatchNorm, ::testing::ValuesIn(kCases), case_name);

// The three ways in float32 against the float64 hand-derived one, on the
// same values: second derivatives of <dx, u> + <dgamma, w> along x, gamma, dy.
std::vector<Tensor> second_derivatives(const GraphFunction& f, const std::vector<Tensor>& in,
                                       DType dtype) {
  Graph graph;
  std::vector<Var> wrt;
  for (const Tensor& t : in) wrt.push_back(graph.variable(t.astype(dtype)));
  const Var y = f({wrt[0], wrt[1], wrt[2]});
  const Var dy = graph.variable(Tensor::randn(y.shape(), 6, DType::Float64).astype(dtype));
  const std::vector<Var> first = grad({y}, {wrt[0], wrt[1]}, {dy}, true);
  const Var u(Tensor::randn(first[0].shape(), 7, DType::Float64).astype(dtype));
  const Var w(Tensor::randn(first[1].shape(), 8, DType::Float64).astype(dtype));
  std::vector<Tensor> out;
  for (const Var& g : grad(first, {wrt[0], wrt[1], dy}, {u, w})) out.push_back(g.value());
  return out;
}

TEST(SecondOrderBatchNormFloat32, EveryWayIsWithinFloat32ToleranceOfFloat64) {
  for (const AxisCase& c : kCases) {
    SCOPED_TRACE(to_string(c.shape));
    const BatchNormLayout L = batchnorm_layout(c.shape, c.axis);
    const std::vector<Tensor> in = inputs_for(L, c.shape, DType::Float64);
    const std::vector<Tensor> reference =
        second_derivatives(fused(L, DoubleBackward::Hand), in, DType::Float64);
    for (const GraphFunction& f :
         {composite(L), fused(L, DoubleBackward::Recorded), fused(L, DoubleBackward::Hand)}) {
      const std::vector<Tensor> got = second_derivatives(f, in, DType::Float32);
      for (std::size_t i = 0; i < got.size(); ++i) {
        const double scale =
            math::max_abs_diff(reference[i], Tensor::zeros(reference[i].shape(), DType::Float64))
                .abs +
            1.0;
        const TensorComparison cmp = compare_tensors("d2", got[i], reference[i], 2e-3 * scale, 0.0);
        EXPECT_TRUE(cmp.ok) << cmp.describe();
      }
    }
  }
}

TEST(SecondOrderBatchNormErrors, AThirdDerivativeThroughTheHandNodesIsRefusedByName) {
  const BatchNormLayout L = batchnorm_layout({4, 3}, 0);
  const std::vector<Tensor> in = inputs_for(L, {4, 3}, DType::Float64);
  Graph graph;
  const Var x = graph.variable(in[0]), gamma = graph.variable(in[1]), beta = graph.variable(in[2]);
  const Var y = fused(L, DoubleBackward::Hand)({x, gamma, beta});
  const Var loss = ops::sum(ops::square(y) * y);
  const Var g = grad({loss}, {x}, {}, true)[0];
  const Var h = grad({ops::sum(ops::square(g))}, {x}, {}, true)[0];  // second order: fine
  try {
    grad({ops::sum(h)}, {x});
    FAIL() << "expected a GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("batch_normal_fused_backward"), std::string::npos)
        << e.what();
  }
  // Recorded from primitives, every order is available.
  Graph again;
  const Var x2 = again.variable(in[0]);
  const Var y2 =
      fused(L, DoubleBackward::Recorded)({x2, again.variable(in[1]), again.variable(in[2])});
  const Var g2 = grad({ops::sum(ops::square(y2) * y2)}, {x2}, {}, true)[0];
  const Var h2 = grad({ops::sum(ops::square(g2))}, {x2}, {}, true)[0];
  EXPECT_NO_THROW(grad({ops::sum(h2)}, {x2}));
}

// H v of a small network's loss through the BatchNormal layer: the same in
// every backward mode and double-backward choice.
TEST(SecondOrderBatchNormLayer, HessianVectorProductsAgreeAcrossModes) {
  const Tensor data = Tensor::randn({8, 5}, 9, DType::Float64);
  const Tensor w0 = Tensor::randn({5, 4}, 10, DType::Float64);
  const Tensor v = Tensor::randn({5, 4}, 11, DType::Float64);
  auto hv_with = [&](BackwardMode mode, DoubleBackward how) {
    BatchNormal bn(1e-3, 0.9, 0);
    bn.set_backward_mode(mode);
    bn.set_double_backward(how);
    Graph graph;
    const Var w = graph.variable(w0);
    const Var y = bn.apply(ops::matmul(graph.input(data), w), /*training=*/true);
    return hvp(ops::mean(ops::square(ops::sigmoid(y))), {w}, {v})[0];
  };
  const Tensor reference = hv_with(BackwardMode::Autodiff, DoubleBackward::Hand);
  for (auto [mode, how] : {std::pair{BackwardMode::Fused, DoubleBackward::Hand},
                           std::pair{BackwardMode::Fused, DoubleBackward::Recorded},
                           std::pair{BackwardMode::Checked, DoubleBackward::Hand}}) {
    const TensorComparison cmp = compare_tensors("Hv", hv_with(mode, how), reference, 1e-10, 1e-8);
    EXPECT_TRUE(cmp.ok) << backward_mode_name(mode) << ": " << cmp.describe();
  }
}

TEST(SecondOrderBatchNormLayer, ParsesTheDoubleBackwardByName) {
  EXPECT_EQ(parse_double_backward("hand"), DoubleBackward::Hand);
  EXPECT_EQ(parse_double_backward("recorded"), DoubleBackward::Recorded);
  EXPECT_THROW(parse_double_backward("fused"), ValueError);
}

}  // namespace
}  // namespace npdl::layers
