// Winograd F(2x2, 3x3) transforms for one instruction-set level
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

template <class T>
TypedWinogradKernels<T> typed() {
  return {
      to_channels_last<T>, to_channels_first<T>, filter<T>, filter_grad<T>, input<T>, input_grad<T>,
      output<T>,           output_grad<T>};
}

}  // namespace

const WinogradKernelTable& table() {
  static const WinogradKernelTable kTable{typed<float>(), typed<double>()};
  return kTable;
}

}  // namespace npdl::math::winograd_level::NPDL_KERNEL_LEVEL
