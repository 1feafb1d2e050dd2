#pragma once
// Ops for sequences: rows of a table by index (embeddings), a range of an
// axis and its way back, concatenation along an axis, and a masked choice.
// Each is a primitive with its VJP written with these ops, so every order
// of derivative is available (Note [Differentiable VJPs] in
// autodiff/graph.hpp); select and stack are compositions of them.
//
// Indices are int32 or int64 tensors (Tensor::from_indices, or a .npy file
// read with io::NpyKind::Indices). They are arguments, not graph values:
// they get no gradient. An index outside its range is an IndexError naming
// the index, where it sits and the bound; an index tensor of a floating
// dtype is a DTypeError. Nothing is recorded on a failed call.
#include <vector>

#include "autodiff/graph.hpp"

namespace npdl::ops {

/// Rows of `table` (V, ...) picked by `indices` (any shape, values in
/// [0, V)): the result has shape indices.shape + table.shape[1:]. The VJP
/// sums the gradients of repeated indices into their row
/// (embedding_backward).
Var embedding(const Var& table, const Tensor& indices);
/// embedding's VJP as a primitive: the rows of `g` (indices.shape + row
/// shape) added into a zero table of `rows` rows, repeated indices
/// accumulating. Its VJP is embedding: the two are adjoint.
Var embedding_backward(const Var& g, const Tensor& indices, std::int64_t rows);

/// Positions [begin, end) of `axis` (0 <= begin <= end <= size; no negative
/// positions), the other axes whole.
Var slice(const Var& a, int axis, std::int64_t begin, std::int64_t end);
/// slice's VJP as a primitive: `g` placed at positions [begin, begin +
/// g's size) of `axis` in zeros of `shape`. Its VJP is slice.
Var slice_backward(const Var& g, const Shape& shape, int axis, std::int64_t begin);
/// Position `index` of `axis`, the axis removed: a time step of (N, T, F).
Var select(const Var& a, int axis, std::int64_t index);

/// The values joined along `axis`; every other axis must agree, and so must
/// the dtypes. The VJP slices the gradient back into pieces.
Var concat(const std::vector<Var>& values, int axis);
/// The values, of one shape, stacked along a new `axis` (0 .. rank).
Var stack(const std::vector<Var>& values, int axis);

/// a where `mask` is non-zero, b elsewhere, all three broadcast together.
/// The mask is a constant (any dtype); the VJP routes g to a where it is
/// set and to b elsewhere.
Var where(const Tensor& mask, const Var& a, const Var& b);

}  // namespace npdl::ops
