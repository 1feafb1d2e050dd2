#include "layers/recurrent.hpp"

#include <optional>
#include <utility>

#include "ops/cells.hpp"
#include "ops/ops.hpp"
#include "ops/sequence.hpp"

namespace npdl::layers {

namespace {

ParameterPtr with_zero_grad(Tensor value, const std::string& name) {
  ParameterPtr p = make_parameter(std::move(value), name);
  p->grad = Tensor::zeros(p->value.shape(), p->value.dtype());
  return p;
}

// Column `t` of an (N, T) mask as an (N, 1) column, which where() broadcasts
// over the state's features.
Tensor mask_column(const Tensor& mask, std::int64_t t) {
  return ops::slice(Var(mask), 1, t, t + 1).value();
}

}  // namespace

// ---------------------------------------------------------------- Recurrent

Recurrent::Recurrent(std::int64_t n_out, RecurrentOptions options)
    : n_out_(n_out), options_(std::move(options)), activation_(options_.activation.kind()) {
  const auto at_least = [&](const char* what, std::int64_t v, std::int64_t lo) {
    if (v < lo) {
      throw ValueError(std::string("recurrent layer: ") + what + " must be at least " +
                       std::to_string(lo) + (lo == 0 ? " (0: any)" : "") + ", got " +
                       std::to_string(v));
    }
  };
  at_least("n_out", n_out, 1);
  at_least("n_in", options_.n_in, 0);
  at_least("nb_batch", options_.nb_batch, 0);
  at_least("nb_seq", options_.nb_seq, 0);
}

Shape Recurrent::output_shape() const {
  if (!options_.return_sequence) return {n_out_};
  const std::int64_t steps = connected() ? input_shape()[0] : options_.nb_seq;
  return {steps, n_out_};
}

Shape Recurrent::declared_input_shape() const {
  if (options_.n_in > 0 && options_.nb_seq > 0) return {options_.nb_seq, options_.n_in};
  return {};
}

void Recurrent::build(const Shape& input_shape) {
  if (input_shape.size() != 2) {
    throw ShapeError(name() + " expects sequences of shape (N, T, n_in), got samples of shape " +
                     to_string(input_shape));
  }
  if (input_shape[0] < 1) {
    throw ShapeError(name() + " expects at least one time step, got sequences of length 0");
  }
  if (options_.nb_seq > 0 && input_shape[0] != options_.nb_seq) {
    throw ShapeError(name() + " was declared with nb_seq = " + std::to_string(options_.nb_seq) +
                     ", got sequences of length " + std::to_string(input_shape[0]));
  }
  if (options_.n_in > 0 && input_shape[1] != options_.n_in) {
    throw ShapeError(name() + " was declared with n_in = " + std::to_string(options_.n_in) +
                     ", got " + std::to_string(input_shape[1]) + " input features");
  }
  make_params(input_shape[1]);
}

void Recurrent::connect_for(const Shape& batch_shape) {
  if (!connected()) {
    ensure_connected(batch_shape);
    return;
  }
  // Sequences of any length, unless nb_seq says otherwise (build checks it
  // on the first input; later inputs are checked here).
  const std::int64_t steps = batch_shape[1], features = batch_shape[2];
  if (options_.nb_seq > 0 && steps != options_.nb_seq) {
    throw ShapeError(name() + " was declared with nb_seq = " + std::to_string(options_.nb_seq) +
                     ", got sequences of length " + std::to_string(steps));
  }
  if (steps < 1) {
    throw ShapeError(name() + " expects at least one time step, got sequences of length 0");
  }
  if (features != input_shape()[1]) {
    throw ShapeError(name() + " expects sequences of " + std::to_string(input_shape()[1]) +
                     " features, (N, T, " + std::to_string(input_shape()[1]) + "), got " +
                     to_string(batch_shape));
  }
}

void Recurrent::check_extra(const Var& input, const SequenceInputs& extra) const {
  const std::int64_t N = input.shape()[0], T = input.shape()[1];
  if (options_.nb_batch > 0 && N != options_.nb_batch) {
    throw ShapeError(name() + " was declared with nb_batch = " + std::to_string(options_.nb_batch) +
                     ", got a batch of " + std::to_string(N));
  }
  if (extra.mask.defined()) {
    check_same_shape({N, T}, extra.mask.shape(), name() + ": the mask (N, T)");
  }
  if (extra.h0.value().defined()) {
    check_same_shape({N, n_out_}, extra.h0.shape(), name() + ": h0 (N, n_out)");
    check_same_dtype(input.value(), extra.h0.value(), "h0");
  }
  if (extra.c0.value().defined()) {
    if (!has_cell_state()) {
      throw ValueError(name() + " has no cell state; c0 is for LSTM and BatchLSTM");
    }
    check_same_shape({N, n_out_}, extra.c0.shape(), name() + ": c0 (N, n_out)");
    check_same_dtype(input.value(), extra.c0.value(), "c0");
  }
}

Var Recurrent::apply(const Var& input, bool training, const SequenceInputs& extra) {
  std::optional<Graph::CompositeScope> scope;
  if (input.graph() != nullptr) scope.emplace(*input.graph(), name());
  if (input.rank() != 3) {
    throw ShapeError(name() + " expects sequences of shape (N, T, n_in), got " +
                     to_string(input.shape()));
  }
  check_extra(input, extra);
  connect_for(input.shape());
  match_dtype(input.dtype());
  const std::vector<Var> states = run(input, extra, training);
  Var out = options_.return_sequence ? ops::stack(states, 1) : states.back();
  fix_dtype();
  return out;
}

Var Recurrent::on_graph(const Var& like, const ParameterPtr& p) {
  Graph* graph = like.graph();
  return graph != nullptr ? graph->param(p) : Var(p->value);
}

Var Recurrent::input_term(const Var& x, std::int64_t t, const Var& U, const Var& b) {
  const Var term = ops::matmul(ops::select(x, 1, t), U);
  return b.value().defined() ? term + b : term;
}

Var Recurrent::masked(const SequenceInputs& extra, std::int64_t t, const Var& next,
                      const Var& previous) {
  if (!extra.mask.defined()) return next;
  return ops::where(mask_column(extra.mask, t), next, previous);
}

Var Recurrent::initial(const Var& given, const Var& x) const {
  if (given.value().defined()) return given;
  return Var(Tensor::zeros({x.shape()[0], n_out_}, x.dtype()));
}

ParameterPtr Recurrent::new_param(const initializers::InitSpec& init, const Shape& shape,
                                  const std::string& name) const {
  return with_zero_grad(init(shape, DType::Float32), name);
}

// ---------------------------------------------------------------- SimpleRNN

SimpleRNN::SimpleRNN(std::int64_t n_out, RecurrentOptions options)
    : Recurrent(n_out, std::move(options)) {}

void SimpleRNN::make_params(std::int64_t n_in) {
  // npdl's draw order: W, U, then the bias.
  W_ = new_param(options().init, {n_in, n_out()}, "W");
  U_ = new_param(options().inner_init, {n_out(), n_out()}, "U");
  b_ = with_zero_grad(Tensor::zeros({n_out()}, DType::Float32), "b");
}

std::vector<Var> SimpleRNN::run(const Var& x, const SequenceInputs& extra, bool /*training*/) {
  const Var W = on_graph(x, W_), b = on_graph(x, b_), U = on_graph(x, U_);
  std::vector<Var> states;
  Var h = initial(extra.h0, x);
  for (std::int64_t t = 0; t < x.shape()[1]; ++t) {
    const Var next = activate(activation(), input_term(x, t, W, b) + ops::matmul(h, U));
    h = masked(extra, t, next, h);
    states.push_back(h);
  }
  return states;
}

// ---------------------------------------------------------------- GRU

GRU::GRU(std::int64_t n_out, RecurrentOptions options, GateOptions gates)
    : GatedRecurrent(kName, n_out, std::move(options), std::move(gates)) {}

std::vector<ParameterPtr> GRU::params() const {
  return {U_r_, U_z_, U_h_, W_r_, W_z_, W_h_, b_r_, b_z_, b_h_};
}

void GRU::make_params(std::int64_t n_in) {
  const Shape in{n_in, n_out()}, inner{n_out(), n_out()};
  U_r_ = new_param(options().init, in, "U_r");
  U_z_ = new_param(options().init, in, "U_z");
  U_h_ = new_param(options().init, in, "U_h");
  W_r_ = new_param(options().inner_init, inner, "W_r");
  W_z_ = new_param(options().inner_init, inner, "W_z");
  W_h_ = new_param(options().inner_init, inner, "W_h");
  b_r_ = with_zero_grad(Tensor::zeros({n_out()}, DType::Float32), "b_r");
  b_z_ = with_zero_grad(Tensor::zeros({n_out()}, DType::Float32), "b_z");
  b_h_ = with_zero_grad(Tensor::zeros({n_out()}, DType::Float32), "b_h");
}

std::vector<Var> GRU::run(const Var& x, const SequenceInputs& extra, bool /*training*/) {
  const std::int64_t H = n_out();
  const auto p = [&](const ParameterPtr& q) { return on_graph(x, q); };
  // Input terms of the three blocks (z, r, h) for every step at once; the
  // z and r blocks' hidden terms in one product per step.
  const Var U = ops::concat({p(U_z_), p(U_r_), p(U_h_)}, 1);
  const Var b = ops::concat({p(b_z_), p(b_r_), p(b_h_)}, 0);
  const Var W_zr = ops::concat({p(W_z_), p(W_r_)}, 1), W_h = p(W_h_);
  const auto gate_fn = [this](const Var& v) { return gate(v); };
  const auto act_fn = [this](const Var& v) { return act(v); };
  std::vector<Var> states;
  Var s = initial(extra.h0, x);
  for (std::int64_t t = 0; t < x.shape()[1]; ++t) {
    const Var x_t = input_term(x, t, U, b);
    const Var zr = ops::slice(x_t, 1, 0, 2 * H) + ops::matmul(s, W_zr);
    const Var a = ops::concat({zr, ops::slice(x_t, 1, 2 * H, 3 * H)}, 1);
    const Var next = backward_mode() == BackwardMode::Autodiff
                         ? ops::gru_cell_composite(a, s, W_h, gate_fn, act_fn)
                         : ops::gru_cell(a, s, W_h, backward_mode() == BackwardMode::Checked);
    s = masked(extra, t, next, s);
    states.push_back(s);
  }
  return states;
}

// ---------------------------------------------------------------- LSTM

GatedRecurrent::GatedRecurrent(const char* name, std::int64_t n_out, RecurrentOptions options,
                               GateOptions gates)
    : Recurrent(n_out, std::move(options)),
      name_(name),
      gates_(std::move(gates)),
      gate_(gates_.gate_activation.kind()) {
  set_backward_mode(gates_.mode);
}

void GatedRecurrent::set_backward_mode(BackwardMode mode) {
  if (mode != BackwardMode::Autodiff && (gate_.name != "sigmoid" || activation().name != "tanh")) {
    throw ValueError(std::string(name_) + ": the " + backward_mode_name(mode) +
                     " backward is derived for sigmoid gates and a tanh activation, got "
                     "gate_activation '" +
                     gate_.name + "' and activation '" + activation().name +
                     "'; use BackwardMode::Autodiff for other nonlinearities");
  }
  gates_.mode = mode;
}

LstmBase::LstmBase(const char* name, std::int64_t n_out, RecurrentOptions options,
                   GateOptions gates, RecurrentBatchNorm batch_norm)
    : GatedRecurrent(name, n_out, std::move(options), std::move(gates)),
      batch_norm_(batch_norm),
      bn_x_("bn_x", /*with_beta=*/false, batch_norm),
      bn_h_("bn_h", /*with_beta=*/false, batch_norm),
      bn_c_("bn_c", /*with_beta=*/true, batch_norm) {}

void LstmBase::build(const Shape& input_shape) {
  Recurrent::build(input_shape);
  if (!batch_norm_.enabled) return;
  bn_x_.build(4 * n_out());
  bn_h_.build(4 * n_out());
  bn_c_.build(n_out());
}

std::vector<ParameterPtr> LstmBase::batch_norm_params() const {
  if (!batch_norm_.enabled) return {};
  std::vector<ParameterPtr> out;
  for (const StepBatchNorm* bn : {&bn_x_, &bn_h_, &bn_c_}) {
    for (const ParameterPtr& p : bn->params()) out.push_back(p);
  }
  return out;
}

std::vector<Tensor*> LstmBase::state_tensors() {
  if (!batch_norm_.enabled || !connected()) return {};
  std::vector<Tensor*> out;
  for (StepBatchNorm* bn : {&bn_x_, &bn_h_, &bn_c_}) {
    for (Tensor* t : bn->state()) out.push_back(t);
  }
  return out;
}

std::vector<std::string> LstmBase::state_names() const {
  if (!batch_norm_.enabled) return {};
  std::vector<std::string> out;
  for (const StepBatchNorm* bn : {&bn_x_, &bn_h_, &bn_c_}) {
    for (const std::string& n : bn->state_names()) out.push_back(n);
  }
  return out;
}

std::vector<Var> LstmBase::run_normalised(const Var& x, const SequenceInputs& extra,
                                          bool training) {
  const GateWeights w = gate_weights(x);
  const std::int64_t T = x.shape()[1], H = n_out();
  const Var no_bias;  // BN_x normalises x U alone: b comes after the norms
  const BackwardMode mode = backward_mode();
  std::vector<Var> states;
  Var h = initial(extra.h0, x), c = initial(extra.c0, x);
  for (std::int64_t t = 0; t < T; ++t) {
    const Var z = bn_x_.apply(input_term(x, t, w.U, no_bias), t, training, mode) +
                  bn_h_.apply(ops::matmul(h, w.W), t, training, mode) + w.b;
    const Var i = gate(ops::slice(z, 1, 0, H)), f = gate(ops::slice(z, 1, H, 2 * H)),
              o = gate(ops::slice(z, 1, 2 * H, 3 * H)), g = act(ops::slice(z, 1, 3 * H, 4 * H));
    const Var next_c = f * c + i * g;
    const Var next_h = o * act(bn_c_.apply(next_c, t, training, mode));
    c = masked(extra, t, next_c, c);
    h = masked(extra, t, next_h, h);
    states.push_back(h);
  }
  return states;
}

std::vector<Var> LstmBase::run(const Var& x, const SequenceInputs& extra, bool training) {
  if (batch_norm_.enabled) return run_normalised(x, extra, training);
  const GateWeights w = gate_weights(x);
  const auto gate_fn = [this](const Var& v) { return gate(v); };
  const auto act_fn = [this](const Var& v) { return act(v); };
  std::vector<Var> states;
  Var h = initial(extra.h0, x), c = initial(extra.c0, x);
  for (std::int64_t t = 0; t < x.shape()[1]; ++t) {
    const Var z = input_term(x, t, w.U, w.b) + ops::matmul(h, w.W);
    const ops::LstmState next =
        backward_mode() == BackwardMode::Autodiff
            ? ops::lstm_cell_composite(z, c, gate_fn, act_fn)
            : ops::lstm_cell_state(
                  ops::lstm_cell(z, c, /*checked=*/backward_mode() == BackwardMode::Checked));
    c = masked(extra, t, next.c, c);
    h = masked(extra, t, next.h, h);
    states.push_back(h);
  }
  return states;
}

LSTM::LSTM(std::int64_t n_out, RecurrentOptions options, GateOptions gates,
           RecurrentBatchNorm batch_norm)
    : LstmBase(kName, n_out, std::move(options), std::move(gates), batch_norm) {}

std::vector<ParameterPtr> LSTM::params() const {
  std::vector<ParameterPtr> out{U_[0], U_[1], U_[2], U_[3], W_[0], W_[1],
                                W_[2], W_[3], b_[0], b_[1], b_[2], b_[3]};
  for (const ParameterPtr& p : batch_norm_params()) out.push_back(p);
  return out;
}

void LSTM::make_params(std::int64_t n_in) {
  static const char* const kGate[4] = {"g", "i", "f", "o"};
  for (int k = 0; k < 4; ++k) {
    U_[k] = new_param(options().init, {n_in, n_out()}, std::string("U_") + kGate[k]);
  }
  for (int k = 0; k < 4; ++k) {
    W_[k] = new_param(options().inner_init, {n_out(), n_out()}, std::string("W_") + kGate[k]);
  }
  for (int k = 0; k < 4; ++k) {
    const double start = k == 2 ? gates().forget_bias_num : 0.0;
    b_[k] = with_zero_grad(Tensor::full({n_out()}, start, DType::Float32),
                           std::string("b_") + kGate[k]);
  }
}

LstmBase::GateWeights LSTM::gate_weights(const Var& x) const {
  // npdl keeps them in the order g, i, f, o; the gate block reads i, f, o, g.
  const auto block = [&x](const ParameterPtr(&p)[4], int axis) {
    return ops::concat({on_graph(x, p[1]), on_graph(x, p[2]), on_graph(x, p[3]), on_graph(x, p[0])},
                       axis);
  };
  return {block(U_, 1), block(W_, 1), block(b_, 0)};
}

BatchLSTM::BatchLSTM(std::int64_t n_out, RecurrentOptions options, GateOptions gates,
                     RecurrentBatchNorm batch_norm)
    : LstmBase(kName, n_out, std::move(options), std::move(gates), batch_norm) {}

std::vector<ParameterPtr> BatchLSTM::params() const {
  std::vector<ParameterPtr> out{AllW_};
  for (const ParameterPtr& p : batch_norm_params()) out.push_back(p);
  return out;
}

void BatchLSTM::make_params(std::int64_t n_in) {
  const std::int64_t H = n_out();
  std::vector<double> all(static_cast<std::size_t>((1 + n_in + H) * 4 * H), 0.0);
  const auto place = [&](const Tensor& block, std::int64_t row0, std::int64_t col0) {
    const std::vector<double> v = block.to_vector();
    const std::int64_t rows = block.shape()[0];
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < H; ++j) {
        all[static_cast<std::size_t>((row0 + r) * 4 * H + col0 + j)] =
            v[static_cast<std::size_t>(r * H + j)];
      }
    }
  };
  // npdl's draw order: the four input blocks, then the four hidden blocks.
  for (int k = 0; k < 4; ++k) place(options().init({n_in, H}, DType::Float64), 1, k * H);
  for (int k = 0; k < 4; ++k) place(options().inner_init({H, H}, DType::Float64), 1 + n_in, k * H);
  for (std::int64_t j = 0; j < H; ++j)
    all[static_cast<std::size_t>(H + j)] = gates().forget_bias_num;
  AllW_ = with_zero_grad(
      Tensor::from_vector({1 + n_in + H, 4 * H}, all, DType::Float64).astype(DType::Float32),
      "AllW");
}

LstmBase::GateWeights BatchLSTM::gate_weights(const Var& x) const {
  const std::int64_t n_in = input_shape()[1];
  const Var all = on_graph(x, AllW_);
  return {ops::slice(all, 0, 1, 1 + n_in), ops::slice(all, 0, 1 + n_in, 1 + n_in + n_out()),
          ops::reshape(ops::slice(all, 0, 0, 1), {4 * n_out()})};
}

}  // namespace npdl::layers
