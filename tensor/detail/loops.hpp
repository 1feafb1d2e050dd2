#pragma once
// Note [Row loops]
// Every kernel that mixes shapes (broadcasting, reductions, transposes) is
// described as K operands walked over one iteration shape, each with its own
// element strides (0 along an axis it is broadcast over or reduced over).
// `make_loop` drops size-1 axes and merges adjacent axes that are contiguous
// for every operand, so that (N, C, H, W) against (1, C, 1, 1) becomes
// N*C rows of H*W elements. `for_each_row` then calls a kernel once per row
// with each operand's offset and the row length: the index arithmetic runs
// once per row, and the row itself is a vectorised Eigen expression.
#include <algorithm>
#include <array>
#include <cstdint>

#include "tensor/shape.hpp"

namespace npdl::detail {

using Strides = boost::container::small_vector<std::int64_t, 6>;

template <int K>
struct Loop {
  Shape size;                     // iteration shape, innermost axis last
  std::array<Strides, K> stride;  // per operand, per axis, in elements
  std::int64_t inner() const { return size.empty() ? 1 : size.back(); }
  std::int64_t inner_stride(int k) const { return size.empty() ? 0 : stride[k].back(); }
  std::int64_t rows() const {
    std::int64_t r = 1;
    for (std::size_t d = 0; d + 1 < size.size(); ++d) r *= size[d];
    return r;
  }
};

/// Row-major strides of `shape` aligned right to a shape of rank `rank`, with
/// stride 0 where `shape` has size 1 or no axis (it is broadcast there).
inline Strides broadcast_strides(const Shape& shape, std::size_t rank) {
  Strides s(rank, 0);
  std::int64_t step = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const std::size_t src = shape.size() - 1 - i;
    const std::size_t dst = rank - 1 - i;
    s[dst] = shape[src] == 1 ? 0 : step;
    step *= shape[src];
  }
  return s;
}

/// Builds the coalesced loop over `size` for operands with the given strides.
template <int K>
Loop<K> make_loop(const Shape& size, const std::array<Strides, K>& strides) {
  Loop<K> loop;
  for (std::size_t d = 0; d < size.size(); ++d) {
    if (size[d] == 1) continue;
    const bool merge = !loop.size.empty() && [&] {
      for (int k = 0; k < K; ++k) {
        if (loop.stride[k].back() != strides[k][d] * size[d]) return false;
      }
      return true;
    }();
    if (merge) {
      loop.size.back() *= size[d];
      for (int k = 0; k < K; ++k) loop.stride[k].back() = strides[k][d];
    } else {
      loop.size.push_back(size[d]);
      for (int k = 0; k < K; ++k) loop.stride[k].push_back(strides[k][d]);
    }
  }
  return loop;
}

/// Loop over `out_shape` for operands broadcast to it (operand k has shape
/// shapes[k], aligned right).
template <int K>
Loop<K> make_broadcast_loop(const Shape& out_shape, const std::array<const Shape*, K>& shapes) {
  std::array<Strides, K> strides;
  for (int k = 0; k < K; ++k) strides[k] = broadcast_strides(*shapes[k], out_shape.size());
  return make_loop<K>(out_shape, strides);
}

/// Rows per parallel chunk that make about `grain` elements.
template <int K>
std::int64_t rows_per_grain(const Loop<K>& loop, std::int64_t grain) {
  return std::max<std::int64_t>(1, grain / std::max<std::int64_t>(loop.inner(), 1));
}

/// Calls fn(offsets, n) for rows [row_begin, row_end) of `loop`; nothing for
/// an empty iteration shape (a size-0 axis anywhere).
template <int K, class Fn>
void for_each_row(const Loop<K>& loop, std::int64_t row_begin, std::int64_t row_end, Fn&& fn) {
  if (row_begin >= row_end || loop.inner() == 0 || loop.rows() == 0) return;
  const int outer = static_cast<int>(loop.size.size()) - 1;
  std::array<std::int64_t, K> off{};
  if (outer <= 0) {
    if (row_begin < row_end) fn(off, loop.inner());
    return;
  }
  Strides idx(outer, 0);
  std::int64_t r = row_begin;
  for (int d = outer - 1; d >= 0; --d) {
    idx[d] = r % loop.size[d];
    r /= loop.size[d];
    for (int k = 0; k < K; ++k) off[k] += idx[d] * loop.stride[k][d];
  }
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    fn(off, loop.inner());
    for (int d = outer - 1; d >= 0; --d) {
      for (int k = 0; k < K; ++k) off[k] += loop.stride[k][d];
      if (++idx[d] < loop.size[d]) break;
      for (int k = 0; k < K; ++k) off[k] -= loop.stride[k][d] * loop.size[d];
      idx[d] = 0;
    }
  }
}

template <int K, class Fn>
void for_each_row(const Loop<K>& loop, Fn&& fn) {
  for_each_row(loop, 0, loop.rows(), std::forward<Fn>(fn));
}

}  // namespace npdl::detail
