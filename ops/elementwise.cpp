// Elementwise primitives: forward, VJP and the VJP's formula, one op each.
#include <cmath>

#include "autodiff/tensor_math.hpp"
#include "ops/info.hpp"
#include "ops/ops.hpp"
#include "ops/record.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kAdd{"add", "a + b", "ga = unbroadcast(g), gb = unbroadcast(g)"};
const OpInfo kSub{"sub", "a - b", "ga = unbroadcast(g), gb = -unbroadcast(g)"};
const OpInfo kMul{"mul", "a * b", "ga = unbroadcast(g * b), gb = unbroadcast(g * a)"};
const OpInfo kDiv{"div", "a / b", "ga = unbroadcast(g / b), gb = -unbroadcast(g * a / b^2)",
                  /*vjp_reads_output=*/true};
const OpInfo kAddScalar{"add_scalar", "a + s", "ga = g"};
const OpInfo kMulScalar{"mul_scalar", "a * s", "ga = s * g"};
const OpInfo kNeg{"neg", "-a", "ga = -g"};
const OpInfo kSquare{"square", "a^2", "ga = 2 * a * g"};
const OpInfo kSqrt{"sqrt", "sqrt(a)", "ga = g / (2 * sqrt(a))   (saves the output)",
                   /*vjp_reads_output=*/true};
const OpInfo kRsqrt{"rsqrt", "1 / sqrt(a)", "ga = -0.5 * g * rsqrt(a)^3   (saves the output)",
                    /*vjp_reads_output=*/true};
const OpInfo kExp{"exp", "exp(a)", "ga = g * exp(a)   (saves the output)",
                  /*vjp_reads_output=*/true};
const OpInfo kLog{"log", "log(a)", "ga = g / a"};
}  // namespace info

Var add(const Var& a, const Var& b) {
  return record(info::kAdd, {&a, &b}, m::add(a.value(), b.value()), {},
                [](const VjpArgs& c) -> Tensors {
                  return {c.unbroadcast(c.grad, 0), c.unbroadcast(c.grad, 1)};
                });
}

Var sub(const Var& a, const Var& b) {
  return record(info::kSub, {&a, &b}, m::sub(a.value(), b.value()), {},
                [](const VjpArgs& c) -> Tensors {
                  return {c.unbroadcast(c.grad, 0), m::neg(c.unbroadcast(c.grad, 1))};
                });
}

Var mul(const Var& a, const Var& b) {
  return record(info::kMul, {&a, &b}, m::mul(a.value(), b.value()), {a.value(), b.value()},
                [](const VjpArgs& c) -> Tensors {
                  return {m::mul_unbroadcast(c.grad, c.saved[1], c.input_shapes[0]),
                          m::mul_unbroadcast(c.grad, c.saved[0], c.input_shapes[1])};
                });
}

Var div(const Var& a, const Var& b) {
  return record(info::kDiv, {&a, &b}, m::div(a.value(), b.value()), {b.value()},
                [](const VjpArgs& c) -> Tensors {
                  const Tensor ga = m::div(c.grad, c.saved[0]);
                  // g * a / b^2 = (g / b) * (a / b) = ga * output
                  return {c.unbroadcast(ga, 0), m::neg(c.unbroadcast(m::mul(ga, c.output), 1))};
                });
}

Var add_scalar(const Var& a, double s) {
  return record(info::kAddScalar, {&a}, m::add_scalar(a.value(), s), {},
                [](const VjpArgs& c) -> Tensors { return {c.grad}; });
}

Var mul_scalar(const Var& a, double s) {
  return record(info::kMulScalar, {&a}, m::scale(a.value(), s), {},
                [s](const VjpArgs& c) -> Tensors { return {m::scale(c.grad, s)}; });
}

Var neg(const Var& a) {
  return record(info::kNeg, {&a}, m::neg(a.value()), {},
                [](const VjpArgs& c) -> Tensors { return {m::neg(c.grad)}; });
}

Var square(const Var& a) {
  return record(
      info::kSquare, {&a}, m::square(a.value()), {a.value()}, [](const VjpArgs& c) -> Tensors {
        return {m::binary_map(c.grad, c.saved[0], "square VJP",
                              [](const auto& g, const auto& x) { return (g * x) + (g * x); })};
      });
}

Var sqrt(const Var& a) {
  return record(info::kSqrt, {&a}, m::sqrt(a.value()), {}, [](const VjpArgs& c) -> Tensors {
    return {m::scale(m::div(c.grad, c.output), 0.5)};
  });
}

Var rsqrt(const Var& a) {
  return record(info::kRsqrt, {&a}, m::rsqrt(a.value()), {}, [](const VjpArgs& c) -> Tensors {
    const Tensor r3 = m::mul(m::square(c.output), c.output);
    return {m::scale(m::mul(c.grad, r3), -0.5)};
  });
}

Var exp(const Var& a) {
  return record(info::kExp, {&a}, m::exp(a.value()), {},
                [](const VjpArgs& c) -> Tensors { return {m::mul(c.grad, c.output)}; });
}

Var log(const Var& a) {
  return record(info::kLog, {&a}, m::log(a.value()), {a.value()},
                [](const VjpArgs& c) -> Tensors { return {m::div(c.grad, c.saved[0])}; });
}

}  // namespace npdl::ops

namespace npdl {
namespace {
Var constant_like(double s, const Var& a) { return Var(Tensor::scalar(s, a.dtype())); }
}  // namespace

Var operator+(const Var& a, const Var& b) { return ops::add(a, b); }
Var operator-(const Var& a, const Var& b) { return ops::sub(a, b); }
Var operator*(const Var& a, const Var& b) { return ops::mul(a, b); }
Var operator/(const Var& a, const Var& b) { return ops::div(a, b); }
Var operator-(const Var& a) { return ops::neg(a); }
Var operator+(const Var& a, double s) { return ops::add_scalar(a, s); }
Var operator+(double s, const Var& a) { return ops::add_scalar(a, s); }
Var operator-(const Var& a, double s) { return ops::add_scalar(a, -s); }
Var operator-(double s, const Var& a) { return ops::add_scalar(ops::neg(a), s); }
Var operator*(const Var& a, double s) { return ops::mul_scalar(a, s); }
Var operator*(double s, const Var& a) { return ops::mul_scalar(a, s); }
Var operator/(const Var& a, double s) { return ops::mul_scalar(a, 1.0 / s); }
Var operator/(double s, const Var& a) { return ops::div(constant_like(s, a), a); }
}  // namespace npdl
