// Batch normalisation's double backward: the gradients of the first
// backward (batchnorm_backward_train), derived by hand.
//
// Note [Batch-norm double backward]
// The derivation is written once, as the steps batchnorm_double_derivation()
// returns at the end of this file (the teaching tools print them): L2 =
// <ggx, dx> + <gggamma, dgamma> + <ggbeta, dbeta> in per-feature sums, then
// dL2/ddy, dL2/dgamma, and dL2/dx through xhat and invstd. The kernel runs
// its last two steps: five reductions per feature, sum(dy) and sum(dy xhat)
// (wanted when dL2/dx is), sum(ggx), sum(ggx xhat) and sum(ggx dy) (when ggx
// is defined); then one elementwise pass writing dL2/dx and dL2/ddy. An
// undefined upstream drops its terms.
// The kernel writes xhat = s ((x - m) - delta), m = T(mean) (Note [Rounded
// mean]): a sum of v * xhat is s (sum(v (x - m)) - delta sum(v)), and a
// coefficient k of xhat becomes k s on (x - m), with -k s delta folded into
// the constant.
#include "layers/batch_norm/double_backward.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <string>

#include "layers/batch_norm/detail/feature_loops.hpp"

namespace npdl::layers {
namespace {

using namespace bn_internal;

// Which upstream gradients are defined, hence which terms, sums and outputs
// exist.
struct Terms {
  bool ggx = false, gggamma = false, ggbeta = false;
  bool dx() const { return ggx || gggamma; }
  bool ddy() const { return ggx || gggamma || ggbeta; }
  bool dy_sums() const { return dx(); }  // sum(dy), sum(dy (x - m))
};

// Per-feature sums, float64: of dy, dy (x - m), ggx, ggx (x - m), ggx dy.
struct Sums {
  ArrD dy, dy_d, gg, gg_d, gg_dy;
  explicit Sums(std::int64_t C)
      : dy(ArrD::Zero(C)),
        dy_d(ArrD::Zero(C)),
        gg(ArrD::Zero(C)),
        gg_d(ArrD::Zero(C)),
        gg_dy(ArrD::Zero(C)) {}
};

// Per-feature coefficients of the elementwise pass, in T, on (x - m):
//   dx  = a_dy dy + a_gg ggx + b_x (x - m) + c_x
//   ddy = e_gg ggx + f_x (x - m) + f_c
template <class T>
struct Coefficients {
  Arr<T> m, a_dy, a_gg, b_x, c_x, e_gg, f_x, f_c;
  explicit Coefficients(std::int64_t C)
      : m(C), a_dy(C), a_gg(C), b_x(C), c_x(C), e_gg(C), f_x(C), f_c(C) {}
};

// The per-feature inputs, float64.
struct Features {
  ArrD mean, invstd, gamma, gggamma, ggbeta;
};

// Note [Batch-norm double backward], step 6, for feature c: the
// coefficients of the elementwise pass and dL2/dgamma.
template <class T>
void coefficients(std::int64_t c, const Terms& t, const Features& f, const Sums& S, double M,
                  Coefficients<T>& k, double* dgamma) {
  const double s = f.invstd[c], g = f.gamma[c];
  const T m = T(f.mean[c]);
  const double delta = f.mean[c] - double(m);  // Note [Rounded mean]
  const double sdy = S.dy[c], sdyx = s * (S.dy_d[c] - delta * sdy);
  double a_dy = 0, a_gg = 0, a_x = 0, cc = 0, e_gg = 0, e_x = 0, e_c = 0;
  if (t.ggx) {
    const double sgg = S.gg[c], sggx = s * (S.gg_d[c] - delta * sgg), sggdy = S.gg_dy[c];
    const double gs = g * s;
    a_dy -= gs * s * sggx / M;
    a_gg = -gs * s * sdyx / M;
    a_x -= (s / M) * gs * (sggdy - (sdy * sgg + 3.0 * sdyx * sggx) / M);
    cc += (s / M) * gs * (sgg * sdyx + sggx * sdy) / M;
    e_gg = gs;
    e_x -= gs * sggx / M;
    e_c -= gs * sgg / M;
    dgamma[c] = (s / M) * (M * sggdy - sgg * sdy - sggx * sdyx);
  }
  if (t.gggamma) {
    const double gg = f.gggamma[c];
    a_dy += s * gg;
    a_x -= (s / M) * gg * sdyx;
    cc -= (s / M) * gg * sdy;
    e_x += gg;
  }
  if (t.ggbeta) e_c += f.ggbeta[c];
  // xhat = s ((x - m) - delta)
  const double b_x = a_x * s, f_x = e_x * s;
  k.m[c] = m;
  k.a_dy[c] = T(a_dy);
  k.a_gg[c] = T(a_gg);
  k.b_x[c] = T(b_x);
  k.c_x[c] = T(cc - b_x * delta);
  k.e_gg[c] = T(e_gg);
  k.f_x[c] = T(f_x);
  k.f_c[c] = T(e_c - f_x * delta);
}

template <class T>
struct Buffers {
  const T *ggx = nullptr, *dy = nullptr, *x = nullptr;
  T *dx = nullptr, *ddy = nullptr;
};

// The elementwise pass over n elements from `off`, with coefficients K:
// scalars (one feature's segment) or arrays (a row of every feature).
template <class T, class K>
void write_outputs(const Buffers<T>& b, std::int64_t off, std::int64_t n, const K& m, const K& a_dy,
                   const K& a_gg, const K& b_x, const K& c_x, const K& e_gg, const K& f_x,
                   const K& f_c) {
  const auto d = CMap<T>(b.x + off, n) - m;
  if (b.dx != nullptr) {
    const CMap<T> dy(b.dy + off, n);
    if (b.ggx != nullptr) {
      MMap<T>(b.dx + off, n) = dy * a_dy + CMap<T>(b.ggx + off, n) * a_gg + d * b_x + c_x;
    } else {
      MMap<T>(b.dx + off, n) = dy * a_dy + d * b_x + c_x;
    }
  }
  if (b.ddy != nullptr) {
    if (b.ggx != nullptr) {
      MMap<T>(b.ddy + off, n) = CMap<T>(b.ggx + off, n) * e_gg + d * f_x + f_c;
    } else {
      MMap<T>(b.ddy + off, n) = d * f_x + f_c;
    }
  }
}

// inner > 1 (Note [Feature groups]): per group of features, the sums over
// its segments in memory order, then its coefficients, then the
// elementwise pass while the group is in cache.
template <class T>
void double_backward_groups(const Buffers<T>& b, const Terms& t, const Features& f,
                            const BatchNormLayout& L, Sums& S, double* dgamma) {
  Coefficients<T> k(L.features);
  const Arr<T> m = f.mean.template cast<T>();
  const bool sums = t.dy_sums() || t.ggx;
  for_each_group(L, grouping(L, sizeof(T)), [&](std::int64_t c0, std::int64_t c1) {
    if (sums) {
      for_each_run(L, c0, c1, [&](std::int64_t c, std::int64_t off, std::int64_t n) {
        const auto d = CMap<T>(b.x + off, n) - m[c];
        if (t.dy_sums()) {
          const CMap<T> dy(b.dy + off, n);
          S.dy[c] += double(dy.sum());
          S.dy_d[c] += double((dy * d).sum());
        }
        if (t.ggx) {
          const CMap<T> gg(b.ggx + off, n);
          S.gg[c] += double(gg.sum());
          S.gg_d[c] += double((gg * d).sum());
          S.gg_dy[c] += double((gg * CMap<T>(b.dy + off, n)).sum());
        }
      });
    }
    for (std::int64_t c = c0; c < c1; ++c) coefficients(c, t, f, S, double(L.M), k, dgamma);
    for_each_run(L, c0, c1, [&](std::int64_t c, std::int64_t off, std::int64_t n) {
      write_outputs<T>(b, off, n, k.m[c], k.a_dy[c], k.a_gg[c], k.b_x[c], k.c_x[c], k.e_gg[c],
                       k.f_x[c], k.f_c[c]);
    });
  });
}

// inner == 1: the sums over columns, kRowBlock rows at a time in T joined
// in float64 (as the first backward), then the elementwise pass over rows.
template <class T>
void double_backward_rows(const Buffers<T>& b, const Terms& t, const Features& f,
                          const BatchNormLayout& L, Sums& S, double* dgamma) {
  const std::int64_t C = L.features;
  const Arr<T> m = f.mean.template cast<T>();
  if (t.dy_sums() || t.ggx) {
    parallel_for(C, std::max<std::int64_t>(16, kElementGrain / std::max<std::int64_t>(L.outer, 1)),
                 [&](std::int64_t lo, std::int64_t hi) {
                   const std::int64_t w = hi - lo;
                   const Arr<T> mw = m.segment(lo, w);
                   Arr<T> sdy(w), sdyd(w), sgg(w), sggd(w), sggdy(w);
                   for (std::int64_t r0 = 0; r0 < L.outer; r0 += kRowBlock) {
                     const std::int64_t r1 = std::min(L.outer, r0 + kRowBlock);
                     sdy.setZero();
                     sdyd.setZero();
                     sgg.setZero();
                     sggd.setZero();
                     sggdy.setZero();
                     for (std::int64_t r = r0; r < r1; ++r) {
                       const std::int64_t off = r * C + lo;
                       const auto d = CMap<T>(b.x + off, w) - mw;
                       const CMap<T> dy(b.dy + off, w);
                       if (t.dy_sums()) {
                         sdy += dy;
                         sdyd += dy * d;
                       }
                       if (t.ggx) {
                         const CMap<T> gg(b.ggx + off, w);
                         sgg += gg;
                         sggd += gg * d;
                         sggdy += gg * dy;
                       }
                     }
                     S.dy.segment(lo, w) += sdy.template cast<double>();
                     S.dy_d.segment(lo, w) += sdyd.template cast<double>();
                     S.gg.segment(lo, w) += sgg.template cast<double>();
                     S.gg_d.segment(lo, w) += sggd.template cast<double>();
                     S.gg_dy.segment(lo, w) += sggdy.template cast<double>();
                   }
                 });
  }
  Coefficients<T> k(C);
  for (std::int64_t c = 0; c < C; ++c) coefficients(c, t, f, S, double(L.M), k, dgamma);
  for_each_row_of_features(L, [&](std::int64_t off) {
    write_outputs<T>(b, off, C, k.m, k.a_dy, k.a_gg, k.b_x, k.c_x, k.e_gg, k.f_x, k.f_c);
  });
}

const char* const kWho = "batchnorm_double_backward_train";

void require_defined(const Tensor& t, const char* name) {
  if (!t.defined()) {
    throw ValueError(std::string(kWho) + " expects a defined " + name +
                     ", got an undefined tensor");
  }
}

// An optional tensor (undefined: zero) or a required one must have `shape`
// and `dtype`.
void require_fits(const Tensor& t, const char* name, const Shape& shape, DType dtype,
                  const char* what) {
  if (!t.defined()) return;
  if (t.shape() != shape) {
    throw ShapeError(std::string(kWho) + " expects " + name + " of shape " + to_string(shape) +
                     " (" + what + "), got shape " + to_string(t.shape()));
  }
  if (t.dtype() != dtype) {
    throw DTypeError(std::string(kWho) + " expects " + name + " of dtype " + to_string(dtype) +
                     " (x's), got " + to_string(t.dtype()));
  }
}

void validate(const Tensor& ggx, const Tensor& gggamma, const Tensor& ggbeta, const Tensor& dy,
              const Tensor& x, const Tensor& gamma, const BatchNormStats& stats,
              const BatchNormLayout& L) {
  require_defined(x, "x");
  require_defined(dy, "dy");
  require_defined(gamma, "gamma");
  require_defined(stats.mean, "stats.mean");
  require_defined(stats.invstd, "stats.invstd");
  const BatchNormLayout fits = batchnorm_layout(x.shape(), L.feature_axis);
  if (fits.param_shape != L.param_shape || fits.outer != L.outer || fits.inner != L.inner) {
    throw ShapeError(std::string(kWho) + ": x of shape " + to_string(x.shape()) +
                     " does not fit the layout (feature axis " + std::to_string(L.feature_axis) +
                     ", parameters of shape " + to_string(L.param_shape) + ", outer " +
                     std::to_string(L.outer) + ", inner " + std::to_string(L.inner) + ")");
  }
  const DType dt = x.dtype();
  require_fits(dy, "dy", x.shape(), dt, "x's");
  require_fits(ggx, "ggx", x.shape(), dt, "x's");
  require_fits(gamma, "gamma", L.param_shape, dt, "the parameters'");
  require_fits(gggamma, "gggamma", L.param_shape, dt, "the parameters'");
  require_fits(ggbeta, "ggbeta", L.param_shape, dt, "the parameters'");
  const auto require_param_shape = [&](const Tensor& t, const char* name) {
    if (t.shape() != L.param_shape) {
      throw ShapeError(std::string(kWho) + " expects " + name + " of shape " +
                       to_string(L.param_shape) + " (the parameters'), got shape " +
                       to_string(t.shape()));
    }
  };
  require_param_shape(stats.mean, "stats.mean");
  require_param_shape(stats.invstd, "stats.invstd");
}

}  // namespace

BatchNormDoubleGrads batchnorm_double_backward_train(const Tensor& ggx, const Tensor& gggamma,
                                                     const Tensor& ggbeta, const Tensor& dy,
                                                     const Tensor& x, const Tensor& gamma,
                                                     const BatchNormStats& stats,
                                                     const BatchNormLayout& L) {
  validate(ggx, gggamma, ggbeta, dy, x, gamma, stats, L);
  Terms t;
  t.ggx = ggx.defined();
  t.gggamma = gggamma.defined();
  t.ggbeta = ggbeta.defined();
  BatchNormDoubleGrads out;
  if (!t.ddy()) return out;  // every upstream gradient is zero
  return dispatch(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    Features f;
    f.mean = as_double(stats.mean);
    f.invstd = as_double(stats.invstd);
    f.gamma = as_double(gamma);
    if (t.gggamma) f.gggamma = as_double(gggamma);
    if (t.ggbeta) f.ggbeta = as_double(ggbeta);
    Buffers<T> b;
    b.x = x.data<T>();
    b.dy = dy.data<T>();
    if (t.ggx) b.ggx = ggx.data<T>();
    if (t.dx()) {
      out.dx = Tensor(x.shape(), x.dtype());
      b.dx = out.dx.data<T>();
    }
    out.ddy = Tensor(x.shape(), x.dtype());
    b.ddy = out.ddy.data<T>();
    ArrD dgamma;
    if (t.ggx) dgamma = ArrD::Zero(L.features);
    Sums S(L.features);
    if (L.inner > 1) {
      double_backward_groups<T>(b, t, f, L, S, dgamma.data());
    } else {
      double_backward_rows<T>(b, t, f, L, S, dgamma.data());
    }
    if (t.ggx) out.dgamma = param_tensor(dgamma, L, x.dtype());
    return out;
  });
}

const std::vector<DerivationStep>& batchnorm_double_derivation() {
  static const std::vector<DerivationStep> steps{
      {"what is differentiated",
       "L2 = sum(ggx * dx) + sum(gggamma * dgamma) + sum(ggbeta * dbeta), "
       "(dx, dgamma, dbeta) = the first backward of (x, gamma, dy)",
       "the double backward is the VJP of the first backward: ggx, gggamma, ggbeta are the "
       "upstream gradients of its outputs; per feature, with s = invstd and g = gamma"},
      {"L2 in per-feature sums",
       "L2 = (g * s / M) * P + gggamma * sum(dy * xhat) + ggbeta * sum(dy), "
       "P = M * sum(ggx * dy) - sum(ggx) * sum(dy) - sum(ggx * xhat) * sum(dy * xhat)",
       "put dx = (g * s / M) * (M * dy - sum(dy) - xhat * sum(dy * xhat)) into sum(ggx * dx); "
       "the sums are constant within a feature and factor out"},
      {"dL2/ddy",
       "dL2/ddy = (g * s / M) * (M * ggx - sum(ggx) - xhat * sum(ggx * xhat)) "
       "+ gggamma * xhat + ggbeta",
       "dy enters linearly through sum(ggx * dy), sum(dy) and sum(dy * xhat): the first "
       "backward's dx with ggx in place of dy, plus the dgamma and dbeta terms"},
      {"dL2/dgamma", "dL2/dgamma = (s / M) * P",
       "g only scales sum(ggx * dx); dgamma and dbeta do not depend on it"},
      {"x through xhat and s",
       "dL2/ds = g * P / M, "
       "h = dL2/dxhat = gggamma * dy - (g * s / M) * (sum(dy * xhat) * ggx + sum(ggx * xhat) * dy)",
       "x reaches L2 only through xhat and s = invstd: differentiate with those as the "
       "variables first (P depends on xhat through two of its sums)"},
      {"back to x",
       "dL2/dx = s * (h - sum(h) / M - xhat * sum(h * xhat) / M) - (g * s^2 / M^2) * P * xhat",
       "xhat's VJP is the first backward with g = 1 and h for dy; "
       "s = rsqrt(var + eps) gives ds/dx = -s^3 * xmu / M = -s^2 * xhat / M"},
      {"sums of h",
       "sum(h) = gggamma * sum(dy) - (g * s / M) * (sum(ggx) * sum(dy * xhat) + "
       "sum(ggx * xhat) * sum(dy)), "
       "sum(h * xhat) = gggamma * sum(dy * xhat) - 2 * (g * s / M) * sum(ggx * xhat) * "
       "sum(dy * xhat)",
       "sum h's definition; never replace sum(xhat^2) by M: with eps > 0 it is "
       "M * var / (var + eps)"},
      {"fused dL2/dx",
       "dL2/dx = a_dy * dy + a_gg * ggx + a_x * xhat + c, "
       "a_dy = s * (gggamma - g * s * sum(ggx * xhat) / M), "
       "a_gg = -g * s^2 * sum(dy * xhat) / M, "
       "a_x = -(s / M) * (gggamma * sum(dy * xhat) + g * s * (sum(ggx * dy) - "
       "(sum(dy) * sum(ggx) + 3 * sum(dy * xhat) * sum(ggx * xhat)) / M)), "
       "c = -(s / M) * (gggamma * sum(dy) - g * s * (sum(ggx) * sum(dy * xhat) + "
       "sum(ggx * xhat) * sum(dy)) / M)",
       "collect the terms of dy, ggx, xhat and the constant; the 3 is 2 from sum(h * xhat) "
       "and 1 from the path through s"},
      {"fused dL2/ddy and dL2/dgamma",
       "dL2/ddy = g * s * ggx + (gggamma - g * s * sum(ggx * xhat) / M) * xhat + "
       "(ggbeta - g * s * sum(ggx) / M), "
       "dL2/dgamma = (s / M) * (M * sum(ggx * dy) - sum(ggx) * sum(dy) - "
       "sum(ggx * xhat) * sum(dy * xhat))",
       "five reductions per feature (sum(dy), sum(dy * xhat), sum(ggx), sum(ggx * xhat), "
       "sum(ggx * dy)) and one elementwise pass writing dL2/dx and dL2/ddy; an undefined "
       "upstream gradient drops its terms"},
  };
  return steps;
}

}  // namespace npdl::layers
