#pragma once
// Eager numerics on tensors: the kernels that ops' forwards and VJPs are
// written in. Nothing here records on a graph. Binary functions broadcast as
// NumPy does and require one dtype.
#include "tensor/tensor.hpp"

namespace npdl::math {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
/// Elementwise f(a, b) for two tensors of one shape and dtype, in one pass;
/// f takes Eigen arrays (for fused VJP expressions such as g * y * (1 - y)).
template <class F>
Tensor binary_map(const Tensor& a, const Tensor& b, const char* name, F f);

/// a * s (s a scalar), without broadcasting machinery.
Tensor scale(const Tensor& a, double s);
/// a + s elementwise.
Tensor add_scalar(const Tensor& a, double s);

Tensor neg(const Tensor& a);
Tensor square(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);
/// log(1 + exp(a)), computed as max(a, 0) + log1p(exp(-|a|)): no overflow.
Tensor softplus(const Tensor& a);
/// a where a > 0, else alpha * a.
Tensor leaky_relu(const Tensor& a, double alpha);
/// a where a > 0, else alpha * (exp(a) - 1).
Tensor elu(const Tensor& a, double alpha);
/// 1 where a > 0, else 0.
Tensor step(const Tensor& a);
/// g * step(y) in one pass (relu's VJP): the bits of mul(g, step(y)).
Tensor mul_step(const Tensor& g, const Tensor& y);

/// Sum over `axes` (empty: all axes), accumulated in float64.
Tensor sum(const Tensor& a, const Axes& axes = {}, bool keepdims = false);
Tensor mean(const Tensor& a, const Axes& axes = {}, bool keepdims = false);
/// Sums `grad` down to `shape`, the shape it was broadcast from: the one
/// rule by which every VJP undoes broadcasting.
Tensor unbroadcast(const Tensor& grad, const Shape& shape);
/// unbroadcast(a * b, shape) without materialising a * b: what mul's VJP
/// needs for an operand that was broadcast (a bias, a per-feature scale).
Tensor mul_unbroadcast(const Tensor& a, const Tensor& b, const Shape& shape);
/// Copies `a` broadcast to `shape`; throws ShapeError when it cannot be.
Tensor broadcast_to(const Tensor& a, const Shape& shape);

/// Axes permuted: result axis i is input axis perm[i]. Empty perm reverses.
Tensor transpose(const Tensor& a, const Axes& perm = {});
/// How a matrix product uses the thread pool.
enum class ProductThreads {
  /// Cut into blocks by shape and shared (Note [Splitting matrix products]).
  Shared,
  /// One piece on the calling thread: for callers that already share their
  /// work among threads (convolution's groups of samples).
  CallerOnly,
};
/// Matrix product of two rank-2 tensors, op(a) @ op(b) where op transposes
/// when asked (without copying).
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false,
              ProductThreads threads = ProductThreads::Shared);
Tensor softmax(const Tensor& a, int axis = -1);
Tensor log_softmax(const Tensor& a, int axis = -1);

/// out += g, in place (same shape and dtype).
void add_inplace(Tensor& out, const Tensor& g);

/// Note [Non-finite comparison]
/// |actual - expected| for one pair of elements, where non-finite values
/// must match exactly: 0 when both are the same value (NaN and NaN, +inf
/// and +inf), +inf when only one is finite, when they are opposite
/// infinities, or when one is NaN. A NaN can then never hide behind an
/// error ratio that is itself NaN.
double element_error(double actual, double expected);

/// Largest |a - b| (Note [Non-finite comparison]) and the flat index where it occurs.
struct MaxDiff {
  double abs = 0.0;
  double rel = 0.0;
  std::int64_t index = -1;
};
MaxDiff max_abs_diff(const Tensor& a, const Tensor& b);
/// True when every element is finite.
bool all_finite(const Tensor& a);

}  // namespace npdl::math

#include "tensor/tensor_math_inl.hpp"
