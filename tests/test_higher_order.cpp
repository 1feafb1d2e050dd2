// Higher-order reverse mode (Note [Differentiable VJPs]): every primitive's
// gradient differentiated again against finite differences of the gradient,
// create_graph and grad(), Hessian-vector products, and the errors.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl {
namespace {

Tensor rnd(Shape s, std::uint64_t seed) {
  return Tensor::randn(std::move(s), seed, DType::Float64);
}
Tensor positive(Shape s, std::uint64_t seed) {
  return Tensor::uniform(std::move(s), seed, DType::Float64, 0.5, 2.0);
}

// Each primitive's second derivative is checked from its catalogue entry
// (tests/test_primitives.cpp); here, compositions and the graph's machinery.

TEST(SecondOrder, CompositionsOfPrimitivesMatchFiniteDifferences) {
  // A small network's loss: matmul, broadcasting add, sigmoid, log_softmax.
  auto loss = [](const std::vector<Var>& v) {
    const Var h = ops::sigmoid(ops::matmul(v[0], v[1]) + v[2]);
    return ops::mean(ops::sum(ops::log_softmax(ops::matmul(h, v[3])) * v[4], {1}));
  };
  EXPECT_GRADGRADCHECK(
      loss, {rnd({4, 3}, 11), rnd({3, 5}, 12), rnd({5}, 13), rnd({5, 2}, 14), rnd({4, 2}, 15)});
}

TEST(SecondOrder, ACnnLikeCompositionMatchesFiniteDifferences) {
  // conv2d -> relu -> max_pool2d -> sum of squares, differentiated twice in
  // the input and the filters. Random normal values: the maxima are
  // distinct, and in a window whose values relu zeroes the gradient reaches
  // no input whichever of them is chosen.
  auto loss = [](const std::vector<Var>& v) {
    const Var h = ops::relu(ops::conv2d(v[0], v[1], 1, {1, 1, 1, 1}));
    return ops::sum(ops::square(ops::max_pool2d(h, 2, 2)));
  };
  EXPECT_GRADGRADCHECK(loss, {rnd({2, 2, 6, 6}, 140), rnd({3, 2, 3, 3}, 141)});
}

TEST(SecondOrder, MaxPoolingHasAZeroSecondDerivativeInItsInput) {
  // Piecewise linear: the gradient of sum(max_pool2d(x) * c) in x is c routed
  // to the maxima, the same for every x near this one. Differentiated again
  // it gives zero in x, and in c the gather at the maxima: for windows that
  // do not overlap, d sum(scatter(c)^2) / dc = 2 gather(scatter(c)) = 2 c.
  Graph graph;
  const Tensor c0 = rnd({1, 2, 2, 2}, 143);
  const Var x = graph.variable(rnd({1, 2, 4, 4}, 142));
  const Var c = graph.variable(c0);
  const Var g = grad({ops::sum(ops::max_pool2d(x, 2, 2) * c)}, {x}, {}, true)[0];
  EXPECT_STREQ(graph.impl()[g.vertex()].op->name, "max_pool2d_backward");
  const std::vector<Var> h = grad({ops::sum(ops::square(g))}, {x, c});
  EXPECT_EQ(math::max_abs_diff(h[0].value(), Tensor::zeros(x.shape(), DType::Float64)).abs, 0.0);
  EXPECT_EQ(h[1].value().to_vector(), math::scale(c0, 2.0).to_vector());
  // And the Hessian of the loss in x alone is zero along any direction.
  auto loss = [c0](const std::vector<Var>& v) {
    return ops::sum(ops::max_pool2d(v[0], 2, 2) * Var(c0));
  };
  const Tensor hv = hvp(loss, {rnd({1, 2, 4, 4}, 142)}, {rnd({1, 2, 4, 4}, 151)})[0];
  EXPECT_EQ(math::max_abs_diff(hv, Tensor::zeros(hv.shape(), DType::Float64)).abs, 0.0);
}

TEST(SecondOrder, ConvolutionGradientsRecordTheirTwoPrimitives) {
  // Under create_graph conv2d's VJP records conv2d_input_grad and
  // conv2d_weight_grad, with the values the one-pass first-order kernel
  // gives, bit for bit (the same products in the same order).
  Graph graph;
  const Tensor x0 = rnd({3, 2, 6, 5}, 144), w0 = rnd({4, 2, 3, 3}, 145);
  const Var x = graph.variable(x0), w = graph.variable(w0);
  const Var y = ops::conv2d(x, w, 2, {1, 1, 1, 1});
  const Tensor u = rnd(y.shape(), 146);
  const std::vector<Var> g = grad({y}, {x, w}, {Var(u)}, true);
  EXPECT_STREQ(graph.impl()[g[0].vertex()].op->name, "conv2d_input_grad");
  EXPECT_STREQ(graph.impl()[g[1].vertex()].op->name, "conv2d_weight_grad");
  const math::Conv2dGrads fused = math::conv2d_backward(u, x0, w0, 2, {1, 1, 1, 1});
  EXPECT_EQ(g[0].value().to_vector(), fused.gx.to_vector());
  EXPECT_EQ(g[1].value().to_vector(), fused.gw.to_vector());
}

TEST(SecondOrder, ConvolutionHasDerivativesOfEveryOrder) {
  // f = sum(conv2d(x, w)^2) is quadratic in x: along x + t d its second
  // derivative is the constant 2 sum(conv2d(d, w)^2) and its third is zero,
  // while the third in w (through the recorded second) is not.
  Graph graph;
  const Tensor x0 = rnd({1, 2, 5, 5}, 147), w0 = rnd({2, 2, 3, 3}, 148);
  const Tensor d0 = rnd({1, 2, 5, 5}, 149);
  const Var x = graph.variable(x0), w = graph.variable(w0);
  const Var d(d0);
  const Var f = ops::sum(ops::square(ops::conv2d(x, w)));
  const Var first = ops::sum(grad({f}, {x}, {}, true)[0] * d);
  const Var second = ops::sum(grad({first}, {x}, {}, true)[0] * d);
  const std::vector<Var> third = grad({second}, {x, w}, {}, true);
  const double expected = 2 * math::sum(math::square(math::conv2d(d0, w0, 1, {}))).item();
  EXPECT_NEAR(second.value().item(), expected, 1e-10 * std::abs(expected));
  EXPECT_EQ(math::max_abs_diff(third[0].value(), Tensor::zeros(x.shape(), DType::Float64)).abs,
            0.0);
  // d/dw of 2 sum(conv2d(d, w)^2) is 4 conv2d_weight_grad(d, conv2d(d, w)).
  const Tensor expected_w = math::scale(
      math::conv2d_weight_grad(d0, math::conv2d(d0, w0, 1, {}), w0.shape(), 1, {}), 4.0);
  const auto cmp = compare_tensors("third in w", third[1].value(), expected_w, 1e-10, 1e-10);
  EXPECT_TRUE(cmp.ok) << cmp.describe();
  // And the fourth, in w along e: 4 sum(conv2d(d, e)^2).
  const Tensor e0 = rnd(w0.shape(), 150);
  const Var fourth = ops::sum(grad({ops::sum(third[1] * Var(e0))}, {w})[0] * Var(e0));
  const double expected4 = 4 * math::sum(math::square(math::conv2d(d0, e0, 1, {}))).item();
  EXPECT_NEAR(fourth.value().item(), expected4, 1e-10 * std::abs(expected4));
}

TEST(SecondOrder, TheAllReduceIsTwiceDifferentiable) {
  const dist::CommunicatorPtr comm = dist::world();
  auto f = [comm](const std::vector<Var>& v) {
    return ops::square(dist::all_reduce_sum(v[0] * v[1], comm));
  };
  EXPECT_GRADGRADCHECK(f, {rnd({3, 2}, 16), rnd({3, 2}, 17)});
}

TEST(SecondOrder, GradGradCheckFlagsAVjpThatIsRightOnlyAtFirstOrder) {
  // square's VJP with its input read as a constant: right first derivative,
  // wrong second (it misses d(2 g x)/dx = 2 g).
  static const OpInfo frozen{"frozen_square", "a^2", "ga = 2 g a, a frozen", false, 0b1};
  auto f = [](const std::vector<Var>& v) {
    return v[0].graph()->record(frozen, {&v[0]}, math::square(v[0].value()), {},
                                [](const VjpArgs& c) -> Vars {
                                  const Var constant(c.input(0).value());
                                  return {ops::mul_scalar(ops::mul(c.grad, constant), 2.0)};
                                });
  };
  EXPECT_GRADCHECK(f, {rnd({4}, 18)});
  const GradCheckReport report = gradgradcheck(f, {rnd({4}, 18)});
  EXPECT_FALSE(report.ok());
  EXPECT_NE(report.describe().find("second derivative w.r.t. input 0"), std::string::npos);
}

TEST(CreateGraph, BackwardRecordsGradientsThatDifferentiateAgain) {
  // f = sum(x^3): f' = 3 x^2, f'' along ones = 6 x, f''' = 6.
  Graph graph;
  const Tensor x0 = rnd({5}, 19);
  const Var x = graph.variable(x0, "x");
  const Var f = ops::sum(ops::square(x) * x);
  BackwardOptions options;
  options.create_graph = true;
  f.backward(Var(), options);
  const Var g = x.grad_var();
  ASSERT_TRUE(g.requires_grad());
  const Var second = grad({ops::sum(g)}, {x}, {}, true)[0];
  const Var third = grad({ops::sum(second)}, {x}, {}, true)[0];
  for (std::int64_t i = 0; i < 5; ++i) {
    const double xi = x0.data<double>()[i];
    EXPECT_NEAR(g.value().data<double>()[i], 3 * xi * xi, 1e-12);
    EXPECT_NEAR(second.value().data<double>()[i], 6 * xi, 1e-12);
    EXPECT_NEAR(third.value().data<double>()[i], 6.0, 1e-12);
  }
}

TEST(CreateGraph, FirstOrderBackwardRecordsNothing) {
  Graph graph;
  const Var x = graph.variable(rnd({3, 4}, 20));
  const Var w = graph.variable(rnd({4, 2}, 21));
  const Var loss = ops::sum(ops::sigmoid(ops::matmul(x, w)));
  const std::size_t before = graph.size();
  loss.backward();
  EXPECT_EQ(graph.size(), before);
  EXPECT_FALSE(x.grad_var().tracked());
}

TEST(CreateGraph, WorksOnALeanGraph) {
  Graph graph(GraphOptions{false});
  const Tensor x0 = positive({4}, 22);
  const Var x = graph.variable(x0);
  const Var g = grad({ops::sum(ops::log(x) * x)}, {x}, {}, true)[0];  // log x + 1
  const Var h = grad({ops::sum(g)}, {x})[0];                          // 1 / x
  for (std::int64_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(h.value().data<double>()[i], 1.0 / x0.data<double>()[i], 1e-12);
  }
}

TEST(CreateGraph, GradOfAnInputTheOutputIgnoresIsZero) {
  Graph graph;
  const Var x = graph.variable(rnd({3}, 23));
  const Var y = graph.variable(rnd({2}, 24));
  const std::vector<Var> g = grad({ops::sum(ops::exp(x))}, {x, y}, {}, true);
  EXPECT_EQ(math::max_abs_diff(g[1].value(), Tensor::zeros({2}, DType::Float64)).abs, 0.0);
}

TEST(CreateGraph, AGradientThatIsConstantDifferentiatesToZeros) {
  // d(sum(2 x))/dx = 2 depends on no variable: its derivative is zero, not an error.
  Graph graph;
  const Var x = graph.variable(rnd({3}, 31));
  const Var g = grad({ops::sum(x * 2.0)}, {x}, {}, true)[0];
  EXPECT_FALSE(g.requires_grad());
  const Var h = grad({ops::sum(g)}, {x})[0];
  EXPECT_EQ(math::max_abs_diff(h.value(), Tensor::zeros({3}, DType::Float64)).abs, 0.0);
}

TEST(CreateGraph, ASecondDerivativeThroughAFreedGraphNamesTheOp) {
  Graph graph;
  const Var x = graph.variable(positive({3}, 25));
  const Var f = ops::sum(ops::sqrt(x));
  f.backward();  // frees the saved tensors
  try {
    grad({f}, {x}, {}, true);
    FAIL() << "expected a GraphError";
  } catch (const GraphError& e) {
    // The sweep meets the freed ops output first: the sum names the graph.
    EXPECT_NE(std::string(e.what()).find("the saved tensors of 'sum' were freed"),
              std::string::npos)
        << e.what();
  }
}

TEST(CreateGraph, AnOpNotTwiceDifferentiableRefusesTheSecondDerivativeByName) {
  static const OpInfo opaque{"opaque_cube",
                             "a^3",
                             "ga = 3 a^2 g, from tensors",
                             false,
                             0b1,
                             /*twice_differentiable=*/false};
  Graph graph;
  const Tensor x0 = rnd({3}, 26);
  const Var x = graph.variable(x0);
  const Var y =
      graph.record(opaque, {&x}, math::mul(math::square(x0), x0), {}, [](const VjpArgs& c) -> Vars {
        const Tensor a = c.input(0).value();
        return {Var(math::mul(c.grad.value(), math::scale(math::square(a), 3.0)))};
      });
  const Var g = grad({ops::sum(y)}, {x}, {}, true)[0];  // the first derivative is fine
  EXPECT_NEAR(g.value().data<double>()[0], 3 * std::pow(x0.data<double>()[0], 2), 1e-12);
  try {
    grad({ops::sum(g)}, {x});
    FAIL() << "expected a GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("'opaque_cube'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not twice differentiable"), std::string::npos);
  }
}

TEST(CreateGraph, BadArgumentsAreTypedErrors) {
  Graph graph;
  const Var x = graph.variable(rnd({3}, 27));
  const Var data = graph.input(rnd({3}, 28));
  const Var f = ops::sum(x * data);
  EXPECT_THROW(grad({f}, {data}), GraphError);               // wants no gradient
  EXPECT_THROW(grad({f}, {x}, {Var(), Var()}), GraphError);  // two upstreams, one output
  EXPECT_THROW(grad({f}, {Var(rnd({3}, 29))}), GraphError);  // input on no graph
  EXPECT_THROW(grad({f}, {}), GraphError);                   // no input
  EXPECT_THROW(grad({x * data}, {x}), GraphError);           // non-scalar, no upstream
  EXPECT_THROW(grad({x * data}, {x}, {Var(rnd({4}, 30))}), ShapeError);
}

// H v of the loss of a small network against central differences of its
// gradient, (g(x + h v) - g(x - h v)) / 2h.
TEST(Hessian, VectorProductsMatchFiniteDifferencesOfTheGradient) {
  auto loss = [](const std::vector<Var>& p) {
    const Tensor x = rnd({6, 4}, 31);
    const Var h = ops::tanh(ops::matmul(Var(x), p[0]) + p[1]);
    return ops::mean(ops::square(ops::matmul(h, p[2])));
  };
  const std::vector<Tensor> at{rnd({4, 3}, 32), rnd({3}, 33), rnd({3, 2}, 34)};
  const std::vector<Tensor> v{rnd({4, 3}, 35), rnd({3}, 36), rnd({3, 2}, 37)};
  const std::vector<Tensor> hv = hvp(loss, at, v);
  const double step = 1e-5;
  auto shifted = [&](double sign) {
    std::vector<Tensor> p;
    for (std::size_t i = 0; i < at.size(); ++i)
      p.push_back(math::add(at[i], math::scale(v[i], sign * step)));
    return p;
  };
  const Tensor zero = Tensor::ones({}, DType::Float64);
  const std::vector<Tensor> plus = reverse_mode_gradients(loss, shifted(1), zero);
  const std::vector<Tensor> minus = reverse_mode_gradients(loss, shifted(-1), zero);
  for (std::size_t i = 0; i < at.size(); ++i) {
    const Tensor numeric = math::scale(math::sub(plus[i], minus[i]), 0.5 / step);
    EXPECT_TRUE(compare_tensors("Hv", hv[i], numeric, 1e-8, 1e-6).ok)
        << compare_tensors("Hv", hv[i], numeric, 1e-8, 1e-6).describe();
  }
}

TEST(Hessian, TheOperatorGivesTheSameProductEachTime) {
  // f = sum(x e^x): the Hessian is diagonal, (x + 2) e^x.
  Graph graph;
  const Tensor x0 = rnd({5}, 38), v = rnd({5}, 41);
  const Var x = graph.variable(x0);
  const HessianOperator hessian(ops::sum(ops::exp(x) * x), {x});
  const Tensor first = hessian({v})[0], again = hessian({v})[0];
  EXPECT_EQ(math::max_abs_diff(first, again).abs, 0.0);
  for (std::int64_t i = 0; i < 5; ++i) {
    const double xi = x0.data<double>()[i];
    EXPECT_NEAR(first.data<double>()[i], (xi + 2) * std::exp(xi) * v.data<double>()[i], 1e-12);
  }
}

TEST(Hessian, MismatchedVectorsAreShapeErrors) {
  auto f = [](const std::vector<Var>& p) { return ops::sum(ops::exp(p[0])); };
  EXPECT_THROW(hvp(f, {rnd({3}, 39)}, {rnd({4}, 40)}), ShapeError);
  EXPECT_THROW(hvp(f, {rnd({3}, 39)}, {}), ShapeError);
  auto vector_valued = [](const std::vector<Var>& p) { return ops::exp(p[0]); };
  EXPECT_THROW(hvp(vector_valued, {rnd({3}, 39)}, {rnd({3}, 40)}), ShapeError);
}

}  // namespace
}  // namespace npdl
