// Winograd F(2x2, 3x3) and F(4x4, 3x3) transforms for one instruction-set level
// (tensor/detail/winograd_level.hpp; the derivation is Note [Winograd
// convolution] in tensor/winograd.cpp). CMake compiles this file once per
// level with -DNPDL_KERNEL_LEVEL=level_<name> -DEigen=Eigen_<name> and the
// level's flags (npdl_compile_per_level). As in tensor/kernels/level.cpp,
// include nothing that instantiates a template outside this level's
// namespaces.
#include "tensor/detail/winograd_level.hpp"

#include <Eigen/Core>

#ifdef __AVX__
#include <immintrin.h>
#endif

#ifndef NPDL_KERNEL_LEVEL
#error "compile winograd_level.cpp with -DNPDL_KERNEL_LEVEL=level_<name> (see CMakeLists.txt)"
#endif

namespace npdl::math::winograd_level::NPDL_KERNEL_LEVEL {
namespace {

using std::int64_t;

template <class T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstRow = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

template <class T>
void fill_zero(T* p, int64_t n) {
  Row<T>(p, n).setZero();
}

// One 8 x 8 block of a transpose: out[c][r] = in[r][c], rows ld_in and
// ld_out apart. With AVX, eight loads, 24 shuffles and eight stores for
// floats (the classic unpack / shuffle / permute sequence); elementwise
// otherwise. Moves only: the same bits at every level.
template <class T>
void transpose_block(const T* in, int64_t ld_in, T* out, int64_t ld_out) {
  for (int64_t c = 0; c < 8; ++c) {
    for (int64_t r = 0; r < 8; ++r) out[c * ld_out + r] = in[r * ld_in + c];
  }
}

#ifdef __AVX__
template <>
void transpose_block<float>(const float* in, int64_t ld_in, float* out, int64_t ld_out) {
  __m256 r[8], t[8], s[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(in + i * ld_in);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // r_i0 r_j0 r_i1 r_j1 | r_i4 r_j4 r_i5 r_j5
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // columns 2, 3 | 6, 7
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));          // column 0 | 4
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));      // column 1 | 5
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));  // 2 | 6
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));  // 3 | 7
  }
  for (int c = 0; c < 4; ++c) {  // rows 0-3 from s[c], rows 4-7 from s[c + 4]
    _mm256_storeu_ps(out + c * ld_out, _mm256_permute2f128_ps(s[c], s[c + 4], 0x20));
    _mm256_storeu_ps(out + (c + 4) * ld_out, _mm256_permute2f128_ps(s[c], s[c + 4], 0x31));
  }
}
#endif

// Transposes a (rows, cols) matrix into (cols, rows), 8 x 8 blocks at a
// time (Eigen's transpose walked one side with a stride of a whole row
// per element: a tenth of the CNN's step).
template <class T>
void transpose(const T* in, int64_t rows, int64_t cols, T* out) {
  const int64_t whole_rows = rows - rows % 8, whole_cols = cols - cols % 8;
  for (int64_t r0 = 0; r0 < whole_rows; r0 += 8) {
    for (int64_t c0 = 0; c0 < whole_cols; c0 += 8) {
      transpose_block(in + r0 * cols + c0, cols, out + c0 * rows + r0, rows);
    }
    for (int64_t c = whole_cols; c < cols; ++c) {
      for (int64_t r = r0; r < r0 + 8; ++r) out[c * rows + r] = in[r * cols + c];
    }
  }
  for (int64_t r = whole_rows; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * cols + c];
  }
}

template <class T>
void to_channels_last(const T* in, int64_t channels, int64_t pixels, T* out) {
  transpose(in, channels, pixels, out);
}

template <class T>
void to_channels_first(const T* in, int64_t channels, int64_t pixels, T* out) {
  transpose(in, pixels, channels, out);
}

// The rows of a tile's transform, each `channels` long.
template <class T>
struct Rows {
  T* base;
  int64_t stride, channels;
  Row<T> operator()(int k) const { return Row<T>(base + k * stride, channels); }
};

// Pixel (h, w) of an (rows, cols, channels) image, or `outside` (zeros, or
// a sink for outputs that are dropped) past its edges.
template <class T>
T* pixel(T* image, int64_t h, int64_t w, int64_t rows, int64_t cols, int64_t channels, T* outside) {
  const bool inside = h >= 0 && h < rows && w >= 0 && w < cols;
  return inside ? image + (h * cols + w) * channels : outside;
}

namespace f2x2 {

// 1-D F(2, 3) pieces, each used along both axes of a tile:
//   filter  u = G g:     u0 = g0, u1 = (g0 + g1 + g2) / 2, u2 = (g0 - g1 + g2) / 2, u3 = g2
//   its adjoint G^T gu:  g0 = u0 + (u1 + u2) / 2, g1 = (u1 - u2) / 2, g2 = (u1 + u2) / 2 + u3
template <class T>
void filter(const T* w_f, int64_t channels, T* u, int64_t point_stride, T* scratch) {
  const T half = T(0.5);
  for (int64_t c = 0; c < channels; ++c) {
    const T* k = w_f + c * 9;
    T rows[4][3];  // G g: along the filter's height
    for (int j = 0; j < 3; ++j) {
      rows[0][j] = k[j];
      rows[1][j] = (k[j] + k[3 + j] + k[6 + j]) * half;
      rows[2][j] = (k[j] - k[3 + j] + k[6 + j]) * half;
      rows[3][j] = k[6 + j];
    }
    for (int i = 0; i < 4; ++i) {  // (G g) G^T: along its width
      const T* r = rows[i];
      T* to = scratch + (i * 4) * channels + c;
      to[0] = r[0];
      to[channels] = (r[0] + r[1] + r[2]) * half;
      to[2 * channels] = (r[0] - r[1] + r[2]) * half;
      to[3 * channels] = r[2];
    }
  }
  // Sixteen rows of C, each copied whole: written directly, the 16 strided
  // stores per channel (F C elements apart, one cache set) thrashed L1.
  for (int64_t xi = 0; xi < 16; ++xi) {
    Row<T>(u + xi * point_stride, channels) = ConstRow<T>(scratch + xi * channels, channels);
  }
}

template <class T>
void filter_grad(const T* gu, int64_t point_stride, int64_t channels, T* gw_f, T* scratch) {
  for (int64_t xi = 0; xi < 16; ++xi) {
    Row<T>(scratch + xi * channels, channels) = ConstRow<T>(gu + xi * point_stride, channels);
  }
  const T half = T(0.5);
  for (int64_t c = 0; c < channels; ++c) {
    T cols[4][3];  // gU G: along the width
    for (int i = 0; i < 4; ++i) {
      const T* v = scratch + (i * 4) * channels + c;
      const T mid = (v[channels] + v[2 * channels]) * half;
      cols[i][0] = v[0] + mid;
      cols[i][1] = (v[channels] - v[2 * channels]) * half;
      cols[i][2] = mid + v[3 * channels];
    }
    T* k = gw_f + c * 9;
    for (int j = 0; j < 3; ++j) {  // G^T (gU G): along the height
      const T mid = (cols[1][j] + cols[2][j]) * half;
      k[j] = cols[0][j] + mid;
      k[3 + j] = (cols[1][j] - cols[2][j]) * half;
      k[6 + j] = mid + cols[3][j];
    }
  }
}

// V = B^T d B, one tile at a time. Along a tile's rows (then the same along
// its height), with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]:
//   a0 = d0 - d2, a1 = d1 + d2, a2 = d2 - d1, a3 = d1 - d3.
template <class T>
void input(const SampleTiling& t, int64_t channels, const T* x, T* v, T* scratch) {
  T* zeros = scratch + 16 * channels;
  fill_zero(zeros, channels);
  const Rows<T> a{scratch, channels, channels};
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      const Rows<T> out{v + (r * t.cols + c) * channels, t.point_stride, channels};
      for (int i = 0; i < 4; ++i) {
        auto d = [&](int j) {
          return ConstRow<T>(pixel(x, 2 * r - t.pt + i, 2 * c - t.pl + j, t.H, t.W, channels,
                                   static_cast<const T*>(zeros)),
                             channels);
        };
        a(i * 4 + 0) = d(0) - d(2);
        a(i * 4 + 1) = d(1) + d(2);
        a(i * 4 + 2) = d(2) - d(1);
        a(i * 4 + 3) = d(1) - d(3);
      }
      for (int j = 0; j < 4; ++j) {
        out(0 + j) = a(j) - a(8 + j);
        out(4 + j) = a(4 + j) + a(8 + j);
        out(8 + j) = a(8 + j) - a(4 + j);
        out(12 + j) = a(4 + j) - a(12 + j);
      }
    }
  }
}

// input's adjoint, statement by statement in reverse: each tile's B gV B^T
// added to the pixels it read, tiles in order (neighbours share two rows
// or columns).
template <class T>
void input_grad(const SampleTiling& t, int64_t channels, const T* gv, T* gx, T* scratch) {
  T* sink = scratch + 16 * channels;
  const Rows<T> ga{scratch, channels, channels};
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      const T* from = gv + (r * t.cols + c) * channels;
      for (int j = 0; j < 4; ++j) {
        const ConstRow<T> v0(from + (0 + j) * t.point_stride, channels),
            v1(from + (4 + j) * t.point_stride, channels),
            v2(from + (8 + j) * t.point_stride, channels),
            v3(from + (12 + j) * t.point_stride, channels);
        ga(0 + j) = v0;
        ga(4 + j) = v1 - v2 + v3;
        ga(8 + j) = v1 + v2 - v0;
        ga(12 + j) = -v3;
      }
      for (int i = 0; i < 4; ++i) {
        auto add = [&](int j) {
          return Row<T>(pixel(gx, 2 * r - t.pt + i, 2 * c - t.pl + j, t.H, t.W, channels, sink),
                        channels);
        };
        add(0) += ga(i * 4 + 0);
        add(1) += ga(i * 4 + 1) - ga(i * 4 + 2) + ga(i * 4 + 3);
        add(2) += ga(i * 4 + 1) + ga(i * 4 + 2) - ga(i * 4 + 0);
        add(3) -= ga(i * 4 + 3);
      }
    }
  }
}

// Y = A^T M A, with A^T = [1 1 1 0; 0 1 -1 -1]: along a tile's rows
// b0 = m0 + m1 + m2, b1 = m1 - m2 - m3; then the same along its height.
template <class T>
void output(const SampleTiling& t, int64_t channels, const T* m, T* y, T* scratch) {
  T* sink = scratch + 8 * channels;
  const Rows<T> b{scratch, channels, channels};
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      const T* from = m + (r * t.cols + c) * channels;
      for (int i = 0; i < 4; ++i) {
        const ConstRow<T> m0(from + (i * 4 + 0) * t.point_stride, channels),
            m1(from + (i * 4 + 1) * t.point_stride, channels),
            m2(from + (i * 4 + 2) * t.point_stride, channels),
            m3(from + (i * 4 + 3) * t.point_stride, channels);
        b(i * 2 + 0) = m0 + m1 + m2;
        b(i * 2 + 1) = m1 - m2 - m3;
      }
      for (int j = 0; j < 2; ++j) {
        auto out = [&](int a) {
          return Row<T>(pixel(y, 2 * r + a, 2 * c + j, t.OH, t.OW, channels, sink), channels);
        };
        out(0) = b(j) + b(2 + j) + b(4 + j);
        out(1) = b(2 + j) - b(4 + j) - b(6 + j);
      }
    }
  }
}

// gM = A gY A^T (gY zero past the output): output's adjoint.
template <class T>
void output_grad(const SampleTiling& t, int64_t channels, const T* gy, T* gm, T* scratch) {
  T* zeros = scratch + 16 * channels;
  fill_zero(zeros, channels);
  const Rows<T> gb{scratch, channels, channels};
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      for (int j = 0; j < 2; ++j) {
        auto in = [&](int a) {
          return ConstRow<T>(
              pixel(gy, 2 * r + a, 2 * c + j, t.OH, t.OW, channels, static_cast<const T*>(zeros)),
              channels);
        };
        const ConstRow<T> y0 = in(0), y1 = in(1);
        gb(0 + j) = y0;
        gb(2 + j) = y0 + y1;
        gb(4 + j) = y0 - y1;
        gb(6 + j) = -y1;
      }
      const Rows<T> out{gm + (r * t.cols + c) * channels, t.point_stride, channels};
      for (int i = 0; i < 4; ++i) {
        out(i * 4 + 0) = gb(i * 2);
        out(i * 4 + 1) = gb(i * 2) + gb(i * 2 + 1);
        out(i * 4 + 2) = gb(i * 2) - gb(i * 2 + 1);
        out(i * 4 + 3) = -gb(i * 2 + 1);
      }
    }
  }
}

}  // namespace f2x2

namespace f4x4 {

// F(4, 3) at the points 0, 1, -1, 2, -2 and infinity (Lavin and Gray's
// matrices), each 1-D piece used along both axes of a 6x6 tile. The
// factored forms share subexpressions and keep every intermediate within
// the sum of its terms' magnitudes, which Note [Winograd convolution]'s
// bound assumes (their rounding depths are counted there):
//   u = G g      u0 = g0 / 4, u1,2 = -((g0 + g2) +- g1) / 6,
//                u3,4 = ((g0 + 4 g2) +- 2 g1) / 24, u5 = g2
//   G^T gu       g0 = (gu0 / 4 - (gu1 + gu2) / 6) + (gu3 + gu4) / 24,
//                g1 = (gu2 - gu1) / 6 + (gu3 - gu4) / 12,
//                g2 = ((gu3 + gu4) - (gu1 + gu2)) / 6 + gu5
//   v = B^T d    v0 = (d4 - d2) + 4 (d0 - d2), v1,2 = (d4 - 4 d2) +- (d3 - 4 d1),
//                v3,4 = (d4 - d2) +- 2 (d3 - d1), v5 = (d5 - d3) + 4 (d1 - d3)
//   B gv         its adjoint, statement by statement (b_adjoint)
//   y = A^T m    y0 = (m0 + (m1 + m2)) + (m3 + m4), y1 = (m1 - m2) + 2 (m3 - m4),
//                y2 = (m1 + m2) + 4 (m3 + m4), y3 = ((m1 - m2) + 8 (m3 - m4)) + m5
//   A gy         gm0 = gy0, gm1,2 = (gy0 + gy2) +- (gy1 + gy3),
//                gm3,4 = (gy0 + 4 gy2) +- (2 gy1 + 8 gy3), gm5 = gy3
// The divisions are products by the constants 1/6, 1/12 and 1/24 rounded
// to T (inexact; counted in the bound), the rest by powers of two and 5.

constexpr int kSide = 6;  // of a tile's transform; point (i, j) is i * 6 + j

// to[k] = base + (first + k * step) * stride for k < count: `count` rows of
// a transform laid out `stride` elements apart, such as one row (step 1)
// or one column (step: the row's length) of a tile's points.
template <class To, class From>
void strided_rows(To** to, int count, From* base, int first, int step, int64_t stride) {
  for (int k = 0; k < count; ++k) to[k] = base + (first + k * step) * stride;
}

// The 1-D pieces on rows of n channels: in[k] and out[k] point at row k.

// u = G g: three rows in, six out.
template <class T>
void g_forward(const T* const* in, T* const* out, int64_t n) {
  const T minus_sixth = T(-1) / 6, twenty_fourth = T(1) / 24;
  auto g = [&](int k) { return ConstRow<T>(in[k], n); };
  auto u = [&](int k) { return Row<T>(out[k], n); };
  u(0) = g(0) * T(0.25);
  u(1) = ((g(0) + g(2)) + g(1)) * minus_sixth;
  u(2) = ((g(0) + g(2)) - g(1)) * minus_sixth;
  u(3) = ((g(0) + g(2) * T(4)) + g(1) * T(2)) * twenty_fourth;
  u(4) = ((g(0) + g(2) * T(4)) - g(1) * T(2)) * twenty_fourth;
  u(5) = g(2);
}

// g = G^T gu: six rows in, three out; g_forward's adjoint.
template <class T>
void g_adjoint(const T* const* in, T* const* out, int64_t n) {
  const T sixth = T(1) / 6, twelfth = T(1) / 12, twenty_fourth = T(1) / 24;
  auto gu = [&](int k) { return ConstRow<T>(in[k], n); };
  auto g = [&](int k) { return Row<T>(out[k], n); };
  g(0) = (gu(0) * T(0.25) - (gu(1) + gu(2)) * sixth) + (gu(3) + gu(4)) * twenty_fourth;
  g(1) = (gu(2) - gu(1)) * sixth + (gu(3) - gu(4)) * twelfth;
  g(2) = ((gu(3) + gu(4)) - (gu(1) + gu(2))) * sixth + gu(5);
}

// U = G g G^T for one filter, a vector operation over its C channels: its
// (C, 3, 3) taps transposed to (9, C) rows, G along the height into six
// rows a tap column, then along the width straight into U's rows (each a
// contiguous row of C at u + xi * point_stride). Scratch: 27 C.
template <class T>
void filter(const T* w_f, int64_t channels, T* u, int64_t point_stride, T* scratch) {
  T* taps = scratch;                 // tap (i, j) of channel c at taps[(3 i + j) C + c]
  T* rows = scratch + 9 * channels;  // (G g)(i, j) at rows[(3 i + j) C + c]
  transpose(w_f, channels, 9, taps);
  const T* in[kSide];
  T* out[kSide];
  for (int j = 0; j < 3; ++j) {
    strided_rows(in, 3, taps, j, 3, channels);
    strided_rows(out, kSide, rows, j, 3, channels);
    g_forward(in, out, channels);
  }
  for (int i = 0; i < kSide; ++i) {
    strided_rows(in, 3, rows, 3 * i, 1, channels);
    strided_rows(out, kSide, u, i * kSide, 1, point_stride);
    g_forward(in, out, channels);
  }
}

// gw_f (C, 3, 3) = G^T gU G, filter's adjoint read backwards: along the
// width from gU's rows, along the height into (9, C) taps, transposed back.
template <class T>
void filter_grad(const T* gu, int64_t point_stride, int64_t channels, T* gw_f, T* scratch) {
  T* rows = scratch;                  // (gU G)(i, j) at rows[(3 i + j) C + c]
  T* taps = scratch + 18 * channels;  // gw tap (i, j) of channel c at taps[(3 i + j) C + c]
  const T* in[kSide];
  T* out[kSide];
  for (int i = 0; i < kSide; ++i) {
    strided_rows(in, kSide, gu, i * kSide, 1, point_stride);
    strided_rows(out, 3, rows, 3 * i, 1, channels);
    g_adjoint(in, out, channels);
  }
  for (int j = 0; j < 3; ++j) {
    strided_rows(in, kSide, rows, j, 3, channels);
    strided_rows(out, 3, taps, j, 3, channels);
    g_adjoint(in, out, channels);
  }
  transpose(taps, 9, channels, gw_f);
}

template <class T>
void b_forward(const T* const* in, T* const* out, int64_t n) {
  auto d = [&](int k) { return ConstRow<T>(in[k], n); };
  auto v = [&](int k) { return Row<T>(out[k], n); };
  v(0) = (d(4) - d(2)) + (d(0) - d(2)) * T(4);
  v(1) = (d(4) - d(2) * T(4)) + (d(3) - d(1) * T(4));
  v(2) = (d(4) - d(2) * T(4)) - (d(3) - d(1) * T(4));
  v(3) = (d(4) - d(2)) + (d(3) - d(1)) * T(2);
  v(4) = (d(4) - d(2)) - (d(3) - d(1)) * T(2);
  v(5) = (d(5) - d(3)) + (d(1) - d(3)) * T(4);
}

// b_forward's adjoint; kAdd adds to out instead of writing it. Read back
// from b_forward's shared terms e = d4 - d2, f = d0 - d2, p = d4 - 4 d2,
// q = d3 - 4 d1, r = 2 (d3 - d1), h = d5 - d3, k = d1 - d3: ge = gv0 + gv3
// + gv4, gf = 4 gv0, gp = gv1 + gv2, gq = gv1 - gv2, gr = gv3 - gv4,
// gh = gv5, gk = 4 gv5, then gd0 = gf, gd1 = gk - 4 gq - 2 gr,
// gd2 = -(ge + gf + 4 gp), gd3 = gq + 2 gr - (gh + gk), gd4 = ge + gp, gd5 = gh.
template <class T, bool kAdd>
void b_adjoint(const T* const* in, T* const* out, int64_t n) {
  auto v = [&](int k) { return ConstRow<T>(in[k], n); };
  auto put = [&](int k, const auto& value) {
    if constexpr (kAdd) {
      Row<T>(out[k], n) += value;
    } else {
      Row<T>(out[k], n) = value;
    }
  };
  put(0, v(0) * T(4));
  put(1, (v(5) * T(4) - (v(1) - v(2)) * T(4)) - (v(3) - v(4)) * T(2));
  put(2, -(((v(0) + (v(3) + v(4))) + v(0) * T(4)) + (v(1) + v(2)) * T(4)));
  put(3, ((v(1) - v(2)) + (v(3) - v(4)) * T(2)) - v(5) * T(5));
  put(4, (v(0) + (v(3) + v(4))) + (v(1) + v(2)));
  put(5, v(5));
}

template <class T>
void a_forward(const T* const* in, T* const* out, int64_t n) {
  auto m = [&](int k) { return ConstRow<T>(in[k], n); };
  auto y = [&](int k) { return Row<T>(out[k], n); };
  y(0) = (m(0) + (m(1) + m(2))) + (m(3) + m(4));
  y(1) = (m(1) - m(2)) + (m(3) - m(4)) * T(2);
  y(2) = (m(1) + m(2)) + (m(3) + m(4)) * T(4);
  y(3) = ((m(1) - m(2)) + (m(3) - m(4)) * T(8)) + m(5);
}

template <class T>
void a_adjoint(const T* const* in, T* const* out, int64_t n) {
  auto gy = [&](int k) { return ConstRow<T>(in[k], n); };
  auto gm = [&](int k) { return Row<T>(out[k], n); };
  gm(0) = gy(0);
  gm(1) = (gy(0) + gy(2)) + (gy(1) + gy(3));
  gm(2) = (gy(0) + gy(2)) - (gy(1) + gy(3));
  gm(3) = (gy(0) + gy(2) * T(4)) + (gy(1) * T(2) + gy(3) * T(8));
  gm(4) = (gy(0) + gy(2) * T(4)) - (gy(1) * T(2) + gy(3) * T(8));
  gm(5) = gy(3);
}

// V = B^T d B, one tile at a time: along each of the tile's rows into
// scratch, then along its height into V.
template <class T>
void input(const SampleTiling& t, int64_t channels, const T* x, T* v, T* scratch) {
  T* zeros = scratch + kSide * kSide * channels;
  fill_zero(zeros, channels);
  const T* in[kSide];
  T* out[kSide];
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      for (int i = 0; i < kSide; ++i) {
        for (int j = 0; j < kSide; ++j) {
          in[j] = pixel(x, 4 * r - t.pt + i, 4 * c - t.pl + j, t.H, t.W, channels,
                        static_cast<const T*>(zeros));
        }
        strided_rows(out, kSide, scratch, i * kSide, 1, channels);
        b_forward(in, out, channels);
      }
      T* tile = v + (r * t.cols + c) * channels;
      for (int j = 0; j < kSide; ++j) {
        strided_rows(in, kSide, scratch, j, kSide, channels);
        strided_rows(out, kSide, tile, j, kSide, t.point_stride);
        b_forward(in, out, channels);
      }
    }
  }
}

// input's adjoint: each tile's B gV B^T added to the pixels it read, tiles
// in order (neighbours share two rows or columns).
template <class T>
void input_grad(const SampleTiling& t, int64_t channels, const T* gv, T* gx, T* scratch) {
  T* sink = scratch + kSide * kSide * channels;
  const T* in[kSide];
  T* out[kSide];
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      const T* tile = gv + (r * t.cols + c) * channels;
      for (int j = 0; j < kSide; ++j) {
        strided_rows(in, kSide, tile, j, kSide, t.point_stride);
        strided_rows(out, kSide, scratch, j, kSide, channels);
        b_adjoint<T, false>(in, out, channels);
      }
      for (int i = 0; i < kSide; ++i) {
        strided_rows(in, kSide, scratch, i * kSide, 1, channels);
        for (int j = 0; j < kSide; ++j) {
          out[j] = pixel(gx, 4 * r - t.pt + i, 4 * c - t.pl + j, t.H, t.W, channels, sink);
        }
        b_adjoint<T, true>(in, out, channels);
      }
    }
  }
}

// Y = A^T M A: along each row of the tile's transform into scratch (6 x 4
// rows), then along its height into the outputs.
template <class T>
void output(const SampleTiling& t, int64_t channels, const T* m, T* y, T* scratch) {
  T* sink = scratch + kSide * kSide * channels;
  const T* in[kSide];
  T* out[kSide];
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      const T* tile = m + (r * t.cols + c) * channels;
      for (int i = 0; i < kSide; ++i) {
        strided_rows(in, kSide, tile, i * kSide, 1, t.point_stride);
        strided_rows(out, 4, scratch, i * 4, 1, channels);
        a_forward(in, out, channels);
      }
      for (int j = 0; j < 4; ++j) {
        strided_rows(in, kSide, scratch, j, 4, channels);
        for (int o = 0; o < 4; ++o) {
          out[o] = pixel(y, 4 * r + o, 4 * c + j, t.OH, t.OW, channels, sink);
        }
        a_forward(in, out, channels);
      }
    }
  }
}

// gM = A gY A^T (gY zero past the output): output's adjoint.
template <class T>
void output_grad(const SampleTiling& t, int64_t channels, const T* gy, T* gm, T* scratch) {
  T* zeros = scratch + kSide * kSide * channels;
  fill_zero(zeros, channels);
  const T* in[kSide];
  T* out[kSide];
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      for (int j = 0; j < 4; ++j) {
        for (int o = 0; o < 4; ++o) {
          in[o] =
              pixel(gy, 4 * r + o, 4 * c + j, t.OH, t.OW, channels, static_cast<const T*>(zeros));
        }
        strided_rows(out, kSide, scratch, j, 4, channels);
        a_adjoint(in, out, channels);
      }
      T* tile = gm + (r * t.cols + c) * channels;
      for (int i = 0; i < kSide; ++i) {
        strided_rows(in, 4, scratch, i * 4, 1, channels);
        strided_rows(out, kSide, tile, i * kSide, 1, t.point_stride);
        a_adjoint(in, out, channels);
      }
    }
  }
}

}  // namespace f4x4

template <class T>
TypedWinogradKernels<T> typed() {
  return {to_channels_last<T>,
          to_channels_first<T>,
          {f2x2::filter<T>, f2x2::filter_grad<T>, f2x2::input<T>, f2x2::input_grad<T>,
           f2x2::output<T>, f2x2::output_grad<T>},
          {f4x4::filter<T>, f4x4::filter_grad<T>, f4x4::input<T>, f4x4::input_grad<T>,
           f4x4::output<T>, f4x4::output_grad<T>}};
}

}  // namespace

const WinogradKernelTable& table() {
  static const WinogradKernelTable kTable{typed<float>(), typed<double>()};
  return kTable;
}

}  // namespace npdl::math::winograd_level::NPDL_KERNEL_LEVEL
