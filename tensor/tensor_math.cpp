#include "tensor/tensor_math.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <numeric>
#include <thread>
#include <type_traits>
#include <vector>

#include "tensor/detail/loops.hpp"
#include "tensor/kernels/kernels.hpp"
#include "tensor/parallel.hpp"

namespace npdl::math {
namespace {

using detail::Loop;
using detail::Strides;
using kernels::AlphaOp;
using kernels::BinaryOp;
using kernels::UnaryOp;

using kernels::kernels_for;

// Elements summed in the tensor's own dtype before joining a float64
// accumulator: short enough for float32 to keep its digits, long enough for
// the vectorised sum to dominate.
constexpr std::int64_t kSumBlock = 4096;

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using StridedMap =
    Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>, 0, Eigen::InnerStride<Eigen::Dynamic>>;

// Elementwise binary op over broadcast operands; a broadcast scalar stays a
// scalar.
template <class T>
Tensor binary(const Tensor& a, const Tensor& b, const char* name, BinaryOp op) {
  const kernels::TypedKernels<T>& k = kernels_for<T>();
  check_same_dtype(a, b, name);
  Tensor out(a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape()),
             a.dtype());
  T* o = out.data<T>();
  const T* x = a.data<T>();
  const T* y = b.data<T>();
  if (out.size() == 0) return out;
  if (a.shape() == b.shape()) {
    parallel_for(out.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      k.binary(op, x + lo, y + lo, o + lo, hi - lo);
    });
    return out;
  }
  const auto loop =
      detail::make_broadcast_loop<3>(out.shape(), {&out.shape(), &a.shape(), &b.shape()});
  const std::int64_t sa = loop.inner_stride(1), sb = loop.inner_stride(2);
  parallel_for(loop.rows(), detail::rows_per_grain(loop, kElementGrain),
               [&](std::int64_t lo, std::int64_t hi) {
                 detail::for_each_row(
                     loop, lo, hi, [&](const std::array<std::int64_t, 3>& off, std::int64_t n) {
                       if (sa != 0 && sb != 0) {
                         k.binary(op, x + off[1], y + off[2], o + off[0], n);
                       } else if (sa != 0) {
                         k.binary_scalar_rhs(op, x + off[1], y[off[2]], o + off[0], n);
                       } else if (sb != 0) {
                         k.binary_scalar_lhs(op, x[off[1]], y + off[2], o + off[0], n);
                       } else {
                         k.binary_scalar_rhs(op, x + off[1], y[off[2]], o + off[0], 1);
                         ArrayMap<T>(o + off[0], n).setConstant(o[off[0]]);
                       }
                     });
               });
  return out;
}

// Note [Parallel reductions]
// A reduction's rows are split into chunks whose number depends only on the
// shape, never on the thread count; each chunk sums into its own float64
// accumulator and the accumulators are added in chunk order. Threads take
// whole chunks, so the result is the same bit for bit whatever the thread
// count. Small reductions, and those whose output is large next to their
// input (partial accumulators would cost more than they save), are one chunk.
constexpr std::int64_t kReduceChunkElements = std::int64_t{1} << 18;
constexpr std::int64_t kMaxReduceChunks = 16;

// Calls rows_fn(acc, row_begin, row_end) over `rows` rows of `inner`
// elements, accumulating into `out` (`outputs` float64 elements).
template <class RowsFn>
void reduce_rows(double* out, std::int64_t outputs, std::int64_t rows, std::int64_t inner,
                 RowsFn rows_fn) {
  const std::int64_t elements = rows * inner;
  if (elements == 0 || outputs == 0) return;  // nothing to add: the sums stay 0
  std::int64_t chunks =
      std::min<std::int64_t>({kMaxReduceChunks, elements / kReduceChunkElements, rows});
  if (outputs * chunks * 4 > elements) chunks = elements / (outputs * 4);
  if (chunks <= 1) {
    rows_fn(out, std::int64_t{0}, rows);
    return;
  }
  std::vector<double> partial(static_cast<std::size_t>(chunks * outputs), 0.0);
  parallel_for(chunks, 1, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t c = lo; c < hi; ++c) {
      rows_fn(partial.data() + c * outputs, rows * c / chunks, rows * (c + 1) / chunks);
    }
  });
  for (std::int64_t c = 0; c < chunks; ++c) {
    ArrayMap<double>(out, outputs) += ConstArrayMap<double>(partial.data() + c * outputs, outputs);
  }
}

Tensor binary_dispatch(const Tensor& a, const Tensor& b, const char* name, BinaryOp op) {
  return dispatch(a.dtype(), [&](auto zero) { return binary<decltype(zero)>(a, b, name, op); });
}

// A new tensor of a's shape whose elements block(x, o, n) writes, chunk by
// chunk (x and o point at the chunk's first element of a and of the result).
template <class Block>
Tensor map_blocks(const Tensor& a, Block block) {
  Tensor out(a.shape(), a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = a.data<T>();
    T* o = out.data<T>();
    parallel_for(a.size(), kElementGrain,
                 [&](std::int64_t lo, std::int64_t hi) { block(x + lo, o + lo, hi - lo); });
  });
  return out;
}

template <class T>
using Element = std::remove_const_t<std::remove_pointer_t<T>>;

Tensor unary(const Tensor& a, UnaryOp op) {
  return map_blocks(a, [op](const auto* x, auto* o, std::int64_t n) {
    kernels_for<Element<decltype(x)>>().unary(op, x, o, n);
  });
}

Tensor unary_alpha(const Tensor& a, AlphaOp op, double alpha) {
  return map_blocks(a, [op, alpha](const auto* x, auto* o, std::int64_t n) {
    using T = Element<decltype(x)>;
    kernels_for<T>().unary_alpha(op, x, static_cast<T>(alpha), o, n);
  });
}

// a op s for a scalar s, without broadcasting machinery.
Tensor with_scalar(const Tensor& a, BinaryOp op, double s) {
  return map_blocks(a, [op, s](const auto* x, auto* o, std::int64_t n) {
    using T = Element<decltype(x)>;
    kernels_for<T>().binary_scalar_rhs(op, x, static_cast<T>(s), o, n);
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary_dispatch(a, b, "add", BinaryOp::Add); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_dispatch(a, b, "sub", BinaryOp::Sub); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_dispatch(a, b, "mul", BinaryOp::Mul); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_dispatch(a, b, "div", BinaryOp::Div); }

Tensor scale(const Tensor& a, double s) { return with_scalar(a, BinaryOp::Mul, s); }
Tensor add_scalar(const Tensor& a, double s) { return with_scalar(a, BinaryOp::Add, s); }

Tensor neg(const Tensor& a) { return unary(a, UnaryOp::Neg); }
Tensor square(const Tensor& a) { return unary(a, UnaryOp::Square); }
Tensor sqrt(const Tensor& a) { return unary(a, UnaryOp::Sqrt); }
Tensor rsqrt(const Tensor& a) { return unary(a, UnaryOp::Rsqrt); }
Tensor exp(const Tensor& a) { return unary(a, UnaryOp::Exp); }
Tensor log(const Tensor& a) { return unary(a, UnaryOp::Log); }
Tensor relu(const Tensor& a) { return unary(a, UnaryOp::Relu); }
Tensor sigmoid(const Tensor& a) { return unary(a, UnaryOp::Sigmoid); }
Tensor tanh(const Tensor& a) { return unary(a, UnaryOp::Tanh); }
Tensor step(const Tensor& a) { return unary(a, UnaryOp::Step); }
Tensor mul_step(const Tensor& g, const Tensor& y) {
  check_same_dtype(g, y, "mul_step");
  check_same_shape(g.shape(), y.shape(), "mul_step");
  Tensor out(g.shape(), g.dtype());
  dispatch(g.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gd = g.data<T>();
    const T* yd = y.data<T>();
    T* o = out.data<T>();
    parallel_for(g.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      kernels_for<T>().mul_step(gd + lo, yd + lo, o + lo, hi - lo);
    });
  });
  return out;
}
Tensor softplus(const Tensor& a) {
  Tensor out(a.shape(), a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const kernels::TypedKernels<T>& k = kernels_for<T>();
    const T* x = a.data<T>();
    T* o = out.data<T>();
    parallel_for(a.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      const ConstArrayMap<T> xs(x + lo, hi - lo);
      ArrayMap<T> os(o + lo, hi - lo);
      os = -xs.abs();
      // exp(-|x|) in (0, 1]: Note [exp underflow] in tensor/kernels/level.cpp
      k.unary(UnaryOp::Exp, o + lo, o + lo, hi - lo);
      os = xs.max(T(0)) + os.log1p();
    });
  });
  return out;
}
Tensor leaky_relu(const Tensor& a, double alpha) {
  return unary_alpha(a, AlphaOp::LeakyRelu, alpha);
}
Tensor elu(const Tensor& a, double alpha) { return unary_alpha(a, AlphaOp::Elu, alpha); }

Tensor sum(const Tensor& a, const Axes& axes_in, bool keepdims) {
  const Axes axes = normalize_axes(axes_in, a.rank());
  const Shape kept = reduced_shape(a.shape(), axes, /*keepdims=*/true);
  // Accumulate in float64 whatever the dtype: float32 sums over millions of
  // elements would otherwise lose digits that batch norm's variance needs.
  Tensor acc = Tensor::zeros(kept, DType::Float64);
  double* s = acc.data<double>();
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const kernels::TypedKernels<T>& k = kernels_for<T>();
    const T* x = a.data<T>();
    const auto loop = detail::make_broadcast_loop<2>(a.shape(), {&kept, &a.shape()});
    const bool reduce_inner = loop.inner_stride(0) == 0;
    // Note [Parallel reductions]
    reduce_rows(s, acc.size(), loop.rows(), loop.inner(),
                [&](double* s, std::int64_t lo, std::int64_t hi) {
                  detail::for_each_row(
                      loop, lo, hi, [&](const std::array<std::int64_t, 2>& off, std::int64_t n) {
                        if (reduce_inner) {
                          // Blocks summed in T (vectorised), their sums accumulated in double.
                          for (std::int64_t b = 0; b < n; b += kSumBlock) {
                            s[off[0]] += double(k.sum(x + off[1] + b, std::min(kSumBlock, n - b)));
                          }
                        } else {
                          k.accumulate(s + off[0], x + off[1], n);
                        }
                      });
                });
  });
  Tensor out = a.dtype() == DType::Float64 ? acc : acc.astype(a.dtype());
  return keepdims ? out : out.reshape(reduced_shape(a.shape(), axes, false));
}

Tensor mean(const Tensor& a, const Axes& axes_in, bool keepdims) {
  const Axes axes = normalize_axes(axes_in, a.rank());
  std::int64_t count = 1;
  for (int ax : axes) count *= a.shape()[ax];
  Tensor s = sum(a, axes, keepdims);
  return scale(s, count == 0 ? std::nan("") : 1.0 / static_cast<double>(count));
}

Tensor unbroadcast(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int lead = grad.rank() - static_cast<int>(shape.size());
  Axes axes;
  for (int i = 0; i < grad.rank(); ++i) {
    if (i < lead || (shape[i - lead] == 1 && grad.shape()[i] != 1)) axes.push_back(i);
  }
  if (axes.empty()) return grad.reshape(shape);
  return sum(grad, axes, /*keepdims=*/true).reshape(shape);
}

Tensor broadcast_to(const Tensor& a, const Shape& shape) {
  if (broadcast_shapes(a.shape(), shape) != shape) {
    throw ShapeError("cannot broadcast shape " + to_string(a.shape()) + " to " + to_string(shape));
  }
  Tensor out(shape, a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = a.data<T>();
    T* o = out.data<T>();
    const auto loop = detail::make_broadcast_loop<2>(shape, {&shape, &a.shape()});
    const bool contiguous = loop.inner_stride(1) != 0;
    parallel_for(loop.rows(), detail::rows_per_grain(loop, kElementGrain),
                 [&](std::int64_t lo, std::int64_t hi) {
                   detail::for_each_row(
                       loop, lo, hi, [&](const std::array<std::int64_t, 2>& off, std::int64_t n) {
                         if (contiguous) {
                           ArrayMap<T>(o + off[0], n) = ConstArrayMap<T>(x + off[1], n);
                         } else {
                           ArrayMap<T>(o + off[0], n).setConstant(x[off[1]]);
                         }
                       });
                 });
  });
  return out;
}

Tensor transpose(const Tensor& a, const Axes& perm_in) {
  const int rank = a.rank();
  Axes perm = perm_in;
  if (perm.empty()) {
    for (int i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  if (static_cast<int>(perm.size()) != rank) {
    throw AxisError("transpose expects a permutation of " + std::to_string(rank) + " axes, got " +
                    to_string(perm_in));
  }
  normalize_axes(perm, rank);  // throws on an axis out of range or repeated
  Shape out_shape(rank);
  const Strides in_strides = detail::broadcast_strides(a.shape(), rank);
  Strides in_permuted(rank);
  for (int i = 0; i < rank; ++i) {
    const int p = normalize_axis(perm[i], rank);
    out_shape[i] = a.shape()[p];
    in_permuted[i] = a.shape()[p] == 1 ? 0 : in_strides[p];
  }
  const std::array<Strides, 2> strides{detail::broadcast_strides(out_shape, rank), in_permuted};
  Tensor out(out_shape, a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = a.data<T>();
    T* o = out.data<T>();
    const auto loop = detail::make_loop<2>(out_shape, strides);
    const std::int64_t step = std::max<std::int64_t>(loop.inner_stride(1), 1);
    const bool broadcast_inner = loop.inner_stride(1) == 0;
    detail::for_each_row(loop, [&](const std::array<std::int64_t, 2>& off, std::int64_t n) {
      if (broadcast_inner) {
        ArrayMap<T>(o + off[0], n).setConstant(x[off[1]]);
      } else {
        ArrayMap<T>(o + off[0], n) =
            StridedMap<T>(x + off[1], n, Eigen::InnerStride<Eigen::Dynamic>(step));
      }
    });
  });
  return out;
}

namespace {
// Note [Splitting matrix products]
// A product large enough to pay for a hand-off is cut into blocks of c's
// rows (or columns, whichever c has more of), each an independent product,
// and the blocks are shared among the threads. The cut depends on the shape
// and on the machine's hardware threads, never on the thread count set, so
// one thread computes the same blocks in turn and the result has the same
// bits at any thread count (as every other kernel's, Note [Chunk
// boundaries] in parallel.cpp); a product cut by thread count would sum in
// another order wherever Eigen's register tiles fall differently. (Bits
// differ between machines anyway: the kernels' instruction set does.)
//
// The price on one thread is re-packing the uncut operand once more per
// block, about 2% of a 256 x 784 @ 784 x 100 product per extra block; so
// there are no more blocks than the machine could run at once, and a power
// of two of them, which thread counts of 1, 2, 4, ... share evenly.
// kProductGrain multiply-adds are about 10 us on one AVX-512 core, several
// times a hand-off's cost; blocks keep at least kMinBlockExtent rows so that
// Eigen's register tiles stay full; boundaries fall on multiples of
// kBlockAlignment (a float packet).
constexpr std::int64_t kProductGrain = std::int64_t{1} << 19;
constexpr std::int64_t kMinBlockExtent = 32;
constexpr std::int64_t kBlockAlignment = 16;

std::int64_t max_product_blocks() {
  static const std::int64_t blocks = [] {
    const std::int64_t hardware = std::max(1u, std::thread::hardware_concurrency());
    std::int64_t power = 1;
    while (power < hardware) power *= 2;
    return power;
  }();
  return blocks;
}

struct ProductSplit {
  bool by_rows = true;
  std::int64_t extent = 0;  // rows (or columns) of c
  std::int64_t parts = 1;

  std::int64_t boundary(std::int64_t part) const {
    if (part >= parts) return extent;
    return extent * part / parts / kBlockAlignment * kBlockAlignment;
  }
};

ProductSplit split_product(std::int64_t rows, std::int64_t cols, std::int64_t inner) {
  ProductSplit split;
  split.by_rows = rows >= cols;
  split.extent = split.by_rows ? rows : cols;
  const double multiply_adds = double(rows) * double(cols) * double(inner);
  const std::int64_t by_work = static_cast<std::int64_t>(multiply_adds / double(kProductGrain));
  const std::int64_t most =
      std::min({by_work, split.extent / kMinBlockExtent, max_product_blocks()});
  while (split.parts * 2 <= most) split.parts *= 2;
  return split;
}

// out = op(a) @ op(b), shapes already checked, shared among threads as
// `threads` says.
void multiply_into(Tensor& out, const Tensor& a, const Tensor& b, bool transpose_a,
                   bool transpose_b, ProductThreads threads) {
  const std::int64_t rows = out.shape()[0], cols = out.shape()[1];
  const std::int64_t inner = a.shape()[transpose_a ? 0 : 1];
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ProductSplit split = threads == ProductThreads::Shared ? split_product(rows, cols, inner)
                                                                 : ProductSplit{true, rows, 1};
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* cp = out.data<T>();
    const std::int64_t lda = a.shape()[1], ldb = b.shape()[1];
    const kernels::TypedKernels<T>& k = kernels_for<T>();
    parallel_for(split.parts, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t part = first; part < last; ++part) {
        const std::int64_t lo = split.boundary(part), hi = split.boundary(part + 1);
        if (split.by_rows) {  // rows lo..hi of c: the same rows of op(a), all of b
          k.gemm(hi - lo, cols, inner, ap + (transpose_a ? lo : lo * lda), lda, transpose_a, bp,
                 ldb, transpose_b, cp + lo * cols, cols);
        } else {  // columns lo..hi of c: all of a, the same columns of op(b)
          k.gemm(rows, hi - lo, inner, ap, lda, transpose_a, bp + (transpose_b ? lo * ldb : lo),
                 ldb, transpose_b, cp + lo, cols);
        }
      }
    });
  });
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b,
              ProductThreads threads) {
  check_same_dtype(a, b, "matmul");
  if (a.rank() != 2 || b.rank() != 2) {
    throw ShapeError("matmul expects two rank-2 tensors, got shapes " + to_string(a.shape()) +
                     " and " + to_string(b.shape()));
  }
  const std::int64_t rows = a.shape()[transpose_a ? 1 : 0], inner = a.shape()[transpose_a ? 0 : 1];
  const std::int64_t b_rows = b.shape()[transpose_b ? 1 : 0], cols = b.shape()[transpose_b ? 0 : 1];
  if (inner != b_rows) {
    throw ShapeError("matmul inner sizes differ: " + to_string(a.shape()) + " @ " +
                     to_string(b.shape()) + " expects the second operand to have " +
                     std::to_string(inner) + " rows, got " + std::to_string(b_rows));
  }
  Tensor out(Shape{rows, cols}, a.dtype());
  a.check_defined();
  b.check_defined();
  if (inner == 0) out.fill(0.0);  // a sum of nothing
  if (inner == 0 || out.size() == 0) return out;
  // Eigen's product code allocates its own blocks and copies of strided
  // operands, and reports a failure as std::bad_alloc (on whichever thread
  // ran the piece: Note [Exceptions across threads]); every error of this
  // library derives from npdl::Error, so it becomes a MemoryError here.
  try {
    multiply_into(out, a, b, transpose_a, transpose_b, threads);
  } catch (const std::bad_alloc&) {
    throw MemoryError("matmul " + to_string(a.shape()) + " @ " + to_string(b.shape()) +
                      ": cannot allocate the product's working buffers: the system has no "
                      "memory left for them");
  }
  return out;
}

namespace {
// Softmax family over `axis`: the tensor is viewed as (outer, n, inner) and
// each (n, inner) block is a row-major matrix whose columns are normalised.
template <bool kLog>
Tensor softmax_impl(const Tensor& a, int axis_in) {
  const int axis = normalize_axis(axis_in, a.rank());
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= a.shape()[i];
  for (int i = axis + 1; i < a.rank(); ++i) inner *= a.shape()[i];
  const std::int64_t n = a.shape()[axis];
  Tensor out(a.shape(), a.dtype());
  a.check_defined();
  if (out.size() == 0) return out;
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    kernels_for<T>().softmax(a.data<T>(), out.data<T>(), outer, n, inner, kLog);
  });
  return out;
}
}  // namespace

Tensor softmax(const Tensor& a, int axis) { return softmax_impl<false>(a, axis); }
Tensor log_softmax(const Tensor& a, int axis) { return softmax_impl<true>(a, axis); }

void add_inplace(Tensor& out, const Tensor& g) {
  check_same_dtype(out, g, "add_inplace");
  check_same_shape(out.shape(), g.shape(), "add_inplace");
  dispatch(out.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const kernels::TypedKernels<T>& k = kernels_for<T>();
    T* o = out.data<T>();
    const T* x = g.data<T>();
    parallel_for(out.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      k.binary(BinaryOp::Add, o + lo, x + lo, o + lo, hi - lo);
    });
  });
}

double element_error(double actual, double expected) {
  if (actual == expected) return 0.0;  // equal, equal infinities included
  if (std::isnan(actual) && std::isnan(expected)) return 0.0;
  if (!std::isfinite(actual) || !std::isfinite(expected)) {
    return std::numeric_limits<double>::infinity();
  }
  return std::fabs(actual - expected);
}

MaxDiff max_abs_diff(const Tensor& a, const Tensor& b) {
  check_same_shape(a.shape(), b.shape(), "max_abs_diff");
  MaxDiff worst;
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = element_error(x[i], y[i]);
    if (d > worst.abs || worst.index < 0) {
      worst.abs = d;
      worst.index = static_cast<std::int64_t>(i);
      const double scale = std::max(std::fabs(x[i]), std::fabs(y[i]));
      worst.rel = d == 0.0 ? 0.0 : d / scale;
    }
  }
  return worst;
}

bool all_finite(const Tensor& a) {
  // x * 0 is 0 for finite x and NaN for NaN and +-Inf: one branch-free,
  // vectorised sum tells whether any element is not finite.
  return dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = a.data<T>();
    for (std::int64_t b = 0; b < a.size(); b += kSumBlock) {
      const T probe = (ConstArrayMap<T>(x + b, std::min(kSumBlock, a.size() - b)) * T(0)).sum();
      if (probe != T(0)) return false;
    }
    return true;
  });
}

Tensor mul_unbroadcast(const Tensor& a, const Tensor& b, const Shape& shape) {
  check_same_dtype(a, b, "mul_unbroadcast");
  const Shape full = broadcast_shapes(a.shape(), b.shape());
  if (full == shape) return mul(a, b);
  const Tensor target = Tensor::zeros(shape, a.dtype());  // validates the shape's rank
  if (broadcast_shapes(full, shape) != full) {
    throw ShapeError("mul_unbroadcast: cannot sum shape " + to_string(full) + " down to " +
                     to_string(shape));
  }
  const int lead = static_cast<int>(full.size() - shape.size());
  Shape kept(full.size(), 1);
  for (std::size_t i = 0; i < shape.size(); ++i) kept[lead + i] = shape[i];
  Tensor acc = Tensor::zeros(kept, DType::Float64);
  double* s = acc.data<double>();
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const kernels::TypedKernels<T>& k = kernels_for<T>();
    const T* x = a.data<T>();
    const T* y = b.data<T>();
    const auto loop = detail::make_broadcast_loop<3>(full, {&kept, &a.shape(), &b.shape()});
    const bool reduce_inner = loop.inner_stride(0) == 0;
    const std::int64_t sa = loop.inner_stride(1), sb = loop.inner_stride(2);
    // Note [Parallel reductions]
    reduce_rows(s, acc.size(), loop.rows(), loop.inner(),
                [&](double* s, std::int64_t lo, std::int64_t hi) {
                  detail::for_each_row(
                      loop, lo, hi, [&](const std::array<std::int64_t, 3>& off, std::int64_t n) {
                        // Rows where one operand is a broadcast scalar: scale the other's sum.
                        if (reduce_inner) {
                          for (std::int64_t b0 = 0; b0 < n; b0 += kSumBlock) {
                            const std::int64_t m = std::min(kSumBlock, n - b0);
                            T part;
                            if (sa != 0 && sb != 0) {
                              part = k.dot(x + off[1] + b0, y + off[2] + b0, m);
                            } else if (sa != 0) {
                              part = k.sum(x + off[1] + b0, m) * y[off[2]];
                            } else if (sb != 0) {
                              part = x[off[1]] * k.sum(y + off[2] + b0, m);
                            } else {
                              part = x[off[1]] * y[off[2]] * T(m);
                            }
                            s[off[0]] += double(part);
                          }
                        } else {
                          if (sa != 0 && sb != 0) {
                            k.accumulate_product(s + off[0], x + off[1], y + off[2], n);
                          } else if (sa != 0) {
                            k.accumulate_scaled(s + off[0], x + off[1], y[off[2]], n);
                          } else {
                            k.accumulate_scaled(s + off[0], y + off[2], x[off[1]], n);
                          }
                        }
                      });
                });
  });
  Tensor out = a.dtype() == DType::Float64 ? acc : acc.astype(a.dtype());
  return out.reshape(shape);
}

}  // namespace npdl::math
