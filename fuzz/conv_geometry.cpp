// Fuzz target for the geometry of convolution and pooling: conv2d (with
// and without a bias, and with relu fused) and its two gradient
// primitives, max_pool2d and mean_pool2d (and their backward primitives),
// and the Convolution layer's padding.
//
// The input decides one case, in one of five modes:
//   - small: batch 1..4, channels and filters 1..3, height and width 1..7
//     (1 often), kernels 1..7 (larger than the input too), strides 1..8
//     (larger than the kernel too), padding 0..8 per side (up to and beyond
//     the kernel), float32 or float64, the values sometimes rounded (ties)
//     and, for max pooling, NaNs among them.
//   - winograd (conv2d, its gradient primitives and the layer): 3x3
//     filters at stride 1 with 16..20 channels and filters, which take
//     Winograd's F(2x2, 3x3) or F(4x4, 3x3) (Note [Winograd convolution] in
//     tensor/winograd.cpp), on the small mode's maps and paddings 0..4
//     (outputs 1..13 a side: both tilings, partly used tiles); checked
//     against that Note's error bounds instead of im2col's.
//   - pool2x2 (max_pool2d, mean_pool2d): 2x2 windows at stride 2, the
//     common pooling, which max pooling runs through a kernel of its own
//     per instruction-set level (max_pool_2x2 in tensor/kernels/level.cpp),
//     on maps 2..12 high and 2..40 wide: rows of one to twenty windows,
//     several vector steps and odd tails, with the small mode's ties and
//     NaNs.
//   - slabs (conv2d, its gradient primitives and the layer): batch 2,
//     channels 2..3, filters 1..2, maps 8..16 high and 280..560 wide, kernels 2..3,
//     strides 1..2, padding 0..3: unrolled inputs of 3,300 to 320,400
//     elements a sample, which im2col takes a slab of output rows at a
//     time when they are beyond its budget (Note [Slabs of output rows] in
//     tensor/conv_math.cpp), and whole when they are not.
//   - edge: strides, windows, paddings, the layer's filter size and the
//     gradient primitives' shape arguments drawn from sizes around 0, 2^31,
//     2^62 and 2^63 - 1 (negatives too), on small tensors (batch, channels
//     and filters from 0).
// The harness predicts each op's outcome with its own 128-bit arithmetic
// (see predict()): geometry that does not fit must be refused with an
// npdl::Error (a ValueError for a size out of its domain, a ShapeError for
// one that does not fit or overflows); geometry that fits and is small is
// computed and checked:
//   - the forward against nested loops written here, in float64;
//   - the VJP for a random upstream (conv2d's input and weight gradients,
//     the pools' routing) against those loops' own backward, on the graph
//     and through each gradient primitive alone;
//   - conv2d_relu bit-identical to relu of conv2d with the bias: the value,
//     the first-order VJPs, and a gradient and its gradients recorded under
//     create_graph;
//   - 2 threads bit-identical to 1;
//   - under create_graph, a second derivative that succeeds (or throws an
//     npdl::Error) and matches central differences of the first derivative
//     (conv2d, float64, few elements) or the pools' closed forms.
// Geometry that fits but would allocate more than the harness allows is
// not run. Any other outcome is a finding: the case is printed and the
// harness aborts.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "autodiff/graph.hpp"
#include "layers/convolution.hpp"
#include "ops/conv.hpp"
#include "ops/ops.hpp"
#include "tensor/conv_math.hpp"
#include "tensor/parallel.hpp"
#include "tensor/tensor_math.hpp"

namespace {

using npdl::DType;
using npdl::Shape;
using npdl::Tensor;
using npdl::Var;
using npdl::ops::Padding2d;
using npdl::ops::Size2;
namespace ops = npdl::ops;
using i128 = __int128;

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
// Elements a run may allocate for any one tensor (or one sample's unrolled
// input); geometry beyond it is valid but not run. The slabs mode's
// unrolled inputs reach 27 x 21 x 565 = 320,355.
constexpr i128 kMaxElements = 1 << 19;
// conv2d's second derivative is checked against differences up to this
// many input and filter elements (each one costs four first-order sweeps).
constexpr std::int64_t kMaxElementsForDifferences = 40;

enum class Kind { Conv2d, InputGrad, WeightGrad, MaxPool, MeanPool, MeanPoolBackward, Layer };
const char* const kKindNames[] = {"conv2d",     "conv2d_input_grad", "conv2d_weight_grad",
                                  "max_pool2d", "mean_pool2d",       "mean_pool2d_backward",
                                  "Convolution"};
enum class LayerPadding { Valid, Same, Explicit };

/// One case, every choice made. For the conv kinds x is (N, C, H, W) and w
/// (F, C, KH, KW); for the pools the window is (KH, KW). The gradient
/// primitives take x's or w's shape as an argument, so H, W (InputGrad,
/// MeanPoolBackward) or KH, KW (WeightGrad) may be anything; elsewhere
/// every tensor is small and real.
struct Case {
  Kind kind = Kind::Conv2d;
  bool edge = false;
  DType dtype = DType::Float64;
  std::int64_t N = 1, C = 1, F = 1, H = 1, W = 1, KH = 1, KW = 1;
  Size2 stride{1};
  Padding2d pad;
  LayerPadding layer_padding = LayerPadding::Explicit;
  std::uint64_t seed = 0;
  bool ties = false;  // values rounded to integers: ties and exact zeros
  bool nans = false;  // max pooling only: NaNs among the values
};

[[noreturn]] void finding(const Case& c, const std::string& what) {
  std::fprintf(stderr,
               "conv_geometry: %s\ncase: %s %s%s, N %lld C %lld F %lld, input (%lld, %lld), "
               "kernel (%lld, %lld), stride (%lld, %lld), padding (top %lld, bottom %lld, left "
               "%lld, right %lld), layer padding %d, seed %llu, ties %d, nans %d\n",
               what.c_str(), kKindNames[static_cast<int>(c.kind)], npdl::to_string(c.dtype).c_str(),
               c.edge ? " (edge)" : "", (long long)c.N, (long long)c.C, (long long)c.F,
               (long long)c.H, (long long)c.W, (long long)c.KH, (long long)c.KW,
               (long long)c.stride.h, (long long)c.stride.w, (long long)c.pad.top,
               (long long)c.pad.bottom, (long long)c.pad.left, (long long)c.pad.right,
               static_cast<int>(c.layer_padding), (unsigned long long)c.seed, int(c.ties),
               int(c.nans));
  std::abort();
}

// ---- prediction ----

/// What an op must do with a case.
enum class Verdict {
  Run,       // valid and small: computed and checked
  TooLarge,  // valid, or refused only by an allocation: not run
  Value,     // refused with a ValueError (a size out of its domain)
  Shape,     // refused with a ShapeError (does not fit, or overflows)
  Either     // faults of both kinds: either error
};

struct Prediction {
  Verdict verdict = Verdict::Run;
  std::int64_t OH = 0, OW = 0;
  Padding2d pad;          // as resolved (the layer's "same")
  bool connects = false;  // the layer: refused by its forward once connected
};

// a * b for a, b >= 0, saturating at 2^100 (far past any 64-bit count).
i128 saturating_mul(i128 a, i128 b) {
  constexpr i128 kCap = i128{1} << 100;
  return b != 0 && a > kCap / b ? kCap : std::min(a * b, kCap);
}

i128 product(std::initializer_list<i128> sizes) {
  i128 p = 1;
  for (i128 s : sizes) p = saturating_mul(p, s);
  return p;
}

bool shape_fault(std::initializer_list<i128> sizes) {  // a negative size, or a count past 2^63 - 1
  i128 nonzero = 1;
  for (i128 s : sizes) {
    if (s < 0) return true;
    if (s > 0) nonzero = saturating_mul(nonzero, s);
  }
  return nonzero > kMax;
}

/// The window arithmetic: out = (in + before + after - k) / s + 1.
Prediction predict_window(const Case& c, const Padding2d& p) {
  Prediction r;
  r.pad = p;
  const bool domain = c.KH < 1 || c.KW < 1 || c.stride.h < 1 || c.stride.w < 1 || p.top < 0 ||
                      p.bottom < 0 || p.left < 0 || p.right < 0;
  if (domain) {
    r.verdict = Verdict::Value;
    return r;
  }
  const i128 ph = i128{c.H} + p.top + p.bottom, pw = i128{c.W} + p.left + p.right;
  if (ph > kMax || pw > kMax || c.KH > ph || c.KW > pw) {
    r.verdict = Verdict::Shape;
    return r;
  }
  r.OH = static_cast<std::int64_t>((ph - c.KH) / c.stride.h + 1);
  r.OW = static_cast<std::int64_t>((pw - c.KW) / c.stride.w + 1);
  return r;
}

Verdict combine(bool shape_fault_found, Verdict window) {
  if (!shape_fault_found) return window;
  return window == Verdict::Value ? Verdict::Either : Verdict::Shape;
}

/// The layer's "same": out = ceil(in / s), total = max((out - 1) s + k - in, 0),
/// the odd zero after; valid when in + total fits.
Prediction predict_same(const Case& c) {
  Prediction r;
  if (c.KH < 1 || c.KW < 1 || c.stride.h < 1 || c.stride.w < 1) {
    r.verdict = Verdict::Value;
    return r;
  }
  auto total = [](i128 in, i128 k, i128 s) {
    const i128 out = (in + s - 1) / s;
    return std::max<i128>((out - 1) * s + k - in, 0);
  };
  const i128 th = total(c.H, c.KH, c.stride.h), tw = total(c.W, c.KW, c.stride.w);
  if (c.H + th > kMax || c.W + tw > kMax) {
    r.verdict = Verdict::Shape;
    return r;
  }
  const auto half = [](i128 t) { return static_cast<std::int64_t>(t / 2); };
  const auto rest = [](i128 t) { return static_cast<std::int64_t>(t - t / 2); };
  return predict_window(c, Padding2d{half(th), rest(th), half(tw), rest(tw)});
}

/// conv2d counts one sample's receptive fields (C*KH*KW by OH*OW) and its
/// output before it multiplies their sizes: a count past 2^63 - 1 (of the
/// nonzero sizes, as for any shape) is a ShapeError.
bool counts_fault(const Case& c, const Prediction& r) {
  return shape_fault({c.C, c.KH, c.KW, r.OH, r.OW}) || shape_fault({c.N, c.F, r.OH, r.OW});
}

Prediction predict(const Case& c) {
  Prediction r;
  switch (c.kind) {
    case Kind::Conv2d:
    case Kind::InputGrad:
    case Kind::WeightGrad: {
      // Shapes first (the primitives' arguments), then the window, then the
      // output and one sample's unrolled input (C*KH*KW by OH*OW).
      const bool bad_shape = c.kind == Kind::InputGrad    ? shape_fault({c.N, c.C, c.H, c.W})
                             : c.kind == Kind::WeightGrad ? shape_fault({c.F, c.C, c.KH, c.KW})
                                                          : false;
      r = predict_window(c, c.pad);
      r.verdict = combine(bad_shape, r.verdict);
      if (r.verdict != Verdict::Run) return r;
      if (counts_fault(c, r)) r.verdict = Verdict::Shape;
      if (r.verdict != Verdict::Run) return r;
      break;
    }
    case Kind::MaxPool:
    case Kind::MeanPool:
    case Kind::MeanPoolBackward:
      r = predict_window(c, {});
      r.verdict =
          combine(c.kind == Kind::MeanPoolBackward && shape_fault({c.N, c.C, c.H, c.W}), r.verdict);
      if (r.verdict != Verdict::Run) return r;
      break;
    case Kind::Layer:
      if (c.layer_padding == LayerPadding::Explicit &&
          (c.pad.top < 0 || c.pad.bottom < 0 || c.pad.left < 0 || c.pad.right < 0)) {
        r.verdict = Verdict::Value;  // the padding itself, before any input
        return r;
      }
      r = c.layer_padding == LayerPadding::Same    ? predict_same(c)
          : c.layer_padding == LayerPadding::Valid ? predict_window(c, {})
                                                   : predict_window(c, c.pad);
      if (r.verdict != Verdict::Run) return r;
      // The filters and one sample's counts are refused when the layer
      // connects, the batch's output by conv2d in the forward.
      if (shape_fault({c.F, c.C, c.KH, c.KW}) || shape_fault({c.C, c.KH, c.KW, r.OH, r.OW}) ||
          shape_fault({c.F, r.OH, r.OW})) {
        r.verdict = Verdict::Shape;
      } else if (shape_fault({c.N, c.F, r.OH, r.OW})) {
        r.verdict = Verdict::Shape;
        r.connects = true;
      }
      if (r.verdict != Verdict::Run) return r;
      break;
  }
  const bool large = product({c.N, c.C, c.H, c.W}) > kMaxElements ||
                     product({c.F, c.C, c.KH, c.KW}) > kMaxElements ||
                     product({c.N, c.F, r.OH, r.OW}) > kMaxElements ||
                     product({c.C, c.KH, c.KW, r.OH, r.OW}) > kMaxElements;
  if (large) r.verdict = Verdict::TooLarge;
  return r;
}

// ---- the references: the definitions, loop by loop, in float64 ----

/// A reference result with, per element, the sum of the magnitudes of its
/// terms: what a float computation of it may be off by, times epsilon.
struct Ref {
  std::vector<double> value, magnitude;
  double terms = 1;  // at most, per element (a double: sizes may be near 2^63)
  explicit Ref(i128 n = 0) : value(static_cast<std::size_t>(n)), magnitude(value.size()) {}
  void add(std::int64_t at, double term) { add(at, term, std::fabs(term)); }
  /// A term that is itself a sum, of terms of magnitude `size` in all.
  void add(std::int64_t at, double term, double size) {
    value[static_cast<std::size_t>(at)] += term;
    magnitude[static_cast<std::size_t>(at)] += size;
  }
};

/// Calls fn(y, x, w) with the flat indices of every product w * x that
/// conv2d sums into y, skipping the padding. 128-bit positions: the
/// paddings and strides may be near 2^63.
template <class Fn>
void for_each_conv_product(const Case& c, const Prediction& p, Fn&& fn) {
  for (std::int64_t n = 0; n < c.N; ++n)
    for (std::int64_t f = 0; f < c.F; ++f)
      for (std::int64_t oh = 0; oh < p.OH; ++oh)
        for (std::int64_t ow = 0; ow < p.OW; ++ow)
          for (std::int64_t ch = 0; ch < c.C; ++ch)
            for (std::int64_t i = 0; i < c.KH; ++i)
              for (std::int64_t j = 0; j < c.KW; ++j) {
                const i128 ih = i128{oh} * c.stride.h - p.pad.top + i;
                const i128 iw = i128{ow} * c.stride.w - p.pad.left + j;
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                fn(((n * c.F + f) * p.OH + oh) * p.OW + ow,
                   ((n * c.C + ch) * c.H + static_cast<std::int64_t>(ih)) * c.W +
                       static_cast<std::int64_t>(iw),
                   ((f * c.C + ch) * c.KH + i) * c.KW + j);
              }
}

struct ConvRef {
  Ref y, gx, gw;
};

/// Whether conv2d takes Winograd for this case: the rule of
/// math::detail::winograd_applies, stated again here so that a change to it
/// shows up as a finding rather than as a silently looser check.
bool takes_winograd(const Case& c) {
  return c.KH == 3 && c.KW == 3 && c.stride.h == 1 && c.stride.w == 1 && c.C >= 16 && c.F >= 16;
}

/// Tiles of the whole batch for F(m x m, 3x3).
double winograd_tiles(const Case& c, const Prediction& p, std::int64_t m) {
  return static_cast<double>(c.N) * static_cast<double>((p.OH + m - 1) / m) *
         static_cast<double>((p.OW + m - 1) / m);
}

/// The tiling it takes, m outputs a tile side: math::detail::
/// winograd_tile_outputs's rule (F(4x4) where its 36 multiplies a tile
/// are fewer than F(2x2)'s 16), stated again for the same reason.
std::int64_t winograd_tile_outputs(const Case& c, const Prediction& p) {
  return 36 * winograd_tiles(c, p, 4) < 16 * winograd_tiles(c, p, 2) ? 4 : 2;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (std::int64_t k = 0; k < t.size(); ++k) m = std::max(m, std::fabs(t.at(k)));
  return m;
}

/// Note [Winograd convolution]'s bounds: the transforms' roundings depend on
/// every value of a tile, not only on an output's own terms, so each
/// element's allowance is the Note's bound over the whole tensors,
/// |error| <= gamma_n * K * terms * max|a| * max|b|, written as Ref's
/// (terms + 2) roundings of a magnitude; K and the transforms' roundings
/// per tiling from that Note's table.
void use_winograd_bounds(const Case& c, const Prediction& p, const Tensor& x, const Tensor& w,
                         const Tensor& g, ConvRef& r) {
  const std::int64_t m = winograd_tile_outputs(c, p);
  const double tiles = winograd_tiles(c, p, m);
  const bool f4 = m == 4;
  auto bound = [](Ref& ref, double terms, double extra_roundings, double magnitude) {
    ref.terms = terms + extra_roundings;
    std::fill(ref.magnitude.begin(), ref.magnitude.end(), magnitude);
  };
  const double xm = max_abs(x), wm = max_abs(w), gm = max_abs(g);
  const double C = static_cast<double>(c.C), F = static_cast<double>(c.F);
  bound(r.y, C, f4 ? 18 : 10, (f4 ? 2304 : 64) * C * wm * xm);
  bound(r.gx, F, f4 ? 23 : 13, (f4 ? 1482.25 : 64) * F * wm * gm);
  bound(r.gw, tiles, f4 ? 18 : 8, (f4 ? 25600.0 / 9 : 36) * tiles * gm * xm);
}

ConvRef reference_conv(const Case& c, const Prediction& p, const Tensor& x, const Tensor& w,
                       const Tensor& g) {
  ConvRef r{Ref(product({c.N, c.F, p.OH, p.OW})), Ref(product({c.N, c.C, c.H, c.W})),
            Ref(product({c.F, c.C, c.KH, c.KW}))};
  for_each_conv_product(c, p, [&](std::int64_t y, std::int64_t xi, std::int64_t wi) {
    r.y.add(y, w.at(wi) * x.at(xi));
    r.gx.add(xi, g.at(y) * w.at(wi));
    r.gw.add(wi, g.at(y) * x.at(xi));
  });
  const double window = static_cast<double>(c.KH) * c.KW;
  r.y.terms = static_cast<double>(c.C) * window;
  r.gx.terms = static_cast<double>(c.F) * window;
  r.gw.terms = static_cast<double>(c.N) * static_cast<double>(p.OH) * static_cast<double>(p.OW);
  if (takes_winograd(c)) use_winograd_bounds(c, p, x, w, g, r);
  return r;
}

struct PoolRef {
  Ref y, gx;
  std::vector<std::int64_t> argmax;  // max pooling: the flat input index chosen
  Ref hx;                            // d<gx, a>/dx for L = sum(u * y^2)
};

/// Max pooling's choice: the first NaN of the window if it holds one, else
/// the first element equal to its maximum, in row-major window order.
std::int64_t choose(const Tensor& x, const std::vector<std::int64_t>& window) {
  for (std::int64_t i : window) {
    if (std::isnan(x.at(i))) return i;
  }
  double best = -std::numeric_limits<double>::infinity();
  for (std::int64_t i : window) best = std::max(best, x.at(i));
  for (std::int64_t i : window) {
    if (x.at(i) == best) return i;
  }
  return window.front();
}

PoolRef reference_pool(const Case& c, const Prediction& p, bool max, const Tensor& x,
                       const Tensor& g, const Tensor& u, const Tensor& a) {
  PoolRef r{Ref(product({c.N, c.C, p.OH, p.OW})),
            Ref(product({c.N, c.C, c.H, c.W})),
            {},
            Ref(product({c.N, c.C, c.H, c.W}))};
  const double k = static_cast<double>(c.KH) * static_cast<double>(c.KW);
  std::int64_t o = 0;
  for (std::int64_t q = 0; q < c.N * c.C; ++q)
    for (std::int64_t oh = 0; oh < p.OH; ++oh)
      for (std::int64_t ow = 0; ow < p.OW; ++ow, ++o) {
        std::vector<std::int64_t> window;
        for (std::int64_t i = 0; i < c.KH; ++i)
          for (std::int64_t j = 0; j < c.KW; ++j)
            window.push_back((q * c.H + oh * c.stride.h + i) * c.W + ow * c.stride.w + j);
        if (max) {
          const std::int64_t at = choose(x, window);
          r.argmax.push_back(at);
          r.y.add(o, x.at(at));
          r.gx.add(at, g.at(o));
          r.hx.add(at, 2 * u.at(o) * a.at(at));
          continue;
        }
        double mean_a = 0, mean_abs_a = 0;
        for (std::int64_t i : window) {
          r.y.add(o, x.at(i) / k);
          mean_a += a.at(i) / k;
          mean_abs_a += std::fabs(a.at(i)) / k;
        }
        for (std::int64_t i : window) {
          r.gx.add(i, g.at(o) / k);
          r.hx.add(i, 2 * u.at(o) * mean_a / k, std::fabs(2 * u.at(o)) * mean_abs_a / k);
        }
      }
  r.y.terms = k;
  // Windows overlapping one element: ceil(k / stride) along each axis.
  r.gx.terms = r.hx.terms = r.y.terms * static_cast<double>((c.KH - 1) / c.stride.h + 1) *
                            static_cast<double>((c.KW - 1) / c.stride.w + 1);
  return r;
}

// ---- comparisons ----

double epsilon(DType dtype) {
  return dtype == DType::Float64 ? std::numeric_limits<double>::epsilon()
                                 : std::numeric_limits<float>::epsilon();
}

/// got within rounding of ref: (terms + 2) roundings of each term's size,
/// twice over. A NaN in the reference must be a NaN in got.
void expect_close(const Case& c, const char* what, const Tensor& got, const Ref& ref) {
  if (got.size() != static_cast<std::int64_t>(ref.value.size())) {
    finding(c, std::string(what) + ": " + std::to_string(got.size()) + " elements, expected " +
                   std::to_string(ref.value.size()));
  }
  const double eps = epsilon(got.dtype());
  for (std::int64_t k = 0; k < got.size(); ++k) {
    const double want = ref.value[static_cast<std::size_t>(k)];
    const double mag = ref.magnitude[static_cast<std::size_t>(k)];
    const double tol = 2.0 * (ref.terms + 2) * eps * mag + 1e-300;
    const double have = got.at(k);
    const bool ok = std::isnan(want) ? std::isnan(have) : std::fabs(have - want) <= tol;
    if (!ok) {
      char line[256];
      std::snprintf(line, sizeof line, "%s element %lld: got %.17g, expected %.17g (tol %g)", what,
                    static_cast<long long>(k), have, want, tol);
      finding(c, line);
    }
  }
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  return a.defined() == b.defined() &&
         (!a.defined() || (a.shape() == b.shape() && a.dtype() == b.dtype() &&
                           std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0));
}

void expect_identical(const Case& c, const char* what, const std::vector<Tensor>& a,
                      const std::vector<Tensor>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!bit_identical(a[i], b[i]))
      finding(c, std::string(what) + " (result " + std::to_string(i) + ")");
  }
}

/// Runs fn at 1 thread and at 2: the results must be the same bits.
template <class Fn>
std::vector<Tensor> at_one_and_two_threads(const Case& c, Fn&& fn) {
  npdl::set_num_threads(1);
  const std::vector<Tensor> one = fn();
  npdl::set_num_threads(2);
  const std::vector<Tensor> two = fn();
  npdl::set_num_threads(1);
  expect_identical(c, "2 threads differ from 1 thread", one, two);
  return one;
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (std::int64_t i = 0; i < a.size(); ++i) s += a.at(i) * b.at(i);
  return s;
}

// ---- values ----

Tensor values(const Case& c, const Shape& s, std::uint64_t salt, bool nans = false) {
  Tensor t = Tensor::uniform(s, c.seed * 8 + salt, DType::Float64, -2.0, 2.0);
  double* d = t.data<double>();
  for (std::int64_t k = 0; k < t.size(); ++k) {
    if (c.ties) d[k] = std::round(d[k]);
    if (nans && (static_cast<std::uint64_t>(k) * 7 + c.seed) % 5 == 0) {
      d[k] = std::numeric_limits<double>::quiet_NaN();
    }
  }
  return t.astype(c.dtype);
}

// ---- conv2d ----

/// s(x, w) = <gx, a> + <gw, b> for (gx, gw) the gradient of
/// L = sum(u * conv2d(x, w)^2): what the second derivative differentiates.
double first_order_s(const Case& c, const Tensor& x, const Tensor& w, const Tensor& u,
                     const Tensor& a, const Tensor& b) {
  npdl::Graph graph;
  const Var vx = graph.variable(x), vw = graph.variable(w);
  const Var loss = ops::sum(ops::square(ops::conv2d(vx, vw, c.stride, c.pad)) * Var(u));
  const std::vector<Var> g = graph.gradients({loss}, {vx, vw}, {}, {});
  return dot(g[0].value(), a) + dot(g[1].value(), b);
}

/// conv2d's second derivative through create_graph: it succeeds or throws
/// an npdl::Error; in float64 on few elements it matches central
/// differences of the first derivative. Along one element s is quadratic,
/// so the differences are exact but for rounding, which the tolerance
/// estimates from two step sizes.
void check_conv_second_order(const Case& c, const Tensor& x, const Tensor& w, const Tensor& u) {
  const Tensor a = values(c, x.shape(), 5), b = values(c, w.shape(), 6);
  std::vector<Tensor> second;
  try {
    npdl::Graph graph;
    const Var vx = graph.variable(x), vw = graph.variable(w);
    const Var loss = ops::sum(ops::square(ops::conv2d(vx, vw, c.stride, c.pad)) * Var(u));
    npdl::BackwardOptions create;
    create.create_graph = true;
    const std::vector<Var> g = graph.gradients({loss}, {vx, vw}, {}, create);
    const Var s = ops::sum(g[0] * Var(a)) + ops::sum(g[1] * Var(b));
    for (const Var& h : graph.gradients({s}, {vx, vw}, {}, {})) second.push_back(h.value());
  } catch (const npdl::Error&) {
    return;
  }
  if (second[0].shape() != x.shape() || second[1].shape() != w.shape()) {
    finding(c, "conv2d's second derivative has the wrong shape");
  }
  if (c.dtype != DType::Float64 || x.size() + w.size() > kMaxElementsForDifferences) return;
  Tensor point[2] = {x.clone(), w.clone()};
  const double s0 = std::fabs(first_order_s(c, x, w, u, a, b));
  for (int t = 0; t < 2; ++t) {
    double* d = point[t].data<double>();
    for (std::int64_t k = 0; k < point[t].size(); ++k) {
      const double v = d[k];
      auto diff = [&](double h) {
        d[k] = v + h;
        const double up = first_order_s(c, point[0], point[1], u, a, b);
        d[k] = v - h;
        const double down = first_order_s(c, point[0], point[1], u, a, b);
        d[k] = v;
        return (up - down) / (2 * h);
      };
      const double d1 = diff(1e-3), d2 = diff(2e-3);
      const double tol = 2 * std::fabs(d1 - d2) + 1e3 * epsilon(DType::Float64) * (s0 + 1) / 1e-3;
      if (!(std::fabs(second[t].at(k) - d1) <= tol)) {
        char line[200];
        std::snprintf(line, sizeof line,
                      "conv2d's second derivative in %s, element %lld: %.17g, differences %.17g",
                      t == 0 ? "x" : "w", static_cast<long long>(k), second[t].at(k), d1);
        finding(c, line);
      }
    }
  }
}

/// The bias's gradient: g summed over (n, oh, ow), per filter.
Ref reference_bias_grad(const Case& c, const Prediction& p, const Tensor& g) {
  Ref gb(c.F);
  const std::int64_t plane = p.OH * p.OW;
  for (std::int64_t k = 0; k < g.size(); ++k) gb.add(k / plane % c.F, g.at(k));
  gb.terms = static_cast<double>(c.N) * static_cast<double>(plane);
  return gb;
}

/// conv2d_relu (fused) or relu of conv2d with the bias (composed), on x, w,
/// b: the value and the first-order gradients for the upstream g, then,
/// under create_graph, the gradient in x and its own gradients in w and b
/// for <that gradient, u>.
std::vector<Tensor> conv_relu_results(const Case& c, bool fused, const Tensor& x, const Tensor& w,
                                      const Tensor& b, const Tensor& g, const Tensor& u) {
  auto op = [&](const Var& vx, const Var& vw, const Var& vb) {
    return fused ? ops::conv2d_relu(vx, vw, vb, c.stride, c.pad)
                 : ops::relu(ops::conv2d(vx, vw, vb, c.stride, c.pad));
  };
  npdl::Graph first;
  const Var fx = first.variable(x), fw = first.variable(w), fb = first.variable(b);
  const Var y = op(fx, fw, fb);
  y.backward(g);
  std::vector<Tensor> out{y.value(), fx.grad(), fw.grad(), fb.grad()};
  npdl::Graph second;
  const Var sx = second.variable(x), sw = second.variable(w), sb = second.variable(b);
  npdl::BackwardOptions create;
  create.create_graph = true;
  const Var gx = second.gradients({op(sx, sw, sb)}, {sx}, {Var(g)}, create)[0];
  out.push_back(gx.value());
  for (const Var& h : second.gradients({ops::sum(gx * Var(u))}, {sw, sb}, {}, {})) {
    out.push_back(h.value());
  }
  return out;
}

/// conv2d with and without a bias, their VJPs, and the gradient primitives.
void run_conv(const Case& c, const Prediction& p) {
  const Shape xs{c.N, c.C, c.H, c.W}, ws{c.F, c.C, c.KH, c.KW}, ys{c.N, c.F, p.OH, p.OW};
  const Tensor x = values(c, xs, 1), w = values(c, ws, 2), g = values(c, ys, 3);
  const Tensor b = values(c, {c.F}, 5);
  const ConvRef ref = reference_conv(c, p, x.astype(DType::Float64), w.astype(DType::Float64),
                                     g.astype(DType::Float64));
  const std::vector<Tensor> got = at_one_and_two_threads(c, [&] {
    const npdl::math::Conv2dGrads both = npdl::math::conv2d_backward(g, x, w, c.stride, c.pad);
    npdl::Graph graph;
    const Var vx = graph.variable(x), vw = graph.variable(w);
    const Var y = ops::conv2d(vx, vw, c.stride, c.pad);
    y.backward(g);
    std::vector<Tensor> out{y.value(),
                            both.gx,
                            both.gw,
                            vx.grad(),
                            vw.grad(),
                            npdl::math::conv2d_input_grad(g, w, xs, c.stride, c.pad),
                            npdl::math::conv2d_weight_grad(x, g, ws, c.stride, c.pad)};
    npdl::Graph with_bias;
    const Var bx = with_bias.variable(x), bw = with_bias.variable(w), bb = with_bias.variable(b);
    const Var biased = ops::conv2d(bx, bw, bb, c.stride, c.pad);
    biased.backward(g);
    for (const Tensor& t : {biased.value(), bx.grad(), bw.grad(), bb.grad(),
                            npdl::math::add(y.value(), b.reshape({1, c.F, 1, 1}))}) {
      out.push_back(t);
    }
    for (bool fused : {true, false}) {  // results 12..18, then 19..25
      for (const Tensor& t : conv_relu_results(c, fused, x, w, b, g, values(c, xs, 6))) {
        out.push_back(t);
      }
    }
    return out;
  });
  expect_close(c, "conv2d's forward", got[0], ref.y);
  expect_close(c, "conv2d's input gradient", got[1], ref.gx);
  expect_close(c, "conv2d's weight gradient", got[2], ref.gw);
  // The op's VJP and the primitives alone are the fused kernel, bit for bit;
  // with a bias, the value is conv2d's plus the bias, the VJP in x and w conv2d's.
  expect_identical(c, "the op's VJP or a gradient primitive differs from conv2d_backward",
                   {got[1], got[2], got[1], got[2]}, {got[3], got[4], got[5], got[6]});
  expect_identical(c, "conv2d with a bias differs from conv2d plus the bias",
                   {got[11], got[1], got[2]}, {got[7], got[8], got[9]});
  expect_close(c, "conv2d's bias gradient", got[10], reference_bias_grad(c, p, g));
  expect_identical(
      c, "conv2d_relu differs from relu of conv2d with the bias (value, VJPs, create_graph)",
      {got.begin() + 12, got.begin() + 19}, {got.begin() + 19, got.end()});
  check_conv_second_order(c, x, w, values(c, ys, 4));
}

/// The gradient primitives on shapes given as arguments (edge mode): the
/// same values as the reference where the geometry is valid.
void run_primitive(const Case& c, const Prediction& p) {
  const Shape xs{c.N, c.C, c.H, c.W}, ws{c.F, c.C, c.KH, c.KW}, ys{c.N, c.F, p.OH, p.OW};
  const Tensor x = values(c, xs, 1), w = values(c, ws, 2), g = values(c, ys, 3);
  const ConvRef ref = reference_conv(c, p, x.astype(DType::Float64), w.astype(DType::Float64),
                                     g.astype(DType::Float64));
  npdl::Graph graph;
  if (c.kind == Kind::InputGrad) {
    expect_close(
        c, "conv2d_input_grad",
        ops::conv2d_input_grad(graph.variable(g), graph.variable(w), xs, c.stride, c.pad).value(),
        ref.gx);
  } else {
    expect_close(
        c, "conv2d_weight_grad",
        ops::conv2d_weight_grad(graph.variable(x), graph.variable(g), ws, c.stride, c.pad).value(),
        ref.gw);
  }
}

// ---- pooling ----

void run_pool(const Case& c, const Prediction& p) {
  const bool max = c.kind == Kind::MaxPool;
  const Shape xs{c.N, c.C, c.H, c.W}, ys{c.N, c.C, p.OH, p.OW};
  const Tensor x = values(c, xs, 1, max && c.nans), g = values(c, ys, 3);
  const Tensor u = values(c, ys, 4), a = values(c, xs, 5);
  const PoolRef ref = reference_pool(c, p, max, x.astype(DType::Float64), g.astype(DType::Float64),
                                     u.astype(DType::Float64), a.astype(DType::Float64));
  const Size2 window{c.KH, c.KW};
  auto pool = [&](const Var& v) {
    return max ? ops::max_pool2d(v, window, c.stride) : ops::mean_pool2d(v, window, c.stride);
  };
  const std::vector<Tensor> got = at_one_and_two_threads(c, [&] {
    npdl::Graph graph;
    const Var vx = graph.variable(x);
    const Var y = pool(vx);
    y.backward(g);
    return std::vector<Tensor>{y.value(), vx.grad()};
  });
  expect_close(c, "the pool's forward", got[0], ref.y);
  expect_close(c, "the pool's gradient", got[1], ref.gx);
  if (max) {
    const ops::MaxPoolSelectionPtr selection = ops::max_pool2d_selection(x, window, c.stride);
    for (std::size_t o = 0; o < ref.argmax.size(); ++o) {
      if (selection->argmax[o] != ref.argmax[o] % (c.H * c.W)) {
        finding(c, "max_pool2d chose element " + std::to_string(selection->argmax[o]) +
                       " of a window, the rule (first NaN, else first maximum) " +
                       std::to_string(ref.argmax[o] % (c.H * c.W)));
      }
    }
  } else {
    expect_close(c, "mean_pool2d_backward",
                 npdl::math::mean_pool2d_backward(g, xs, window, c.stride), ref.gx);
  }
  // Second order: d<grad of sum(u * y^2), a>/dx has a closed form (the
  // reference's hx); it succeeds or is an npdl::Error.
  try {
    npdl::Graph graph;
    const Var vx = graph.variable(x);
    const Var loss = ops::sum(ops::square(pool(vx)) * Var(u));
    npdl::BackwardOptions create;
    create.create_graph = true;
    const Var gx = graph.gradients({loss}, {vx}, {}, create)[0];
    const Tensor h = graph.gradients({ops::sum(gx * Var(a))}, {vx}, {}, {})[0].value();
    if (!(max && c.nans)) expect_close(c, "the pool's second derivative", h, ref.hx);
  } catch (const npdl::Error&) {
  }
}

void run_mean_pool_backward(const Case& c, const Prediction& p) {
  const Shape xs{c.N, c.C, c.H, c.W}, ys{c.N, c.C, p.OH, p.OW};
  const Tensor g = values(c, ys, 3);
  const Tensor x0 = Tensor::zeros(xs, DType::Float64), y0 = Tensor::zeros(ys, DType::Float64);
  const PoolRef ref = reference_pool(c, p, false, x0, g.astype(DType::Float64), y0, x0);
  npdl::Graph graph;
  expect_close(c, "mean_pool2d_backward",
               ops::mean_pool2d_backward(graph.variable(g), xs, {c.KH, c.KW}, c.stride).value(),
               ref.gx);
}

// ---- the layer ----

npdl::layers::ConvPadding layer_padding(const Case& c) {
  switch (c.layer_padding) {
    case LayerPadding::Valid:
      return "valid";
    case LayerPadding::Same:
      return "same";
    case LayerPadding::Explicit:
      break;
  }
  return c.pad;
}

void run_layer(const Case& c, const Prediction& p) {
  npdl::layers::Convolution layer(c.F, {c.KH, c.KW}, {}, c.stride, "glorot_uniform", "linear",
                                  layer_padding(c));
  const Tensor x = values(c, {c.N, c.C, c.H, c.W}, 1);
  const Tensor y = layer.forward(x);
  if (!(layer.padding() == p.pad)) finding(c, "the layer resolved another padding");
  if (layer.output_shape() != Shape{c.F, p.OH, p.OW}) finding(c, "the layer's output shape");
  if (c.layer_padding == LayerPadding::Same && c.H > 0 && c.W > 0 &&
      (p.OH != (c.H - 1) / c.stride.h + 1 || p.OW != (c.W - 1) / c.stride.w + 1)) {
    finding(c, "'same' padding gave an output other than ceil(input / stride)");
  }
  Case plain = c;
  plain.pad = p.pad;
  const Tensor w = layer.W()->value.astype(DType::Float64);
  ConvRef ref = reference_conv(plain, p, x.astype(DType::Float64), w,
                               Tensor::zeros({c.N, c.F, p.OH, p.OW}, DType::Float64));
  const Tensor b = layer.b()->value.astype(DType::Float64);
  for (std::size_t k = 0; k < ref.y.value.size(); ++k) {
    const std::int64_t f = static_cast<std::int64_t>(k) / (p.OH * p.OW) % c.F;
    ref.y.add(static_cast<std::int64_t>(k), b.at(f));
  }
  ref.y.terms += 1;
  expect_close(c, "the layer's forward", y, ref.y);
}

// ---- running one case ----

/// Which error a refusal must be, if any.
template <class Fn>
void expect_outcome(const Case& c, Verdict verdict, Fn&& fn) {
  std::string got;
  try {
    fn();
    if (verdict == Verdict::Run) return;
    got = "accepted";
  } catch (const npdl::ValueError& e) {
    if (verdict == Verdict::Value || verdict == Verdict::Either) return;
    got = std::string("ValueError: ") + e.what();
  } catch (const npdl::ShapeError& e) {
    if (verdict == Verdict::Shape || verdict == Verdict::Either) return;
    got = std::string("ShapeError: ") + e.what();
  } catch (const npdl::Error& e) {
    got = std::string("npdl::Error: ") + e.what();
  }
  static const char* const kVerdicts[] = {"computed", "not run", "a ValueError", "a ShapeError",
                                          "an npdl::Error"};
  finding(c, std::string("expected ") + kVerdicts[static_cast<int>(verdict)] + ", got " + got);
}

/// A refused case: the op called with tensors of the case's sizes. Sizes
/// that are free (edge mode) belong to shapes given as arguments, never to
/// the tensors of that op; clamped, they only keep those tensors small.
/// The upstream gradient is (N, F, 1, 1): the geometry gives no output shape.
void run_refused(const Case& c, Verdict verdict, bool connects) {
  auto small = [](std::int64_t s) { return std::clamp<std::int64_t>(s, 0, 8); };
  const Shape xs{c.N, c.C, small(c.H), small(c.W)}, ws{c.F, c.C, small(c.KH), small(c.KW)};
  const Shape ys{c.N, c.F, 1, 1};
  npdl::Graph graph;
  const Var x = graph.variable(values(c, xs, 1)), w = graph.variable(values(c, ws, 2));
  const Var g = graph.variable(values(c, ys, 3));
  const Var b = graph.variable(values(c, {c.F}, 5));
  const Size2 window{c.KH, c.KW};
  const std::size_t before = graph.size();
  if (c.kind == Kind::Conv2d) {  // with a bias that fits, and relu, the same verdict
    expect_outcome(c, verdict, [&] { ops::conv2d(x, w, b, c.stride, c.pad); });
    expect_outcome(c, verdict, [&] { ops::conv2d_relu(x, w, b, c.stride, c.pad); });
  }
  expect_outcome(c, verdict, [&] {
    switch (c.kind) {
      case Kind::Conv2d:
        ops::conv2d(x, w, c.stride, c.pad);
        break;
      case Kind::InputGrad:
        ops::conv2d_input_grad(g, w, {c.N, c.C, c.H, c.W}, c.stride, c.pad);
        break;
      case Kind::WeightGrad:
        ops::conv2d_weight_grad(x, g, {c.F, c.C, c.KH, c.KW}, c.stride, c.pad);
        break;
      case Kind::MaxPool:
        ops::max_pool2d(x, window, c.stride);
        break;
      case Kind::MeanPool:
        ops::mean_pool2d(x, window, c.stride);
        break;
      case Kind::MeanPoolBackward:
        ops::mean_pool2d_backward(g, {c.N, c.C, c.H, c.W}, window, c.stride);
        break;
      case Kind::Layer: {
        // A refused padding throws from the constructor, a refused geometry
        // from connecting (which must leave the layer as it was), counts
        // past 2^63 - 1 from conv2d in the forward.
        npdl::layers::Convolution layer(c.F, window, {}, c.stride, "glorot_uniform", "linear",
                                        layer_padding(c));
        try {
          layer.forward(x.value());
        } catch (const npdl::Error&) {
          if (!connects &&
              (layer.connected() || layer.W() != nullptr || !layer.output_shape().empty())) {
            finding(c, "a layer that refused to connect changed");
          }
          throw;
        }
        break;
      }
    }
  });
  if (graph.size() != before) finding(c, "a refused op recorded on the graph");
}

void run(const Case& c) {
  const Prediction p = predict(c);
  if (p.verdict == Verdict::TooLarge) return;
  if (p.verdict != Verdict::Run) {
    run_refused(c, p.verdict, p.connects);
    return;
  }
  expect_outcome(c, Verdict::Run, [&] {
    switch (c.kind) {
      case Kind::Conv2d:
        run_conv(c, p);
        break;
      case Kind::InputGrad:
      case Kind::WeightGrad:
        run_primitive(c, p);
        break;
      case Kind::MaxPool:
      case Kind::MeanPool:
        run_pool(c, p);
        break;
      case Kind::MeanPoolBackward:
        run_mean_pool_backward(c, p);
        break;
      case Kind::Layer:
        run_layer(c, p);
        break;
    }
  });
}

// ---- decoding ----

std::int64_t edge_size(FuzzedDataProvider& in) {
  static const std::int64_t kSizes[] = {std::numeric_limits<std::int64_t>::min(),
                                        -(std::int64_t{1} << 62),
                                        -3,
                                        -1,
                                        0,
                                        1,
                                        2,
                                        3,
                                        5,
                                        8,
                                        std::int64_t{1} << 31,
                                        (std::int64_t{1} << 32) + 1,
                                        std::int64_t{1} << 61,
                                        std::int64_t{1} << 62,
                                        kMax / 2 + 1,
                                        kMax - 2,
                                        kMax - 1,
                                        kMax};
  constexpr int kCount = sizeof kSizes / sizeof *kSizes;
  // Half the time a small size, so that one huge value meets sane others.
  if (in.ConsumeBool()) return in.ConsumeIntegralInRange<std::int64_t>(0, 8);
  return kSizes[in.ConsumeIntegralInRange(0, kCount - 1)];
}

std::int64_t small_map(FuzzedDataProvider& in) {
  return in.ConsumeBool() ? 1 : in.ConsumeIntegralInRange<std::int64_t>(1, 7);
}

Case decode(FuzzedDataProvider& in) {
  Case c;
  c.edge = in.ConsumeIntegralInRange(0, 3) == 0;
  c.kind = static_cast<Kind>(in.ConsumeIntegralInRange(0, static_cast<int>(Kind::Layer)));
  c.dtype = in.ConsumeBool() ? DType::Float32 : DType::Float64;
  c.seed = in.ConsumeIntegral<std::uint16_t>();
  c.ties = in.ConsumeIntegralInRange(0, 3) == 0;
  c.nans = in.ConsumeIntegralInRange(0, 3) == 0;
  c.layer_padding = static_cast<LayerPadding>(in.ConsumeIntegralInRange(0, 2));
  c.N = in.ConsumeIntegralInRange<std::int64_t>(c.edge ? 0 : 1, 4);
  c.C = in.ConsumeIntegralInRange<std::int64_t>(c.edge ? 0 : 1, 3);
  // The layer refuses nb_filter < 1 before any geometry.
  c.F = in.ConsumeIntegralInRange<std::int64_t>(c.edge && c.kind != Kind::Layer ? 0 : 1, 3);
  const bool conv_kind = c.kind == Kind::Conv2d || c.kind == Kind::InputGrad ||
                         c.kind == Kind::WeightGrad || c.kind == Kind::Layer;
  const bool pool_kind = c.kind == Kind::MaxPool || c.kind == Kind::MeanPool;
  // Conv kinds: 0 or 6 winograd, 3 slabs (the slowest to run), else small;
  // pools: a multiple of 3 pool2x2.
  const int mode = !c.edge && (conv_kind || pool_kind) ? in.ConsumeIntegralInRange(0, 11) : 1;
  if (conv_kind && mode == 3) {  // slabs
    c.N = 2;
    c.C = in.ConsumeIntegralInRange<std::int64_t>(2, 3);
    c.F = in.ConsumeIntegralInRange<std::int64_t>(1, 2);
    c.H = in.ConsumeIntegralInRange<std::int64_t>(8, 16);
    c.W = in.ConsumeIntegralInRange<std::int64_t>(280, 560);
    c.KH = in.ConsumeIntegralInRange<std::int64_t>(2, 3);
    c.KW = in.ConsumeIntegralInRange<std::int64_t>(2, 3);
    c.stride = {in.ConsumeIntegralInRange<std::int64_t>(1, 2),
                in.ConsumeIntegralInRange<std::int64_t>(1, 2)};
    for (std::int64_t* side : {&c.pad.top, &c.pad.bottom, &c.pad.left, &c.pad.right}) {
      *side = in.ConsumeIntegralInRange<std::int64_t>(0, 3);
    }
    return c;
  }
  if (conv_kind && mode % 6 == 0) {  // winograd
    c.C = in.ConsumeIntegralInRange<std::int64_t>(16, 20);
    c.F = in.ConsumeIntegralInRange<std::int64_t>(16, 20);
    c.N = in.ConsumeIntegralInRange<std::int64_t>(1, 3);
    c.H = small_map(in);
    c.W = small_map(in);
    c.KH = c.KW = 3;
    c.stride = {1, 1};
    for (std::int64_t* side : {&c.pad.top, &c.pad.bottom, &c.pad.left, &c.pad.right}) {
      *side = in.ConsumeIntegralInRange<std::int64_t>(0, 4);
    }
    return c;
  }
  if (pool_kind && mode % 3 == 0) {  // 2x2, stride 2
    c.H = in.ConsumeIntegralInRange<std::int64_t>(2, 12);
    c.W = in.ConsumeIntegralInRange<std::int64_t>(2, 40);
    c.KH = c.KW = 2;
    c.stride = {2, 2};
    return c;
  }
  if (!c.edge) {
    c.H = small_map(in);
    c.W = small_map(in);
    c.KH = in.ConsumeIntegralInRange<std::int64_t>(1, 7);
    c.KW = in.ConsumeIntegralInRange<std::int64_t>(1, 7);
    c.stride = {in.ConsumeIntegralInRange<std::int64_t>(1, 8),
                in.ConsumeIntegralInRange<std::int64_t>(1, 8)};
    for (std::int64_t* side : {&c.pad.top, &c.pad.bottom, &c.pad.left, &c.pad.right}) {
      *side = in.ConsumeIntegralInRange<std::int64_t>(0, 8);
    }
    // Pools have no padding: their windows must fit the input.
    if (c.kind == Kind::MaxPool || c.kind == Kind::MeanPool || c.kind == Kind::MeanPoolBackward) {
      c.pad = {};
    }
    return c;
  }
  // Edge: a shape argument's sizes may be anything; a real tensor's are small.
  const bool free_input = c.kind == Kind::InputGrad || c.kind == Kind::MeanPoolBackward;
  const bool free_kernel = c.kind == Kind::WeightGrad || c.kind == Kind::MaxPool ||
                           c.kind == Kind::MeanPool || c.kind == Kind::MeanPoolBackward ||
                           c.kind == Kind::Layer;
  c.H = free_input ? edge_size(in) : in.ConsumeIntegralInRange<std::int64_t>(0, 3);
  c.W = free_input ? edge_size(in) : in.ConsumeIntegralInRange<std::int64_t>(0, 3);
  c.KH = free_kernel ? edge_size(in) : in.ConsumeIntegralInRange<std::int64_t>(0, 3);
  c.KW = free_kernel ? edge_size(in) : in.ConsumeIntegralInRange<std::int64_t>(0, 3);
  c.stride = {edge_size(in), edge_size(in)};
  for (std::int64_t* side : {&c.pad.top, &c.pad.bottom, &c.pad.left, &c.pad.right}) {
    *side = edge_size(in);
  }
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  run(decode(in));
  return 0;
}
