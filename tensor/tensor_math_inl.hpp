#pragma once
// Template definitions of tensor_math.hpp.
#include <Eigen/Core>

#include "tensor/parallel.hpp"

namespace npdl::math {

template <class F>
Tensor binary_map(const Tensor& a, const Tensor& b, const char* name, F f) {
  check_same_dtype(a, b, name);
  check_same_shape(a.shape(), b.shape(), name);
  Tensor out(a.shape(), a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    const T* x = a.data<T>();
    const T* y = b.data<T>();
    T* o = out.data<T>();
    parallel_for(a.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      Eigen::Map<Arr>(o + lo, hi - lo) =
          f(Eigen::Map<const Arr>(x + lo, hi - lo), Eigen::Map<const Arr>(y + lo, hi - lo));
    });
  });
  return out;
}

}  // namespace npdl::math
