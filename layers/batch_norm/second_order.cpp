// The fused batch-norm nodes' gradients under create_graph: recorded from
// primitives, or as nodes whose VJPs are the hand-derived double backward.
#include "layers/batch_norm/second_order.hpp"

#include <cmath>

#include "autodiff/gradcheck.hpp"
#include "layers/batch_norm/composite.hpp"
#include "layers/batch_norm/double_backward.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::layers {

const OpInfo kHandDx{"batch_normal_fused_backward_dx",
                     "dx = (gamma * invstd / M) * (M * dy - sum(dy) - xhat * sum(dy * xhat))",
                     "(g_dy, g_x, g_gamma) = the hand-derived double backward with ggx = g "
                     "(Note [Batch-norm double backward])",
                     false,
                     0b111,
                     /*twice_differentiable=*/false};
const OpInfo kHandDgamma{"batch_normal_fused_backward_dgamma",
                         "dgamma = sum(dy * xhat)",
                         "(g_dy, g_x, g_gamma) = the hand-derived double backward with "
                         "gggamma = g (Note [Batch-norm double backward])",
                         false,
                         0b111,
                         /*twice_differentiable=*/false};

namespace {

Tensor f64(const Tensor& t) { return t.astype(DType::Float64); }

// Checked mode at second order: d<g, first[which]>/d(x, gamma, dy) by
// reverse mode over reverse mode through the composite, in float64 on the
// promoted inputs (Note [Checked mode's reference]).
void expect_second_order_agreement(int which, const Tensor& g, const Tensor& dy, const Tensor& x,
                                   const Tensor& gamma, const BatchNormDoubleGrads& hand,
                                   const BatchNormLayout& L, double eps, Variant variant) {
  GradModeGuard recording(true);
  Graph graph;
  const Var X = graph.variable(f64(x)), G = graph.variable(f64(gamma));
  const Var DY = graph.variable(f64(dy));
  const Var beta(Tensor::zeros(L.param_shape, DType::Float64));  // no part in any gradient
  const Var y = batchnorm_composite_train(X, G, beta, L, eps, variant);
  const std::vector<Var> first = grad({y}, {X, G}, {DY}, /*create_graph=*/true);
  const std::vector<Var> second = grad({first[which]}, {X, G, DY}, {Var(f64(g))});
  const char* names[] = {"d/dx", "d/dgamma", "d/ddy"};
  const Tensor* computed[] = {&hand.dx, &hand.dgamma, &hand.ddy};
  for (int i = 0; i < 3; ++i) {
    const Tensor reference = second[i].value();
    const Tensor mine =
        computed[i]->defined() ? *computed[i] : Tensor::zeros(reference.shape(), x.dtype());
    expect_hand_derived_close(std::string("BatchNormal checked double backward (of ") +
                     (which == 0 ? "dx" : "dgamma") + ", " + names[i] + ")",
                 reference, mine);
  }
}

}  // namespace

DoubleBackward parse_double_backward(const std::string& name) {
  if (name == "hand") return DoubleBackward::Hand;
  if (name == "recorded") return DoubleBackward::Recorded;
  throw ValueError("unknown double backward '" + name + "'; expected hand or recorded");
}

Vars batchnorm_train_grads_on_graph(const VjpArgs& c, const BatchNormLayout& L, double eps,
                                    Variant variant, const BatchNormStats& stats,
                                    DoubleBackward how, bool checked) {
  const Var x = c.input(0), gamma = c.input(1);
  const Var& dy = c.grad;
  const Axes& axes = L.reduced_axes;
  const Var sum_dy = ops::sum(dy, axes, /*keepdims=*/true);
  const Var dbeta = ops::reshape(sum_dy, L.param_shape);
  if (how == DoubleBackward::Recorded) {
    // The fused formula (Note [Batch-norm backward derivation]) from
    // primitives, its statistics recomputed from x so that they are
    // differentiated too.
    const Var xmu = x - ops::mean(x, axes, true);
    const Var var = ops::mean(ops::square(xmu), axes, true);
    const Var invstd =
        variant == Variant::Correct ? ops::rsqrt(var + eps) : ops::rsqrt(ops::sqrt(var) + eps);
    const Var xhat = xmu * invstd;
    const double M = double(L.M);
    const Var sum_dy_xhat = ops::sum(dy * xhat, axes, true);
    const Var dx = (broadcastable(gamma, L) * invstd / M) * (dy * M - sum_dy - xhat * sum_dy_xhat);
    return {dx, ops::reshape(sum_dy_xhat, L.param_shape), dbeta};
  }
  const BatchNormGrads g = batchnorm_backward_train(dy.value(), x.value(), gamma.value(), stats, L);
  auto double_backward = [L, eps, variant, stats, checked](int which) {
    return [=](const VjpArgs& n) -> Vars {
      const Tensor u = n.grad.value();
      const Tensor dy_ = n.input(0).value(), x_ = n.input(1).value(), gamma_ = n.input(2).value();
      const BatchNormDoubleGrads d =
          batchnorm_double_backward_train(which == 0 ? u : Tensor(), which == 1 ? u : Tensor(),
                                          Tensor(), dy_, x_, gamma_, stats, L);
      if (checked) expect_second_order_agreement(which, u, dy_, x_, gamma_, d, L, eps, variant);
      return {Var(d.ddy), Var(d.dx), Var(d.dgamma)};
    };
  };
  Graph& graph = *c.graph;
  const Var dx = graph.record(kHandDx, {&dy, &x, &gamma}, g.dx, {}, double_backward(0));
  const Var dgamma = graph.record(kHandDgamma, {&dy, &x, &gamma}, g.dgamma, {}, double_backward(1));
  return {dx, dgamma, dbeta};
}

Vars batchnorm_infer_grads_on_graph(const VjpArgs& c, const BatchNormLayout& L, double eps,
                                    const Tensor& running_mean, const Tensor& running_var) {
  const Var x = c.input(0), gamma = c.input(1);
  const Var& dy = c.grad;
  const DType dtype = x.dtype();
  const Var mean(running_mean.astype(dtype).reshape(L.broadcast_shape));
  const Var invstd(
      math::rsqrt(math::add_scalar(running_var.astype(dtype), eps)).reshape(L.broadcast_shape));
  const Var xhat = (x - mean) * invstd;
  const Axes& axes = L.reduced_axes;
  return {dy * broadcastable(gamma, L) * invstd,
          ops::reshape(ops::sum(dy * xhat, axes, true), L.param_shape),
          ops::reshape(ops::sum(dy, axes, true), L.param_shape)};
}


}  // namespace npdl::layers
