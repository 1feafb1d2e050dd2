// Activations. Each saves its output when the VJP is cheapest from it.
#include <cmath>

#include "autodiff/catalogue.hpp"
#include "ops/detail/entries.hpp"
#include "ops/detail/record.hpp"
#include "ops/detail/relu_grad.hpp"
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
  return record(info::kRelu, {&a}, m::relu(a.value()), {},
                [](const VjpArgs& c) -> Vars { return {detail::relu_grad(c.grad, c.output())}; });
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

// Catalogue entries (Note [One entry per primitive] in autodiff/catalogue.hpp).
namespace {
using namespace catalogue;  // NOLINT: the entries below are written in its words
using detail::unary_samples;
constexpr const char* kFile = "ops/activation.cpp";
constexpr InputFacts kKinked{Domain::Real, /*kink_at_zero=*/true};
using Along = Var (*)(const Var&, int);

// The kinked activations: every rank (unary_samples), and squared with
// another slope, so that the second derivative is not zero where it exists.
template <class Op>
Samples kinked_samples(double alpha) {
  Samples s = unary_samples(Op::plain, Domain::Real);
  s.push_back({"squared, alpha " + std::to_string(alpha),
               [alpha](const std::vector<Var>& v) { return square(Op::with(v[0], alpha)); },
               {sample::normal({2, 3}, 61)}});
  return s;
}
struct LeakyRelu {
  static Var plain(const Var& a) { return leaky_relu(a); }
  static Var with(const Var& a, double alpha) { return leaky_relu(a, alpha); }
};
struct Elu {
  static Var plain(const Var& a) { return elu(a); }
  static Var with(const Var& a, double alpha) { return elu(a, alpha); }
};

// Along every axis of a rank-3 tensor, a negative one too.
template <Along op>
Samples along_every_axis() {
  Samples s;
  const Tensor x = sample::normal({2, 3, 4}, 62);
  for (int axis : {0, 1, 2, -1}) {
    s.push_back({"axis " + std::to_string(axis),
                 [axis](const std::vector<Var>& v) { return op(v[0], axis); },
                 {x}});
  }
  return s;
}

template <Along op>
Var random_along(const Var& a, const Var&, const Choices& c) {
  return op(a, static_cast<int>(c.bits % 9) - 4);
}

const Primitive kEntries[] = {
    Primitive(info::kRelu, kFile)
        .with_inputs({kKinked})
        .with_samples([] {
          Samples s = unary_samples(relu, Domain::Real);
          s.push_back({"squared",
                       [](const std::vector<Var>& v) { return square(relu(v[0])); },
                       {sample::normal({2, 3}, 63)}});
          return s;
        })
        .with_random([](const Var& a, const Var&, const Choices&) { return relu(a); })
        .with_kernel({"relu", -5, 5, 0}),
    Primitive(info::kSigmoid, kFile)
        .with_samples([] { return unary_samples(sigmoid, Domain::Real); })
        .with_random([](const Var& a, const Var&, const Choices&) { return sigmoid(a); })
        .with_kernel({"sigmoid", -30, 30, 4}),
    Primitive(info::kTanh, kFile)
        .with_samples([] { return unary_samples(tanh, Domain::Real); })
        .with_random([](const Var& a, const Var&, const Choices&) { return tanh(a); })
        .with_kernel({"tanh", -10, 10, 4}),
    Primitive(info::kSoftplus, kFile)
        .with_samples([] { return unary_samples(softplus, Domain::Real); })
        .with_random([](const Var& a, const Var&, const Choices&) { return softplus(a); }),
    Primitive(info::kLeakyRelu, kFile)
        .with_inputs({kKinked})
        .with_samples([] { return kinked_samples<LeakyRelu>(0.1); })
        .with_random(
            [](const Var& a, const Var&, const Choices& c) { return leaky_relu(a, c.scalar); }),
    Primitive(info::kElu, kFile)
        .with_inputs({kKinked})
        .with_samples([] { return kinked_samples<Elu>(0.7); })
        .with_random([](const Var& a, const Var&, const Choices& c) {
          return elu(a, std::fabs(c.scalar) + 0.1);
        }),
    Primitive(info::kSoftmax, kFile)
        .with_samples(along_every_axis<softmax>)
        .with_random(random_along<softmax>),
    Primitive(info::kLogSoftmax, kFile)
        .with_samples(along_every_axis<log_softmax>)
        .with_random(random_along<log_softmax>),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
