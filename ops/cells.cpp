// Recurrent cells: the LSTM gate block, fused and composed.
#include "ops/cells.hpp"

#include <Eigen/Core>
#include <string>

#include "autodiff/catalogue.hpp"
#include "autodiff/gradcheck.hpp"
#include "ops/detail/record.hpp"
#include "ops/ops.hpp"
#include "ops/sequence.hpp"
#include "tensor/parallel.hpp"

namespace npdl::ops {

namespace info {
const OpInfo kLstmCell{
    "lstm_cell",
    "[h, c] with i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g), c = f c_prev + i g, "
    "h = o tanh(c)",
    "dc = g_c + g_h o (1 - tanh(c)^2); dz = [dc g i(1-i), dc c_prev f(1-f), g_h tanh(c) "
    "o(1-o), dc i (1-g^2)]; dc_prev = dc f",
    /*vjp_reads_output=*/true, /*saves_inputs=*/0b11};
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

// The forward kernel: one pass over the gate block.
Tensor lstm_cell_forward(const Tensor& z, const Tensor& c_prev, std::int64_t H) {
  const std::int64_t N = z.shape()[0];
  Tensor hc({N, 2 * H}, z.dtype());
  dispatch(z.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> Z(z.data<T>(), N, 4 * H), Cp(c_prev.data<T>(), N, H);
    RowsMap<T> HC(hc.data<T>(), N, 2 * H);
    parallel_for(N, kRowGrain, [&](std::int64_t lo, std::int64_t hi) {
      const auto zr = Z.middleRows(lo, hi - lo);
      const Rows<T> i = zr.middleCols(0, H).logistic(), f = zr.middleCols(H, H).logistic(),
                    o = zr.middleCols(2 * H, H).logistic(), g = zr.middleCols(3 * H, H).tanh();
      const Rows<T> c = f * Cp.middleRows(lo, hi - lo) + i * g;
      HC.middleRows(lo, hi - lo).leftCols(H) = o * c.tanh();
      HC.middleRows(lo, hi - lo).rightCols(H) = c;
    });
  });
  return hc;
}

// Note [LSTM cell backward]
// With g_h and g_c the gradients arriving at h and c (the two halves of
// the upstream), and i, f, o, g the gates recomputed from z:
//   h = o tanh(c)            dh/do = tanh(c),  dh/dc = o (1 - tanh(c)^2)
//   c = f c_prev + i g       dc/df = c_prev,   dc/di = g,  dc/dg = i,
//                            dc/dc_prev = f
// c reaches the loss directly (g_c) and through h, so its total gradient is
//   dc = g_c + g_h o (1 - tanh(c)^2).
// Each gate's pre-activation then gets its gate's gradient times the
// derivative of its nonlinearity, sigmoid' = s (1 - s), tanh' = 1 - t^2:
//   dz_i = dc g i (1 - i)        dz_f = dc c_prev f (1 - f)
//   dz_o = g_h tanh(c) o (1 - o) dz_g = dc i (1 - g^2)
// and the previous state gets dc_prev = dc f. One pass over the block: the
// gates are recomputed from z (cheaper than keeping four (N, H) arrays per
// step), tanh(c) from the output's c.
struct CellGrads {
  Tensor dz, dc_prev;
};

CellGrads lstm_cell_backward(const Tensor& z, const Tensor& c_prev, const Tensor& hc,
                             const Tensor& grad, std::int64_t H) {
  const std::int64_t N = z.shape()[0];
  CellGrads out{Tensor({N, 4 * H}, z.dtype()), Tensor({N, H}, z.dtype())};
  dispatch(z.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ConstRowsMap<T> Z(z.data<T>(), N, 4 * H), Cp(c_prev.data<T>(), N, H),
        HC(hc.data<T>(), N, 2 * H), G(grad.data<T>(), N, 2 * H);
    RowsMap<T> dZ(out.dz.data<T>(), N, 4 * H), dCp(out.dc_prev.data<T>(), N, H);
    parallel_for(N, kRowGrain, [&](std::int64_t lo, std::int64_t hi) {
      const std::int64_t rows = hi - lo;
      const auto zr = Z.middleRows(lo, rows);
      const Rows<T> i = zr.middleCols(0, H).logistic(), f = zr.middleCols(H, H).logistic(),
                    o = zr.middleCols(2 * H, H).logistic(), g = zr.middleCols(3 * H, H).tanh();
      const Rows<T> tc = HC.middleRows(lo, rows).rightCols(H).tanh();
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
  const Var z = c.input(0), c_prev = c.input(1), cell = slice(c.output(), 1, H, 2 * H);
  const Var i = sigmoid(slice(z, 1, 0, H)), f = sigmoid(slice(z, 1, H, 2 * H)),
            o = sigmoid(slice(z, 1, 2 * H, 3 * H)), g = tanh(slice(z, 1, 3 * H, 4 * H));
  const Var tc = tanh(cell);
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

}  // namespace

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
  Tensor hc = lstm_cell_forward(z.value(), c_prev.value(), H);
  return record(
      info::kLstmCell, {&z, &c_prev}, std::move(hc), {}, [H, checked](const VjpArgs& c) -> Vars {
        const Var z = c.input(0), c_prev = c.input(1), hc = c.output();
        // Under create_graph the operands are on the graph: record.
        if (detail::records({&c.grad, &z, &c_prev, &hc})) {
          return lstm_cell_backward_on_graph(c, H);
        }
        CellGrads g = lstm_cell_backward(z.value(), c_prev.value(), hc.value(), c.grad.value(), H);
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

const Primitive kEntries[] = {
    Primitive(info::kLstmCell, "ops/cells.cpp")
        .with_inputs({{}, {}})
        .with_samples(lstm_cell_samples)
        .with_random(random_lstm_cell),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
