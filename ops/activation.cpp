// Activations. Each saves its output when the VJP is cheapest from it.
#include "ops/detail/record.hpp"
#include "ops/info.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kRelu{"relu", "y = max(a, 0)", "ga = g * (y > 0)   ((y > 0) a constant mask)",
                   /*vjp_reads_output=*/true};
const OpInfo kSigmoid{"sigmoid", "y = 1 / (1 + exp(-a))", "ga = g * (y - y^2)",
                      /*vjp_reads_output=*/true};
const OpInfo kTanh{"tanh", "y = tanh(a)", "ga = g * (1 - y^2)",
                   /*vjp_reads_output=*/true};
const OpInfo kSoftplus{"softplus", "y = log(1 + exp(a))", "ga = g * sigmoid(a)", false, 0b1};
const OpInfo kLeakyRelu{"leaky_relu", "y = a if a > 0, else alpha * a",
                        "ga = g if a > 0, else alpha * g   (at 0: alpha, a subgradient)", false,
                        0b1};
const OpInfo kElu{"elu", "y = a if a > 0, else alpha * (exp(a) - 1)",
                  "ga = g if a > 0, else alpha * exp(a) * g   (at 0: alpha; 1 when alpha = 1)",
                  false, 0b1};
const OpInfo kSoftmax{"softmax", "y = exp(a) / sum(exp(a)) along axis",
                      "ga = y * (g - sum(g * y) along axis)",
                      /*vjp_reads_output=*/true};
const OpInfo kLogSoftmax{"log_softmax", "y = a - log(sum(exp(a))) along axis",
                         "ga = g - exp(y) * sum(g) along axis",
                         /*vjp_reads_output=*/true};
}  // namespace info

// The VJPs are written with ops (Note [Differentiable VJPs]). Where an
// activation is piecewise, which piece applies is a constant mask: its
// derivative is zero wherever it exists.

Var relu(const Var& a) {
  return record(info::kRelu, {&a}, m::relu(a.value()), {}, [](const VjpArgs& c) -> Vars {
    const Var y = c.output();
    return {mul(c.grad, Var(m::step(y.value())))};
  });
}

Var sigmoid(const Var& a) {
  return record(info::kSigmoid, {&a}, m::sigmoid(a.value()), {}, [](const VjpArgs& c) -> Vars {
    const Var y = c.output();
    return {mul(c.grad, sub(y, square(y)))};  // y (1 - y)
  });
}

Var tanh(const Var& a) {
  return record(info::kTanh, {&a}, m::tanh(a.value()), {}, [](const VjpArgs& c) -> Vars {
    return {mul(c.grad, add_scalar(neg(square(c.output())), 1.0))};
  });
}

// Note [Kinks and compositions]
// softplus, leaky_relu and elu are primitives, not compositions of relu:
// relu's derivative at 0 is 0 (a valid subgradient of relu), but in
// relu(x) + log(1 + exp(-|x|)) the kinks of relu(x) and |x| cancel only in
// exact calculus; under the subgradient convention the chain rule gives 0
// at x = 0, where softplus' true derivative is 0.5. Each VJP here is the
// function's own derivative, right everywhere it exists.

Var softplus(const Var& a) {
  return record(info::kSoftplus, {&a}, m::softplus(a.value()), {},
                [](const VjpArgs& c) -> Vars { return {mul(c.grad, sigmoid(c.input(0)))}; });
}

Var leaky_relu(const Var& a, double alpha) {
  return record(
      info::kLeakyRelu, {&a}, m::leaky_relu(a.value(), alpha), {},
      [alpha](const VjpArgs& c) -> Vars {
        const Var x = c.input(0);
        auto slope = [alpha](const auto& g, const auto& v) {
          using T = typename std::decay_t<decltype(v)>::Scalar;
          return (v > T(0)).select(g, g * T(alpha));
        };
        return {detail::fused_or(
            {&c.grad, &x},
            [&] { return m::binary_map(c.grad.value(), x.value(), "leaky_relu VJP", slope); },
            [&] {
              const Tensor ones = Tensor::ones(x.shape(), x.dtype());
              return mul(c.grad, Var(m::binary_map(ones, x.value(), "leaky_relu VJP", slope)));
            })};
      });
}

Var elu(const Var& a, double alpha) {
  return record(info::kElu, {&a}, m::elu(a.value(), alpha), {}, [alpha](const VjpArgs& c) -> Vars {
    const Var x = c.input(0);
    return {detail::fused_or(
        {&c.grad, &x},
        [&] {
          const Tensor e = m::exp(x.value());
          const Tensor slope =
              m::binary_map(x.value(), e, "elu VJP", [alpha](const auto& v, const auto& ev) {
                using T = typename std::decay_t<decltype(v)>::Scalar;
                return (v > T(0)).select(T(1), ev * T(alpha));
              });
          return m::mul(c.grad.value(), slope);
        },
        [&] {
          // slope = positive + alpha * (1 - positive) * exp((1 - positive) * x)
          // with the constant mask positive = (x > 0); the exponent is 0
          // where x > 0, so a large x cannot overflow into 0 * inf.
          const Tensor positive = m::step(x.value());
          const Tensor negative = m::add_scalar(m::neg(positive), 1.0);
          const Var exp_part = mul(Var(m::scale(negative, alpha)), exp(mul(Var(negative), x)));
          return mul(c.grad, add(Var(positive), exp_part));
        })};
  });
}

Var softmax(const Var& a, int axis_in) {
  const int axis = normalize_axis(axis_in, a.rank());
  return record(info::kSoftmax, {&a}, m::softmax(a.value(), axis), {},
                [axis](const VjpArgs& c) -> Vars {
                  const Var y = c.output();
                  return {mul(y, sub(c.grad, sum(mul(c.grad, y), {axis}, true)))};
                });
}

Var log_softmax(const Var& a, int axis_in) {
  const int axis = normalize_axis(axis_in, a.rank());
  return record(info::kLogSoftmax, {&a}, m::log_softmax(a.value(), axis), {},
                [axis](const VjpArgs& c) -> Vars {
                  return {sub(c.grad, mul(exp(c.output()), sum(c.grad, {axis}, true)))};
                });
}

}  // namespace npdl::ops
