#pragma once
// Primitive ops on graph values. Each computes its value at once and, when
// gradients are enabled, records a vertex whose VJP is stated next to its
// forward in the op's .cpp file, together with the VJP's formula in words
// (the OpInfo, which the teaching tools print). Binary ops broadcast as
// NumPy does; every VJP undoes broadcasting with math::unbroadcast (mul's
// with math::mul_unbroadcast, the same sum without materialising a * b).
//
// Domain errors follow IEEE 754: log(0) = -inf, log(x < 0) = NaN,
// sqrt(x < 0) = NaN, rsqrt(0) = +inf, rsqrt(x < 0) = NaN. They never throw.
#include <vector>

#include "autodiff/graph.hpp"

namespace npdl::ops {

// Elementwise, broadcasting (ops/elementwise.cpp).
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var add_scalar(const Var& a, double s);
Var mul_scalar(const Var& a, double s);
Var neg(const Var& a);
Var square(const Var& a);
Var sqrt(const Var& a);
Var rsqrt(const Var& a);
Var exp(const Var& a);
Var log(const Var& a);

// Reductions over any set of axes; empty axes reduce all (ops/reduction.cpp).
Var sum(const Var& a, const Axes& axes = {}, bool keepdims = false);
Var mean(const Var& a, const Axes& axes = {}, bool keepdims = false);

// Shapes (ops/shape.cpp).
Var reshape(const Var& a, const Shape& shape);
Var broadcast_to(const Var& a, const Shape& shape);
/// Sums `a` down to `shape`, which `a` is a broadcast of (undoes
/// broadcasting: the adjoint of broadcast_to).
Var sum_to(const Var& a, const Shape& shape);
/// Result axis i is input axis perm[i]; empty perm reverses the axes.
Var transpose(const Var& a, const Axes& perm = {});

// Linear algebra (ops/linalg.cpp): rank-2 @ rank-2.
Var matmul(const Var& a, const Var& b);
/// op(a) @ op(b), op transposing when asked: one kernel when nothing
/// records, matmul of transposes otherwise.
Var matmul(const Var& a, const Var& b, bool transpose_a, bool transpose_b);

// Activations (ops/activation.cpp).
Var relu(const Var& a);
Var sigmoid(const Var& a);
Var tanh(const Var& a);
/// log(1 + exp(a)), stable for large |a|; derivative sigmoid(a).
Var softplus(const Var& a);
/// a for a > 0, alpha * a otherwise (derivative at 0: alpha).
Var leaky_relu(const Var& a, double alpha = 0.01);
/// a for a > 0, alpha * (exp(a) - 1) otherwise (derivative at 0: alpha).
Var elu(const Var& a, double alpha = 1.0);
Var softmax(const Var& a, int axis = -1);
Var log_softmax(const Var& a, int axis = -1);

}  // namespace npdl::ops

namespace npdl {
Var operator+(const Var& a, const Var& b);
Var operator-(const Var& a, const Var& b);
Var operator*(const Var& a, const Var& b);
Var operator/(const Var& a, const Var& b);
Var operator-(const Var& a);
Var operator+(const Var& a, double s);
Var operator+(double s, const Var& a);
Var operator-(const Var& a, double s);
Var operator-(double s, const Var& a);
Var operator*(const Var& a, double s);
Var operator*(double s, const Var& a);
Var operator/(const Var& a, double s);
Var operator/(double s, const Var& a);
}  // namespace npdl
