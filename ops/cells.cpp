// Recurrent cells: the LSTM gate block, fused and composed.
#include "ops/cells.hpp"

#include <Eigen/Core>
#include <string>
#include <utility>

#include "autodiff/catalogue.hpp"
#include "autodiff/gradcheck.hpp"
#include "ops/detail/record.hpp"
#include "ops/ops.hpp"
#include "ops/sequence.hpp"
#include "tensor/parallel.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops {

namespace info {
const OpInfo kLstmCell{
    "lstm_cell",
    "[h, c] with i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g), c = f c_prev + i g, "
    "h = o tanh(c)",
    "dc = g_c + g_h o (1 - tanh(c)^2); dz = [dc g i(1-i), dc c_prev f(1-f), g_h tanh(c) "
    "o(1-o), dc i (1-g^2)]; dc_prev = dc f",
    /*vjp_reads_output=*/false, /*saves_inputs=*/0b11};
const OpInfo kGruCell{
    "gru_cell", "s' = (1 - z) h + z s with z, r = sigmoid(a_z, a_r), h = tanh(x_h + (s r) W_h)",
    "dh = g (1 - z) (1 - h^2); da = [g (s - h) z(1-z), (dh W_h^T) s r(1-r), dh]; "
    "ds = g z + (dh W_h^T) r; dW_h = (s r)^T dh",
    /*vjp_reads_output=*/false, /*saves_inputs=*/0b111};
}  // namespace info

namespace {

using detail::record;

// Rows of `cols` columns, row-major: z, dz (4H) and h, c (H).
template <class T>
using Rows = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using RowsMap = Eigen::Map<Rows<T>>;
template <class T>
using ConstRowsMap = Eigen::Map<const Rows<T>>;

// A row block of the cell's arrays is its work unit: rows are independent,
// so the result is the same for any number of threads.
constexpr std::int64_t kRowGrain = 64;

// Runs `f(lo, hi)` over row chunks of an (N, H) block in parallel. An empty
// block runs nothing: with H = 0 the row count may be anything (2^40 rows of
// nothing is a valid tensor), and walking it chunk by chunk would take hours.
template <class F>
void for_row_chunks(std::int64_t N, std::int64_t H, F&& f) {
  if (N == 0 || H == 0) return;
  parallel_for(N, kRowGrain, std::forward<F>(f));
}

std::int64_t hidden_size(const Var& z, const Var& c_prev) {
  if (z.rank() != 2 || z.shape()[1] % 4 != 0) {
    throw ShapeError("lstm_cell: expected gate pre-activations z of shape (N, 4H), got " +
                     to_string(z.shape()));
  }
  const std::int64_t n = z.shape()[0], h = z.shape()[1] / 4;
  check_same_shape({n, h}, c_prev.shape(), "lstm_cell: the previous cell state c_prev");
  check_same_dtype(z.value(), c_prev.value(), "lstm_cell");
  check_floating(z.dtype(), "lstm_cell");
  return h;
}

// The forward kernel: one pass over the gate block. Besides h and c it
// keeps the activations the backward reads, [i, f, o, g, tanh(c)] (N, 5H),
// so that the backward computes no transcendental function again.
struct CellForward {
  Tensor hc, activations;
};

CellForward lstm_cell_forward(const Tensor& z, const Tensor& c_prev, std::int64_t H) {
  const std::int64_t N = z.shape()[0];
  CellForward out{Tensor({N, 2 * H}, z.dtype()), Tensor({N, 5 * H}, z.dtype())};
  dispatch(z.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> Z(z.data<T>(), N, 4 * H), Cp(c_prev.data<T>(), N, H);
    RowsMap<T> HC(out.hc.data<T>(), N, 2 * H), A(out.activations.data<T>(), N, 5 * H);
    for_row_chunks(N, H, [&](std::int64_t lo, std::int64_t hi) {
      const std::int64_t rows = hi - lo;
      const auto zr = Z.middleRows(lo, rows);
      auto a = A.middleRows(lo, rows);
      a.leftCols(3 * H) = zr.leftCols(3 * H).logistic();  // i, f, o
      a.middleCols(3 * H, H) = zr.middleCols(3 * H, H).tanh();
      auto hc = HC.middleRows(lo, rows);
      hc.rightCols(H) = a.middleCols(H, H) * Cp.middleRows(lo, rows) +
                        a.middleCols(0, H) * a.middleCols(3 * H, H);
      a.middleCols(4 * H, H) = hc.rightCols(H).tanh();
      hc.leftCols(H) = a.middleCols(2 * H, H) * a.middleCols(4 * H, H);
    });
  });
  return out;
}

// Note [LSTM cell backward]
// With g_h and g_c the gradients arriving at h and c (the two halves of
// the upstream), and i, f, o, g the gates:
//   h = o tanh(c)            dh/do = tanh(c),  dh/dc = o (1 - tanh(c)^2)
//   c = f c_prev + i g       dc/df = c_prev,   dc/di = g,  dc/dg = i,
//                            dc/dc_prev = f
// c reaches the loss directly (g_c) and through h, so its total gradient is
//   dc = g_c + g_h o (1 - tanh(c)^2).
// Each gate's pre-activation then gets its gate's gradient times the
// derivative of its nonlinearity, sigmoid' = s (1 - s), tanh' = 1 - t^2:
//   dz_i = dc g i (1 - i)        dz_f = dc c_prev f (1 - f)
//   dz_o = g_h tanh(c) o (1 - o) dz_g = dc i (1 - g^2)
// and the previous state gets dc_prev = dc f. One pass over the block,
// reading the forward's activations.
struct CellGrads {
  Tensor dz, dc_prev;
};

CellGrads lstm_cell_backward(const Tensor& activations, const Tensor& c_prev, const Tensor& grad,
                             std::int64_t H) {
  const std::int64_t N = c_prev.shape()[0];
  CellGrads out{Tensor({N, 4 * H}, c_prev.dtype()), Tensor({N, H}, c_prev.dtype())};
  dispatch(c_prev.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> A(activations.data<T>(), N, 5 * H), Cp(c_prev.data<T>(), N, H),
        G(grad.data<T>(), N, 2 * H);
    RowsMap<T> dZ(out.dz.data<T>(), N, 4 * H), dCp(out.dc_prev.data<T>(), N, H);
    for_row_chunks(N, H, [&](std::int64_t lo, std::int64_t hi) {
      const std::int64_t rows = hi - lo;
      const auto a = A.middleRows(lo, rows);
      const auto i = a.middleCols(0, H), f = a.middleCols(H, H), o = a.middleCols(2 * H, H),
                 g = a.middleCols(3 * H, H), tc = a.middleCols(4 * H, H);
      const auto gh = G.middleRows(lo, rows).leftCols(H);
      const Rows<T> dc = G.middleRows(lo, rows).rightCols(H) + gh * o * (T(1) - tc * tc);
      auto dz = dZ.middleRows(lo, rows);
      dz.middleCols(0, H) = dc * g * i * (T(1) - i);
      dz.middleCols(H, H) = dc * Cp.middleRows(lo, rows) * f * (T(1) - f);
      dz.middleCols(2 * H, H) = gh * tc * o * (T(1) - o);
      dz.middleCols(3 * H, H) = dc * i * (T(1) - g * g);
      dCp.middleRows(lo, rows) = dc * f;
    });
  });
  return out;
}

// The same backward from primitives (create_graph): a value on the graph.
Vars lstm_cell_backward_on_graph(const VjpArgs& c, std::int64_t H) {
  const Var z = c.input(0), c_prev = c.input(1);
  const Var i = sigmoid(slice(z, 1, 0, H)), f = sigmoid(slice(z, 1, H, 2 * H)),
            o = sigmoid(slice(z, 1, 2 * H, 3 * H)), g = tanh(slice(z, 1, 3 * H, 4 * H));
  const Var tc = tanh(f * c_prev + i * g);
  const Var gh = slice(c.grad, 1, 0, H);
  const Var dc = slice(c.grad, 1, H, 2 * H) + gh * o * (1.0 - square(tc));
  const Var dz = concat({dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                         gh * tc * o * (1.0 - o), dc * i * (1.0 - square(g))},
                        1);
  return {dz, dc * f};
}

Var composite_as_one(const std::vector<Var>& v) {
  const LstmState s = lstm_cell_composite(v[0], v[1]);
  return concat({s.h, s.c}, 1);
}

// Checked mode: reverse mode through the composite on float64 copies of the
// inputs (as BatchNormal's checked mode does), against the fused gradients.
void expect_agreement(const VjpArgs& c, const CellGrads& fused) {
  GradModeGuard recording(true);  // backward may run under a NoGradGuard
  const auto f64 = [](const Tensor& t) { return t.astype(DType::Float64); };
  const std::vector<Tensor> autodiff = reverse_mode_gradients(
      composite_as_one, {f64(c.input(0).value()), f64(c.input(1).value())}, f64(c.grad.value()));
  expect_hand_derived_close("lstm_cell checked backward (dz)", autodiff[0], fused.dz);
  expect_hand_derived_close("lstm_cell checked backward (dc_prev)", autodiff[1], fused.dc_prev);
}

// ---------------------------------------------------------------- GRU

std::int64_t gru_hidden_size(const Var& a, const Var& s, const Var& W_h) {
  if (a.rank() != 2 || a.shape()[1] % 3 != 0) {
    throw ShapeError("gru_cell: expected a = [a_z, a_r, x_h] of shape (N, 3H), got " +
                     to_string(a.shape()));
  }
  const std::int64_t n = a.shape()[0], h = a.shape()[1] / 3;
  check_same_shape({n, h}, s.shape(), "gru_cell: the previous state s");
  check_same_shape({h, h}, W_h.shape(), "gru_cell: the candidate's hidden weights W_h");
  check_same_dtype(a.value(), s.value(), "gru_cell");
  check_same_dtype(a.value(), W_h.value(), "gru_cell");
  check_floating(a.dtype(), "gru_cell");
  return h;
}

// The gates and the candidate of one GRU step, row-major (N, H) each.
struct GruGates {
  Tensor z, r, h, sr;  // sr = s r, the candidate's hidden input
};

GruGates gru_gates(const Tensor& a, const Tensor& s, const Tensor& W_h, std::int64_t H) {
  const std::int64_t N = a.shape()[0];
  GruGates out{Tensor({N, H}, a.dtype()), Tensor({N, H}, a.dtype()), Tensor(),
               Tensor({N, H}, a.dtype())};
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> A(a.data<T>(), N, 3 * H), S(s.data<T>(), N, H);
    RowsMap<T> Z(out.z.data<T>(), N, H), R(out.r.data<T>(), N, H), SR(out.sr.data<T>(), N, H);
    for_row_chunks(N, H, [&](std::int64_t lo, std::int64_t hi) {
      const auto ar = A.middleRows(lo, hi - lo);
      Z.middleRows(lo, hi - lo) = ar.middleCols(0, H).logistic();
      R.middleRows(lo, hi - lo) = ar.middleCols(H, H).logistic();
      SR.middleRows(lo, hi - lo) = S.middleRows(lo, hi - lo) * R.middleRows(lo, hi - lo);
    });
  });
  // The candidate: tanh(x_h + (s r) W_h), the product by the GEMM kernel.
  out.h = math::matmul(out.sr, W_h);
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> A(a.data<T>(), N, 3 * H);
    RowsMap<T> Hc(out.h.data<T>(), N, H);
    for_row_chunks(N, H, [&](std::int64_t lo, std::int64_t hi) {
      Hc.middleRows(lo, hi - lo) =
          (A.middleRows(lo, hi - lo).middleCols(2 * H, H) + Hc.middleRows(lo, hi - lo)).tanh();
    });
  });
  return out;
}

Tensor gru_cell_forward(const Tensor& s, const GruGates& k, std::int64_t H) {
  const std::int64_t N = s.shape()[0];
  Tensor next({N, H}, s.dtype());
  dispatch(s.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> S(s.data<T>(), N, H), Z(k.z.data<T>(), N, H), Hc(k.h.data<T>(), N, H);
    RowsMap<T> out(next.data<T>(), N, H);
    out = (T(1) - Z) * Hc + Z * S;
  });
  return next;
}

// Note [GRU cell backward]
// With g the gradient arriving at s' = (1 - z) h + z s:
//   ds'/dz = s - h          ds'/dh = 1 - z          ds'/ds (direct) = z
// h = tanh(x_h + (s r) W_h): the candidate's pre-activation gets
//   dh_pre = g (1 - z) (1 - h^2),
// which is x_h's gradient as it is; through the product,
//   d(s r) = dh_pre W_h^T       dW_h = (s r)^T dh_pre,
// and s r splits into dr = d(s r) s and a second path to s, d(s r) r.
// The gates' pre-activations take sigmoid' = z (1 - z), r (1 - r):
//   da_z = g (s - h) z (1 - z)     da_r = d(s r) s r (1 - r)
//   ds   = g z + d(s r) r.
struct GruGrads {
  Tensor da, ds, dW_h;
};

GruGrads gru_cell_backward(const Tensor& s, const Tensor& W_h, const GruGates& k,
                           const Tensor& grad, std::int64_t H) {
  const std::int64_t N = s.shape()[0];
  Tensor dh_pre({N, H}, s.dtype());
  GruGrads out{Tensor({N, 3 * H}, s.dtype()), Tensor({N, H}, s.dtype()), Tensor()};
  if (N == 0 || H == 0) {  // no element to walk (N may be huge when H is 0)
    out.dW_h = Tensor::zeros({H, H}, s.dtype());
    return out;
  }
  dispatch(s.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> G(grad.data<T>(), N, H), Z(k.z.data<T>(), N, H), Hc(k.h.data<T>(), N, H),
        S(s.data<T>(), N, H);
    RowsMap<T> D(dh_pre.data<T>(), N, H), dA(out.da.data<T>(), N, 3 * H);
    D = G * (T(1) - Z) * (T(1) - Hc * Hc);
    dA.middleCols(0, H) = G * (S - Hc) * Z * (T(1) - Z);
    dA.middleCols(2 * H, H) = D;
  });
  const Tensor dsr = math::matmul(dh_pre, W_h, false, true);
  out.dW_h = math::matmul(k.sr, dh_pre, true, false);
  dispatch(s.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> G(grad.data<T>(), N, H), Z(k.z.data<T>(), N, H), R(k.r.data<T>(), N, H),
        S(s.data<T>(), N, H), dSR(dsr.data<T>(), N, H);
    RowsMap<T> dA(out.da.data<T>(), N, 3 * H), dS(out.ds.data<T>(), N, H);
    dA.middleCols(H, H) = dSR * S * R * (T(1) - R);
    dS = G * Z + dSR * R;
  });
  return out;
}

// The same backward from primitives (create_graph): values on the graph.
Vars gru_cell_backward_on_graph(const VjpArgs& c, std::int64_t H) {
  const Var a = c.input(0), s = c.input(1), W_h = c.input(2);
  const Var z = sigmoid(slice(a, 1, 0, H)), r = sigmoid(slice(a, 1, H, 2 * H));
  const Var sr = s * r;
  const Var h = tanh(slice(a, 1, 2 * H, 3 * H) + matmul(sr, W_h));
  const Var& g = c.grad;
  const Var dh_pre = g * (1.0 - z) * (1.0 - square(h));
  const Var dsr = matmul(dh_pre, W_h, false, true);
  const Var da = concat({g * (s - h) * z * (1.0 - z), dsr * s * r * (1.0 - r), dh_pre}, 1);
  return {da, g * z + dsr * r, matmul(sr, dh_pre, true, false)};
}

Var gru_composite_of(const std::vector<Var>& v) { return gru_cell_composite(v[0], v[1], v[2]); }

void expect_gru_agreement(const VjpArgs& c, const GruGrads& fused) {
  GradModeGuard recording(true);  // backward may run under a NoGradGuard
  const auto f64 = [](const Tensor& t) { return t.astype(DType::Float64); };
  const std::vector<Tensor> autodiff = reverse_mode_gradients(
      gru_composite_of, {f64(c.input(0).value()), f64(c.input(1).value()), f64(c.input(2).value())},
      f64(c.grad.value()));
  expect_hand_derived_close("gru_cell checked backward (da)", autodiff[0], fused.da);
  expect_hand_derived_close("gru_cell checked backward (ds)", autodiff[1], fused.ds);
  expect_hand_derived_close("gru_cell checked backward (dW_h)", autodiff[2], fused.dW_h);
}

}  // namespace

Var gru_cell_composite(const Var& a, const Var& s, const Var& W_h, const Nonlinearity& gate,
                       const Nonlinearity& activation) {
  const std::int64_t H = gru_hidden_size(a, s, W_h);
  const Var z = gate(slice(a, 1, 0, H)), r = gate(slice(a, 1, H, 2 * H));
  const Var h = activation(slice(a, 1, 2 * H, 3 * H) + matmul(s * r, W_h));
  return (1.0 - z) * h + z * s;
}

Var gru_cell(const Var& a, const Var& s, const Var& W_h, bool checked) {
  const std::int64_t H = gru_hidden_size(a, s, W_h);
  Tensor next = gru_cell_forward(s.value(), gru_gates(a.value(), s.value(), W_h.value(), H), H);
  return record(info::kGruCell, {&a, &s, &W_h}, std::move(next), {},
                [H, checked](const VjpArgs& c) -> Vars {
                  const Var a = c.input(0), s = c.input(1), W_h = c.input(2);
                  if (detail::records({&c.grad, &a, &s, &W_h})) {
                    return gru_cell_backward_on_graph(c, H);
                  }
                  // The gates again from the inputs: one step's (N, H)
                  // arrays are not worth keeping per step.
                  const GruGates k = gru_gates(a.value(), s.value(), W_h.value(), H);
                  GruGrads g = gru_cell_backward(s.value(), W_h.value(), k, c.grad.value(), H);
                  if (checked) expect_gru_agreement(c, g);
                  return {Var(std::move(g.da)), Var(std::move(g.ds)), Var(std::move(g.dW_h))};
                });
}

LstmState lstm_cell_composite(const Var& z, const Var& c_prev, const Nonlinearity& gate,
                              const Nonlinearity& activation) {
  const std::int64_t H = hidden_size(z, c_prev);
  const Var i = gate(slice(z, 1, 0, H)), f = gate(slice(z, 1, H, 2 * H)),
            o = gate(slice(z, 1, 2 * H, 3 * H)), g = activation(slice(z, 1, 3 * H, 4 * H));
  const Var c = f * c_prev + i * g;
  return {o * activation(c), c};
}

Var lstm_cell(const Var& z, const Var& c_prev, bool checked) {
  const std::int64_t H = hidden_size(z, c_prev);
  CellForward forward = lstm_cell_forward(z.value(), c_prev.value(), H);
  return record(info::kLstmCell, {&z, &c_prev}, std::move(forward.hc),
                {std::move(forward.activations)}, [H, checked](const VjpArgs& c) -> Vars {
                  const Var z = c.input(0), c_prev = c.input(1);
                  // Under create_graph the operands are on the graph: record.
                  if (detail::records({&c.grad, &z, &c_prev}))
                    return lstm_cell_backward_on_graph(c, H);
                  CellGrads g = lstm_cell_backward(c.saved[0], c_prev.value(), c.grad.value(), H);
                  if (checked) expect_agreement(c, g);
                  return {Var(std::move(g.dz)), Var(std::move(g.dc_prev))};
                });
}

LstmState lstm_cell_state(const Var& hc) {
  if (hc.rank() != 2 || hc.shape()[1] % 2 != 0) {
    throw ShapeError("lstm_cell_state: expected lstm_cell's (N, 2H) result, got " +
                     to_string(hc.shape()));
  }
  const std::int64_t H = hc.shape()[1] / 2;
  return {slice(hc, 1, 0, H), slice(hc, 1, H, 2 * H)};
}

// Catalogue entry (Note [One entry per primitive] in autodiff/catalogue.hpp).
namespace {
using namespace catalogue;  // NOLINT: the entry below is written in its words
using V = const std::vector<Var>&;

Samples lstm_cell_samples() {
  return {{"(3, 8) gates, H = 2",
           [](V v) { return lstm_cell(v[0], v[1]); },
           {sample::normal({3, 8}, 760), sample::normal({3, 2}, 761)}},
          {"one sample, H = 1",
           [](V v) { return lstm_cell(v[0], v[1]); },
           {sample::normal({1, 4}, 762), sample::normal({1, 1}, 763)}},
          {"checked",
           [](V v) { return lstm_cell(v[0], v[1], /*checked=*/true); },
           {sample::normal({2, 12}, 764), sample::normal({2, 3}, 765)}}};
}

// z from a (N, 4H), c_prev from b when it is (N, H), else from a's first H
// columns; other shapes throw ShapeError.
Var random_lstm_cell(const Var& a, const Var& b, const Choices& c) {
  if (a.rank() != 2 || a.shape()[1] % 4 != 0) return lstm_cell(a, b, c.flag);
  const Shape state{a.shape()[0], a.shape()[1] / 4};
  return lstm_cell(a, b.shape() == state ? b : slice(a, 1, 0, state[1]), c.flag);
}

Samples gru_cell_samples() {
  return {
      {"(3, 6) gates, H = 2",
       [](V v) { return gru_cell(v[0], v[1], v[2]); },
       {sample::normal({3, 6}, 770), sample::normal({3, 2}, 771), sample::normal({2, 2}, 772)}},
      {"one sample, H = 1",
       [](V v) { return gru_cell(v[0], v[1], v[2]); },
       {sample::normal({1, 3}, 773), sample::normal({1, 1}, 774), sample::normal({1, 1}, 775)}},
      {"checked",
       [](V v) { return gru_cell(v[0], v[1], v[2], /*checked=*/true); },
       {sample::normal({2, 9}, 776), sample::normal({2, 3}, 777), sample::normal({3, 3}, 778)}}};
}

// a (N, 3H); s from b when it is (N, H), else a's first H columns; W_h from
// a's first H rows' first H columns when there are enough of them.
Var random_gru_cell(const Var& a, const Var& b, const Choices& c) {
  if (a.rank() != 2 || a.shape()[1] % 3 != 0 || a.shape()[0] < a.shape()[1] / 3) {
    return gru_cell(a, b, b, c.flag);
  }
  const std::int64_t H = a.shape()[1] / 3;
  const Var s = b.shape() == Shape{a.shape()[0], H} ? b : slice(a, 1, 0, H);
  return gru_cell(a, s, slice(slice(a, 0, 0, H), 1, H, 2 * H), c.flag);
}

const Primitive kEntries[] = {
    Primitive(info::kGruCell, "ops/cells.cpp")
        .with_inputs({{}, {}, {}})
        .with_samples(gru_cell_samples)
        .with_random(random_gru_cell),
    Primitive(info::kLstmCell, "ops/cells.cpp")
        .with_inputs({{}, {}})
        .with_samples(lstm_cell_samples)
        .with_random(random_lstm_cell),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
