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
  if (input_shape.size() != 3 && input_shape.size() != 2) {
    throw ShapeError(name() +
                     " expects samples of shape (channels, height, width) or (height, width), "
                     "got " +
                     to_string(input_shape));
  }
  const std::size_t h = input_shape.size() - 2;
  const Size2 out = math::window_output_size({input_shape[h], input_shape[h + 1]}, pool_size_,
                                             stride_, {}, name().c_str());
  output_shape_ =
      input_shape.size() == 3 ? Shape{input_shape[0], out.h, out.w} : Shape{out.h, out.w};
}

Var Pooling::pool(const Var& input, Var (*pool2d)(const Var&, Size2, Size2)) {
  ensure_connected(input.shape());
  if (input.rank() == 4) return pool2d(input, pool_size_, stride_);
  // (N, H, W), npdl's 3-D input: one channel, pooled as (N, 1, H, W).
  const Shape& s = input.shape();
  const Var pooled = pool2d(ops::reshape(input, {s[0], 1, s[1], s[2]}), pool_size_, stride_);
  return ops::reshape(pooled, {s[0], output_shape_[0], output_shape_[1]});
}

Var MeanPooling::apply(const Var& input, bool /*training*/) {
  return pool(input, ops::mean_pool2d);
}

Var MaxPooling::apply(const Var& input, bool /*training*/) { return pool(input, ops::max_pool2d); }

}  // namespace npdl::layers
