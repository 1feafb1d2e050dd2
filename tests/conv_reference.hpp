#pragma once
// conv2d and its VJP by the definition, loop by loop in float64, for the
// convolution test suites: no im2col, no matrix products, so a geometry the
// kernels get wrong (a filter column that only ever sees padding, a filter
// larger than the input) is computed here the obvious way.
#include <cstdint>
#include <vector>

#include "npdl.hpp"

namespace npdl::testing {

/// Calls fn(n, f, c, oh, ow, i, j, ih, iw) for every product
/// w[f, c, i, j] * x[n, c, ih, iw] that conv2d sums into y[n, f, oh, ow]
/// (the products with padding, which are zero, are skipped).
template <class Fn>
void for_each_conv_product(const Shape& xs, const Shape& ws, math::Size2 s,
                           const math::Padding2d& p, Fn&& fn) {
  const std::int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const std::int64_t F = ws[0], KH = ws[2], KW = ws[3];
  const std::int64_t OH = (H + p.top + p.bottom - KH) / s.h + 1;
  const std::int64_t OW = (W + p.left + p.right - KW) / s.w + 1;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t f = 0; f < F; ++f)
      for (std::int64_t oh = 0; oh < OH; ++oh)
        for (std::int64_t ow = 0; ow < OW; ++ow)
          for (std::int64_t c = 0; c < C; ++c)
            for (std::int64_t i = 0; i < KH; ++i)
              for (std::int64_t j = 0; j < KW; ++j) {
                const std::int64_t ih = oh * s.h - p.top + i, iw = ow * s.w - p.left + j;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                fn(n, f, c, oh, ow, i, j, ih, iw);
              }
}

/// y[n,f,oh,ow] = sum over c, i, j of w[f,c,i,j] * xpad[n,c,oh*sh+i,ow*sw+j].
inline Tensor reference_conv2d(const Tensor& x, const Tensor& w, math::Size2 s,
                               const math::Padding2d& p) {
  const std::int64_t OH = (x.dim(2) + p.top + p.bottom - w.dim(2)) / s.h + 1;
  const std::int64_t OW = (x.dim(3) + p.left + p.right - w.dim(3)) / s.w + 1;
  const Shape ys{x.dim(0), w.dim(0), OH, OW};
  std::vector<double> y(static_cast<std::size_t>(numel(ys)), 0.0);
  for_each_conv_product(
      x.shape(), w.shape(), s, p,
      [&](auto n, auto f, auto c, auto oh, auto ow, auto i, auto j, auto ih, auto iw) {
        y[static_cast<std::size_t>(((n * ys[1] + f) * OH + oh) * OW + ow)] +=
            w.at({f, c, i, j}) * x.at({n, c, ih, iw});
      });
  return Tensor::from_vector(ys, y, DType::Float64);
}

/// conv2d's VJP for the upstream gradient g: each product of the forward
/// sends g's element to both its factors.
inline math::Conv2dGrads reference_conv2d_backward(const Tensor& g, const Tensor& x,
                                                   const Tensor& w, math::Size2 s,
                                                   const math::Padding2d& p) {
  std::vector<double> gx(static_cast<std::size_t>(x.size()), 0.0);
  std::vector<double> gw(static_cast<std::size_t>(w.size()), 0.0);
  const Shape& xs = x.shape();
  const Shape& ws = w.shape();
  for_each_conv_product(
      xs, ws, s, p,
      [&](auto n, auto f, auto c, auto oh, auto ow, auto i, auto j, auto ih, auto iw) {
        const double up = g.at({n, f, oh, ow});
        gx[static_cast<std::size_t>(((n * xs[1] + c) * xs[2] + ih) * xs[3] + iw)] +=
            up * w.at({f, c, i, j});
        gw[static_cast<std::size_t>(((f * ws[1] + c) * ws[2] + i) * ws[3] + j)] +=
            up * x.at({n, c, ih, iw});
      });
  return {Tensor::from_vector(xs, gx, DType::Float64), Tensor::from_vector(ws, gw, DType::Float64)};
}

}  // namespace npdl::testing
