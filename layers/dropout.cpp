#include "layers/dropout.hpp"

#include <cmath>

#include "ops/ops.hpp"
#include "tensor/random.hpp"

namespace npdl::layers {

Dropout::Dropout(double p, std::optional<std::uint64_t> seed) : p_(p) {
  if (!(p >= 0.0 && p < 1.0)) {
    throw ValueError("Dropout: p (the fraction dropped) must lie in [0, 1), got " +
                     std::to_string(p));
  }
  if (seed) own_generator_.emplace(*seed);
}

Tensor Dropout::draw_mask(const Shape& shape, DType dtype) {
  std::mt19937_64& rng = own_generator_ ? *own_generator_ : generator();
  std::bernoulli_distribution keep(1.0 - p_);
  const double kept_scale = 1.0 / (1.0 - p_);
  Tensor mask(shape, dtype);
  dispatch(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* m = mask.data<T>();
    for (std::int64_t i = 0; i < mask.size(); ++i) m[i] = keep(rng) ? T(kept_scale) : T(0);
  });
  return mask;
}

Var Dropout::apply(const Var& input, bool training) {
  ensure_connected(input.shape());
  if (!training || p_ == 0.0) return input;
  // The mask is a constant of the graph: mul's VJP multiplies the gradient
  // by the same mask, which is dropout's backward.
  return input * Var(draw_mask(input.shape(), input.dtype()));
}

}  // namespace npdl::layers
