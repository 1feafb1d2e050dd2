#pragma once
// The transforms of Winograd's F(2x2, 3x3) and F(4x4, 3x3) (Note [Winograd
// convolution] in tensor/winograd.cpp), compiled once per instruction-set
// level (tensor/detail/winograd_level.cpp; Note [Kernels per instruction
// set] in tensor/kernels/kernels.hpp). They work on one sample with its
// channels last, so that every step is a vector operation over the
// channels, as wide as the CPU allows, whatever the plane's size.
// tensor/winograd.cpp plans the groups, shares the work among threads and
// takes the products. Raw pointers, counts and plain structs only, so that
// nothing here instantiates a template (or emits an inline function) in a
// level's object. The arithmetic is adds, subtractions and products by
// constants (no contraction into FMAs at any level): every level gives the
// same bits.
#include <cstdint>

namespace npdl::math::winograd_level {

/// One sample's tiles for F(m x m, 3x3). Tile (r, t) reads input rows
/// m r - pt .. m r - pt + m + 1 and columns m t - pl .. m t - pl + m + 1
/// (zero outside the input) and gives outputs (m r .. m r + m - 1,
/// m t .. m t + m - 1), dropped past (OH, OW). Tile p = r * cols + t of a
/// transform is a row of `channels` elements at out + xi * point_stride +
/// p * channels for point xi = (m + 2) i + j.
struct SampleTiling {
  std::int64_t H, W, OH, OW, pt, pl;  // input, output, padding top and left
  std::int64_t rows, cols;            // of tiles: ceil(OH / m), ceil(OW / m)
  std::int64_t point_stride;          // elements between two points' matrices
};

/// The transforms of one tiling, F(m x m, 3x3) with (m + 2)^2 points.
/// filter's and filter_grad's scratch holds points * C elements, the
/// others' (points + 1) * channels.
template <class T>
struct TileTransforms {
  /// U = G g G^T for filter f: w_f is its (C, 3, 3) filters, point xi of
  /// channel c goes to u[xi * point_stride + c].
  void (*filter)(const T* w_f, std::int64_t channels, T* u, std::int64_t point_stride, T* scratch);
  /// gw_f (C, 3, 3) = G^T gU G, gU's point xi of channel c at
  /// gu[xi * point_stride + c]: the adjoint of `filter`.
  void (*filter_grad)(const T* gu, std::int64_t point_stride, std::int64_t channels, T* gw_f,
                      T* scratch);
  /// V = B^T d B for every tile of an (H, W, channels) input.
  void (*input)(const SampleTiling& t, std::int64_t channels, const T* x, T* v, T* scratch);
  /// Adds B gV B^T, tile by tile, to an (H, W, channels) gradient: `input`'s adjoint.
  void (*input_grad)(const SampleTiling& t, std::int64_t channels, const T* gv, T* gx, T* scratch);
  /// The (OH, OW, channels) output A^T M A.
  void (*output)(const SampleTiling& t, std::int64_t channels, const T* m, T* y, T* scratch);
  /// gM = A gY A^T from an (OH, OW, channels) gY: `output`'s adjoint.
  void (*output_grad)(const SampleTiling& t, std::int64_t channels, const T* gy, T* gm, T* scratch);
};

template <class T>
struct TypedWinogradKernels {
  /// (channels, pixels) -> (pixels, channels), and back.
  void (*to_channels_last)(const T* in, std::int64_t channels, std::int64_t pixels, T* out);
  void (*to_channels_first)(const T* in, std::int64_t channels, std::int64_t pixels, T* out);
  TileTransforms<T> f2x2, f4x4;
};

struct WinogradKernelTable {
  TypedWinogradKernels<float> f32;
  TypedWinogradKernels<double> f64;
};

}  // namespace npdl::math::winograd_level
