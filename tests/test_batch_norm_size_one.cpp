// BatchNormal and SyncBatchNormal (one process) on inputs with axes of size
// 1: (N, C, 1, 1), (N, C, 1), (N, 1, H, W), (N, C, H, 1), (N, C, 1, W) and
// (1, C, H, W), the feature axis first, in the middle, last and negative.
// An axis of size 1 is an axis like any other: gamma and beta must broadcast
// along the feature axis whatever the sizes around it. Every backward mode,
// both dtypes, training and inference, against a float64 reference written
// here as plain loops (forward, running statistics) and its central
// differences (gradients, random upstream); second order through the layer
// by gradgradcheck in every mode and double-backward choice.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl::layers {
namespace {

constexpr double kEps = 1e-3;
constexpr double kMomentum = 0.75;

struct UnitCase {
  Shape shape;
  int axis;
};

const UnitCase kUnitCases[] = {
    {{5, 3, 1, 1}, 1},   // (N, C, 1, 1)
    {{5, 3, 1, 1}, 0},   // every position of a sample a feature
    {{5, 3, 1, 1}, -1},  // one feature, on the last axis
    {{5, 3, 1}, 1},      // (N, C, 1)
    {{5, 3, 1}, -2},     // the same feature axis, counted from the end
    {{3, 1, 2, 3}, 1},   // (N, 1, H, W): C = 1
    {{3, 2, 3, 1}, 1},   // (N, C, H, 1)
    {{3, 2, 1, 3}, 1},   // (N, C, 1, W)
    {{3, 2, 1, 3}, 2},   // a feature axis of size 1 in the middle
    {{1, 2, 3, 2}, 1},   // (1, C, H, W): M = 6
    {{1, 3, 1, 1}, 1},   // (1, C, 1, 1): M = 1, training refused
    {{1, 2, 3, 2}, 0},   // one sample, every position a feature: M = 1
};

std::string case_text(const UnitCase& c) {
  std::string n = "shape";
  for (auto d : c.shape) n += "_" + std::to_string(d);
  return n + "_axis_" + (c.axis < 0 ? "m" + std::to_string(-c.axis) : std::to_string(c.axis));
}

// ------------------------------------------------------------ the reference

using Values = std::vector<double>;

// x, the parameters and the upstream gradient as plain numbers, with the
// feature of each element of x found by unravelling its index.
struct Problem {
  Shape shape, param_shape;
  std::vector<std::int64_t> feature;  // of each element of x, row-major
  std::int64_t features = 0;
  Values x, gamma, beta, dy, running_mean, running_var;
};

// Values drawn in float32, so that both dtypes see the same numbers.
Values draw(const Shape& s, std::uint64_t seed, double mean, double spread) {
  return Tensor::randn(s, seed, DType::Float32, mean, spread).to_vector();
}

Problem make_problem(const UnitCase& c, std::uint64_t seed) {
  Problem p;
  p.shape = c.shape;
  const int rank = static_cast<int>(c.shape.size());
  const int a = c.axis < 0 ? c.axis + rank : c.axis;
  const std::int64_t total = numel(c.shape), per_sample = total / c.shape[0];
  p.features = a == 0 ? per_sample : c.shape[a];
  p.param_shape = a == 0 ? Shape(c.shape.begin() + 1, c.shape.end()) : Shape{c.shape[a]};
  for (std::int64_t flat = 0; flat < total; ++flat) {
    std::int64_t rest = flat, along_a = 0;
    for (int d = rank - 1; d >= 0; --d) {
      if (d == a) along_a = rest % c.shape[d];
      rest /= c.shape[d];
    }
    p.feature.push_back(a == 0 ? flat % per_sample : along_a);
  }
  p.x = draw(c.shape, seed, 1.5, 2.0);
  p.dy = draw(c.shape, seed + 1, 0.3, 1.0);  // random, never all-ones
  p.gamma = draw(p.param_shape, seed + 2, 1.0, 0.4);
  p.beta = draw(p.param_shape, seed + 3, -0.5, 1.0);
  p.running_mean = draw(p.param_shape, seed + 4, 0.5, 1.0);
  p.running_var = Tensor::uniform(p.param_shape, seed + 5, DType::Float32, 0.5, 2.0).to_vector();
  return p;
}

std::int64_t elements_per_feature(const Problem& p) {
  return std::int64_t(p.x.size()) / p.features;
}

struct Moments {
  Values mean, var;  // var biased (over M)
};

Moments moments(const Problem& p, const Values& x) {
  Moments m{Values(p.features, 0.0), Values(p.features, 0.0)};
  const double M = double(elements_per_feature(p));
  for (std::size_t i = 0; i < x.size(); ++i) m.mean[p.feature[i]] += x[i] / M;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - m.mean[p.feature[i]];
    m.var[p.feature[i]] += d * d / M;
  }
  return m;
}

Values normalise(const Problem& p, const Values& x, const Values& gamma, const Values& beta,
                 const Moments& s) {
  Values y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::int64_t f = p.feature[i];
    y[i] = gamma[f] * (x[i] - s.mean[f]) / std::sqrt(s.var[f] + kEps) + beta[f];
  }
  return y;
}

using Forward = std::function<Values(const Values& x, const Values& gamma, const Values& beta)>;

Forward training_forward(const Problem& p) {
  return [&p](const Values& x, const Values& g, const Values& b) {
    return normalise(p, x, g, b, moments(p, x));
  };
}

Forward inference_forward(const Problem& p, const Moments& running) {
  return [&p, running](const Values& x, const Values& g, const Values& b) {
    return normalise(p, x, g, b, running);
  };
}

// The running statistics after one training step: the biased batch
// variance is scaled by M / (M - 1).
Moments running_after_step(const Problem& p) {
  const Moments batch = moments(p, p.x);
  const double M = double(elements_per_feature(p));
  Moments r{Values(p.features), Values(p.features)};
  for (std::int64_t f = 0; f < p.features; ++f) {
    r.mean[f] = kMomentum * p.running_mean[f] + (1 - kMomentum) * batch.mean[f];
    r.var[f] = kMomentum * p.running_var[f] + (1 - kMomentum) * batch.var[f] * M / (M - 1);
  }
  return r;
}

// d sum(f(x, gamma, beta) * dy) / d(x, gamma, beta), central differences.
std::array<Values, 3> numeric_gradients(const Forward& f, const Problem& p) {
  std::array<Values, 3> at{p.x, p.gamma, p.beta}, out;
  const auto loss = [&] {
    const Values y = f(at[0], at[1], at[2]);
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * p.dy[i];
    return s;
  };
  const double h = 1e-6;
  for (int k = 0; k < 3; ++k) {
    for (double& v : at[k]) {
      const double keep = v;
      v = keep + h;
      const double hi = loss();
      v = keep - h;
      const double lo = loss();
      v = keep;
      out[k].push_back((hi - lo) / (2 * h));
    }
  }
  return out;
}

// `got` has `shape` and is within tol * max(1, max|want|) of `want` everywhere.
void expect_close(const std::string& what, const Tensor& got, const Shape& shape,
                  const Values& want, double tol) {
  ASSERT_EQ(got.shape(), shape) << what;
  const Values v = got.to_vector();
  double scale = 1.0, worst = 0.0;
  std::size_t at = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double err = std::fabs(v[i] - want[i]);
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  EXPECT_LE(worst, tol * scale) << what << ": element " << at << " is " << v[at] << ", expected "
                                << want[at];
}

// ---------------------------------------------------------------- the layers

enum class Kind { Batch, Sync };

std::unique_ptr<BatchNormal> make_layer(Kind kind, const UnitCase& c) {
  if (kind == Kind::Sync) {
    return std::make_unique<SyncBatchNormal>(kEps, kMomentum, c.axis, "zero", "one",
                                             std::make_shared<dist::SingleProcessCommunicator>());
  }
  return std::make_unique<BatchNormal>(kEps, kMomentum, c.axis);
}

Tensor tensor(const Values& v, const Shape& s, DType dtype) {
  return Tensor::from_vector(s, v, DType::Float64).astype(dtype);
}

// The layer connected, with the problem's parameters and running statistics.
std::unique_ptr<BatchNormal> layer_for(Kind kind, const UnitCase& c, const Problem& p) {
  std::unique_ptr<BatchNormal> layer = make_layer(kind, c);
  layer->connect_to(Shape(c.shape.begin() + 1, c.shape.end()));
  layer->set_gamma(tensor(p.gamma, p.param_shape, DType::Float32));
  layer->set_beta(tensor(p.beta, p.param_shape, DType::Float32));
  layer->set_running_stats(tensor(p.running_mean, p.param_shape, DType::Float32),
                           tensor(p.running_var, p.param_shape, DType::Float32));
  return layer;
}

// A forward, then a backward from p.dy: y, dx, dgamma and dbeta against the
// reference forward `f` and its central differences.
void expect_step_matches(BatchNormal& layer, const Problem& p, bool training, const Forward& f,
                         DType dtype) {
  const double tol = dtype == DType::Float64 ? 1e-9 : 1e-5;
  const double grad_tol = dtype == DType::Float64 ? 1e-6 : 1e-4;
  const std::string phase = training ? "training " : "inference ";
  const Tensor y = layer.forward(tensor(p.x, p.shape, dtype), training);
  expect_close(phase + "y", y, p.shape, f(p.x, p.gamma, p.beta), tol);
  const Tensor dx = layer.backward(tensor(p.dy, p.shape, dtype));
  const std::array<Values, 3> numeric = numeric_gradients(f, p);
  expect_close(phase + "dx", dx, p.shape, numeric[0], grad_tol);
  expect_close(phase + "dgamma", layer.grads()[1], p.param_shape, numeric[1], grad_tol);
  expect_close(phase + "dbeta", layer.grads()[0], p.param_shape, numeric[2], grad_tol);
}

struct LayerCase {
  UnitCase unit;
  Kind kind;
  BackwardMode mode;
};

std::string layer_case_name(const ::testing::TestParamInfo<LayerCase>& info) {
  return case_text(info.param.unit) + (info.param.kind == Kind::Sync ? "_sync_" : "_batch_") +
         backward_mode_name(info.param.mode);
}

std::vector<LayerCase> layer_cases() {
  std::vector<LayerCase> out;
  for (const UnitCase& c : kUnitCases) {
    for (Kind kind : {Kind::Batch, Kind::Sync}) {
      for (BackwardMode mode :
           {BackwardMode::Autodiff, BackwardMode::Fused, BackwardMode::Checked}) {
        out.push_back({c, kind, mode});
      }
    }
  }
  return out;
}

class SizeOneAxes : public ::testing::TestWithParam<LayerCase> {};

// Training where M >= 2 (else a ValueError that changes nothing), then
// inference with the running statistics that training left.
TEST_P(SizeOneAxes, TrainingAndInferenceMatchTheReference) {
  const LayerCase& c = GetParam();
  const Problem p = make_problem(c.unit, 7);
  const bool trains = elements_per_feature(p) >= 2;
  const Moments running = trains ? running_after_step(p) : Moments{p.running_mean, p.running_var};
  for (DType dtype : {DType::Float64, DType::Float32}) {
    SCOPED_TRACE(to_string(dtype));
    const std::unique_ptr<BatchNormal> layer = layer_for(c.kind, c.unit, p);
    layer->set_backward_mode(c.mode);
    const double tol = dtype == DType::Float64 ? 1e-12 : 1e-6;
    if (trains) {
      expect_step_matches(*layer, p, true, training_forward(p), dtype);
      expect_close("running_mean", layer->running_mean(), p.param_shape, running.mean, tol);
      expect_close("running_var", layer->running_var(), p.param_shape, running.var, tol);
    } else {
      try {
        layer->forward(tensor(p.x, p.shape, dtype), /*training=*/true);
        ADD_FAILURE() << "trained on M = 1 element per feature";
      } catch (const ValueError& e) {
        EXPECT_NE(std::string(e.what()).find("at least 2 elements per feature"), std::string::npos)
            << e.what();
      }
      expect_close("running_mean", layer->running_mean(), p.param_shape, p.running_mean, 0.0);
      expect_close("running_var", layer->running_var(), p.param_shape, p.running_var, 0.0);
      expect_close("gamma", layer->gamma()->value, p.param_shape, p.gamma, 0.0);
    }
    expect_step_matches(*layer, p, false, inference_forward(p, running), dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(SizeOne, SizeOneAxes, ::testing::ValuesIn(layer_cases()), layer_case_name);

// ------------------------------------------------------------- second order

// How the layer's backward is differentiated again.
struct SecondOrderCase {
  UnitCase unit;
  Kind kind;
  BackwardMode mode;
  DoubleBackward how;
};

std::string second_order_name(const ::testing::TestParamInfo<SecondOrderCase>& info) {
  const SecondOrderCase& c = info.param;
  return case_text(c.unit) + (c.kind == Kind::Sync ? "_sync_" : "_batch_") +
         backward_mode_name(c.mode) + (c.how == DoubleBackward::Hand ? "_hand" : "_recorded");
}

// SyncBatchNormal's fused node refuses a second derivative by name: its
// autodiff mode is the one that has one.
std::vector<SecondOrderCase> second_order_cases() {
  std::vector<SecondOrderCase> out;
  for (const UnitCase& c : kUnitCases) {
    out.push_back({c, Kind::Batch, BackwardMode::Autodiff, DoubleBackward::Hand});
    out.push_back({c, Kind::Batch, BackwardMode::Fused, DoubleBackward::Hand});
    out.push_back({c, Kind::Batch, BackwardMode::Fused, DoubleBackward::Recorded});
    out.push_back({c, Kind::Batch, BackwardMode::Checked, DoubleBackward::Hand});
    out.push_back({c, Kind::Sync, BackwardMode::Autodiff, DoubleBackward::Hand});
  }
  return out;
}

class SizeOneAxesSecondOrder : public ::testing::TestWithParam<SecondOrderCase> {};

TEST_P(SizeOneAxesSecondOrder, GradGradCheckThroughTheLayer) {
  const SecondOrderCase& c = GetParam();
  const Problem p = make_problem(c.unit, 17);
  const std::unique_ptr<BatchNormal> layer = layer_for(c.kind, c.unit, p);
  layer->set_backward_mode(c.mode);
  layer->set_double_backward(c.how);
  const Tensor x = tensor(p.x, p.shape, DType::Float64);
  for (bool training : {true, false}) {
    if (training && elements_per_feature(p) < 2) continue;
    SCOPED_TRACE(training ? "training" : "inference");
    // A function of the wrong shape would pass a check against itself.
    ASSERT_EQ(layer->apply(Var(x), training).shape(), p.shape);
    EXPECT_GRADGRADCHECK([&](const std::vector<Var>& v) { return layer->apply(v[0], training); },
                         {x});
  }
}

INSTANTIATE_TEST_SUITE_P(SizeOne, SizeOneAxesSecondOrder, ::testing::ValuesIn(second_order_cases()),
                         second_order_name);

}  // namespace
}  // namespace npdl::layers

namespace npdl {
namespace {

// Regression (graph_diff fuzzer, its "huge" mode): a batch with no elements
// but huge other sizes walked every one of its empty rows, 2^40 of them for
// (2^40, 0). It must finish at once, forward, backward and second order,
// with an empty result.
TEST(EmptyBatch, HugeSizesAroundAZeroCostNothing) {
  const std::int64_t huge = std::int64_t{1} << 40;
  struct Case {
    Shape shape;
    int axis;
  };
  for (const Case& c : {Case{{huge, 0}, 0}, Case{{huge, 3, 0}, 1}, Case{{0, huge, 2}, -1}}) {
    SCOPED_TRACE(to_string(c.shape));
    const layers::BatchNormLayout L = layers::batchnorm_layout(c.shape, c.axis);
    EXPECT_EQ(L.outer, 0);
    Graph graph;
    const Var x = graph.variable(Tensor::zeros(c.shape, DType::Float64));
    const Var gamma = graph.variable(Tensor::ones(L.param_shape, DType::Float64));
    const Var beta = graph.variable(Tensor::zeros(L.param_shape, DType::Float64));
    const Var y = layers::batchnorm_fused_train(x, gamma, beta, L, 1e-5);
    EXPECT_EQ(y.shape(), c.shape);
    const std::vector<Var> g = grad({y}, {x, gamma}, {Var(Tensor::zeros(c.shape, DType::Float64))},
                                    /*create_graph=*/true);
    EXPECT_EQ(g[0].shape(), c.shape);
    EXPECT_EQ(g[1].shape(), L.param_shape);
    const Tensor rm = Tensor::zeros(L.param_shape, DType::Float64);
    const Tensor rv = Tensor::ones(L.param_shape, DType::Float64);
    EXPECT_EQ(layers::batchnorm_fused_infer(x, gamma, beta, L, 1e-5, rm, rv).shape(), c.shape);
  }
}

}  // namespace
}  // namespace npdl
