#include "autodiff/tensor_math.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "autodiff/loops.hpp"
#include "autodiff/parallel.hpp"

namespace npdl::math {
namespace {

using detail::Loop;
using detail::Strides;

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

// Elementwise binary op over broadcast operands. `op` takes Eigen arrays or
// scalars on either side, so that a broadcast scalar stays a scalar.
template <class T, class Op>
Tensor binary(const Tensor& a, const Tensor& b, const char* name, Op op) {
  check_same_dtype(a, b, name);
  Tensor out(a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape()),
             a.dtype());
  T* o = out.data<T>();
  const T* x = a.data<T>();
  const T* y = b.data<T>();
  if (out.size() == 0) return out;
  if (a.shape() == b.shape()) {
    parallel_for(out.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      ArrayMap<T>(o + lo, hi - lo) =
          op(ConstArrayMap<T>(x + lo, hi - lo), ConstArrayMap<T>(y + lo, hi - lo));
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
                       ArrayMap<T> dst(o + off[0], n);
                       if (sa != 0 && sb != 0) {
                         dst = op(ConstArrayMap<T>(x + off[1], n), ConstArrayMap<T>(y + off[2], n));
                       } else if (sa != 0) {
                         dst = op(ConstArrayMap<T>(x + off[1], n), y[off[2]]);
                       } else if (sb != 0) {
                         dst = op(x[off[1]], ConstArrayMap<T>(y + off[2], n));
                       } else {
                         dst.setConstant(op(x[off[1]], y[off[2]]));
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

template <class Op>
Tensor binary_dispatch(const Tensor& a, const Tensor& b, const char* name, Op op) {
  return dispatch(a.dtype(), [&](auto zero) { return binary<decltype(zero)>(a, b, name, op); });
}

template <class Op>
Tensor unary(const Tensor& a, Op op) {
  Tensor out(a.shape(), a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = a.data<T>();
    T* o = out.data<T>();
    parallel_for(a.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      ArrayMap<T>(o + lo, hi - lo) = op(ConstArrayMap<T>(x + lo, hi - lo));
    });
  });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  return binary_dispatch(a, b, "add", [](const auto& x, const auto& y) { return x + y; });
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary_dispatch(a, b, "sub", [](const auto& x, const auto& y) { return x - y; });
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary_dispatch(a, b, "mul", [](const auto& x, const auto& y) { return x * y; });
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary_dispatch(a, b, "div", [](const auto& x, const auto& y) { return x / y; });
}

Tensor scale(const Tensor& a, double s) {
  return unary(a, [s](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::Scalar;
    return x * static_cast<T>(s);
  });
}
Tensor add_scalar(const Tensor& a, double s) {
  return unary(a, [s](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::Scalar;
    return x + static_cast<T>(s);
  });
}

Tensor neg(const Tensor& a) {
  return unary(a, [](const auto& x) { return -x; });
}
Tensor square(const Tensor& a) {
  return unary(a, [](const auto& x) { return x.square(); });
}
Tensor sqrt(const Tensor& a) {
  return unary(a, [](const auto& x) { return x.sqrt(); });
}
Tensor rsqrt(const Tensor& a) {
  return unary(a, [](const auto& x) { return x.rsqrt(); });
}
namespace {
// Note [exp underflow]
// Eigen's vectorised exp clamps its argument near the smallest normal
// result, so below it a lane returns a tiny non-zero value (float32
// exp(-inf) = 2.9e-39, float64 exp(-1000) = 5.6e-309) while the scalar tail
// of the same array returns 0: the result would depend on an element's
// position. Arguments whose result is subnormal or zero are rare, so they
// are recomputed with std::exp, which rounds them as IEEE 754 says.
// x and o may be the same buffer.
template <class T>
void exp_block(const T* x, T* o, std::int64_t n) {
  const T lowest_normal_arg = std::log(std::numeric_limits<T>::min());
  if (n == 0 || !(ConstArrayMap<T>(x, n).minCoeff() < lowest_normal_arg)) {
    ArrayMap<T>(o, n) = ConstArrayMap<T>(x, n).exp();
    return;
  }
  const std::vector<T> in(x, x + n);  // rare: keep the arguments for the fix-up
  ArrayMap<T>(o, n) = ConstArrayMap<T>(in.data(), n).exp();
  for (std::int64_t i = 0; i < n; ++i) {
    if (in[i] < lowest_normal_arg) o[i] = std::exp(in[i]);
  }
}
}  // namespace

Tensor exp(const Tensor& a) {
  Tensor out(a.shape(), a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = a.data<T>();
    T* o = out.data<T>();
    parallel_for(a.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      exp_block(x + lo, o + lo, hi - lo);
    });
  });
  return out;
}
Tensor log(const Tensor& a) {
  return unary(a, [](const auto& x) { return x.log(); });
}
Tensor relu(const Tensor& a) {
  return unary(a, [](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::Scalar;
    return x.max(T(0));
  });
}
Tensor sigmoid(const Tensor& a) {
  // 1 / (1 + exp(-x)) overflows exp only towards +inf, which gives 0: stable.
  return unary(a, [](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::Scalar;
    return T(1) / (T(1) + (-x).exp());
  });
}
Tensor softplus(const Tensor& a) {
  Tensor out(a.shape(), a.dtype());
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = a.data<T>();
    T* o = out.data<T>();
    parallel_for(a.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      const ConstArrayMap<T> xs(x + lo, hi - lo);
      ArrayMap<T> os(o + lo, hi - lo);
      os = -xs.abs();
      exp_block(o + lo, o + lo, hi - lo);  // exp(-|x|) in (0, 1]: Note [exp underflow]
      os = xs.max(T(0)) + os.log1p();
    });
  });
  return out;
}
Tensor leaky_relu(const Tensor& a, double alpha) {
  return unary(a, [alpha](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::Scalar;
    return (x > T(0)).select(x, x * T(alpha));
  });
}
Tensor elu(const Tensor& a, double alpha) {
  return unary(a, [alpha](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::Scalar;
    return (x > T(0)).select(x, x.min(T(0)).expm1() * T(alpha));
  });
}
Tensor tanh(const Tensor& a) {
  return unary(a, [](const auto& x) { return x.tanh(); });
}
Tensor step(const Tensor& a) {
  return unary(a, [](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::Scalar;
    return (x > T(0)).template cast<T>();
  });
}

Tensor sum(const Tensor& a, const Axes& axes_in, bool keepdims) {
  const Axes axes = normalize_axes(axes_in, a.rank());
  const Shape kept = reduced_shape(a.shape(), axes, /*keepdims=*/true);
  // Accumulate in float64 whatever the dtype: float32 sums over millions of
  // elements would otherwise lose digits that batch norm's variance needs.
  Tensor acc = Tensor::zeros(kept, DType::Float64);
  double* s = acc.data<double>();
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* x = a.data<T>();
    const auto loop = detail::make_broadcast_loop<2>(a.shape(), {&kept, &a.shape()});
    const bool reduce_inner = loop.inner_stride(0) == 0;
    // Note [Parallel reductions]
    reduce_rows(
        s, acc.size(), loop.rows(), loop.inner(), [&](double* s, std::int64_t lo, std::int64_t hi) {
          detail::for_each_row(
              loop, lo, hi, [&](const std::array<std::int64_t, 2>& off, std::int64_t n) {
                if (reduce_inner) {
                  // Blocks summed in T (vectorised), their sums accumulated in double.
                  for (std::int64_t b = 0; b < n; b += kSumBlock) {
                    s[off[0]] +=
                        double(ConstArrayMap<T>(x + off[1] + b, std::min(kSumBlock, n - b)).sum());
                  }
                } else {
                  ArrayMap<double>(s + off[0], n) +=
                      ConstArrayMap<T>(x + off[1], n).template cast<double>();
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

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
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
  dispatch(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const Mat> A(a.data<T>(), a.shape()[0], a.shape()[1]);
    Eigen::Map<const Mat> B(b.data<T>(), b.shape()[0], b.shape()[1]);
    Eigen::Map<Mat> C(out.data<T>(), rows, cols);
    if (transpose_a && transpose_b) {
      C.noalias() = A.transpose() * B.transpose();
    } else if (transpose_a) {
      C.noalias() = A.transpose() * B;
    } else if (transpose_b) {
      C.noalias() = A * B.transpose();
    } else {
      C.noalias() = A * B;
    }
  });
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
    using Arr = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    for (std::int64_t o = 0; o < outer; ++o) {
      Eigen::Map<const Arr> x(a.data<T>() + o * n * inner, n, inner);
      Eigen::Map<Arr> y(out.data<T>() + o * n * inner, n, inner);
      // Subtracting the maximum keeps exp from overflowing.
      y = x.rowwise() - x.colwise().maxCoeff();
      if constexpr (kLog) {
        y.rowwise() -= y.exp().colwise().sum().log();
      } else {
        exp_block(y.data(), y.data(), n * inner);  // Note [exp underflow]
        y.rowwise() /= y.colwise().sum();
      }
    }
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
    T* o = out.data<T>();
    const T* x = g.data<T>();
    parallel_for(out.size(), kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      ArrayMap<T>(o + lo, hi - lo) += ConstArrayMap<T>(x + lo, hi - lo);
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
    const T* x = a.data<T>();
    const T* y = b.data<T>();
    const auto loop = detail::make_broadcast_loop<3>(full, {&kept, &a.shape(), &b.shape()});
    const bool reduce_inner = loop.inner_stride(0) == 0;
    const std::int64_t sa = loop.inner_stride(1), sb = loop.inner_stride(2);
    // Note [Parallel reductions]
    reduce_rows(
        s, acc.size(), loop.rows(), loop.inner(), [&](double* s, std::int64_t lo, std::int64_t hi) {
          detail::for_each_row(
              loop, lo, hi, [&](const std::array<std::int64_t, 3>& off, std::int64_t n) {
                // Rows where one operand is a broadcast scalar: scale the other's sum.
                if (reduce_inner) {
                  for (std::int64_t k = 0; k < n; k += kSumBlock) {
                    const std::int64_t m = std::min(kSumBlock, n - k);
                    T part;
                    if (sa != 0 && sb != 0) {
                      part = (ConstArrayMap<T>(x + off[1] + k, m) *
                              ConstArrayMap<T>(y + off[2] + k, m))
                                 .sum();
                    } else if (sa != 0) {
                      part = ConstArrayMap<T>(x + off[1] + k, m).sum() * y[off[2]];
                    } else if (sb != 0) {
                      part = x[off[1]] * ConstArrayMap<T>(y + off[2] + k, m).sum();
                    } else {
                      part = x[off[1]] * y[off[2]] * T(m);
                    }
                    s[off[0]] += double(part);
                  }
                } else {
                  ArrayMap<double> dst(s + off[0], n);
                  if (sa != 0 && sb != 0) {
                    dst += (ConstArrayMap<T>(x + off[1], n) * ConstArrayMap<T>(y + off[2], n))
                               .template cast<double>();
                  } else if (sa != 0) {
                    dst += (ConstArrayMap<T>(x + off[1], n) * y[off[2]]).template cast<double>();
                  } else {
                    dst += (ConstArrayMap<T>(y + off[2], n) * x[off[1]]).template cast<double>();
                  }
                }
              });
        });
  });
  Tensor out = a.dtype() == DType::Float64 ? acc : acc.astype(a.dtype());
  return out.reshape(shape);
}

}  // namespace npdl::math
