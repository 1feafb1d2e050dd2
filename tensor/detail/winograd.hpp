#pragma once
// Winograd's minimal filtering F(2x2, 3x3) and F(4x4, 3x3) for conv2d with
// 3x3 filters at stride 1, and its two VJPs (Note [Winograd convolution] in
// tensor/winograd.cpp). Internal to tensor/: conv2d, conv2d_backward,
// conv2d_input_grad and conv2d_weight_grad call it for the geometries
// winograd_applies to, so a convolution's value and its gradients always
// come from the same algorithm.
#include "tensor/detail/conv_geometry.hpp"

namespace npdl::math::detail {

/// Whether conv2d of geometry g runs through Winograd's minimal filtering:
/// 3x3 filters, stride 1, at least kWinogradMinChannels input channels and
/// filters. Decided by the shapes alone, so results are the same bit for
/// bit at any thread count.
bool winograd_applies(const ConvGeometry& g);
inline constexpr std::int64_t kWinogradMinChannels = 16;

/// The outputs a tile side, m, of the F(m x m, 3x3) that a geometry
/// winograd_applies to takes: 4 where F(4x4, 3x3) needs fewer
/// multiplications than F(2x2, 3x3) for the plane (36 a tile of 4x4 outputs
/// against 16 a tile of 2x2, partial tiles at the edges counted whole),
/// else 2.
std::int64_t winograd_tile_outputs(const ConvGeometry& g);

/// y = conv2d(x, w), each sample's outputs then finished by `stage` (its
/// bias and relu), for a geometry winograd_applies to. Every pointer is a
/// contiguous row-major tensor: x (N, C, H, W), w (F, C, 3, 3), the bias
/// (F), y (N, F, OH, OW), every element of y written.
template <class T>
void winograd_forward(const ConvGeometry& g, const T* x, const T* w, const OutputStage<T>& stage,
                      T* y);

/// conv2d's VJPs for the upstream gradient gy (N, F, OH, OW): gx (x's
/// shape, every element written) when gx is not null, which needs w; gw
/// (w's shape) when gw is not null, which needs x. Each result is the same
/// bit for bit whether the other is computed with it or not.
template <class T>
void winograd_backward(const ConvGeometry& g, const T* gy, const T* x, const T* w, T* gx, T* gw);

}  // namespace npdl::math::detail
