// Sequence ops: forward, VJP, formula text and catalogue entries.
#include "ops/sequence.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "autodiff/catalogue.hpp"
#include "ops/detail/entries.hpp"
#include "ops/detail/record.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops {
namespace m = npdl::math;

namespace info {
const OpInfo kEmbedding{"embedding", "y[i..., :] = table[indices[i...], :]",
                        "gtable = embedding_backward(g): g's rows added into their index's row "
                        "(repeated indices accumulate)"};
const OpInfo kEmbeddingBackward{"embedding_backward",
                                "gt = zeros(rows, ...); gt[indices[i...], :] += g[i..., :]",
                                "gg = embedding(u): the upstream read at the same rows"};
const OpInfo kSlice{"slice", "y = a[..., begin:end, ...] along axis",
                    "ga = slice_backward(g): g placed at begin:end in zeros of a's shape"};
const OpInfo kSliceBackward{"slice_backward", "y = zeros(shape); y[..., begin:begin+n, ...] = g",
                            "gg = slice(u, begin, begin + n): the two are adjoint"};
const OpInfo kConcat{"concat", "y = [a_1, a_2, ...] joined along axis",
                     "ga_i = slice(g, offset_i, offset_i + size_i) along axis"};
const OpInfo kWhere{"where", "y = a where mask != 0, b elsewhere (broadcast)",
                    "ga = sum_to(g * mask), gb = sum_to(g * (1 - mask))   (mask a constant)"};
}  // namespace info

namespace {

using detail::record;

// Indices checked once, shared by an op and the VJPs it makes.
struct IndexList {
  Shape shape;
  std::vector<std::int64_t> values;
};
using IndexListPtr = std::shared_ptr<const IndexList>;

Shape unravel(std::int64_t flat, const Shape& shape) {
  Shape index(shape.size());
  for (std::size_t k = shape.size(); k-- > 0;) {
    index[k] = shape[k] == 0 ? 0 : flat % shape[k];
    flat = shape[k] == 0 ? 0 : flat / shape[k];
  }
  return index;
}

// The indices as int64, each in [0, rows); `op` names the caller.
IndexListPtr checked_indices(const Tensor& indices, std::int64_t rows, const char* op) {
  indices.check_defined();
  if (is_floating(indices.dtype())) {
    throw DTypeError(std::string(op) + ": expected indices of int32 or int64, got " +
                     to_string(indices.dtype()) + " (convert with astype(DType::Int64))");
  }
  auto list = std::make_shared<IndexList>();
  list->shape = indices.shape();
  list->values.resize(static_cast<std::size_t>(indices.size()));
  dispatch_any(indices.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* v = indices.data<T>();
    for (std::int64_t i = 0; i < indices.size(); ++i) {
      list->values[i] = static_cast<std::int64_t>(v[i]);
    }
  });
  for (std::size_t i = 0; i < list->values.size(); ++i) {
    const std::int64_t v = list->values[i];
    if (v < 0 || v >= rows) {
      throw IndexError(std::string(op) + ": index " + std::to_string(v) + " at position " +
                       to_string(unravel(static_cast<std::int64_t>(i), list->shape)) +
                       " is out of range for " + std::to_string(rows) + " rows: expected [0, " +
                       std::to_string(rows) + ")");
    }
  }
  return list;
}

Shape joined(const Shape& head, Shape::const_iterator tail_begin, Shape::const_iterator tail_end) {
  Shape s = head;
  s.insert(s.end(), tail_begin, tail_end);
  return s;
}

Var scatter_rows(const Var& g, const IndexListPtr& list, std::int64_t rows);

Var gather_rows(const Var& table, const IndexListPtr& list) {
  const Shape& ts = table.shape();
  const std::int64_t width = numel(Shape(ts.begin() + 1, ts.end()));
  Tensor y(joined(list->shape, ts.begin() + 1, ts.end()), table.dtype());
  dispatch(table.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* t = table.value().data<T>();
    T* out = y.data<T>();
    for (std::size_t k = 0; k < list->values.size(); ++k) {
      std::copy_n(t + list->values[k] * width, width, out + static_cast<std::int64_t>(k) * width);
    }
  });
  const std::int64_t rows = ts[0];
  return record(
      info::kEmbedding, {&table}, std::move(y), {},
      [list, rows](const VjpArgs& c) -> Vars { return {scatter_rows(c.grad, list, rows)}; });
}

Var scatter_rows(const Var& g, const IndexListPtr& list, std::int64_t rows) {
  const Shape& gs = g.shape();
  const auto row_begin = gs.begin() + static_cast<std::ptrdiff_t>(list->shape.size());
  const std::int64_t width = numel(Shape(row_begin, gs.end()));
  Tensor out = Tensor::zeros(joined({rows}, row_begin, gs.end()), g.dtype());
  dispatch(g.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* src = g.value().data<T>();
    T* dst = out.data<T>();
    // In index order: repeated indices sum the same way on every run.
    for (std::size_t k = 0; k < list->values.size(); ++k) {
      T* row = dst + list->values[k] * width;
      const T* from = src + static_cast<std::int64_t>(k) * width;
      for (std::int64_t j = 0; j < width; ++j) row[j] += from[j];
    }
  });
  return record(info::kEmbeddingBackward, {&g}, std::move(out), {},
                [list](const VjpArgs& c) -> Vars { return {gather_rows(c.grad, list)}; });
}

// (outer, n, inner) of `shape` around `axis`.
struct AxisView {
  std::int64_t outer = 1, n = 1, inner = 1;
};
AxisView view_around(const Shape& shape, int axis) {
  AxisView v;
  for (int k = 0; k < axis; ++k) v.outer *= shape[k];
  v.n = shape[axis];
  for (std::size_t k = axis + 1; k < shape.size(); ++k) v.inner *= shape[k];
  return v;
}

// Copies `count` positions of every (outer) block: from `src` at `from`
// (of src_n positions) to `dst` at `to` (of dst_n positions).
void copy_positions(const Tensor& src, std::int64_t src_n, std::int64_t from, Tensor& dst,
                    std::int64_t dst_n, std::int64_t to, std::int64_t count, const AxisView& v) {
  if (count == 0 || v.inner == 0) return;
  const std::size_t bytes = element_size(src.dtype());
  const char* s = static_cast<const char*>(src.raw_data());
  char* d = static_cast<char*>(dst.raw_data());
  for (std::int64_t o = 0; o < v.outer; ++o) {
    std::memcpy(d + ((o * dst_n + to) * v.inner) * bytes,
                s + ((o * src_n + from) * v.inner) * bytes,
                static_cast<std::size_t>(count * v.inner) * bytes);
  }
}

void check_range(std::int64_t begin, std::int64_t end, std::int64_t n, int axis, const char* op) {
  if (begin < 0 || begin > end || end > n) {
    throw IndexError(std::string(op) + ": positions [" + std::to_string(begin) + ", " +
                     std::to_string(end) + ") of axis " + std::to_string(axis) + " of size " +
                     std::to_string(n) + ": expected 0 <= begin <= end <= " + std::to_string(n));
  }
}

}  // namespace

Var embedding(const Var& table, const Tensor& indices) {
  if (table.rank() < 1) {
    throw ShapeError("embedding: expected a table of rank >= 1 (rows first), got shape " +
                     to_string(table.shape()));
  }
  check_floating(table.dtype(), "embedding's table");
  return gather_rows(table, checked_indices(indices, table.shape()[0], "embedding"));
}

Var embedding_backward(const Var& g, const Tensor& indices, std::int64_t rows) {
  if (rows < 0)
    throw ValueError("embedding_backward: expected rows >= 0, got " + std::to_string(rows));
  check_floating(g.dtype(), "embedding_backward's gradient");
  const IndexListPtr list = checked_indices(indices, rows, "embedding_backward");
  const Shape& gs = g.shape();
  if (gs.size() < list->shape.size() ||
      !std::equal(list->shape.begin(), list->shape.end(), gs.begin())) {
    throw ShapeError(
        "embedding_backward: expected a gradient whose shape starts with the indices' " +
        to_string(list->shape) + ", got " + to_string(gs));
  }
  return scatter_rows(g, list, rows);
}

Var slice(const Var& a, int axis_in, std::int64_t begin, std::int64_t end) {
  const int axis = normalize_axis(axis_in, a.rank());
  const AxisView v = view_around(a.shape(), axis);
  check_range(begin, end, v.n, axis, "slice");
  Shape shape = a.shape();
  shape[axis] = end - begin;
  Tensor y(shape, a.dtype());
  copy_positions(a.value(), v.n, begin, y, end - begin, 0, end - begin, v);
  const Shape input = a.shape();
  return record(info::kSlice, {&a}, std::move(y), {},
                [input, axis, begin](const VjpArgs& c) -> Vars {
                  return {slice_backward(c.grad, input, axis, begin)};
                });
}

Var slice_backward(const Var& g, const Shape& shape, int axis_in, std::int64_t begin) {
  const int axis = normalize_axis(axis_in, static_cast<int>(shape.size()));
  numel(shape);  // sizes >= 0 whose product fits
  Shape expected = shape;
  if (g.rank() == static_cast<int>(shape.size())) expected[axis] = g.shape()[axis];
  check_same_shape(expected, g.shape(),
                   "slice_backward: the gradient (the input's shape but along axis " +
                       std::to_string(axis) + ")");
  const std::int64_t count = g.shape()[axis];
  check_range(begin, begin + count, shape[axis], axis, "slice_backward");
  Tensor y = Tensor::zeros(shape, g.dtype());
  const AxisView v = view_around(shape, axis);
  copy_positions(g.value(), count, 0, y, v.n, begin, count, v);
  return record(info::kSliceBackward, {&g}, std::move(y), {},
                [axis, begin, count](const VjpArgs& c) -> Vars {
                  return {slice(c.grad, axis, begin, begin + count)};
                });
}

Var select(const Var& a, int axis_in, std::int64_t index) {
  const int axis = normalize_axis(axis_in, a.rank());
  const std::int64_t n = a.shape()[axis];
  if (index < 0 || index >= n) {
    throw IndexError("select: position " + std::to_string(index) + " of axis " +
                     std::to_string(axis) + " of size " + std::to_string(n) + ": expected [0, " +
                     std::to_string(n) + ")");
  }
  Shape shape = a.shape();
  shape.erase(shape.begin() + axis);
  return reshape(slice(a, axis, index, index + 1), shape);
}

Var concat(const std::vector<Var>& values, int axis_in) {
  if (values.empty()) throw ValueError("concat: expected at least one value, got none");
  const Var& first = values.front();
  const int axis = normalize_axis(axis_in, first.rank());
  Shape shape = first.shape();
  std::vector<std::int64_t> sizes;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const Var& v = values[i];
    check_same_dtype(first.value(), v.value(), "concat");
    Shape expected = first.shape();
    if (v.rank() == first.rank()) expected[axis] = v.shape()[axis];
    check_same_shape(expected, v.shape(),
                     "concat: value " + std::to_string(i) + " (the first's shape but along axis " +
                         std::to_string(axis) + ")");
    sizes.push_back(v.shape()[axis]);
    if (i > 0 && __builtin_add_overflow(shape[axis], sizes.back(), &shape[axis])) {
      throw ShapeError("concat: the values' sizes along axis " + std::to_string(axis) +
                       " add up to more than 2^63 - 1 (value " + std::to_string(i) + " of size " +
                       std::to_string(sizes.back()) + ")");
    }
  }
  numel(shape);  // the joined size must fit
  Tensor y(shape, first.dtype());
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    copy_positions(values[i].value(), sizes[i], 0, y, shape[axis], offset, sizes[i],
                   view_around(values[i].shape(), axis));
    offset += sizes[i];
  }
  std::vector<const Var*> inputs;
  for (const Var& v : values) inputs.push_back(&v);
  Graph* graph = common_graph(inputs, info::kConcat.name);
  if (graph == nullptr) return Var(std::move(y));
  return graph->record(info::kConcat, inputs, std::move(y), {},
                       [axis, sizes](const VjpArgs& c) -> Vars {
                         Vars grads;
                         std::int64_t at = 0;
                         for (std::size_t i = 0; i < sizes.size(); ++i) {
                           grads.push_back(c.needs_input_grad(static_cast<int>(i))
                                               ? slice(c.grad, axis, at, at + sizes[i])
                                               : Var());
                           at += sizes[i];
                         }
                         return grads;
                       });
}

Var stack(const std::vector<Var>& values, int axis_in) {
  if (values.empty()) throw ValueError("stack: expected at least one value, got none");
  const int axis = normalize_axis(axis_in, values.front().rank() + 1);
  for (std::size_t i = 0; i < values.size(); ++i) {  // before anything records
    check_same_shape(values.front().shape(), values[i].shape(),
                     "stack: value " + std::to_string(i) + " (the first's shape)");
  }
  Shape lifted_shape = values.front().shape();
  lifted_shape.insert(lifted_shape.begin() + axis, 1);
  std::vector<Var> lifted;
  for (const Var& v : values) lifted.push_back(reshape(v, lifted_shape));
  return concat(lifted, axis);
}

Var where(const Tensor& mask, const Var& a, const Var& b) {
  mask.check_defined();
  check_same_dtype(a.value(), b.value(), "where");
  check_floating(a.dtype(), "where");
  const Shape shape = broadcast_shapes(broadcast_shapes(mask.shape(), a.shape()), b.shape());
  // The mask as 1 and 0 in a's dtype (NaN counts as set, as it is non-zero).
  Tensor set = Tensor(mask.shape(), a.dtype());
  dispatch_any(mask.dtype(), [&](auto zero) {
    using M = decltype(zero);
    const M* src = mask.data<M>();
    dispatch(a.dtype(), [&](auto z) {
      using T = decltype(z);
      T* dst = set.data<T>();
      for (std::int64_t i = 0; i < mask.size(); ++i) dst[i] = src[i] != M(0) ? T(1) : T(0);
    });
  });
  const Tensor on = m::broadcast_to(set, shape);
  const Tensor off = m::add_scalar(m::neg(on), 1.0);
  const Tensor av = m::broadcast_to(a.value(), shape), bv = m::broadcast_to(b.value(), shape);
  Tensor y(shape, a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* s = on.data<T>();
    const T* x = av.data<T>();
    const T* z = bv.data<T>();
    T* out = y.data<T>();
    for (std::int64_t i = 0; i < y.size(); ++i) out[i] = s[i] != T(0) ? x[i] : z[i];
  });
  return record(info::kWhere, {&a, &b}, std::move(y), {}, [on, off](const VjpArgs& c) -> Vars {
    return {c.needs_input_grad(0) ? sum_to(mul(c.grad, Var(on)), c.input_shapes[0]) : Var(),
            c.needs_input_grad(1) ? sum_to(mul(c.grad, Var(off)), c.input_shapes[1]) : Var()};
  });
}

// Catalogue entries (Note [One entry per primitive] in autodiff/catalogue.hpp).
// The ops are linear in their graph inputs, so the samples square the
// result: then the second derivative is not zero.
namespace {
using namespace catalogue;  // NOLINT: the entries below are written in its words
using detail::squared;
using V = const std::vector<Var>&;
constexpr const char* kFile = "ops/sequence.cpp";

Samples embedding_samples() {
  const Tensor repeated = Tensor::from_indices({2, 4}, {0, 3, 3, 1, 4, 0, 2, 3});
  const Tensor steps = Tensor::from_indices({3}, {1, 1, 0}).astype(DType::Int32);
  const Tensor one = Tensor::from_indices({}, {2});
  return {{"(5, 3) table, (2, 4) indices with repeats",
           squared([repeated](V v) { return embedding(v[0], repeated); }),
           {sample::normal({5, 3}, 700)}},
          {"(4, 2, 2) table, int32 indices",
           squared([steps](V v) { return embedding(v[0], steps); }),
           {sample::normal({4, 2, 2}, 701)}},
          {"a rank-0 index",
           squared([one](V v) { return embedding(v[0], one); }),
           {sample::normal({3, 2}, 702)}}};
}

Samples embedding_backward_samples() {
  const Tensor repeated = Tensor::from_indices({3}, {4, 1, 4});
  return {{"(3, 2) into 5 rows, a repeat",
           squared([repeated](V v) { return embedding_backward(v[0], repeated, 5); }),
           {sample::normal({3, 2}, 710)}}};
}

Samples slice_samples() {
  const Tensor x = sample::normal({4, 3, 2}, 720);
  return {{"axis 1, [1, 3)", squared([](V v) { return slice(v[0], 1, 1, 3); }), {x}},
          {"axis -1, [1, 2)", squared([](V v) { return slice(v[0], -1, 1, 2); }), {x}},
          {"axis 0, whole", squared([](V v) { return slice(v[0], 0, 0, 4); }), {x}},
          {"a time step (select)", squared([](V v) { return select(v[0], 1, 2); }), {x}}};
}

Samples slice_backward_samples() {
  return {{"(4, 2, 2) into (4, 3, 2) at 1",
           squared([](V v) {
             return slice_backward(v[0], {4, 3, 2}, 1, 1);
           }),
           {sample::normal({4, 2, 2}, 730)}}};
}

Samples concat_samples() {
  return {{"three along axis 1",
           squared([](V v) {
             return concat({v[0], v[1], v[2]}, 1);
           }),
           {sample::normal({2, 3}, 740), sample::normal({2, 1}, 741), sample::normal({2, 2}, 742)}},
          {"stack of two along a new axis 1",
           squared([](V v) {
             return stack({v[0], v[1]}, 1);
           }),
           {sample::normal({3, 2}, 743), sample::normal({3, 2}, 744)}}};
}

Samples where_samples() {
  const Tensor mask = Tensor::from_vector({2, 3}, {1, 0, 0, 1, 1, 0});
  const Tensor column = Tensor::from_indices({2, 1}, {0, 7});
  return {{"(2, 3) mask, b a row",
           squared([mask](V v) { return where(mask, v[0], v[1]); }),
           {sample::normal({2, 3}, 750), sample::normal({3}, 751)}},
          {"an int64 column mask",
           squared([column](V v) { return where(column, v[0], v[1]); }),
           {sample::normal({2, 3}, 752), sample::normal({2, 3}, 753)}}};
}

// Indices for random applications: `count` of them in [0, rows), from the bits.
Tensor random_indices(std::int64_t count, std::int64_t rows, std::uint32_t bits) {
  std::vector<std::int64_t> v;
  for (std::int64_t k = 0; k < count; ++k) {
    v.push_back(rows > 0 ? static_cast<std::int64_t>((bits >> (k % 16)) + k) % rows : k);
  }
  return Tensor::from_indices({count}, v);
}

Var random_embedding(const Var& a, const Var&, const Choices& c) {
  const std::int64_t rows = a.rank() > 0 ? a.shape()[0] : 0;
  return embedding(a, random_indices(c.bits % 5, rows, c.bits >> 3));
}

Var random_embedding_backward(const Var& a, const Var&, const Choices& c) {
  const std::int64_t count = a.rank() > 0 ? a.shape()[0] : 0;
  detail::check_random_size(count, c, "embedding_backward's indices");  // an empty a: 2^40 of them
  const std::int64_t rows = c.bits % 4 + 1;
  Shape table{rows};  // the result: `rows` rows of a's trailing shape
  if (a.rank() > 0) table.insert(table.end(), a.shape().begin() + 1, a.shape().end());
  detail::check_random_size(numel(table), c, "embedding_backward");  // numel refuses an overflow
  return embedding_backward(a, random_indices(count, rows, c.bits >> 2), rows);
}

Var random_slice(const Var& a, const Var&, const Choices& c) {
  const int axis = a.rank() > 0 ? static_cast<int>(c.bits % a.rank()) : 0;
  // Unsigned: an empty tensor's axis may be 2^63 - 1 long, and n + 1 must not overflow.
  const std::uint64_t n = a.rank() > 0 ? static_cast<std::uint64_t>(a.shape()[axis]) : 0;
  const std::uint64_t begin = (c.bits >> 4) % (n + 1);
  const std::uint64_t length = (c.bits >> 9) % (n - begin + 1);
  return slice(a, axis, static_cast<std::int64_t>(begin),
               static_cast<std::int64_t>(begin + length));
}

Var random_slice_backward(const Var& a, const Var&, const Choices& c) {
  const int axis = a.rank() > 0 ? static_cast<int>(c.bits % a.rank()) : 0;
  Shape shape = a.shape();
  const std::int64_t extra = (c.bits >> 4) % 3;
  if (!shape.empty() && __builtin_add_overflow(shape[axis], extra, &shape[axis])) {
    throw ShapeError("slice_backward: an axis of " + std::to_string(a.shape()[axis]) + " plus " +
                     std::to_string(extra) + " overflows int64");
  }
  detail::check_random_size(numel(shape), c, "slice_backward");
  return slice_backward(a, shape, axis, static_cast<std::int64_t>(c.bits >> 6) % (extra + 1));
}

Var random_concat(const Var& a, const Var& b, const Choices& c) {
  const int axis = a.rank() > 0 ? static_cast<int>(c.bits % a.rank()) : 0;
  detail::check_random_size(a.value().size() * 2 + b.value().size(), c, "concat");
  return c.flag ? concat({a, b, a}, axis) : concat({a, b}, axis);
}

Var random_where(const Var& a, const Var& b, const Choices& c) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape());
  detail::check_random_size(numel(shape), c, "where");
  std::vector<double> bits(static_cast<std::size_t>(a.value().size()));
  for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = (c.bits >> (i % 32)) & 1;
  return where(Tensor::from_vector(a.shape(), bits, DType::Float32), a, b);
}

const Primitive kEntries[] = {
    Primitive(info::kEmbedding, kFile)
        .with_samples(embedding_samples)
        .with_random(random_embedding),
    Primitive(info::kEmbeddingBackward, kFile)
        .with_samples(embedding_backward_samples)
        .with_random(random_embedding_backward),
    Primitive(info::kSlice, kFile).with_samples(slice_samples).with_random(random_slice),
    Primitive(info::kSliceBackward, kFile)
        .with_samples(slice_backward_samples)
        .with_random(random_slice_backward),
    Primitive(info::kConcat, kFile)
        .with_inputs({{}, {}, {}})
        .with_samples(concat_samples)
        .with_random(random_concat),
    Primitive(info::kWhere, kFile)
        .with_inputs({{}, {}})
        .with_samples(where_samples)
        .with_random(random_where),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
