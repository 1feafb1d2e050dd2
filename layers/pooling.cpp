#include "layers/pooling.hpp"

#include "ops/conv.hpp"
#include "ops/ops.hpp"

namespace npdl::layers {

Pooling::Pooling(Size2 pool_size, std::optional<Size2> stride)
    : pool_size_(pool_size), stride_(stride.value_or(pool_size)) {
  if (pool_size_.h < 1 || pool_size_.w < 1 || stride_.h < 1 || stride_.w < 1) {
    throw ValueError("pooling expects pool_size and stride >= 1, got pool_size (" +
                     std::to_string(pool_size_.h) + ", " + std::to_string(pool_size_.w) +
                     ") and stride (" + std::to_string(stride_.h) + ", " +
                     std::to_string(stride_.w) + ")");
  }
}

void Pooling::build(const Shape& input_shape) {
  if (input_shape.size() != 3) {
    throw ShapeError(name() + " expects samples of shape (channels, height, width), got " +
                     to_string(input_shape));
  }
  const Size2 out = math::window_output_size({input_shape[1], input_shape[2]}, pool_size_, stride_,
                                             {}, name().c_str());
  output_shape_ = {input_shape[0], out.h, out.w};
}

Var MeanPooling::apply(const Var& input, bool /*training*/) {
  ensure_connected(input.shape());
  return ops::mean_pool2d(input, pool_size(), stride());
}

Var MaxPooling::apply(const Var& input, bool /*training*/) {
  ensure_connected(input.shape());
  return ops::max_pool2d(input, pool_size(), stride());
}

}  // namespace npdl::layers
