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
