// Elementwise primitives: forward, VJP and the VJP's formula, one op each.
#include <cmath>

#include "autodiff/catalogue.hpp"
#include "ops/detail/entries.hpp"
#include "ops/detail/record.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kAdd{"add", "a + b", "ga = sum_to(g), gb = sum_to(g)"};
const OpInfo kSub{"sub", "a - b", "ga = sum_to(g), gb = -sum_to(g)"};
const OpInfo kMul{"mul", "a * b", "ga = sum_to(g * b), gb = sum_to(g * a)", false, 0b11};
const OpInfo kDiv{"div", "y = a / b", "ga = sum_to(g / b), gb = -sum_to(g / b * y)",
                  /*vjp_reads_output=*/true, /*saves_inputs=*/0b10};
const OpInfo kAddScalar{"add_scalar", "a + s", "ga = g"};
const OpInfo kMulScalar{"mul_scalar", "a * s", "ga = s * g"};
const OpInfo kNeg{"neg", "-a", "ga = -g"};
const OpInfo kSquare{"square", "a^2", "ga = 2 * g * a", false, 0b1};
const OpInfo kSqrt{"sqrt", "y = sqrt(a)", "ga = 0.5 * g / y", /*vjp_reads_output=*/true};
const OpInfo kRsqrt{"rsqrt", "y = 1 / sqrt(a)", "ga = -0.5 * g * y^3", /*vjp_reads_output=*/true};
const OpInfo kExp{"exp", "y = exp(a)", "ga = g * y", /*vjp_reads_output=*/true};
const OpInfo kLog{"log", "log(a)", "ga = g / a", false, 0b1};
}  // namespace info

// Each VJP below is written with the ops of this file (Note [Differentiable
// VJPs]): first order computes with them, create_graph records them.

Var add(const Var& a, const Var& b) {
  return record(info::kAdd, {&a, &b}, m::add(a.value(), b.value()), {},
                [](const VjpArgs& c) -> Vars {
                  return {sum_to(c.grad, c.input_shapes[0]), sum_to(c.grad, c.input_shapes[1])};
                });
}

Var sub(const Var& a, const Var& b) {
  return record(
      info::kSub, {&a, &b}, m::sub(a.value(), b.value()), {}, [](const VjpArgs& c) -> Vars {
        return {sum_to(c.grad, c.input_shapes[0]), neg(sum_to(c.grad, c.input_shapes[1]))};
      });
}

namespace {
// sum_to(g * b, shape), in one pass when nothing records.
Var mul_sum_to(const Var& g, const Var& b, const Shape& shape) {
  return detail::fused_or(
      {&g, &b}, [&] { return m::mul_unbroadcast(g.value(), b.value(), shape); },
      [&] { return sum_to(mul(g, b), shape); });
}
}  // namespace

Var mul(const Var& a, const Var& b) {
  return record(info::kMul, {&a, &b}, m::mul(a.value(), b.value()), {},
                [](const VjpArgs& c) -> Vars {
                  return {mul_sum_to(c.grad, c.input(1), c.input_shapes[0]),
                          mul_sum_to(c.grad, c.input(0), c.input_shapes[1])};
                });
}

Var div(const Var& a, const Var& b) {
  return record(
      info::kDiv, {&a, &b}, m::div(a.value(), b.value()), {}, [](const VjpArgs& c) -> Vars {
        const Var ga = div(c.grad, c.input(1));
        // g * a / b^2 = (g / b) * (a / b) = ga * y
        return {sum_to(ga, c.input_shapes[0]), neg(mul_sum_to(ga, c.output(), c.input_shapes[1]))};
      });
}

Var add_scalar(const Var& a, double s) {
  return record(info::kAddScalar, {&a}, m::add_scalar(a.value(), s), {},
                [](const VjpArgs& c) -> Vars { return {c.grad}; });
}

Var mul_scalar(const Var& a, double s) {
  return record(info::kMulScalar, {&a}, m::scale(a.value(), s), {},
                [s](const VjpArgs& c) -> Vars { return {mul_scalar(c.grad, s)}; });
}

Var neg(const Var& a) {
  return record(info::kNeg, {&a}, m::neg(a.value()), {},
                [](const VjpArgs& c) -> Vars { return {neg(c.grad)}; });
}

Var square(const Var& a) {
  return record(info::kSquare, {&a}, m::square(a.value()), {}, [](const VjpArgs& c) -> Vars {
    const Var x = c.input(0);
    // (g * x) + (g * x) is 2 * g * x exactly, in one pass.
    return {detail::fused_or(
        {&c.grad, &x},
        [&] {
          return m::binary_map(c.grad.value(), x.value(), "square VJP",
                               [](const auto& g, const auto& v) { return (g * v) + (g * v); });
        },
        [&] { return mul_scalar(mul(c.grad, x), 2.0); })};
  });
}

Var sqrt(const Var& a) {
  return record(info::kSqrt, {&a}, m::sqrt(a.value()), {}, [](const VjpArgs& c) -> Vars {
    return {mul_scalar(div(c.grad, c.output()), 0.5)};
  });
}

Var rsqrt(const Var& a) {
  return record(info::kRsqrt, {&a}, m::rsqrt(a.value()), {}, [](const VjpArgs& c) -> Vars {
    const Var y = c.output();
    return {mul_scalar(mul(c.grad, mul(square(y), y)), -0.5)};
  });
}

Var exp(const Var& a) {
  return record(info::kExp, {&a}, m::exp(a.value()), {},
                [](const VjpArgs& c) -> Vars { return {mul(c.grad, c.output())}; });
}

Var log(const Var& a) {
  return record(info::kLog, {&a}, m::log(a.value()), {},
                [](const VjpArgs& c) -> Vars { return {div(c.grad, c.input(0))}; });
}

// Catalogue entries (Note [One entry per primitive] in autodiff/catalogue.hpp).
namespace {
using namespace catalogue;  // NOLINT: the entries below are written in its words
using detail::binary_samples;
using detail::check_random_size;
using detail::unary_samples;
constexpr const char* kFile = "ops/elementwise.cpp";
constexpr InputFacts kReal{}, kPositive{Domain::Positive};

template <detail::BinaryFn op>
Var broadcasting(const Var& a, const Var& b, const Choices& c) {
  check_random_size(numel(broadcast_shapes(a.shape(), b.shape())), c, "a binary op");
  return op(a, b);
}

// A linear op squared: its second derivative is then not zero.
template <detail::UnaryFn op>
Samples squared_samples() {
  return {{"square of it", [](const std::vector<Var>& v) { return square(op(v[0])); },
           {sample::normal({2, 3}, 21)}}};
}

const Primitive kEntries[] = {
    Primitive(info::kAdd, kFile)
        .with_inputs({kReal, kReal})
        .with_samples([] { return binary_samples(add, Domain::Real); })
        .with_random(broadcasting<add>),
    Primitive(info::kSub, kFile)
        .with_inputs({kReal, kReal})
        .with_samples([] { return binary_samples(sub, Domain::Real); })
        .with_random(broadcasting<sub>),
    Primitive(info::kMul, kFile)
        .with_inputs({kReal, kReal})
        .with_samples([] { return binary_samples(mul, Domain::Real); })
        .with_random(broadcasting<mul>),
    Primitive(info::kDiv, kFile)
        .with_inputs({kReal, kPositive})
        .with_samples([] {
          Samples s = binary_samples(div, Domain::Positive);
          s.push_back({"a scalar over a tensor", [](const std::vector<Var>& v) { return 2.0 / v[0]; },
                       {sample::positive({2, 3}, 22)}});
          return s;
        })
        .with_random(broadcasting<div>),
    Primitive(info::kAddScalar, kFile)
        .with_samples([] {
          return Samples{{"(a + 2.5)^2",
                          [](const std::vector<Var>& v) { return square(add_scalar(v[0], 2.5)); },
                          {sample::normal({2, 3}, 23)}}};
        })
        .with_random([](const Var& a, const Var&, const Choices& c) { return add_scalar(a, c.scalar); }),
    Primitive(info::kMulScalar, kFile)
        .with_samples([] {
          return Samples{{"(-1.5 a)^2",
                          [](const std::vector<Var>& v) { return square(mul_scalar(v[0], -1.5)); },
                          {sample::normal({2, 3}, 24)}},
                         {"1 - a / 4", [](const std::vector<Var>& v) { return 1.0 - v[0] / 4.0; },
                          {sample::normal({5}, 25)}}};
        })
        .with_random([](const Var& a, const Var&, const Choices& c) { return mul_scalar(a, c.scalar); }),
    Primitive(info::kNeg, kFile)
        .with_samples([] {
          Samples s = unary_samples(neg, Domain::Real);
          s.push_back(squared_samples<neg>()[0]);
          return s;
        })
        .with_random([](const Var& a, const Var&, const Choices&) { return neg(a); })
        .with_kernel({"neg", -5, 5, 0}),
    Primitive(info::kSquare, kFile)
        .with_samples([] { return unary_samples(square, Domain::Real); })
        .with_random([](const Var& a, const Var&, const Choices&) { return square(a); })
        .with_kernel({"square", -5, 5, 0}),
    Primitive(info::kSqrt, kFile)
        .with_inputs({kPositive})
        .with_samples([] { return unary_samples(sqrt, Domain::Positive); })
        .with_random([](const Var& a, const Var&, const Choices&) { return sqrt(a); })
        .with_kernel({"sqrt", 0, 100, 2}),
    Primitive(info::kRsqrt, kFile)
        .with_inputs({kPositive})
        .with_samples([] { return unary_samples(rsqrt, Domain::Positive); })
        .with_random([](const Var& a, const Var&, const Choices&) { return rsqrt(a); })
        .with_kernel({"rsqrt", 1e-3, 100, 4}),
    Primitive(info::kExp, kFile)
        .with_samples([] { return unary_samples(exp, Domain::Real); })
        .with_random([](const Var& a, const Var&, const Choices&) { return exp(a); })
        .with_kernel({"exp", -80, 80, 4}),
    Primitive(info::kLog, kFile)
        .with_inputs({kPositive})
        .with_samples([] { return unary_samples(log, Domain::Positive); })
        .with_random([](const Var& a, const Var&, const Choices&) { return log(a); })
        .with_kernel({"log", 1e-6, 1e6, 4}),
};
const Registration kRegistered(kEntries);
}  // namespace

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
