#include "tensor/conv_math.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include "tensor/detail/conv_geometry.hpp"
#include "tensor/detail/winograd.hpp"
#include "tensor/kernels/kernels.hpp"
#include "tensor/parallel.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::math {
namespace {

using detail::ConvGeometry;
using detail::OutputStage;
using detail::product_into;

std::string pair_text(Size2 s) {
  return "(" + std::to_string(s.h) + ", " + std::to_string(s.w) + ")";
}

std::string padding_text(const Padding2d& p) {
  return "(top " + std::to_string(p.top) + ", bottom " + std::to_string(p.bottom) + ", left " +
         std::to_string(p.left) + ", right " + std::to_string(p.right) + ")";
}

// A shape the caller gives as a value (the gradient primitives take x's or
// w's) is held to what a tensor's shape is: sizes >= 0 whose product fits.
void check_countable(const Shape& s, const char* what, const char* role) {
  try {
    numel(s);
  } catch (const ShapeError& e) {
    throw ShapeError(std::string(what) + ": " + role + ": " + e.what());
  }
}

void check_nchw(const Shape& x, const char* what) {
  if (x.size() != 4) {
    throw ShapeError(std::string(what) + " expects a 4-D input (N, C, H, W), got shape " +
                     to_string(x));
  }
}

// Note [Convolution as matrix products]
// Each sample's receptive fields are unrolled into the columns of a matrix
// (im2col): row (c, i, j), column (oh, ow) holds xpad[c, oh*sh + i, ow*sw + j].
// With W viewed as the (F, C*KH*KW) matrix Wm the convolution is one matrix
// product, Y = Wm @ col, and its VJPs are two more:
//   gW   = sum over samples of gY @ col^T
//   gcol = Wm^T @ gY, then col2im adds each column entry back to the input
//          element it was copied from (the adjoint of im2col).
// Samples are processed in groups whose columns sit side by side in one col
// matrix, so that gW's product spans the group and runs near its peak while
// col stays small; Y and gcol are taken per sample of the group (Note
// [Products per sample]). The grouping depends only on the shapes (and the
// dtype's size: Note [Slabs of output rows]), never on the thread count,
// and the per-group partial gW are added in group order: results are the
// same bit for bit at any thread count.
// 3x3 convolutions at stride 1 with enough channels take Winograd's
// F(4x4, 3x3) or F(2x2, 3x3) instead (Note [Winograd convolution] in
// tensor/winograd.cpp): 1/4 or 4/9 of the multiply-adds on whole tiles, the
// same groups-of-samples structure.

// Elements of col per group, at most (unless one sample alone needs more).
constexpr std::int64_t kColBudget = std::int64_t{1} << 19;
// Groups wanted at least, so that threads have work to share on small layers.
constexpr std::int64_t kMinGroups = 8;
// Bytes of col per slab of output rows, at most (Note [Slabs of output rows]).
constexpr std::int64_t kSlabBytes = std::int64_t{256} << 10;
// Columns of a slab, at least (Note [Slabs of output rows]).
constexpr std::int64_t kMinSlabColumns = 256;

struct Groups {
  std::int64_t size, count;
  // Output rows unrolled at a time: g.OH (whole samples, the group's
  // columns side by side), or fewer (Note [Slabs of output rows]).
  std::int64_t slab_rows;
  // Several groups already share the threads; one group (a single sample)
  // leaves them to its products. Decided by shape, so the bits stay the same
  // at any thread count.
  ProductThreads product_threads() const {
    return count > 1 ? ProductThreads::CallerOnly : ProductThreads::Shared;
  }
};

// Note [Slabs of output rows]
// A sample's col is C*KH*KW x OH*OW: 7.4 MB for a ResNet's first layer (7x7
// at stride 2 over 224 x 224 x 3) in float32, beyond a core's L2 cache (1 MB
// on the Zen 5 measured). Unrolled whole, it goes to memory from im2col and
// comes back for the products' packing. Such samples are instead unrolled a
// slab of output rows at a time, each slab's col (kSlabBytes at most)
// consumed by its products while in cache: Y's and gcol's columns of the
// slab, and gW += gY's slab @ col's slab^T. That layer's forward and
// backward took 12-15% less time on one thread. The products are narrower
// (a slab's columns) and gW's inner dimension is now a slab, added slab
// after slab; Eigen may take some columns of a product through another path
// of its micro-kernel, and col2im adds a slab's entries to gx before the
// next slab's: Y, gx and gW differ from the whole sample's in a few last
// bits (Y in about 0.1% of its elements on that layer), never between
// thread counts (the slabs follow from the shapes). Samples are still
// grouped (kMinGroups groups) for gW's partial sums.
// Slabs narrower than kMinSlabColumns lost more in their narrower products
// than the cache saved: a stride-2 3x3 layer (64 channels in, 28 x 28 out:
// 576 x 784 per sample) in slabs of 112 or 196 columns took 13% more time
// (where exactly was not profiled), and keeps its whole col. So do a single
// sample (its products share the threads) and a layer whose single output
// row is beyond the budget.
std::int64_t plan_slab_rows(const ConvGeometry& g, std::size_t element_bytes) {
  const std::int64_t budget = kSlabBytes / static_cast<std::int64_t>(element_bytes);
  const std::int64_t row_elements = g.rows() * g.OW;  // of one output row's col
  if (g.N == 1 || g.rows() * g.plane() <= budget || row_elements > budget) return g.OH;
  const std::int64_t fit = budget / row_elements;
  const std::int64_t slabs = (g.OH + fit - 1) / fit;
  const std::int64_t rows = (g.OH + slabs - 1) / slabs;
  return rows * g.OW >= kMinSlabColumns ? rows : g.OH;
}

Groups plan_groups(const ConvGeometry& g, std::size_t element_bytes) {
  const std::int64_t per_sample = g.rows() * g.plane();  // fits: conv_geometry counted it
  const std::int64_t slab_rows = plan_slab_rows(g, element_bytes);
  if (slab_rows < g.OH) {
    const std::int64_t size = (g.N + kMinGroups - 1) / kMinGroups;
    return {size, (g.N + size - 1) / size, slab_rows};
  }
  // The whole batch's col may not be countable; then every sample is a group.
  std::int64_t total = 0;
  const std::int64_t by_memory = __builtin_mul_overflow(g.N, per_sample, &total)
                                     ? g.N
                                     : total / kColBudget + (total % kColBudget != 0);
  const std::int64_t wanted = std::max(by_memory, std::min(g.N, kMinGroups));
  const std::int64_t size = (g.N + wanted - 1) / wanted;
  return {size, (g.N + size - 1) / size, g.OH};
}

// Range [lo, hi) of outputs o along one axis whose input o*stride - pad + k
// (k: the filter's tap) lies inside [0, size), with lo <= hi <= out. A
// filter wider than the input and its padding has taps that see only the
// padding at every output: their first inside output lies past `out`, and
// lo must stop there, or im2col would fill beyond the run.
std::pair<std::int64_t, std::int64_t> inside_outputs(std::int64_t pad, std::int64_t size,
                                                     std::int64_t stride, std::int64_t out,
                                                     std::int64_t k) {
  const std::int64_t first = pad - k;  // o * stride must reach at least this
  // ceil(first / stride) as (first - 1) / stride + 1: first + stride - 1
  // overflows for a huge stride.
  const std::int64_t lo = std::min(out, first <= 0 ? 0 : (first - 1) / stride + 1);
  const std::int64_t last = size - 1 + pad - k;  // o * stride must stay at most this
  const std::int64_t hi = last < 0 ? 0 : std::min(out, last / stride + 1);
  return {lo, std::max(lo, hi)};
}

// The part of col one pass unrolls: output rows [r0, r1) of samples
// [n0, n1), each sample's rows a block of block() columns side by side.
struct ColWindow {
  std::int64_t n0, n1, r0, r1;
  static ColWindow samples(const ConvGeometry& g, std::int64_t n0, std::int64_t n1) {
    return {n0, n1, 0, g.OH};
  }
  std::int64_t block(const ConvGeometry& g) const { return (r1 - r0) * g.OW; }
  std::int64_t cols(const ConvGeometry& g) const { return (n1 - n0) * block(g); }
  // Index in y (or gy) of sample n0's first row r0, channel 0: the window's
  // (F, block) part of the output, rows g.plane() apart.
  std::int64_t output_offset(const ConvGeometry& g) const { return (n0 * g.F * g.OH + r0) * g.OW; }
};

// Calls fn(dst, src, first, rows) for every (row of col, sample) of the
// window: dst is the col index of the sample's block, the window's rows
// [first, first + rows.count) read the input (the others only padding), src
// is the input index of that first row's entry rows.lo, meaningful only when
// rows.reads().
template <class Fn>
void for_each_col_block(const ConvGeometry& g, const ColWindow& win, Fn&& fn) {
  const std::int64_t cols = win.cols(g), block = win.block(g);
  for (std::int64_t c = 0; c < g.C; ++c) {
    for (std::int64_t i = 0; i < g.KH; ++i) {
      const auto [inside_lo, inside_hi] = inside_outputs(g.pt, g.H, g.sh, g.OH, i);
      const std::int64_t oh_lo = std::clamp(inside_lo, win.r0, win.r1);
      const std::int64_t oh_hi = std::clamp(inside_hi, oh_lo, win.r1);
      for (std::int64_t j = 0; j < g.KW; ++j) {
        const std::int64_t row = (c * g.KH + i) * g.KW + j;
        const auto [lo, hi] = inside_outputs(g.pl, g.W, g.sw, g.OW, j);
        // Only positions inside the input are computed: with a huge stride or
        // padding, those of outputs that read nothing need not be countable.
        const std::int64_t step = oh_hi - oh_lo > 1 ? g.sh * g.W : 0;
        const kernels::StridedRows rows{oh_hi - oh_lo, g.OW, lo, hi, g.sw, step};
        const std::int64_t offset =
            rows.reads() ? (oh_lo * g.sh - g.pt + i) * g.W + lo * g.sw - g.pl + j : 0;
        for (std::int64_t n = win.n0; n < win.n1; ++n) {
          fn(row * cols + (n - win.n0) * block, (n * g.C + c) * g.H * g.W + offset, oh_lo - win.r0,
             rows);
        }
      }
    }
  }
}

template <class T>
void im2col(const ConvGeometry& g, const T* x, const ColWindow& win, T* col) {
  const auto unroll = kernels::kernels_for<T>().unroll_rows;
  const std::int64_t block = win.block(g);
  for_each_col_block(g, win,
                     [&](std::int64_t dst, std::int64_t src, std::int64_t first,
                         const kernels::StridedRows& rows) {
                       T* out = col + dst;
                       std::fill(out, out + first * g.OW, T(0));
                       unroll(rows.reads() ? x + src : nullptr, rows, out + first * g.OW);
                       std::fill(out + (first + rows.count) * g.OW, out + block, T(0));
                     });
}

// The adjoint of im2col: adds every col entry to the input element it came from.
template <class T>
void col2im_add(const ConvGeometry& g, const T* col, const ColWindow& win, T* x) {
  const auto fold_add = kernels::kernels_for<T>().fold_rows_add;
  for_each_col_block(g, win,
                     [&](std::int64_t dst, std::int64_t src, std::int64_t first,
                         const kernels::StridedRows& rows) {
                       if (rows.reads()) fold_add(col + dst + first * g.OW, rows, x + src);
                     });
}

// The slabs of samples [n0, n1) in order: fn(window).
template <class Fn>
void for_each_slab(const ConvGeometry& g, std::int64_t slab_rows, std::int64_t n0, std::int64_t n1,
                   Fn&& fn) {
  for (std::int64_t n = n0; n < n1; ++n) {
    for (std::int64_t r0 = 0; r0 < g.OH; r0 += slab_rows) {
      fn(ColWindow{n, n + 1, r0, std::min(g.OH, r0 + slab_rows)});
    }
  }
}

template <class T>
void forward_in_slabs(const ConvGeometry& g, std::int64_t slab_rows, const T* x, const T* wm,
                      const OutputStage<T>& stage, std::int64_t n0, std::int64_t n1, T* y) {
  Tensor col({g.rows(), slab_rows * g.OW}, dtype_of<T>());  // a MemoryError, as Tensors fail
  for_each_slab(g, slab_rows, n0, n1, [&](const ColWindow& win) {
    const std::int64_t cols = win.cols(g);
    im2col(g, x, win, col.data<T>());
    product_into(g.F, cols, g.rows(), wm, g.rows(), false, col.data<T>(), cols, false,
                 y + win.output_offset(g), g.plane());
    finish_outputs(g, stage, y + win.output_offset(g), cols);
  });
}

// gw = sum over the slabs of samples [n0, n1) of gy's slab @ col's slab^T
// (when gw is given), and each slab's gcol = Wm^T @ gy's slab added into gx
// (when wm is given).
template <class T>
void grads_in_slabs(const ConvGeometry& g, std::int64_t slab_rows, const T* gy, const T* x,
                    const T* wm, std::int64_t n0, std::int64_t n1, T* gx, T* gw) {
  const Shape slab{g.rows(), slab_rows * g.OW};
  Tensor col = gw != nullptr ? Tensor(slab, dtype_of<T>()) : Tensor();
  Tensor gcol = wm != nullptr ? Tensor(slab, dtype_of<T>()) : Tensor();
  for_each_slab(g, slab_rows, n0, n1, [&](const ColWindow& win) {
    const std::int64_t cols = win.cols(g);
    const T* gy_slab = gy + win.output_offset(g);
    if (gw != nullptr) {
      im2col(g, x, win, col.data<T>());
      const bool first = win.n0 == n0 && win.r0 == 0;
      product_into(g.F, g.rows(), cols, gy_slab, g.plane(), false, col.data<T>(), cols, true, gw,
                   g.rows(), /*accumulate=*/!first);
    }
    if (wm != nullptr) {
      product_into(g.rows(), cols, g.F, wm, g.rows(), true, gy_slab, g.plane(), false,
                   gcol.data<T>(), cols);
      col2im_add(g, gcol.data<T>(), win, gx);
    }
  });
}

// A product's (F, group columns) layout -> NCHW samples n0..n1 of y.
template <class T>
void scatter_to_nchw(const ConvGeometry& g, std::int64_t n0, std::int64_t n1, const T* product,
                     T* y) {
  const std::int64_t cols = (n1 - n0) * g.plane();
  for (std::int64_t n = n0; n < n1; ++n) {
    for (std::int64_t f = 0; f < g.F; ++f) {
      const T* from = product + f * cols + (n - n0) * g.plane();
      std::copy(from, from + g.plane(), y + (n * g.F + f) * g.plane());
    }
  }
}

// NCHW samples n0..n1 of gy -> the (F, group columns) layout of a product.
template <class T>
void gather_from_nchw(const ConvGeometry& g, std::int64_t n0, std::int64_t n1, const T* gy,
                      T* product) {
  const std::int64_t cols = (n1 - n0) * g.plane();
  for (std::int64_t n = n0; n < n1; ++n) {
    for (std::int64_t f = 0; f < g.F; ++f) {
      const T* from = gy + (n * g.F + f) * g.plane();
      std::copy(from, from + g.plane(), product + f * cols + (n - n0) * g.plane());
    }
  }
}

// The geometry of conv2d on an input of shape xs with filters of shape ws;
// `what` names the op in errors.
ConvGeometry conv_geometry(const Shape& xs, const Shape& ws, Size2 stride, const Padding2d& padding,
                           const char* what) {
  check_nchw(xs, what);
  if (ws.size() != 4) {
    throw ShapeError(std::string(what) + " expects 4-D filters (F, C, KH, KW), got shape " +
                     to_string(ws));
  }
  if (ws[1] != xs[1]) {
    throw ShapeError(std::string(what) + ": filters of shape " + to_string(ws) + " expect " +
                     std::to_string(ws[1]) + " input channels, got an input of shape " +
                     to_string(xs) + " with " + std::to_string(xs[1]));
  }
  check_countable(xs, what, "the input");
  check_countable(ws, what, "the filters");
  const Size2 out = window_output_size({xs[2], xs[3]}, {ws[2], ws[3]}, stride, padding, what);
  // One sample's col (Note [Convolution as matrix products]) and the output
  // are counted before anything multiplies their sizes.
  check_countable({xs[1], ws[2], ws[3], out.h, out.w}, what,
                  "one sample's receptive fields (C, KH, KW, OH, OW)");
  check_countable({xs[0], ws[0], out.h, out.w}, what, "the output (N, F, OH, OW)");
  return {xs[0], xs[1], xs[2],    xs[3],    ws[0],       ws[2],       ws[3],
          out.h, out.w, stride.h, stride.w, padding.top, padding.left};
}

Shape output_shape(const ConvGeometry& g) { return {g.N, g.F, g.OH, g.OW}; }

// Note [Products per sample]
// With several groups, each group's threads are its own, and every sample's
// product is taken on its own: Wm @ (the sample's columns of col) is the
// sample's (F, OH*OW) output, written where it lies in y, and Wm^T @ (the
// sample's gy) is its gcol, added back into gx while it is still in cache.
// Each output element is the same sum over the same inner index as in the
// group's product, though Eigen may split that sum into other blocks for a
// narrower product: bits can differ from the group's product (they did on
// the CNN example's layers), never between thread counts. It saves the
// copies between the group's (F, columns) layout and NCHW, which cost a
// CNN's first layer (large output, small products) more than its
// products. A single sample (N = 1) is one group: its products share the
// threads instead (Note [Splitting matrix products]).
template <class T>
void conv2d_forward(const ConvGeometry& g, const Tensor& x, const Tensor& w,
                    const OutputStage<T>& stage, Tensor& y) {
  if (detail::winograd_applies(g)) {  // Note [Winograd convolution]
    detail::winograd_forward(g, x.data<T>(), w.data<T>(), stage, y.data<T>());
    return;
  }
  const Groups groups = plan_groups(g, sizeof(T));
  const Tensor wm = w.reshape({g.F, g.rows()});
  parallel_for(groups.count, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t k = first; k < last; ++k) {
      const std::int64_t n0 = k * groups.size, n1 = std::min(g.N, n0 + groups.size);
      if (groups.slab_rows < g.OH) {  // Note [Slabs of output rows]
        forward_in_slabs(g, groups.slab_rows, x.data<T>(), wm.data<T>(), stage, n0, n1,
                         y.data<T>());
        continue;
      }
      const std::int64_t cols = (n1 - n0) * g.plane();
      Tensor col({g.rows(), cols}, x.dtype());
      im2col(g, x.data<T>(), ColWindow::samples(g, n0, n1), col.data<T>());
      if (groups.count == 1) {
        Tensor product = matmul(wm, col, false, false, ProductThreads::Shared);
        scatter_to_nchw(g, n0, n1, product.data<T>(), y.data<T>());
        finish_outputs(g, stage, n0, n1, y.data<T>());
        continue;
      }
      for (std::int64_t n = n0; n < n1; ++n) {
        product_into(g.F, g.plane(), g.rows(), wm.data<T>(), g.rows(), false,
                     col.data<T>() + (n - n0) * g.plane(), cols, false,
                     y.data<T>() + n * g.F * g.plane(), g.plane());
        finish_outputs(g, stage, n, n + 1, y.data<T>());
      }
    }
  });
}

// The group's share of gW: gy's samples [n0, n1) @ col^T. A single
// sample's gy is already the product's (F, OH*OW) layout and is read where
// it lies (the same product, so the same bits, as gathered); several are
// gathered side by side first.
template <class T>
Tensor group_weight_grad(const ConvGeometry& g, const Tensor& gy, const Tensor& col,
                         std::int64_t n0, std::int64_t n1, const Groups& groups) {
  if (groups.count == 1) {  // the one sample's products share the threads
    return matmul(gy.reshape({g.F, g.plane()}), col, false, true, ProductThreads::Shared);
  }
  if (n1 - n0 == 1) {  // the caller's thread alone, as matmul would run it for several groups
    Tensor gw({g.F, g.rows()}, gy.dtype());
    product_into(g.F, g.rows(), g.plane(), gy.data<T>() + n0 * g.F * g.plane(), g.plane(), false,
                 col.data<T>(), g.plane(), true, gw.data<T>(), g.rows());
    return gw;
  }
  Tensor gy_group({g.F, col.shape()[1]}, gy.dtype());
  gather_from_nchw(g, n0, n1, gy.data<T>(), gy_group.data<T>());
  return matmul(gy_group, col, false, true, groups.product_threads());
}

// The gradients of conv2d that are wanted (gx needs w, gw needs x; the
// other may be undefined): both in one pass over the groups of samples for a
// first-order VJP, or one alone for the primitives conv2d_input_grad and
// conv2d_weight_grad. Either way each result comes from the same products
// in the same order: gx and gw are the same bit for bit as when computed
// together.
template <class T>
Conv2dGrads conv2d_grads(const ConvGeometry& g, const Tensor& gy, const Tensor& x, const Tensor& w,
                         bool want_gx, bool want_gw) {
  if (detail::winograd_applies(g)) {  // Note [Winograd convolution]
    Tensor gx = want_gx ? Tensor({g.N, g.C, g.H, g.W}, gy.dtype()) : Tensor();
    Tensor gw = want_gw ? Tensor({g.F, g.C, g.KH, g.KW}, gy.dtype()) : Tensor();
    detail::winograd_backward(g, gy.data<T>(), want_gw ? x.data<T>() : nullptr,
                              want_gx ? w.data<T>() : nullptr, want_gx ? gx.data<T>() : nullptr,
                              want_gw ? gw.data<T>() : nullptr);
    return {std::move(gx), std::move(gw)};
  }
  const Groups groups = plan_groups(g, sizeof(T));
  const DType dtype = gy.dtype();
  const Tensor wm = want_gx ? w.reshape({g.F, g.rows()}) : Tensor();
  Tensor gx = want_gx ? Tensor::zeros({g.N, g.C, g.H, g.W}, dtype) : Tensor();
  std::vector<Tensor> gw_parts(want_gw ? static_cast<std::size_t>(groups.count) : 0);
  parallel_for(groups.count, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t k = first; k < last; ++k) {
      const std::int64_t n0 = k * groups.size, n1 = std::min(g.N, n0 + groups.size);
      if (groups.slab_rows < g.OH) {  // Note [Slabs of output rows]
        if (want_gw) gw_parts[k] = Tensor({g.F, g.rows()}, dtype);
        grads_in_slabs(g, groups.slab_rows, gy.data<T>(), want_gw ? x.data<T>() : nullptr,
                       want_gx ? wm.data<T>() : nullptr, n0, n1, want_gx ? gx.data<T>() : nullptr,
                       want_gw ? gw_parts[k].data<T>() : nullptr);
        continue;
      }
      const std::int64_t cols = (n1 - n0) * g.plane();
      if (want_gw) {
        Tensor col({g.rows(), cols}, dtype);
        im2col(g, x.data<T>(), ColWindow::samples(g, n0, n1), col.data<T>());
        gw_parts[k] = group_weight_grad<T>(g, gy, col, n0, n1, groups);
      }
      if (want_gx && groups.count == 1) {  // one sample: its gy is the product's layout
        const Tensor gcol =
            matmul(wm, gy.reshape({g.F, g.plane()}), true, false, ProductThreads::Shared);
        col2im_add(g, gcol.data<T>(), ColWindow::samples(g, n0, n1), gx.data<T>());
      } else if (want_gx) {  // Note [Products per sample]
        Tensor gcol({g.rows(), g.plane()}, dtype);
        for (std::int64_t n = n0; n < n1; ++n) {
          product_into(g.rows(), g.plane(), g.F, wm.data<T>(), g.rows(), true,
                       gy.data<T>() + n * g.F * g.plane(), g.plane(), false, gcol.data<T>(),
                       g.plane());
          col2im_add(g, gcol.data<T>(), ColWindow::samples(g, n, n + 1), gx.data<T>());
        }
      }
    }
  });
  Tensor gw;
  if (want_gw) {
    gw = gw_parts[0];
    for (std::size_t k = 1; k < gw_parts.size(); ++k) add_inplace(gw, gw_parts[k]);
    gw = gw.reshape({g.F, g.C, g.KH, g.KW});
  }
  return {std::move(gx), std::move(gw)};
}

// Pooling: windows never padded; each (n, c) plane is independent.
struct PoolGeometry {
  std::int64_t planes, H, W, OH, OW, kh, kw, sh, sw;
};

PoolGeometry pool_geometry(const Shape& xs, Size2 window, Size2 stride, const char* what) {
  const Size2 out = window_output_size({xs[2], xs[3]}, window, stride, {}, what);
  return {xs[0] * xs[1], xs[2], xs[3], out.h, out.w, window.h, window.w, stride.h, stride.w};
}

template <class Fn>
void for_each_plane(const PoolGeometry& p, Fn&& fn) {
  const std::int64_t grain =
      std::max<std::int64_t>(1, kElementGrain / std::max<std::int64_t>(1, p.H * p.W));
  parallel_for(p.planes, grain, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t q = lo; q < hi; ++q) fn(q);
  });
}

Shape pooled_shape(const Shape& xs, const PoolGeometry& p) { return {xs[0], xs[1], p.OH, p.OW}; }

}  // namespace

Size2 window_output_size(Size2 input, Size2 window, Size2 stride, const Padding2d& padding,
                         const char* what) {
  const std::string name(what);
  if (window.h < 1 || window.w < 1) {
    throw ValueError(name + ": window (filter or pool) sizes must be >= 1, got " +
                     pair_text(window));
  }
  if (stride.h < 1 || stride.w < 1) {
    throw ValueError(name + ": strides must be >= 1, got " + pair_text(stride));
  }
  if (padding.top < 0 || padding.bottom < 0 || padding.left < 0 || padding.right < 0) {
    throw ValueError(name + ": padding must be >= 0, got " + padding_text(padding));
  }
  // With the window and stride >= 1 and the padding >= 0, these sums are the
  // only arithmetic of the geometry that can overflow: (padded - window) /
  // stride + 1 cannot once padded fits.
  Size2 padded{0, 0};
  const char* overflowing = nullptr;
  if (__builtin_add_overflow(input.h, padding.top, &padded.h) ||
      __builtin_add_overflow(padded.h, padding.bottom, &padded.h)) {
    overflowing = "height";
  } else if (__builtin_add_overflow(input.w, padding.left, &padded.w) ||
             __builtin_add_overflow(padded.w, padding.right, &padded.w)) {
    overflowing = "width";
  }
  if (overflowing != nullptr) {
    throw ShapeError(name + ": padding " + padding_text(padding) + " of an input of " +
                     pair_text(input) + " overflows the padded " + overflowing +
                     ": expected input + padding <= " +
                     std::to_string(std::numeric_limits<std::int64_t>::max()) + " along each axis");
  }
  if (window.h > padded.h || window.w > padded.w) {
    throw ShapeError(name + ": a window of " + pair_text(window) +
                     " needs a (padded) input at least that large, got an input of " +
                     pair_text(input) + " padded to " + pair_text(padded));
  }
  return {(padded.h - window.h) / stride.h + 1, (padded.w - window.w) / stride.w + 1};
}

namespace {
// conv2d with its output stage (a bias when not null, relu when `relu`);
// `what` names the op in errors.
Tensor conv2d_with(const Tensor& x, const Tensor& w, const Tensor* bias, bool relu, Size2 stride,
                   const Padding2d& padding, const char* what) {
  const ConvGeometry g = conv_geometry(x.shape(), w.shape(), stride, padding, what);
  check_same_dtype(x, w, what);
  if (bias != nullptr) {
    check_same_shape({g.F}, bias->shape(), std::string(what) + ": the bias (one per filter)");
    check_same_dtype(x, *bias, (std::string(what) + " (input and bias)").c_str());
  }
  Tensor y(output_shape(g), x.dtype());
  if (y.size() == 0) return y;
  dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    conv2d_forward<T>(g, x, w, OutputStage<T>{bias != nullptr ? bias->data<T>() : nullptr, relu},
                      y);
  });
  return y;
}
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, Size2 stride, const Padding2d& padding) {
  return conv2d_with(x, w, nullptr, /*relu=*/false, stride, padding, "conv2d");
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, Size2 stride,
              const Padding2d& padding) {
  return conv2d_with(x, w, &bias, /*relu=*/false, stride, padding, "conv2d");
}

Tensor conv2d_relu(const Tensor& x, const Tensor& w, const Tensor& bias, Size2 stride,
                   const Padding2d& padding) {
  return conv2d_with(x, w, &bias, /*relu=*/true, stride, padding, "conv2d_relu");
}

Conv2dGrads conv2d_backward(const Tensor& gy, const Tensor& x, const Tensor& w, Size2 stride,
                            const Padding2d& padding) {
  const ConvGeometry g = conv_geometry(x.shape(), w.shape(), stride, padding, "conv2d");
  check_same_dtype(x, w, "conv2d");
  check_same_shape(output_shape(g), gy.shape(), "conv2d_backward: gy");
  check_same_dtype(x, gy, "conv2d_backward");
  if (g.N == 0) return {Tensor::zeros(x.shape(), x.dtype()), Tensor::zeros(w.shape(), w.dtype())};
  return dispatch(x.dtype(), [&](auto zero) {
    return conv2d_grads<decltype(zero)>(g, gy, x, w, /*want_gx=*/true, /*want_gw=*/true);
  });
}

Tensor conv2d_input_grad(const Tensor& gy, const Tensor& w, const Shape& x_shape, Size2 stride,
                         const Padding2d& padding) {
  const ConvGeometry g = conv_geometry(x_shape, w.shape(), stride, padding, "conv2d_input_grad");
  check_same_shape(output_shape(g), gy.shape(),
                   "conv2d_input_grad: the upstream gradient (conv2d's output shape for an input "
                   "of shape " +
                       to_string(x_shape) + ")");
  check_same_dtype(gy, w, "conv2d_input_grad");
  if (g.N == 0) return Tensor::zeros(x_shape, gy.dtype());
  return dispatch(gy.dtype(), [&](auto zero) {
    return conv2d_grads<decltype(zero)>(g, gy, Tensor(), w, /*want_gx=*/true, /*want_gw=*/false).gx;
  });
}

Tensor conv2d_weight_grad(const Tensor& x, const Tensor& gy, const Shape& w_shape, Size2 stride,
                          const Padding2d& padding) {
  const ConvGeometry g = conv_geometry(x.shape(), w_shape, stride, padding, "conv2d_weight_grad");
  check_same_shape(output_shape(g), gy.shape(),
                   "conv2d_weight_grad: the upstream gradient (conv2d's output shape for filters "
                   "of shape " +
                       to_string(w_shape) + ")");
  check_same_dtype(x, gy, "conv2d_weight_grad");
  if (g.N == 0) return Tensor::zeros(w_shape, gy.dtype());
  return dispatch(gy.dtype(), [&](auto zero) {
    return conv2d_grads<decltype(zero)>(g, gy, x, Tensor(), /*want_gx=*/false, /*want_gw=*/true).gw;
  });
}

namespace {
// One window offset's pass over an output row of max pooling: best[ow] and
// at[ow] take row[ow * stride] (input index start + ow * stride) where it
// is larger, or for the window's first offset unconditionally. Strictly
// greater keeps the first maximum on ties; a NaN wins over numbers (it
// propagates, as in NumPy's max) and the first NaN stays. Written without
// branches, with the stride a constant for the common 1 and 2 (kStride 0:
// the `stride` argument), so that the compiler vectorises it: the branchy
// loop took a fifth of the CNN's training step.
template <int kStride, class T>
void max_pool_row(const T* row, std::int64_t stride, std::int64_t start, std::int64_t n, bool first,
                  T* best, std::int32_t* at) {
  const std::int64_t step = kStride > 0 ? kStride : stride;
  if (first) {
    for (std::int64_t ow = 0; ow < n; ++ow) {
      best[ow] = row[ow * step];
      at[ow] = static_cast<std::int32_t>(start + ow * step);
    }
    return;
  }
  for (std::int64_t ow = 0; ow < n; ++ow) {
    const T v = row[ow * step], b = best[ow];
    // Bitwise, not short-circuit: no branch for the comparison, whose
    // outcome is a coin toss on real data.
    const bool take = (v > b) | ((v != v) & (b == b));
    best[ow] = take ? v : b;
    at[ow] = take ? static_cast<std::int32_t>(start + ow * step) : at[ow];
  }
}
}  // namespace

Tensor max_pool2d(const Tensor& x, Size2 window, Size2 stride, std::vector<std::int32_t>* argmax) {
  check_nchw(x.shape(), "max_pool2d");
  const PoolGeometry p = pool_geometry(x.shape(), window, stride, "max_pool2d");
  if (p.H * p.W > std::numeric_limits<std::int32_t>::max()) {
    throw ShapeError("max_pool2d expects planes of at most 2^31 - 1 elements, got " +
                     to_string(x.shape()));
  }
  Tensor y(pooled_shape(x.shape(), p), x.dtype());
  std::vector<std::int32_t> local;
  std::vector<std::int32_t>& arg = argmax != nullptr ? *argmax : local;
  arg.resize(static_cast<std::size_t>(y.size()));
  dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    const bool two_by_two = p.kh == 2 && p.kw == 2 && p.sh == 2 && p.sw == 2;
    const auto& typed_kernels = kernels::kernels_for<T>();
    for_each_plane(p, [&](std::int64_t q) {
      const T* plane = xd + q * p.H * p.W;
      T* best = yd + q * p.OH * p.OW;
      std::int32_t* at = arg.data() + q * p.OH * p.OW;
      if (two_by_two) {
        typed_kernels.max_pool_2x2(plane, p.H, p.W, best, at);
        return;
      }
      for (std::int64_t oh = 0; oh < p.OH; ++oh, best += p.OW, at += p.OW) {
        // Window offsets (i, j) in row-major order, each over the whole
        // output row: the inner loop runs along memory.
        for (std::int64_t i = 0; i < p.kh; ++i) {
          for (std::int64_t j = 0; j < p.kw; ++j) {
            const std::int64_t start = (oh * p.sh + i) * p.W + j;
            const bool first = i == 0 && j == 0;
            if (p.sw == 1) {
              max_pool_row<1>(plane + start, 1, start, p.OW, first, best, at);
            } else if (p.sw == 2) {
              max_pool_row<2>(plane + start, 2, start, p.OW, first, best, at);
            } else {
              max_pool_row<0>(plane + start, p.sw, start, p.OW, first, best, at);
            }
          }
        }
      }
    });
  });
  return y;
}

Tensor max_pool2d_backward(const Tensor& gy, const std::vector<std::int32_t>& argmax,
                           const Shape& x_shape) {
  if (x_shape.size() != 4 || static_cast<std::int64_t>(argmax.size()) != gy.size() ||
      gy.rank() != 4 || gy.shape()[0] != x_shape[0] || gy.shape()[1] != x_shape[1]) {
    throw ShapeError("max_pool2d_backward: upstream gradient of shape " + to_string(gy.shape()) +
                     " does not fit an input of shape " + to_string(x_shape) + " and " +
                     std::to_string(argmax.size()) + " recorded maxima");
  }
  Tensor gx(x_shape, gy.dtype());
  const std::int64_t in_plane = x_shape[2] * x_shape[3];
  const std::int64_t out_plane = gy.shape()[2] * gy.shape()[3];
  const PoolGeometry p{x_shape[0] * x_shape[1], x_shape[2], x_shape[3], 0, 0, 0, 0, 0, 0};
  dispatch(gy.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* g = gy.data<T>();
    T* d = gx.data<T>();
    for_each_plane(p, [&](std::int64_t q) {
      // Each plane zeroed just before its scatter, while it is in cache:
      // zeroing the whole tensor first cost a second pass over memory.
      T* plane = d + q * in_plane;
      std::fill(plane, plane + in_plane, T(0));
      for (std::int64_t o = q * out_plane; o < (q + 1) * out_plane; ++o)
        plane[argmax[static_cast<std::size_t>(o)]] += g[o];
    });
  });
  return gx;
}

Tensor max_pool2d_gather(const Tensor& a, const std::vector<std::int32_t>& argmax,
                         const Shape& y_shape) {
  if (y_shape.size() != 4 || a.rank() != 4 || a.shape()[0] != y_shape[0] ||
      a.shape()[1] != y_shape[1] || static_cast<std::int64_t>(argmax.size()) != numel(y_shape)) {
    throw ShapeError("max_pool2d_gather: a tensor of shape " + to_string(a.shape()) +
                     " does not fit a pooled shape " + to_string(y_shape) + " and " +
                     std::to_string(argmax.size()) + " recorded maxima");
  }
  Tensor y(y_shape, a.dtype());
  const std::int64_t in_plane = a.shape()[2] * a.shape()[3];
  const std::int64_t out_plane = y_shape[2] * y_shape[3];
  const PoolGeometry p{y_shape[0] * y_shape[1], a.shape()[2], a.shape()[3], 0, 0, 0, 0, 0, 0};
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* from = a.data<T>();
    T* to = y.data<T>();
    for_each_plane(p, [&](std::int64_t q) {
      for (std::int64_t o = q * out_plane; o < (q + 1) * out_plane; ++o)
        to[o] = from[q * in_plane + argmax[static_cast<std::size_t>(o)]];
    });
  });
  return y;
}

Tensor mean_pool2d(const Tensor& x, Size2 window, Size2 stride) {
  check_nchw(x.shape(), "mean_pool2d");
  const PoolGeometry p = pool_geometry(x.shape(), window, stride, "mean_pool2d");
  Tensor y(pooled_shape(x.shape(), p), x.dtype());
  dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    const T scale = T(1) / static_cast<T>(p.kh * p.kw);
    for_each_plane(p, [&](std::int64_t q) {
      const T* plane = xd + q * p.H * p.W;
      T* out = yd + q * p.OH * p.OW;
      for (std::int64_t oh = 0; oh < p.OH; ++oh) {
        for (std::int64_t ow = 0; ow < p.OW; ++ow) {
          T acc = 0;
          for (std::int64_t i = 0; i < p.kh; ++i) {
            const T* row = plane + (oh * p.sh + i) * p.W + ow * p.sw;
            for (std::int64_t j = 0; j < p.kw; ++j) acc += row[j];
          }
          out[oh * p.OW + ow] = acc * scale;
        }
      }
    });
  });
  return y;
}

Tensor mean_pool2d_backward(const Tensor& gy, const Shape& x_shape, Size2 window, Size2 stride) {
  if (x_shape.size() != 4) {
    throw ShapeError("mean_pool2d_backward expects a 4-D input shape, got " + to_string(x_shape));
  }
  check_countable(x_shape, "mean_pool2d_backward", "the input shape");
  const PoolGeometry p = pool_geometry(x_shape, window, stride, "mean_pool2d_backward");
  check_same_shape(pooled_shape(x_shape, p), gy.shape(), "mean_pool2d_backward: gy");
  Tensor gx = Tensor::zeros(x_shape, gy.dtype());
  dispatch(gy.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* g = gy.data<T>();
    T* d = gx.data<T>();
    const T scale = T(1) / static_cast<T>(p.kh * p.kw);
    for_each_plane(p, [&](std::int64_t q) {
      T* plane = d + q * p.H * p.W;
      const T* in = g + q * p.OH * p.OW;
      for (std::int64_t oh = 0; oh < p.OH; ++oh) {
        for (std::int64_t ow = 0; ow < p.OW; ++ow) {
          const T share = in[oh * p.OW + ow] * scale;
          for (std::int64_t i = 0; i < p.kh; ++i) {
            T* row = plane + (oh * p.sh + i) * p.W + ow * p.sw;
            for (std::int64_t j = 0; j < p.kw; ++j) row[j] += share;
          }
        }
      }
    });
  });
  return gx;
}

}  // namespace npdl::math
