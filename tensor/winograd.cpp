#include "tensor/detail/winograd.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "tensor/detail/winograd_level.hpp"
#include "tensor/kernels/per_level.hpp"
#include "tensor/parallel.hpp"
#include "tensor/tensor.hpp"

// Each level's table() is defined by tensor/detail/winograd_level.cpp
// compiled for that level (Note [Kernels per instruction set]).
NPDL_PER_LEVEL_TABLES(npdl::math::winograd_level, ::npdl::math::winograd_level::WinogradKernelTable)

namespace npdl::math::detail {

// Note [Winograd convolution]
// F(m, 3) computes m outputs of a 3-tap correlation, y_o = sum_i g_i d_{o+i},
// from m + 2 inputs d with m + 2 multiplications instead of 3 m:
//   y = A^T [(G g) * (B^T d)]        (* elementwise)
// (Toom-Cook: evaluate both polynomials at m + 1 points and infinity,
// multiply, interpolate). F(2, 3), at the points 0, 1, -1:
//   B^T = [1  0 -1  0]   G = [1    0    0  ]   A^T = [1 1  1  0]
//         [0  1  1  0]       [1/2  1/2  1/2]         [0 1 -1 -1]
//         [0 -1  1  0]       [1/2 -1/2  1/2]
//         [0  1  0 -1]       [0    0    1  ]
// F(4, 3), at the points 0, 1, -1, 2, -2 (Lavin and Gray's matrices):
//   B^T = [4  0 -5  0 1 0]   G = [ 1/4     0     0  ]   A^T = [1 1  1 1  1 0]
//         [0 -4 -4  1 1 0]       [-1/6  -1/6  -1/6 ]         [0 1 -1 2 -2 0]
//         [0  4 -4 -1 1 0]       [-1/6   1/6  -1/6 ]         [0 1  1 4  4 0]
//         [0 -2 -1  2 1 0]       [ 1/24  1/12  1/6 ]         [0 1 -1 8 -8 1]
//         [0  2 -1 -2 1 0]       [ 1/24 -1/12  1/6 ]
//         [0  4  0 -5 0 1]       [ 0     0     1   ]
// Nesting F(m, 3) along both axes gives F(m x m, 3x3): an m x m block of
// outputs from an (m + 2) x (m + 2) tile of input d (tiles overlap by two
// rows and two columns) as
//   Y = A^T [U * V] A,   U = G g G^T,   V = B^T d B,
// (m + 2)^2 multiplications instead of 9 m^2: 16 instead of 36 for m = 2,
// 36 instead of 144 for m = 4. Summed over input channels, each point xi
// of the transform is a matrix product: with tiles p of a group of samples
// as columns,
//   M[xi] (F x P) = U[xi] (F x C) @ V[xi] (C x P),
// then Y = A^T M A per tile. Tiles past the output's edge are computed
// whole, so winograd_tile_outputs takes F(4x4) only where its multiplies,
// 36 a tile of ceil(OH / 4) ceil(OW / 4), are fewer than F(2x2)'s, 16 a
// tile of ceil(OH / 2) ceil(OW / 2). On square maps that is 3x3 and 4x4
// outputs and 7x7 up (the CNN's 11x11 second layer: 324 against 576, 0.56);
// 1, 2, 5 and 6 wide take F(2x2). The choice depends on the shapes only.
//
// The VJPs are the adjoints of the same linear maps, read backwards:
//   gM[xi] = (A gY A^T)[xi]               per tile (gY zero past the output)
//   gU[xi] = gM[xi] @ V[xi]^T             summed over every tile of the batch
//   gw     = G^T gU G                     per (filter, channel)
//   gV[xi] = U[xi]^T @ gM[xi]
//   gx     = B gV B^T                     per tile, added where tiles overlap
// so the gradients cost what the forward costs, and are exact adjoints of
// it up to rounding; conv2d_input_grad and conv2d_weight_grad stay
// convolutions whose own VJPs are convolutions (Note [Convolution's VJPs are
// convolutions]), so the second derivatives are unchanged in form.
//
// Rounding. With u the unit roundoff (2^-24 for float32) and gamma_n =
// n u / (1 - n u), the standard model bounds a computed sum of products by
// gamma_n times the same sum over absolute values, n the most roundings on
// any term's path. The transforms are written (tensor/detail/
// winograd_level.cpp) so that no intermediate exceeds the sum of its terms'
// magnitudes, so, elementwise,
//   |y~ - y| <= gamma_n sum_c sum_xi |A^T|(|G| |g_c| |G|^T * |B^T| |d_c| |B|)|A|,
// every matrix and tile replaced by its absolute value. With |g| <= w_max
// and |d| <= x_max this is at most gamma_n * K_y * C * w_max * x_max, K_y
// the largest entry of (|A^T| k)(|A^T| k)^T with k_xi = (|G| 1)_xi (|B^T| 1)_xi.
// The VJPs the same way: per input element, with F filters,
//   |gx~ - gx| <= gamma_n * K_x * F * w_max * gy_max,
// K_x the largest sum, over the tiles covering an element (one or two a
// side), of the 1-D weights |B^T|^T (|G| 1 * |A^T|^T 1), squared; and per
// filter tap, with P tiles in the batch,
//   |gw~ - gw| <= gamma_n * K_w * P * gy_max * x_max,
// K_w the largest entry of |G|^T (|A^T|^T 1 * |B^T| 1), squared. The
// constants and the roundings n (transforms' depths: F(2x2) V 2, U 4,
// A^T M A 4, A gY A^T 2, B gV B^T 4 and 3 for the overlaps, G^T gU G 4;
// F(4x4) V 4, U 8 (the inexact 1/6 and 1/24 count one each), A^T M A 6,
// A gY A^T 4, B gV B^T 8 and 3 for the overlaps, G^T gU G 10; plus the
// product and the C, F or P - 1 adds of the sums):
//              K_y     n_y      K_x      n_x      K_w      n_w
//   F(2x2)     64      C + 10   64       F + 13   36       P + 8
//   F(4x4)     2304    C + 18   1482.25  F + 23   2844.4   P + 18
// against 9 and 9C roundings for im2col's direct sums. F(4x4)'s constants
// are larger (its points 2 and -2 weigh inputs by up to 8 and the
// transforms cancel more), so its bound is 23-79 times F(2x2)'s. Measured
// on random data (32 channels, 64 filters, 8 samples, 6x6 to 13x13
// outputs), the largest float32 errors of y, gx and gw are 2e-6 to 7e-6 of
// the largest result under F(4x4), about ten times F(2x2)'s 3e-7 to 4e-7,
// and far inside the bound. tests/test_winograd.cpp checks these bounds
// against float64 sums for both tilings, and that on random data the
// errors stay below a twentieth of them (random roundings add up like the
// square root of their number, the bounds like the number).
//
// Layout. Samples are processed in groups (decided by the shapes, as
// im2col's are): a group's V is (points, P, C) and M is (points, P, F),
// row-major,
// so each point's product is one GEMM on operands as they lie (M = V U^T,
// gV = gM U, gU = gM^T V). The transforms take one sample at a time with
// its channels last (a transpose of the NCHW planes in and out), so that
// every step of a tile's transform is a vector operation over C or F
// channels: the planes of small layers (11x11, 14x14) are too narrow to
// vectorise along their rows. Tiles past the output's edge read zeros and
// their outputs are dropped; their gradients are zero.
//
// Inf and NaN: the transforms subtract inputs (d0 - d2), so an infinite
// input gives NaN where im2col's sums give an infinity; as in every
// Winograd implementation; finite inputs behave as under im2col.

namespace {

using std::int64_t;
using winograd_level::kLevelTables;

template <class T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstRow = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Elements of V and M (or gM and V) per group of samples, at most (unless
// one sample alone, or kMinGroupTiles, needs more): the transforms' output
// stays near the core for the products that read it.
constexpr int64_t kScratchBudget = int64_t{1} << 20;
// Tiles per group, at least (unless the batch has fewer), whatever the
// budget: each point's product packs U[xi] (F x C) again per group, which
// a group of few tiles does not amortise (14x14 maps of 256 channels at
// batch 8, 16 tiles a sample: in groups of 3, 48 tiles, a fifth of the
// time went to packing). 64 rather than more: groups of 128 tiles helped
// that layer further on 1 thread, but made 28x28x128's groups 3 samples,
// 11% slower on 1 thread (not profiled) and 30% on 2 (3 groups: one of two
// threads ran two).
constexpr int64_t kMinGroupTiles = 64;
// Groups run in at most this many chains, each on one thread at a time and
// in order, each chain's gU summed in place (gemm_add): the memory for gU is
// bounded whatever the batch, and the chains are fixed by the shapes.
constexpr int64_t kChains = 8;

using winograd_level::SampleTiling;
template <class T>
using Kernels = winograd_level::TypedWinogradKernels<T>;
template <class T>
using Transforms = winograd_level::TileTransforms<T>;

template <class T>
const Kernels<T>& kernels_for_this_thread() {
  const winograd_level::WinogradKernelTable& table = kLevelTables.for_this_thread();
  if constexpr (std::is_same_v<T, float>) {
    return table.f32;
  } else {
    return table.f64;
  }
}

// F(m x m, 3x3): m outputs a tile side, (m + 2)^2 points.
struct Tiling {
  int64_t m, points;
};

// Tiles of one sample's output for F(m x m, 3x3).
int64_t tiles_per_sample(const ConvGeometry& g, int64_t m) {
  return ((g.OH + m - 1) / m) * ((g.OW + m - 1) / m);
}

Tiling tiling_for(const ConvGeometry& g) {
  const int64_t m = winograd_tile_outputs(g);
  return {m, (m + 2) * (m + 2)};
}

template <class T>
const Transforms<T>& transforms(const Kernels<T>& k, const Tiling& t) {
  return t.m == 4 ? k.f4x4 : k.f2x2;
}

// Samples per group, and groups; fixed by the shapes.
struct Groups {
  int64_t size, count;
};

Groups plan_groups(const ConvGeometry& g, const Tiling& tl) {
  // applies() bounded F(2x2)'s count, which F(4x4)'s is below when taken.
  const int64_t tiles = tiles_per_sample(g, tl.m);
  const int64_t per_sample = tl.points * (g.C + g.F) * tiles;
  const int64_t by_budget = kScratchBudget / std::max<int64_t>(1, per_sample);
  const int64_t by_tiles = (kMinGroupTiles + tiles - 1) / std::max<int64_t>(1, tiles);
  const int64_t size = std::min(g.N, std::max<int64_t>({1, by_budget, by_tiles}));
  return {size, (g.N + size - 1) / size};
}

// Working memory from npdl's storage cache (a MemoryError, not
// std::bad_alloc, when the system has none left).
template <class T>
T* buffer(Tensor& holder, int64_t elements) {
  holder = Tensor({elements}, dtype_of<T>());
  return holder.data<T>();
}

// A group: samples [n0, n1) with p tiles in all, sample n's tiles at rows
// (n - n0) * tiles_per_sample .. of every point's (p, channels) matrix.
// `shared`: the group runs alone and shares its samples and points among
// the threads; otherwise the groups share the threads and each runs on
// one. Either way every sample's transforms and every product are
// computed the same way: the bits do not depend on the thread count.
struct Group {
  int64_t chain, n0, n1, p;
  bool first_of_chain, shared;
  Tiling tl;
  SampleTiling tiling;  // its point_stride: p * channels, set per use
};

int64_t chains(const Groups& groups) { return std::min(groups.count, kChains); }

// Runs body(group) for every group: chain j takes groups [j count / chains,
// (j + 1) count / chains) in order; the chains share the threads.
template <class Body>
void for_each_group(const ConvGeometry& g, const Tiling& tl, const Groups& groups, Body&& body) {
  const int64_t m = tl.m;
  const SampleTiling tiling{
      g.H, g.W, g.OH, g.OW, g.pt, g.pl, (g.OH + m - 1) / m, (g.OW + m - 1) / m, 0};
  const int64_t count = chains(groups);
  parallel_for(count, 1, [&](int64_t first, int64_t last) {
    for (int64_t j = first; j < last; ++j) {
      const int64_t k0 = j * groups.count / count, k1 = (j + 1) * groups.count / count;
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t n0 = k * groups.size, n1 = std::min(g.N, n0 + groups.size);
        body(Group{j, n0, n1, (n1 - n0) * tiles_per_sample(g, m), k == k0, groups.count == 1, tl,
                   tiling});
      }
    }
  });
}

template <class Fn>
void for_range(bool shared, int64_t n, Fn&& fn) {
  if (shared) {
    parallel_for(n, 1, fn);
  } else {
    fn(int64_t{0}, n);
  }
}

// Runs fn(n, tiling, image, scratch) for every sample n of the group, with
// the tiling's point stride for `channels`; image (one sample's largest
// plane set, channels last) and scratch (points + 1 rows of the wider of C
// and F) are the thread's.
template <class T, class Fn>
void for_each_sample(const ConvGeometry& g, const Group& grp, int64_t channels, Fn&& fn) {
  SampleTiling t = grp.tiling;
  t.point_stride = grp.p * channels;
  for_range(grp.shared, grp.n1 - grp.n0, [&](int64_t first, int64_t last) {
    Tensor image_holder, scratch_holder;
    T* image = buffer<T>(image_holder, std::max(g.C * g.H * g.W, g.F * g.plane()));
    T* scratch = buffer<T>(scratch_holder, (grp.tl.points + 1) * std::max(g.C, g.F));
    for (int64_t i = first; i < last; ++i) fn(grp.n0 + i, t, image, scratch);
  });
}

// Runs fn(xi) for the points' products of the group.
template <class Fn>
void for_each_point(const Group& grp, Fn&& fn) {
  for_range(grp.shared, grp.tl.points, [&](int64_t first, int64_t last) {
    for (int64_t xi = first; xi < last; ++xi) fn(xi);
  });
}

// U (points, F, C) from w, and gw from gU: per filter, shared among the threads.
template <class T>
void transform_filters(const Transforms<T>& k, const ConvGeometry& g, const Tiling& tl, const T* w,
                       T* u) {
  parallel_for(g.F, 8, [&](int64_t first, int64_t last) {
    Tensor scratch_holder;
    T* scratch = buffer<T>(scratch_holder, tl.points * g.C);
    for (int64_t f = first; f < last; ++f) {
      k.filter(w + f * g.C * 9, g.C, u + f * g.C, g.F * g.C, scratch);
    }
  });
}

template <class T>
void untransform_filter_grads(const Transforms<T>& k, const ConvGeometry& g, const Tiling& tl,
                              const T* gu, T* gw) {
  parallel_for(g.F, 8, [&](int64_t first, int64_t last) {
    Tensor scratch_holder;
    T* scratch = buffer<T>(scratch_holder, tl.points * g.C);
    for (int64_t f = first; f < last; ++f) {
      k.filter_grad(gu + f * g.C, g.F * g.C, g.C, gw + f * g.C * 9, scratch);
    }
  });
}

// Where sample n's tiles start in a group's (points, p, channels) matrices.
int64_t tile_row(const ConvGeometry& g, const Group& grp, int64_t n, int64_t channels) {
  return (n - grp.n0) * tiles_per_sample(g, grp.tl.m) * channels;
}

// V (points, p, C) of the group.
template <class T>
void transform_inputs(const Kernels<T>& k, const ConvGeometry& g, const Group& grp, const T* x,
                      T* v) {
  const int64_t pixels = g.H * g.W;
  for_each_sample<T>(g, grp, g.C, [&](int64_t n, const SampleTiling& t, T* image, T* scratch) {
    k.to_channels_last(x + n * g.C * pixels, g.C, pixels, image);
    transforms(k, grp.tl).input(t, g.C, image, v + tile_row(g, grp, n, g.C), scratch);
  });
}

}  // namespace

bool winograd_applies(const ConvGeometry& g) {
  if (g.KH != 3 || g.KW != 3 || g.sh != 1 || g.sw != 1) return false;
  if (g.C < kWinogradMinChannels || g.F < kWinogradMinChannels) return false;
  // One sample's V and M must be countable (im2col counted 9 C OH OW; the
  // tiles' 16 (C + F) ceil(OH/2) ceil(OW/2) can be larger).
  int64_t count = 0, per_sample = 0;
  return !__builtin_mul_overflow((g.OH + 1) / 2, (g.OW + 1) / 2, &count) &&
         !__builtin_mul_overflow(16 * (g.C + g.F), count, &per_sample);
}

int64_t winograd_tile_outputs(const ConvGeometry& g) {
  // Multiplications per (filter, channel) pair: 36 a 4x4 tile, 16 a 2x2 one.
  const int64_t f4 = 36 * tiles_per_sample(g, 4), f2 = 16 * tiles_per_sample(g, 2);
  return f4 < f2 ? 4 : 2;
}

template <class T>
void winograd_forward(const ConvGeometry& g, const T* x, const T* w, const OutputStage<T>& stage,
                      T* y) {
  // Resolved here, before any work goes to other threads (tensor/kernels/per_level.hpp).
  const Kernels<T>& k = kernels_for_this_thread<T>();
  const Tiling tl = tiling_for(g);
  const Groups groups = plan_groups(g, tl);
  Tensor u_holder;
  T* u = buffer<T>(u_holder, tl.points * g.F * g.C);
  transform_filters(transforms(k, tl), g, tl, w, u);
  for_each_group(g, tl, groups, [&](const Group& grp) {
    Tensor v_holder, m_holder;
    T* v = buffer<T>(v_holder, tl.points * grp.p * g.C);
    T* m = buffer<T>(m_holder, tl.points * grp.p * g.F);
    transform_inputs(k, g, grp, x, v);
    for_each_point(grp, [&](int64_t xi) {  // M = V U^T
      product_into(grp.p, g.F, g.C, v + xi * grp.p * g.C, g.C, false, u + xi * g.F * g.C, g.C, true,
                   m + xi * grp.p * g.F, g.F);
    });
    for_each_sample<T>(g, grp, g.F, [&](int64_t n, const SampleTiling& t, T* image, T* scratch) {
      transforms(k, tl).output(t, g.F, m + tile_row(g, grp, n, g.F), image, scratch);
      k.to_channels_first(image, g.F, g.plane(), y + n * g.F * g.plane());
      finish_outputs(g, stage, n, n + 1, y);
    });
  });
}

template <class T>
void winograd_backward(const ConvGeometry& g, const T* gy, const T* x, const T* w, T* gx, T* gw) {
  const Kernels<T>& k = kernels_for_this_thread<T>();
  const Tiling tl = tiling_for(g);
  const Transforms<T>& tf = transforms(k, tl);
  const Groups groups = plan_groups(g, tl);
  const int64_t filter_elements = tl.points * g.F * g.C;
  Tensor u_holder;
  T* u = gx != nullptr ? buffer<T>(u_holder, filter_elements) : nullptr;
  if (gx != nullptr) transform_filters(tf, g, tl, w, u);
  // Each chain's gU, added in chain order after: the same bits at any thread count.
  std::vector<Tensor> gu_parts(gw != nullptr ? static_cast<std::size_t>(chains(groups)) : 0);
  for_each_group(g, tl, groups, [&](const Group& grp) {
    Tensor gm_holder, v_holder;
    T* gm = buffer<T>(gm_holder, tl.points * grp.p * g.F);
    T* v = buffer<T>(v_holder, tl.points * grp.p * g.C);  // V, then gV once gU has it
    for_each_sample<T>(g, grp, g.F, [&](int64_t n, const SampleTiling& t, T* image, T* scratch) {
      k.to_channels_last(gy + n * g.F * g.plane(), g.F, g.plane(), image);
      tf.output_grad(t, g.F, image, gm + tile_row(g, grp, n, g.F), scratch);
    });
    if (gw != nullptr) {
      transform_inputs(k, g, grp, x, v);
      Tensor& part = gu_parts[static_cast<std::size_t>(grp.chain)];
      T* gu = grp.first_of_chain ? buffer<T>(part, filter_elements) : part.data<T>();
      for_each_point(grp, [&](int64_t xi) {  // gU (+)= gM^T V
        product_into(g.F, g.C, grp.p, gm + xi * grp.p * g.F, g.F, true, v + xi * grp.p * g.C, g.C,
                     false, gu + xi * g.F * g.C, g.C, !grp.first_of_chain);
      });
    }
    if (gx != nullptr) {
      T* gv = v;
      for_each_point(grp, [&](int64_t xi) {  // gV = gM U
        product_into(grp.p, g.C, g.F, gm + xi * grp.p * g.F, g.F, false, u + xi * g.F * g.C, g.C,
                     false, gv + xi * grp.p * g.C, g.C);
      });
      const int64_t pixels = g.H * g.W;
      for_each_sample<T>(g, grp, g.C, [&](int64_t n, const SampleTiling& t, T* image, T* scratch) {
        std::fill(image, image + g.C * pixels, T(0));
        tf.input_grad(t, g.C, gv + tile_row(g, grp, n, g.C), image, scratch);
        k.to_channels_first(image, g.C, pixels, gx + n * g.C * pixels);
      });
    }
  });
  if (gw != nullptr) {
    T* gu = gu_parts[0].data<T>();
    for (std::size_t i = 1; i < gu_parts.size(); ++i) {
      Row<T>(gu, filter_elements) += ConstRow<T>(gu_parts[i].data<T>(), filter_elements);
    }
    untransform_filter_grads(tf, g, tl, gu, gw);
  }
}

template void winograd_forward<float>(const ConvGeometry&, const float*, const float*,
                                      const OutputStage<float>&, float*);
template void winograd_forward<double>(const ConvGeometry&, const double*, const double*,
                                       const OutputStage<double>&, double*);
template void winograd_backward<float>(const ConvGeometry&, const float*, const float*,
                                       const float*, float*, float*);
template void winograd_backward<double>(const ConvGeometry&, const double*, const double*,
                                        const double*, double*, double*);

}  // namespace npdl::math::detail
