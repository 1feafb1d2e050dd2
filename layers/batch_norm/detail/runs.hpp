#pragma once
// The walk over batch norm's (outer, features, inner) view that both the
// per-level kernels (layers/batch_norm/detail/level.cpp) and the baseline code
// share. It includes nothing but <cstdint>: detail/level.cpp is compiled
// once per instruction-set level and must instantiate no template outside
// its own namespaces (Note [Kernels per instruction set] in
// tensor/kernels/kernels.hpp).
#include <cstdint>

namespace npdl::layers::bn_internal {

// Rows of the (outer, features) view processed per block when inner == 1:
// a block of rows stays in cache between the two reads.
constexpr std::int64_t kRowBlock = 32;

// Elements of a segment reduced in the input's own dtype before the result
// joins the float64 accumulators: short enough that float32 sums keep their
// digits, long enough that the vectorised sum dominates.
constexpr std::int64_t kSegmentBlock = 4096;

// Calls fn(c, offset, n) for the blocks of features [c0, c1), in memory
// order. `View` has the members outer, features and inner.
template <class View, class Fn>
void for_each_run(const View& v, std::int64_t c0, std::int64_t c1, Fn&& fn) {
  for (std::int64_t o = 0; o < v.outer; ++o) {
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t base = (o * v.features + c) * v.inner;
      for (std::int64_t b = 0; b < v.inner; b += kSegmentBlock) {
        const std::int64_t left = v.inner - b;
        fn(c, base + b, left < kSegmentBlock ? left : kSegmentBlock);
      }
    }
  }
}

}  // namespace npdl::layers::bn_internal
