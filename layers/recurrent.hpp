#pragma once
// npdl's recurrent layers: SimpleRNN, GRU, LSTM and BatchLSTM, on the graph.
//
// Each reads a batch of sequences x of shape (N, T, n_in) and returns the
// last hidden state (N, n_out), or every step's (N, T, n_out) with
// return_sequence. The time loop records one cell per step, so reverse mode
// is backpropagation through time over every step (npdl's BatchLSTM
// without return_sequence backpropagated through the last step only, and
// its GRU and LSTM had no backward at all).
//
// The LSTM cell's gate block is either composed from primitives (autodiff)
// or one fused primitive with a hand-derived backward (ops/cells.hpp),
// chosen by BackwardMode as BatchNormal's backward is; checked runs both.
#include <cstdint>
#include <string>
#include <vector>

#include "layers/activation.hpp"
#include "layers/backward_mode.hpp"
#include "layers/batch_norm/step_batch_norm.hpp"
#include "layers/initializers.hpp"
#include "layers/layer.hpp"

namespace npdl::layers {

/// npdl's Recurrent arguments after n_out, with npdl's defaults.
struct RecurrentOptions {
  std::int64_t n_in = 0;      // input features; 0 (npdl's None): from the input
  std::int64_t nb_batch = 0;  // batch size the layer accepts; 0: any
  std::int64_t nb_seq = 0;    // sequence length the layer accepts; 0: any
  initializers::InitSpec init = "glorot_uniform";    // input-to-hidden weights
  initializers::InitSpec inner_init = "orthogonal";  // hidden-to-hidden weights
  ActivationSpec activation = "tanh";
  bool return_sequence = false;  // every step's state, or the last one's
};

/// The gated layers' further arguments (GRU, LSTM, BatchLSTM).
struct GateOptions {
  ActivationSpec gate_activation = "sigmoid";
  /// The forget gate's initial bias (LSTM and BatchLSTM): 1 lets the cell
  /// remember from the start.
  double forget_bias_num = 1.0;
  /// The LSTM cell's backward. Fused and checked need npdl's default
  /// nonlinearities (sigmoid gates, tanh activation): the fused kernel is
  /// derived for them.
  BackwardMode mode = BackwardMode::Fused;
};

/// What npdl's forward(input, mask, c0, h0) takes besides the input; each
/// is optional.
struct SequenceInputs {
  /// (N, T): steps where the mask is 0 keep the previous state (padding).
  Tensor mask;
  /// Initial hidden state (N, n_out); zeros when undefined. A graph value
  /// gets its gradient.
  Var h0;
  /// Initial cell state (N, n_out), LSTM and BatchLSTM only.
  Var c0;
};

/// npdl's Recurrent base: input checks, the time loop's output and masks.
/// Sequences may have any length T (unless nb_seq is given); the samples
/// shape the layer reports, input_shape() and output_shape(), holds the
/// first input's T.
class Recurrent : public Layer {
 public:
  Shape output_shape() const override;
  Shape declared_input_shape() const override;
  Var apply(const Var& input, bool training) override { return apply(input, training, {}); }
  /// The layer on `input` with a mask and initial states. ShapeError when
  /// one of them does not fit the input; ValueError for a c0 given to a
  /// layer without a cell state.
  Var apply(const Var& input, bool training, const SequenceInputs& extra);

  std::int64_t n_out() const { return n_out_; }
  bool return_sequence() const { return options_.return_sequence; }

 protected:
  Recurrent(std::int64_t n_out, RecurrentOptions options);
  void build(const Shape& input_shape) override;
  /// Creates the parameters for `n_in` input features.
  virtual void make_params(std::int64_t n_in) = 0;
  /// Whether the layer has a cell state (c0 is accepted).
  virtual bool has_cell_state() const { return false; }
  /// The hidden state after every step, each (N, n_out); `training` as for
  /// apply (batch norm in training or inference).
  virtual std::vector<Var> run(const Var& x, const SequenceInputs& extra, bool training) = 0;

  /// The parameter as a value on `like`'s graph (or its value off a graph).
  static Var on_graph(const Var& like, const ParameterPtr& p);
  /// Step t's input term x_t U + b (N, K) of x (N, T, F), U (F, K), b (K)
  /// (none when undefined). Per step rather than one product for all steps:
  /// the gradient of a step taken out of a tensor is that tensor's size, so
  /// taking T steps out of x U (N, T, K) would cost T^2 N K in the backward,
  /// out of x only T^2 N F, and F is the small one (28 against 4 x 128 in
  /// the sequential Fashion-MNIST network).
  static Var input_term(const Var& x, std::int64_t t, const Var& U, const Var& b);
  /// `next` where step t's mask is set, `previous` elsewhere (no mask: next).
  static Var masked(const SequenceInputs& extra, std::int64_t t, const Var& next,
                    const Var& previous);
  /// h0, or zeros of (N, n_out) in x's dtype.
  Var initial(const Var& given, const Var& x) const;

  const RecurrentOptions& options() const { return options_; }
  const ActivationKind& activation() const { return activation_; }
  ParameterPtr new_param(const initializers::InitSpec& init, const Shape& shape,
                         const std::string& name) const;

 private:
  /// Connects on the first input; later inputs may have another length.
  void connect_for(const Shape& batch_shape);
  void check_extra(const Var& input, const SequenceInputs& extra) const;

  std::int64_t n_out_;
  RecurrentOptions options_;
  ActivationKind activation_;
};

/// npdl's SimpleRNN: h_t = activation(x_t W + h_{t-1} U + b).
class SimpleRNN : public Recurrent {
 public:
  explicit SimpleRNN(std::int64_t n_out, RecurrentOptions options = {});
  std::string name() const override { return "SimpleRNN"; }
  /// npdl's order: {W, U, b}.
  std::vector<ParameterPtr> params() const override { return {W_, U_, b_}; }

 protected:
  void make_params(std::int64_t n_in) override;
  std::vector<Var> run(const Var& x, const SequenceInputs& extra, bool training) override;

 private:
  ParameterPtr W_, U_, b_;
};

/// The gated layers (GRU, LSTM, BatchLSTM): gate nonlinearity and the
/// cell's backward mode.
class GatedRecurrent : public Recurrent {
 public:
  BackwardMode backward_mode() const { return gates_.mode; }
  /// ValueError for fused or checked with other nonlinearities than
  /// sigmoid gates and a tanh activation.
  void set_backward_mode(BackwardMode mode);

 protected:
  /// `name`: the derived layer's, for messages from its constructor.
  GatedRecurrent(const char* name, std::int64_t n_out, RecurrentOptions options, GateOptions gates);
  const GateOptions& gates() const { return gates_; }
  /// The gate nonlinearity and the activation, as functions of graph values.
  Var gate(const Var& v) const { return activate(gate_, v); }
  Var act(const Var& v) const { return activate(activation(), v); }

 private:
  const char* name_;
  GateOptions gates_;
  ActivationKind gate_;
};

/// npdl's GRU:
///   z = gate(x U_z + s W_z + b_z)     r = gate(x U_r + s W_r + b_r)
///   h = activation(x U_h + (s r) W_h + b_h)
///   s_t = (1 - z) h + z s_{t-1}
class GRU : public GatedRecurrent {
 public:
  explicit GRU(std::int64_t n_out, RecurrentOptions options = {}, GateOptions gates = {});
  static constexpr const char* kName = "GRU";
  std::string name() const override { return kName; }
  /// npdl's order: {U_r, U_z, U_h, W_r, W_z, W_h, b_r, b_z, b_h}.
  std::vector<ParameterPtr> params() const override;

 protected:
  void make_params(std::int64_t n_in) override;
  std::vector<Var> run(const Var& x, const SequenceInputs& extra, bool training) override;

 private:
  ParameterPtr U_r_, U_z_, U_h_, W_r_, W_z_, W_h_, b_r_, b_z_, b_h_;
};

/// The LSTM's time loop over the gate block (ops/cells.hpp), for LSTM and
/// BatchLSTM, which differ in how they keep the weights.
/// The LSTM's time loop over the gate block (ops/cells.hpp), for LSTM and
/// BatchLSTM, which differ in how they keep the weights.
///
/// With batch norm (RecurrentBatchNorm::enabled; Cooijmans et al. 2016):
///   z_t = BN_x(x_t U) + BN_h(h_{t-1} W) + b       (no shift in BN_x, BN_h)
///   c_t = f c_{t-1} + i g                         h_t = o tanh(BN_c(c_t))
/// each BN with its gamma and beta shared over time and its statistics per
/// step (layers/batch_norm/step_batch_norm.hpp). The gate block is then
/// composed of primitives, and the backward mode is the batch norms' own.
class LstmBase : public GatedRecurrent {
 public:
  const RecurrentBatchNorm& batch_norm() const { return batch_norm_; }

 protected:
  LstmBase(const char* name, std::int64_t n_out, RecurrentOptions options, GateOptions gates,
           RecurrentBatchNorm batch_norm);
  void build(const Shape& input_shape) override;
  bool has_cell_state() const override { return true; }
  std::vector<Var> run(const Var& x, const SequenceInputs& extra, bool training) override;
  /// The batch norms' parameters ({bn_x.gamma, bn_h.gamma, bn_c.gamma,
  /// bn_c.beta}; none without batch norm), after the weights in params().
  std::vector<ParameterPtr> batch_norm_params() const;
  std::vector<Tensor*> state_tensors() override;
  std::vector<std::string> state_names() const override;
  /// Every batch-norm statistic has a row per step seen.
  bool state_rows_vary(std::size_t) const override { return true; }

  /// The gate weights in the order i, f, o, g along their columns: input
  /// to gates U (n_in, 4 n_out), hidden to gates W (n_out, 4 n_out), bias
  /// b (4 n_out), as values on x's graph.
  struct GateWeights {
    Var U, W, b;
  };
  virtual GateWeights gate_weights(const Var& x) const = 0;

 private:
  std::vector<Var> run_normalised(const Var& x, const SequenceInputs& extra, bool training);

  RecurrentBatchNorm batch_norm_;
  StepBatchNorm bn_x_, bn_h_, bn_c_;
};

/// npdl's LSTM:
///   i, f, o = gate(x U_. + h W_. + b_.)    g = activation(x U_g + h W_g + b_g)
///   c_t = f c_{t-1} + i g                  h_t = o activation(c_t)
/// b_f starts at forget_bias_num.
class LSTM : public LstmBase {
 public:
  explicit LSTM(std::int64_t n_out, RecurrentOptions options = {}, GateOptions gates = {},
                RecurrentBatchNorm batch_norm = {});
  static constexpr const char* kName = "LSTM";
  std::string name() const override { return kName; }
  /// npdl's order: {U_g, U_i, U_f, U_o, W_g, W_i, W_f, W_o, b_g, b_i, b_f, b_o},
  /// then the batch norms' (batch_norm_params()).
  std::vector<ParameterPtr> params() const override;

 protected:
  void make_params(std::int64_t n_in) override;
  GateWeights gate_weights(const Var& x) const override;

 private:
  // Index k: gate g, i, f, o (npdl's parameter order).
  ParameterPtr U_[4], W_[4], b_[4];
};

/// npdl's BatchLSTM: the LSTM with every weight in one matrix AllW of shape
/// (1 + n_in + n_out, 4 n_out): row 0 the bias, then the input-to-gates
/// rows, then the hidden-to-gates rows; the columns hold gates i, f, o, g.
class BatchLSTM : public LstmBase {
 public:
  explicit BatchLSTM(std::int64_t n_out, RecurrentOptions options = {}, GateOptions gates = {},
                     RecurrentBatchNorm batch_norm = {});
  static constexpr const char* kName = "BatchLSTM";
  std::string name() const override { return kName; }
  /// npdl's order: {AllW}, then the batch norms' (batch_norm_params()).
  std::vector<ParameterPtr> params() const override;
  const ParameterPtr& AllW() const { return AllW_; }

 protected:
  void make_params(std::int64_t n_in) override;
  GateWeights gate_weights(const Var& x) const override;

 private:
  ParameterPtr AllW_;
};

}  // namespace npdl::layers
