#pragma once
// Recurrent cells: the LSTM cell's gate block as one fused primitive, and
// the same formula composed from primitives. A recurrent layer chooses
// between them like BatchNormal chooses its backward: the composite's
// backward is what reverse mode derives, the fused one is derived by hand
// (Note [LSTM cell backward] in ops/cells.cpp), and the checked mode runs
// both.
//
// The gate block: z (N, 4H) holds the pre-activations of the four gates in
// the order input, forget, output, candidate (npdl's BatchLSTM order
// "i f o g"), c_prev (N, H) the previous cell state:
//   i = sigmoid(z_i)   f = sigmoid(z_f)   o = sigmoid(z_o)   g = tanh(z_g)
//   c = f * c_prev + i * g
//   h = o * tanh(c)
#include <functional>

#include "autodiff/graph.hpp"
#include "ops/ops.hpp"

namespace npdl::ops {

/// The new state of an LSTM cell.
struct LstmState {
  Var h, c;
};

/// A gate's or the cell's nonlinearity, applied with primitives.
using Nonlinearity = std::function<Var(const Var&)>;

/// The gate block from primitives (slice, the nonlinearities, mul, add): its
/// backward is reverse mode's. `gate` replaces sigmoid for i, f and o and
/// `activation` replaces tanh for g and c (npdl's gate_activation and
/// activation), which the fused cell does not offer.
LstmState lstm_cell_composite(const Var& z, const Var& c_prev, const Nonlinearity& gate = sigmoid,
                              const Nonlinearity& activation = tanh);

/// The gate block as one primitive: h and c side by side, (N, 2H) with h in
/// columns [0, H) and c in [H, 2H) (lstm_cell_state splits them). One pass
/// over the gates forward, one backward; under create_graph the backward is
/// recorded from primitives, so every order of derivative is available.
/// With `checked`, every first-order backward is also computed by reverse
/// mode through lstm_cell_composite in float64 and a disagreement throws
/// GradientMismatch. ShapeError unless z is (N, 4H) and c_prev (N, H);
/// DTypeError unless both have one floating dtype.
Var lstm_cell(const Var& z, const Var& c_prev, bool checked = false);

/// h and c of lstm_cell's (N, 2H) result.
LstmState lstm_cell_state(const Var& hc);

// The GRU cell (npdl's GRU): a (N, 3H) holds the update and reset gates'
// pre-activations and the candidate's input term, [a_z, a_r, x_h], where
// a_z = x U_z + s W_z + b_z and a_r = x U_r + s W_r + b_r; s (N, H) is the
// previous state and W_h (H, H) the candidate's hidden weights:
//   z = sigmoid(a_z)   r = sigmoid(a_r)
//   h = tanh(x_h + (s r) W_h)
//   s' = (1 - z) h + z s

/// The GRU cell from primitives; `gate` and `activation` as for
/// lstm_cell_composite.
Var gru_cell_composite(const Var& a, const Var& s, const Var& W_h,
                       const Nonlinearity& gate = sigmoid, const Nonlinearity& activation = tanh);

/// The GRU cell as one primitive with a hand-derived backward (Note [GRU
/// cell backward] in ops/cells.cpp), recorded from primitives under
/// create_graph; `checked` as for lstm_cell. ShapeError unless a is (N, 3H),
/// s (N, H) and W_h (H, H); DTypeError unless all share a floating dtype.
Var gru_cell(const Var& a, const Var& s, const Var& W_h, bool checked = false);

}  // namespace npdl::ops
