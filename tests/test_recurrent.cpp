// The recurrent layers: the fused LSTM cell against its composite, every
// layer's gradients against float64 central differences (through time,
// with masks and initial states), npdl's parameter layouts, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "gradcheck_gtest.hpp"
#include "layer_gradcheck.hpp"
#include "npdl.hpp"

namespace npdl {
namespace {

using layers::BackwardMode;
using layers::GateOptions;
using layers::RecurrentOptions;
using layers::SequenceInputs;

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double d = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

// ------------------------------------------------------------ the LSTM cell

struct CellCase {
  std::int64_t n, h;
  double spread;  // of z: 8 saturates the gates
};

std::string cell_case_name(const ::testing::TestParamInfo<CellCase>& info) {
  return "n" + std::to_string(info.param.n) + "_h" + std::to_string(info.param.h) +
         (info.param.spread > 1 ? "_saturated" : "");
}

const auto kCellCases = ::testing::Values(CellCase{1, 1, 1.0}, CellCase{2, 3, 1.0},
                                          CellCase{7, 5, 8.0}, CellCase{130, 4, 1.0});

class LstmCell : public ::testing::TestWithParam<CellCase> {};

// Fused equals composite, forward and backward, to 1e-12 in float64.
TEST_P(LstmCell, FusedEqualsCompositeInFloat64) {
  const CellCase k = GetParam();
  const Tensor z = Tensor::randn({k.n, 4 * k.h}, 1, DType::Float64, 0.0, k.spread);
  const Tensor c_prev = Tensor::randn({k.n, k.h}, 2, DType::Float64);
  const Tensor up = Tensor::randn({k.n, 2 * k.h}, 3, DType::Float64);
  const auto fused = [](const std::vector<Var>& v) { return ops::lstm_cell(v[0], v[1]); };
  const auto composite = [](const std::vector<Var>& v) {
    const ops::LstmState s = ops::lstm_cell_composite(v[0], v[1]);
    return ops::concat({s.h, s.c}, 1);
  };
  EXPECT_LE(
      max_abs_diff(fused({Var(z), Var(c_prev)}).value(), composite({Var(z), Var(c_prev)}).value()),
      1e-12);
  const std::vector<Tensor> a = reverse_mode_gradients(fused, {z, c_prev}, up);
  const std::vector<Tensor> b = reverse_mode_gradients(composite, {z, c_prev}, up);
  EXPECT_LE(max_abs_diff(a[0], b[0]), 1e-12) << "dz";
  EXPECT_LE(max_abs_diff(a[1], b[1]), 1e-12) << "dc_prev";
  EXPECT_GRADCHECK(fused, {z, c_prev});
}

INSTANTIATE_TEST_SUITE_P(Shapes, LstmCell, kCellCases, cell_case_name);

class GruCell : public ::testing::TestWithParam<CellCase> {};

TEST_P(GruCell, FusedEqualsCompositeInFloat64) {
  const CellCase k = GetParam();
  const std::vector<Tensor> inputs{Tensor::randn({k.n, 3 * k.h}, 1, DType::Float64, 0.0, k.spread),
                                   Tensor::randn({k.n, k.h}, 2, DType::Float64),
                                   Tensor::randn({k.h, k.h}, 3, DType::Float64)};
  const Tensor up = Tensor::randn({k.n, k.h}, 4, DType::Float64);
  const auto fused = [](const std::vector<Var>& v) { return ops::gru_cell(v[0], v[1], v[2]); };
  const auto composite = [](const std::vector<Var>& v) {
    return ops::gru_cell_composite(v[0], v[1], v[2]);
  };
  const std::vector<Var> vars{Var(inputs[0]), Var(inputs[1]), Var(inputs[2])};
  EXPECT_LE(max_abs_diff(fused(vars).value(), composite(vars).value()), 1e-12);
  const std::vector<Tensor> a = reverse_mode_gradients(fused, inputs, up);
  const std::vector<Tensor> b = reverse_mode_gradients(composite, inputs, up);
  for (int i = 0; i < 3; ++i) EXPECT_LE(max_abs_diff(a[i], b[i]), 1e-12) << "input " << i;
  EXPECT_GRADCHECK(fused, inputs);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GruCell, kCellCases, cell_case_name);

TEST(LstmCellShapes, AreCheckedAndNamed) {
  const Var z(Tensor::zeros({2, 6})), c(Tensor::zeros({2, 2}));
  EXPECT_THROW(ops::lstm_cell(z, c), ShapeError);  // 6 is not 4H
  EXPECT_THROW(ops::lstm_cell(Var(Tensor::zeros({2, 8})), Var(Tensor::zeros({3, 2}))), ShapeError);
  EXPECT_THROW(
      ops::lstm_cell(Var(Tensor::zeros({2, 8})), Var(Tensor::zeros({2, 2}, DType::Float64))),
      DTypeError);
  try {
    ops::lstm_cell(z, c);
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("(N, 4H), got (2, 6)"), std::string::npos) << e.what();
  }
}

// Blocks without elements: H = 0 with 2^40 rows is a valid tensor of no
// element, and the cells must not walk its rows (the graph fuzzer found
// gru_cell spending minutes on one); N = 0 with H > 0 gives W_h a zero
// gradient of its full shape.
TEST(CellShapes, EmptyBlocksAreNotWalked) {
  const std::int64_t huge = std::int64_t{1} << 40;
  for (const std::int64_t N : {huge, std::int64_t{0}}) {
    const std::int64_t H = N == 0 ? 3 : 0;
    const auto lstm = [](const std::vector<Var>& v) { return ops::lstm_cell(v[0], v[1]); };
    const auto lstm_grads = reverse_mode_gradients(
        lstm, {Tensor::zeros({N, 4 * H}), Tensor::zeros({N, H})}, Tensor::zeros({N, 2 * H}));
    EXPECT_EQ(lstm_grads[0].shape(), (Shape{N, 4 * H}));
    EXPECT_EQ(lstm_grads[1].shape(), (Shape{N, H}));
    const auto gru = [](const std::vector<Var>& v) { return ops::gru_cell(v[0], v[1], v[2]); };
    const auto gru_grads = reverse_mode_gradients(
        gru, {Tensor::zeros({N, 3 * H}), Tensor::zeros({N, H}), Tensor::randn({H, H}, 9)},
        Tensor::zeros({N, H}));
    EXPECT_EQ(gru_grads[0].shape(), (Shape{N, 3 * H}));
    EXPECT_EQ(gru_grads[2].to_vector(), std::vector<double>(std::size_t(H * H), 0.0));
  }
}

// ------------------------------------------------------------ the layers

// A small float64 problem: 3 sequences of 4 steps of 2 features.
Tensor sequences(std::uint64_t seed = 5, Shape shape = {3, 4, 2}) {
  return Tensor::randn(shape, seed, DType::Float64);
}

std::unique_ptr<layers::Recurrent> make(const std::string& kind, std::int64_t n_out,
                                        RecurrentOptions o = {}, GateOptions g = {}) {
  if (kind == "SimpleRNN") return std::make_unique<layers::SimpleRNN>(n_out, o);
  if (kind == "GRU") return std::make_unique<layers::GRU>(n_out, o, g);
  if (kind == "LSTM") return std::make_unique<layers::LSTM>(n_out, o, g);
  return std::make_unique<layers::BatchLSTM>(n_out, o, g);
}

struct LayerCase {
  std::string kind;
  bool return_sequence;
  BackwardMode mode;
};

class RecurrentLayer : public ::testing::TestWithParam<LayerCase> {};

// npdl's backward: input and every parameter gradient, through time.
TEST_P(RecurrentLayer, BackwardMatchesFiniteDifferences) {
  const LayerCase c = GetParam();
  set_seed(11);
  RecurrentOptions o;
  o.return_sequence = c.return_sequence;
  GateOptions g;
  g.mode = c.mode;
  auto layer = make(c.kind, 3, o, g);
  EXPECT_GRADIENTS_MATCH(layers::layer_gradcheck(*layer, sequences()));
}

std::vector<LayerCase> layer_cases() {
  std::vector<LayerCase> out;
  for (const char* kind : {"SimpleRNN", "GRU", "LSTM", "BatchLSTM"}) {
    for (bool seq : {false, true}) {
      const bool gated = std::string(kind) != "SimpleRNN";
      for (BackwardMode m : {BackwardMode::Autodiff, BackwardMode::Fused, BackwardMode::Checked}) {
        if (!gated && m != BackwardMode::Autodiff) continue;
        out.push_back({kind, seq, m});
      }
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Npdl, RecurrentLayer, ::testing::ValuesIn(layer_cases()),
                         [](const auto& info) {
                           return info.param.kind +
                                  (info.param.return_sequence ? "_seq_" : "_last_") +
                                  layers::backward_mode_name(info.param.mode);
                         });

// Masks and initial states are inputs like x: their gradients too, in
// every mode, at first and second order (the fused cell's backward under
// create_graph is recorded from primitives).
TEST(RecurrentLayer, MaskAndInitialStatesAtFirstAndSecondOrder) {
  const Tensor mask = Tensor::from_vector({3, 4}, {1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1, 0});
  for (BackwardMode m : {BackwardMode::Autodiff, BackwardMode::Fused}) {
    set_seed(12);
    RecurrentOptions o;
    o.return_sequence = true;
    GateOptions g;
    g.mode = m;
    layers::LSTM lstm(2, o, g);
    const auto f = [&](const std::vector<Var>& v) {
      return lstm.apply(v[0], true, SequenceInputs{mask, v[1], v[2]});
    };
    const std::vector<Tensor> inputs{sequences(), Tensor::randn({3, 2}, 6, DType::Float64),
                                     Tensor::randn({3, 2}, 7, DType::Float64)};
    EXPECT_GRADCHECK(f, inputs) << layers::backward_mode_name(m);
    EXPECT_GRADGRADCHECK(f, inputs) << layers::backward_mode_name(m);
    layers::GRU gru(2, o, g);
    const auto f_gru = [&](const std::vector<Var>& v) {
      return gru.apply(v[0], true, SequenceInputs{mask, v[1], {}});
    };
    const std::vector<Tensor> gru_inputs{inputs[0], inputs[1]};
    EXPECT_GRADCHECK(f_gru, gru_inputs) << layers::backward_mode_name(m);
    EXPECT_GRADGRADCHECK(f_gru, gru_inputs) << layers::backward_mode_name(m);
  }
}

// Where the mask is 0 the state is carried: a padded sequence ends in the
// state of its last real step.
TEST(RecurrentLayer, MaskedStepsCarryTheState) {
  set_seed(13);
  layers::LSTM lstm(3);
  const Tensor x = sequences(8, {1, 5, 2});
  const Tensor short_x = ops::slice(Var(x), 1, 0, 3).value();
  const Tensor mask = Tensor::from_vector({1, 5}, {1, 1, 1, 0, 0});
  const Tensor padded = lstm.apply(Var(x), false, SequenceInputs{mask, {}, {}}).value();
  const Tensor truncated = lstm.apply(Var(short_x), false).value();
  EXPECT_LE(max_abs_diff(padded, truncated), 1e-15);
}

// The modes are one function: fused and autodiff agree on the output and on
// every gradient, and checked raises no false alarm in float32 on a
// problem of the size a user trains.
TEST(RecurrentLayer, ModesAgreeAndCheckedIsQuietInFloat32) {
  for (const char* kind : {"GRU", "LSTM", "BatchLSTM"}) {
    std::vector<std::vector<Tensor>> grads;
    for (BackwardMode m : {BackwardMode::Autodiff, BackwardMode::Fused, BackwardMode::Checked}) {
      set_seed(14);
      GateOptions g;
      g.mode = m;
      auto layer = make(kind, 32, {}, g);
      const Tensor x = Tensor::randn({16, 12, 10}, 9, DType::Float32);
      const Tensor y = layer->forward(x);
      std::vector<Tensor> gs{layer->backward(Tensor::randn(y.shape(), 10, DType::Float32))};
      for (const Tensor& t : layer->grads()) gs.push_back(t);
      grads.push_back(gs);
    }
    for (std::size_t i = 0; i < grads[0].size(); ++i) {
      EXPECT_LE(max_abs_diff(grads[0][i], grads[1][i]), 1e-5) << kind << " gradient " << i;
      EXPECT_EQ(grads[1][i].to_vector(), grads[2][i].to_vector()) << kind << " gradient " << i;
    }
  }
}

// BatchLSTM's AllW holds LSTM's twelve tensors: row 0 the biases, then the
// input rows, then the hidden rows; columns i, f, o, g.
TEST(BatchLSTM, AllWIsTheLstmsWeightsInOneMatrix) {
  set_seed(15);
  layers::LSTM lstm(3);
  layers::BatchLSTM batch(3);
  const Tensor x = sequences();
  lstm.forward(x);
  batch.forward(x);
  const std::vector<ParameterPtr> p = lstm.params();  // U_g i f o, W_g i f o, b_g i f o
  const int order[4] = {1, 2, 3, 0};                  // i, f, o, g
  std::vector<Var> bias, input, hidden;
  for (int k : order) {
    bias.push_back(Var(p[8 + k]->value.reshape({1, 3})));
    input.push_back(Var(p[k]->value));
    hidden.push_back(Var(p[4 + k]->value));
  }
  batch.AllW()->value =
      ops::concat({ops::concat(bias, 1), ops::concat(input, 1), ops::concat(hidden, 1)}, 0).value();
  EXPECT_LE(max_abs_diff(batch.forward(x), lstm.forward(x)), 1e-15);
}

TEST(RecurrentLayer, NpdlsParametersAndDefaults) {
  set_seed(16);
  layers::LSTM lstm(4);
  lstm.forward(sequences());
  const std::vector<ParameterPtr> p = lstm.params();
  ASSERT_EQ(p.size(), 12u);
  EXPECT_EQ(p[0]->name, "U_g");
  EXPECT_EQ(p[0]->value.shape(), (Shape{2, 4}));
  EXPECT_EQ(p[4]->value.shape(), (Shape{4, 4}));
  EXPECT_EQ(p[10]->name, "b_f");
  EXPECT_EQ(p[10]->value.to_vector(), std::vector<double>(4, 1.0));  // forget_bias_num = 1
  EXPECT_EQ(p[9]->value.to_vector(), std::vector<double>(4, 0.0));
  // inner_init = 'orthogonal': W W^T = I.
  const Tensor W = p[5]->value.astype(DType::Float64);
  const Tensor wwt = ops::matmul(Var(W), Var(W), false, true).value();
  for (std::int64_t i = 0; i < 4; ++i) {
    for (std::int64_t j = 0; j < 4; ++j) EXPECT_NEAR(wwt.at(i * 4 + j), i == j ? 1.0 : 0.0, 1e-6);
  }
  layers::BatchLSTM batch(4);
  batch.forward(sequences());
  EXPECT_EQ(batch.AllW()->value.shape(), (Shape{1 + 2 + 4, 16}));
  EXPECT_EQ(batch.output_shape(), (Shape{4}));
  RecurrentOptions seq;
  seq.return_sequence = true;
  layers::GRU gru(5, seq);
  EXPECT_EQ(gru.forward(sequences()).shape(), (Shape{3, 4, 5}));
  EXPECT_EQ(gru.params().size(), 9u);
  EXPECT_EQ(gru.output_shape(), (Shape{4, 5}));
}

TEST(RecurrentLayer, BadInputIsATypedErrorAndChangesNothing) {
  set_seed(17);
  layers::LSTM lstm(3);
  const Tensor x = sequences();
  lstm.forward(x);
  const std::vector<double> before = lstm.params()[0]->value.to_vector();
  EXPECT_THROW(lstm.forward(Tensor::zeros({3, 4}, DType::Float64)), ShapeError);
  EXPECT_THROW(lstm.forward(Tensor::zeros({3, 4, 5}, DType::Float64)), ShapeError);
  EXPECT_THROW(lstm.apply(Var(x), true, SequenceInputs{Tensor::zeros({3, 5}), {}, {}}), ShapeError);
  EXPECT_THROW(
      lstm.apply(Var(x), true, SequenceInputs{{}, Var(Tensor::zeros({3, 2}, DType::Float64)), {}}),
      ShapeError);
  EXPECT_EQ(lstm.params()[0]->value.to_vector(), before);
  layers::SimpleRNN rnn(3);
  EXPECT_THROW(
      rnn.apply(Var(x), true, SequenceInputs{{}, {}, Var(Tensor::zeros({3, 3}, DType::Float64))}),
      ValueError);
  EXPECT_FALSE(rnn.connected());
  EXPECT_THROW(layers::LSTM(0), ValueError);
  GateOptions hard;
  hard.gate_activation = "relu";
  EXPECT_THROW(layers::LSTM(3, {}, hard), ValueError);  // fused is derived for sigmoid
  hard.mode = BackwardMode::Autodiff;
  layers::LSTM custom(3, {}, hard);
  EXPECT_EQ(custom.forward(x).shape(), (Shape{3, 3}));
  RecurrentOptions declared;
  declared.nb_seq = 5;
  layers::SimpleRNN fixed(2, declared);
  EXPECT_THROW(fixed.forward(x), ShapeError);
}

}  // namespace
}  // namespace npdl

namespace npdl {
namespace {

// ------------------------------------------------------------ recurrent batch norm

layers::RecurrentBatchNorm with_batch_norm() {
  layers::RecurrentBatchNorm bn;
  bn.enabled = true;
  return bn;
}

class BatchNormLstm : public ::testing::TestWithParam<BackwardMode> {};

// Training normalises by each step's batch statistics: the gradients of x
// and of every weight and batch-norm parameter, through time.
TEST_P(BatchNormLstm, BackwardMatchesFiniteDifferences) {
  for (bool sequence : {false, true}) {
    set_seed(31);
    RecurrentOptions o;
    o.return_sequence = sequence;
    GateOptions g;
    g.mode = GetParam();
    layers::LSTM lstm(3, o, g, with_batch_norm());
    EXPECT_GRADIENTS_MATCH(layers::layer_gradcheck(lstm, Tensor::randn({4, 3, 2}, 32)));
    EXPECT_EQ(lstm.params().size(), 12u + 4u);  // bn_x.gamma, bn_h.gamma, bn_c.gamma, bn_c.beta
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, BatchNormLstm,
                         ::testing::Values(BackwardMode::Autodiff, BackwardMode::Fused,
                                           BackwardMode::Checked),
                         [](const auto& info) { return layers::backward_mode_name(info.param); });

TEST(BatchNormLstmSemantics, ModesAgreeAndSecondOrderWorks) {
  const Tensor x = Tensor::randn({5, 3, 2}, 33, DType::Float64);
  std::vector<Tensor> outputs;
  for (BackwardMode m : {BackwardMode::Autodiff, BackwardMode::Fused}) {
    set_seed(34);
    GateOptions g;
    g.mode = m;
    layers::BatchLSTM lstm(3, {}, g, with_batch_norm());
    outputs.push_back(lstm.forward(x));
    const auto f = [&](const std::vector<Var>& v) { return lstm.apply(v[0], true); };
    EXPECT_GRADGRADCHECK(f, {x}) << layers::backward_mode_name(m);
  }
  EXPECT_LE(max_abs_diff(outputs[0], outputs[1]), 1e-12);
}

// Statistics per step: training on 3 steps keeps 3 rows; inference on
// longer sequences uses the last row beyond them, and is causal.
TEST(BatchNormLstmSemantics, StatisticsPerStepAndTheLastBeyond) {
  set_seed(35);
  RecurrentOptions o;
  o.return_sequence = true;
  layers::LSTM lstm(2, o, {}, with_batch_norm());
  lstm.forward(Tensor::randn({6, 3, 2}, 36, DType::Float64));
  const std::vector<layers::Layer::NamedState> state = lstm.state();
  ASSERT_EQ(state.size(), 6u);
  EXPECT_EQ(state[0].name, "bn_x.running_mean");
  EXPECT_EQ(state[0].value.shape(), (Shape{3, 8}));
  EXPECT_EQ(state[5].name, "bn_c.running_var");
  EXPECT_EQ(state[5].value.shape(), (Shape{3, 2}));
  for (const ParameterPtr& p : lstm.params()) {
    if (p->name.find(".gamma") != std::string::npos) {
      // 0.1 in float32, the dtype parameters are made in.
      EXPECT_EQ(p->value.to_vector(), std::vector<double>(p->value.size(), double(0.1f)))
          << p->name;
    }
  }
  const Tensor long_x = Tensor::randn({2, 5, 2}, 37, DType::Float64);
  const Tensor y = lstm.forward(long_x, /*training=*/false);
  const Tensor y3 = lstm.forward(ops::slice(Var(long_x), 1, 0, 3).value(), false);
  EXPECT_LE(max_abs_diff(ops::slice(Var(y), 1, 0, 3).value(), y3), 1e-15);
  EXPECT_EQ(lstm.state()[0].value.shape(), (Shape{3, 8}));  // inference changes nothing
  // One sequence cannot be normalised over its batch in training.
  EXPECT_THROW(lstm.forward(Tensor::randn({1, 3, 2}, 38, DType::Float64)), ShapeError);
  EXPECT_EQ(lstm.state()[0].value.shape(), (Shape{3, 8}));
}

// Through Model: trained, saved with its per-step statistics, loaded into a
// fresh model of the same architecture, predicting the same.
TEST(BatchNormLstmSemantics, TrainsSavesAndLoadsThroughModel) {
  const auto build = [] {
    auto m = std::make_unique<model::Model>();
    m->add<layers::LSTM>(8, RecurrentOptions{}, GateOptions{}, with_batch_norm());
    m->add<layers::Dense>(2, 0, "glorot_uniform", "softmax");
    model::OptimizerOptions o;
    o.lr = 0.05;
    m->compile(model::get_objective("scce"), model::get_optimizer("adam", o));
    return m;
  };
  set_seed(39);
  const Tensor X = Tensor::randn({64, 5, 3}, 40);
  std::vector<int> labels;
  for (std::int64_t i = 0; i < 64; ++i) labels.push_back(X.at(i * 15) + X.at(i * 15 + 12) > 0);
  auto m = build();
  model::FitOptions f;
  f.epochs = 40;
  f.batch_size = 16;
  f.log = nullptr;
  const auto history = m->fit(X, model::one_hot(labels, 2), f);
  EXPECT_GE(history.back().accuracy, 0.9);
  const std::string path = ::testing::TempDir() + "bn_lstm.npdl";
  m->save(path);
  auto copy = build();
  copy->predict(Tensor::zeros({2, 5, 3}));  // sized, no statistics yet: load brings 5 rows
  copy->load(path);
  EXPECT_EQ(copy->predict(X).to_vector(), m->predict(X).to_vector());
}

}  // namespace
}  // namespace npdl

namespace npdl {
namespace {

// Graphs of hundreds of ops: 40 steps record about 400 vertices, and the
// second-order sweep records as many again while it runs.
TEST(RecurrentAtLength, SecondOrderThroughFortySteps) {
  const Tensor x = Tensor::randn({2, 40, 1}, 41, DType::Float64);
  for (BackwardMode m : {BackwardMode::Fused, BackwardMode::Autodiff}) {
    GateOptions g;
    g.mode = m;
    set_seed(42);
    layers::LSTM lstm(2, {}, g);
    set_seed(42);
    layers::GRU gru(2, {}, g);
    const auto f_lstm = [&](const std::vector<Var>& v) { return lstm.apply(v[0], true); };
    const auto f_gru = [&](const std::vector<Var>& v) { return gru.apply(v[0], true); };
    EXPECT_GRADGRADCHECK(f_lstm, {x}) << layers::backward_mode_name(m);
    EXPECT_GRADGRADCHECK(f_gru, {x}) << layers::backward_mode_name(m);
  }
}

}  // namespace
}  // namespace npdl
