// Activations. Each saves its output when the VJP is cheapest from it.
#include "autodiff/tensor_math.hpp"
#include "ops/info.hpp"
#include "ops/ops.hpp"
#include "ops/record.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kRelu{"relu", "max(a, 0)", "ga = g * (a > 0)",
                   /*vjp_reads_output=*/true};
const OpInfo kSigmoid{"sigmoid", "y = 1 / (1 + exp(-a))", "ga = g * y * (1 - y)",
                      /*vjp_reads_output=*/true};
const OpInfo kTanh{"tanh", "y = tanh(a)", "ga = g * (1 - y^2)",
                   /*vjp_reads_output=*/true};
const OpInfo kSoftplus{"softplus", "y = log(1 + exp(a))", "ga = g * sigmoid(a)"};
const OpInfo kLeakyRelu{"leaky_relu", "y = a if a > 0, else alpha * a",
                        "ga = g if a > 0, else alpha * g   (at 0: alpha, a subgradient)"};
const OpInfo kElu{"elu", "y = a if a > 0, else alpha * (exp(a) - 1)",
                  "ga = g if a > 0, else alpha * exp(a) * g   (at 0: alpha; 1 when alpha = 1)"};
const OpInfo kSoftmax{"softmax", "y = exp(a) / sum(exp(a)) along axis",
                      "ga = y * (g - sum(g * y) along axis)",
                      /*vjp_reads_output=*/true};
const OpInfo kLogSoftmax{"log_softmax", "y = a - log(sum(exp(a))) along axis",
                         "ga = g - exp(y) * sum(g) along axis",
                         /*vjp_reads_output=*/true};
}  // namespace info

Var relu(const Var& a) {
  return record(info::kRelu, {&a}, m::relu(a.value()), {},
                [](const VjpArgs& c) -> Tensors { return {m::mul(c.grad, m::step(c.output))}; });
}

Var sigmoid(const Var& a) {
  return record(info::kSigmoid, {&a}, m::sigmoid(a.value()), {}, [](const VjpArgs& c) -> Tensors {
    const Tensor dy = m::sub(c.output, m::square(c.output));  // y (1 - y)
    return {m::mul(c.grad, dy)};
  });
}

Var tanh(const Var& a) {
  return record(info::kTanh, {&a}, m::tanh(a.value()), {}, [](const VjpArgs& c) -> Tensors {
    const Tensor dy = m::add_scalar(m::neg(m::square(c.output)), 1.0);
    return {m::mul(c.grad, dy)};
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
  return record(info::kSoftplus, {&a}, m::softplus(a.value()), {a.value()},
                [](const VjpArgs& c) -> Tensors {
                  return {m::mul(c.grad, m::sigmoid(c.saved[0]))};
                });
}

Var leaky_relu(const Var& a, double alpha) {
  return record(info::kLeakyRelu, {&a}, m::leaky_relu(a.value(), alpha), {a.value()},
                [alpha](const VjpArgs& c) -> Tensors {
                  return {m::binary_map(c.grad, c.saved[0], "leaky_relu VJP",
                                        [alpha](const auto& g, const auto& x) {
                                          using T = typename std::decay_t<decltype(x)>::Scalar;
                                          return (x > T(0)).select(g, g * T(alpha));
                                        })};
                });
}

Var elu(const Var& a, double alpha) {
  return record(info::kElu, {&a}, m::elu(a.value(), alpha), {a.value()},
                [alpha](const VjpArgs& c) -> Tensors {
                  const Tensor e = m::exp(c.saved[0]);
                  const Tensor slope = m::binary_map(
                      c.saved[0], e, "elu VJP", [alpha](const auto& x, const auto& ex) {
                        using T = typename std::decay_t<decltype(x)>::Scalar;
                        return (x > T(0)).select(T(1), ex * T(alpha));
                      });
                  return {m::mul(c.grad, slope)};
                });
}

Var softmax(const Var& a, int axis_in) {
  const int axis = normalize_axis(axis_in, a.rank());
  return record(info::kSoftmax, {&a}, m::softmax(a.value(), axis), {},
                [axis](const VjpArgs& c) -> Tensors {
                  const Tensor gy = m::sum(m::mul(c.grad, c.output), {axis}, true);
                  return {m::mul(c.output, m::sub(c.grad, gy))};
                });
}

Var log_softmax(const Var& a, int axis_in) {
  const int axis = normalize_axis(axis_in, a.rank());
  return record(info::kLogSoftmax, {&a}, m::log_softmax(a.value(), axis), {},
                [axis](const VjpArgs& c) -> Tensors {
                  const Tensor gs = m::sum(c.grad, {axis}, true);
                  return {m::sub(c.grad, m::mul(m::exp(c.output), gs))};
                });
}

}  // namespace npdl::ops
