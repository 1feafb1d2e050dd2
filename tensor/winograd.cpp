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
// F(2, 3) computes two outputs of a 3-tap correlation, y_o = sum_i g_i d_{o+i},
// from four inputs d with four multiplications instead of six:
//   y = A^T [(G g) * (B^T d)]        (* elementwise)
//   B^T = [1  0 -1  0]   G = [1    0    0  ]   A^T = [1 1  1  0]
//         [0  1  1  0]       [1/2  1/2  1/2]         [0 1 -1 -1]
//         [0 -1  1  0]       [1/2 -1/2  1/2]
//         [0  1  0 -1]       [0    0    1  ]
// Nesting it along both axes gives F(2x2, 3x3): a 2x2 block of outputs from
// a 4x4 tile of input d (tiles overlap by two rows and two columns) as
//   Y = A^T [U * V] A,   U = G g G^T,   V = B^T d B,
// 16 multiplications instead of 36. Summed over input channels, each of the
// 16 points xi of the transform is a matrix product: with tiles p of a group
// of samples as columns,
//   M[xi] (F x P) = U[xi] (F x C) @ V[xi] (C x P),
// 16 products of 4/9 of im2col's multiply-adds, then Y = A^T M A per tile.
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
// Rounding. Entries of G, B and A are 0, +-1 and +-1/2 (exact scalings);
// the 1-D passes add at most 2, 2 and 3 terms (B^T, A^T, G), so a computed
// output carries at most n = C + 10 roundings (V: 2, U: 4, product: 1, the
// sum over channels: C - 1, A^T M A: 4). With u the unit roundoff (2^-24
// for float32) and gamma_n = n u / (1 - n u), the standard model gives
//   |y~ - y| <= gamma_{C+10} sum_c sum_xi |A^T|(|G| |g_c| |G|^T * |B^T| |d_c| |B|)|A|,
// the same expression with every matrix and tile replaced by its absolute
// value. With |g| <= w_max and |d| <= x_max, and every output position
// (the row sums of |A^T| weighted by those of |G| and |B^T| give (1 * 2 +
// 1.5 * 2 + 1.5 * 2)^2 = 64):
//   |y~ - y| <= gamma_{C+10} * 64 * C * w_max * x_max,
// against gamma_{9C} * 9C * w_max * x_max for im2col's direct sums: the
// same order. The same count on the VJPs gives, per input element,
//   |gx~ - gx| <= gamma_{F+12} * 64 * F * w_max * gy_max
// (each 1-D position collects 1 + 7 from the two tiles covering it), and per
// filter tap, with P tiles in the batch,
//   |gw~ - gw| <= gamma_{P+10} * 36 * P * gy_max * x_max.
// tests/test_winograd.cpp checks these bounds against float64 sums, and that
// on random data the errors stay below a twentieth of them (random roundings
// add up like the square root of their number, the bounds like the number).
//
// Layout. Samples are processed in groups (decided by the shapes, as
// im2col's are): a group's V is (16, P, C) and M is (16, P, F), row-major,
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

constexpr int64_t kPoints = 16;  // of a 4x4 tile's transform; point (i, j) is i * 4 + j
// Elements of V and M (or gM and V) per group of samples, at most (unless
// one sample alone needs more): the transforms' output stays near the core
// for the products that read it.
constexpr int64_t kScratchBudget = int64_t{1} << 20;
// Groups run in at most this many chains, each on one thread at a time and
// in order, each chain's gU summed in place (gemm_add): the memory for gU is
// bounded whatever the batch, and the chains are fixed by the shapes.
constexpr int64_t kChains = 8;

using winograd_level::SampleTiling;
template <class T>
using Kernels = winograd_level::TypedWinogradKernels<T>;

template <class T>
const Kernels<T>& kernels_for_this_thread() {
  const winograd_level::WinogradKernelTable& table = kLevelTables.for_this_thread();
  if constexpr (std::is_same_v<T, float>) {
    return table.f32;
  } else {
    return table.f64;
  }
}

int64_t tiles_per_sample(const ConvGeometry& g) { return ((g.OH + 1) / 2) * ((g.OW + 1) / 2); }

// Samples per group, and groups; fixed by the shapes.
struct Groups {
  int64_t size, count;
};

Groups plan_groups(const ConvGeometry& g) {
  const int64_t per_sample = kPoints * (g.C + g.F) * tiles_per_sample(g);  // applies() bounded it
  const int64_t size =
      std::min(g.N, std::max<int64_t>(1, kScratchBudget / std::max<int64_t>(1, per_sample)));
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
  SampleTiling tiling;  // its point_stride: p * channels, set per use
};

int64_t chains(const Groups& groups) { return std::min(groups.count, kChains); }

// Runs body(group) for every group: chain j takes groups [j count / chains,
// (j + 1) count / chains) in order; the chains share the threads.
template <class Body>
void for_each_group(const ConvGeometry& g, const Groups& groups, Body&& body) {
  const SampleTiling tiling{g.H, g.W, g.OH, g.OW, g.pt, g.pl, (g.OH + 1) / 2, (g.OW + 1) / 2, 0};
  const int64_t count = chains(groups);
  parallel_for(count, 1, [&](int64_t first, int64_t last) {
    for (int64_t j = first; j < last; ++j) {
      const int64_t k0 = j * groups.count / count, k1 = (j + 1) * groups.count / count;
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t n0 = k * groups.size, n1 = std::min(g.N, n0 + groups.size);
        body(Group{j, n0, n1, (n1 - n0) * tiles_per_sample(g), k == k0, groups.count == 1, tiling});
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
// plane set, channels last) and scratch (17 rows of the wider of C and F)
// are the thread's.
template <class T, class Fn>
void for_each_sample(const ConvGeometry& g, const Group& grp, int64_t channels, Fn&& fn) {
  SampleTiling t = grp.tiling;
  t.point_stride = grp.p * channels;
  for_range(grp.shared, grp.n1 - grp.n0, [&](int64_t first, int64_t last) {
    Tensor image_holder, scratch_holder;
    T* image = buffer<T>(image_holder, std::max(g.C * g.H * g.W, g.F * g.plane()));
    T* scratch = buffer<T>(scratch_holder, 17 * std::max(g.C, g.F));
    for (int64_t i = first; i < last; ++i) fn(grp.n0 + i, t, image, scratch);
  });
}

// Runs fn(xi) for the 16 points' products of the group.
template <class Fn>
void for_each_point(const Group& grp, Fn&& fn) {
  for_range(grp.shared, kPoints, [&](int64_t first, int64_t last) {
    for (int64_t xi = first; xi < last; ++xi) fn(xi);
  });
}

// U (16, F, C) from w, and gw from gU: per filter, shared among the threads.
template <class T>
void transform_filters(const Kernels<T>& k, const ConvGeometry& g, const T* w, T* u) {
  parallel_for(g.F, 8, [&](int64_t first, int64_t last) {
    Tensor scratch_holder;
    T* scratch = buffer<T>(scratch_holder, kPoints * g.C);
    for (int64_t f = first; f < last; ++f) {
      k.filter(w + f * g.C * 9, g.C, u + f * g.C, g.F * g.C, scratch);
    }
  });
}

template <class T>
void untransform_filter_grads(const Kernels<T>& k, const ConvGeometry& g, const T* gu, T* gw) {
  parallel_for(g.F, 8, [&](int64_t first, int64_t last) {
    Tensor scratch_holder;
    T* scratch = buffer<T>(scratch_holder, kPoints * g.C);
    for (int64_t f = first; f < last; ++f) {
      k.filter_grad(gu + f * g.C, g.F * g.C, g.C, gw + f * g.C * 9, scratch);
    }
  });
}

// Where sample n's tiles start in a group's (16, p, channels) matrices.
int64_t tile_row(const ConvGeometry& g, const Group& grp, int64_t n, int64_t channels) {
  return (n - grp.n0) * tiles_per_sample(g) * channels;
}

// V (16, p, C) of the group.
template <class T>
void transform_inputs(const Kernels<T>& k, const ConvGeometry& g, const Group& grp, const T* x,
                      T* v) {
  const int64_t pixels = g.H * g.W;
  for_each_sample<T>(g, grp, g.C, [&](int64_t n, const SampleTiling& t, T* image, T* scratch) {
    k.to_channels_last(x + n * g.C * pixels, g.C, pixels, image);
    k.input(t, g.C, image, v + tile_row(g, grp, n, g.C), scratch);
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
         !__builtin_mul_overflow(kPoints * (g.C + g.F), count, &per_sample);
}

template <class T>
void winograd_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  // Resolved here, before any work goes to other threads (tensor/kernels/per_level.hpp).
  const Kernels<T>& k = kernels_for_this_thread<T>();
  const Groups groups = plan_groups(g);
  Tensor u_holder;
  T* u = buffer<T>(u_holder, kPoints * g.F * g.C);
  transform_filters(k, g, w, u);
  for_each_group(g, groups, [&](const Group& grp) {
    Tensor v_holder, m_holder;
    T* v = buffer<T>(v_holder, kPoints * grp.p * g.C);
    T* m = buffer<T>(m_holder, kPoints * grp.p * g.F);
    transform_inputs(k, g, grp, x, v);
    for_each_point(grp, [&](int64_t xi) {  // M = V U^T
      product_into(grp.p, g.F, g.C, v + xi * grp.p * g.C, g.C, false, u + xi * g.F * g.C, g.C, true,
                   m + xi * grp.p * g.F, g.F);
    });
    for_each_sample<T>(g, grp, g.F, [&](int64_t n, const SampleTiling& t, T* image, T* scratch) {
      k.output(t, g.F, m + tile_row(g, grp, n, g.F), image, scratch);
      k.to_channels_first(image, g.F, g.plane(), y + n * g.F * g.plane());
      add_bias(g, bias, n, n + 1, y);
    });
  });
}

template <class T>
void winograd_backward(const ConvGeometry& g, const T* gy, const T* x, const T* w, T* gx, T* gw) {
  const Kernels<T>& k = kernels_for_this_thread<T>();
  const Groups groups = plan_groups(g);
  const int64_t filter_elements = kPoints * g.F * g.C;
  Tensor u_holder;
  T* u = gx != nullptr ? buffer<T>(u_holder, filter_elements) : nullptr;
  if (gx != nullptr) transform_filters(k, g, w, u);
  // Each chain's gU, added in chain order after: the same bits at any thread count.
  std::vector<Tensor> gu_parts(gw != nullptr ? static_cast<std::size_t>(chains(groups)) : 0);
  for_each_group(g, groups, [&](const Group& grp) {
    Tensor gm_holder, v_holder;
    T* gm = buffer<T>(gm_holder, kPoints * grp.p * g.F);
    T* v = buffer<T>(v_holder, kPoints * grp.p * g.C);  // V, then gV once gU has it
    for_each_sample<T>(g, grp, g.F, [&](int64_t n, const SampleTiling& t, T* image, T* scratch) {
      k.to_channels_last(gy + n * g.F * g.plane(), g.F, g.plane(), image);
      k.output_grad(t, g.F, image, gm + tile_row(g, grp, n, g.F), scratch);
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
        k.input_grad(t, g.C, gv + tile_row(g, grp, n, g.C), image, scratch);
        k.to_channels_first(image, g.C, pixels, gx + n * g.C * pixels);
      });
    }
  });
  if (gw != nullptr) {
    T* gu = gu_parts[0].data<T>();
    for (std::size_t i = 1; i < gu_parts.size(); ++i) {
      Row<T>(gu, filter_elements) += ConstRow<T>(gu_parts[i].data<T>(), filter_elements);
    }
    untransform_filter_grads(k, g, gu, gw);
  }
}

template void winograd_forward<float>(const ConvGeometry&, const float*, const float*, const float*,
                                      float*);
template void winograd_forward<double>(const ConvGeometry&, const double*, const double*,
                                       const double*, double*);
template void winograd_backward<float>(const ConvGeometry&, const float*, const float*,
                                       const float*, float*, float*);
template void winograd_backward<double>(const ConvGeometry&, const double*, const double*,
                                        const double*, double*, double*);

}  // namespace npdl::math::detail
