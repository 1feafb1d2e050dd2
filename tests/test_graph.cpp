// The graph and the backward sweep: fan-out, determinism, freeing, no-grad
// mode, parameters, export, and every misuse.
#include <gtest/gtest.h>

#include "npdl.hpp"

namespace npdl {
namespace {

Tensor rnd(Shape s, std::uint64_t seed) {
  return Tensor::randn(std::move(s), seed, DType::Float64);
}

TEST(Graph, RecordsOneVertexPerOpWithEdgesFromInputs) {
  Graph g;
  Var x = g.variable(rnd({3}, 1), "x");
  Var y = ops::exp(x) * x;
  EXPECT_EQ(g.size(), 3u);
  EXPECT_EQ(boost::num_edges(g.impl()), 3u);
  EXPECT_STREQ(g.impl()[y.vertex()].op->name, "mul");
}

TEST(Backward, ValueUsedTwiceAccumulates) {
  Graph g;
  Var x = g.variable(Tensor::from_vector({2}, {3.0, -2.0}, DType::Float64));
  ops::sum(x * x).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6.0, -4.0}));
}

TEST(Backward, TwoBranchesAddUp) {
  // y = sum(exp(x) + x * 2): dy/dx = exp(x) + 2
  Graph g;
  const Tensor xv = rnd({4}, 2);
  Var x = g.variable(xv);
  Var a = ops::exp(x);
  Var b = x * 2.0;
  ops::sum(a + b).backward();
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(x.grad().at(i), std::exp(xv.at(i)) + 2.0);
  EXPECT_TRUE(a.grad().defined());  // intermediates keep their gradients
}

TEST(Backward, SkipsBranchesThatNeedNoGradient) {
  Graph g;
  Var x = g.variable(rnd({3}, 3));
  Var data = g.input(rnd({3}, 4));
  Var unused = ops::exp(data);  // not between output and x
  ops::sum(x * data).backward();
  EXPECT_FALSE(data.grad().defined());
  EXPECT_FALSE(unused.grad().defined());
  EXPECT_EQ(g.last_sweep().size(), 3u);  // sum, mul, x
}

TEST(Backward, IsBitForBitReproducible) {
  auto run = [] {
    Graph g;
    Var x = g.variable(rnd({64, 32}, 5));
    Var w = g.variable(rnd({32, 16}, 6));
    Var h = ops::tanh(ops::matmul(x, w));
    ops::mean(ops::softmax(h) * h + h).backward();
    return std::make_pair(x.grad().to_vector(), w.grad().to_vector());
  };
  EXPECT_EQ(run(), run());
}

TEST(Backward, RetainedGraphGivesTheSameGradientsTwice) {
  Graph g;
  Var x = g.variable(rnd({5}, 7));
  Var y = ops::sum(ops::sigmoid(x) * x);
  y.backward({}, /*retain_graph=*/true);
  const std::vector<double> first = x.grad().to_vector();
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), first);  // idempotent, not accumulated
}

TEST(Backward, FreedGraphRefusesASecondBackward) {
  Graph g;
  Var x = g.variable(rnd({5}, 8));
  Var y = ops::sum(x * x);
  y.backward();
  EXPECT_THROW(y.backward(), GraphError);
  try {
    y.backward();
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos);
  }
  // The graph stays usable for new ops.
  Var z = ops::sum(x * 3.0);
  z.backward();
  EXPECT_DOUBLE_EQ(x.grad().at(0), 3.0);
}

TEST(Backward, UpstreamGradientForNonScalarOutputs) {
  Graph g;
  Var x = g.variable(rnd({2, 3}, 9));
  Var y = x * 2.0;
  EXPECT_THROW(y.backward(), GraphError);
  EXPECT_THROW(y.backward(Tensor::ones({3, 2}, DType::Float64)), ShapeError);
  EXPECT_THROW(y.backward(Tensor::ones({2, 3}, DType::Float32)), DTypeError);
  const Tensor u = rnd({2, 3}, 10);
  y.backward(u);
  EXPECT_DOUBLE_EQ(x.grad().at(4), 2.0 * u.at(4));
}

TEST(Backward, OutputWithoutGradientPathIsAnError) {
  Graph g;
  Var d = g.input(rnd({2}, 11));
  EXPECT_THROW(ops::sum(d).backward(), GraphError);
}

TEST(Graph, MixingGraphsIsATypedErrorAndLeavesBothUsable) {
  Graph g1, g2;
  Var a = g1.variable(rnd({2}, 12));
  Var b = g2.variable(rnd({2}, 13));
  const std::size_t before = g1.size();
  EXPECT_THROW(a + b, GraphError);
  EXPECT_EQ(g1.size(), before);
  ops::sum(a * a).backward();
  EXPECT_TRUE(a.grad().defined());
}

TEST(Graph, BadShapesThrowAndRecordNothing) {
  Graph g;
  Var a = g.variable(rnd({2, 3}, 14));
  Var b = g.variable(rnd({4, 3}, 15));
  const std::size_t before = g.size();
  EXPECT_THROW(a + b, ShapeError);
  EXPECT_THROW(ops::matmul(a, b), ShapeError);
  EXPECT_THROW(ops::sum(a, {2}), AxisError);
  EXPECT_THROW(ops::reshape(a, {5}), ShapeError);
  EXPECT_THROW(ops::softmax(a, 3), AxisError);
  EXPECT_THROW(a * g.input(Tensor::ones({2, 3}, DType::Float32)), DTypeError);
  EXPECT_EQ(g.size(), before + 1);  // only the float32 input leaf
}

TEST(Graph, NoGradModeRecordsNothing) {
  Graph g;
  Var x = g.variable(rnd({3}, 16));
  const std::size_t before = g.size();
  NoGradGuard guard;
  Var y = ops::exp(x) * x;
  EXPECT_EQ(g.size(), before);
  EXPECT_FALSE(y.tracked());
  EXPECT_DOUBLE_EQ(y.value().at(0), std::exp(x.value().at(0)) * x.value().at(0));
}

TEST(Graph, ParametersOutliveGraphsAndReceiveGradients) {
  ParameterPtr w = make_parameter(rnd({3}, 17), "w");
  for (int step = 0; step < 2; ++step) {
    Graph g;
    Var wv = g.param(w);
    Var again = g.param(w);
    EXPECT_EQ(wv.vertex(), again.vertex());  // one leaf per parameter and graph
    ops::sum(wv * wv).backward();
  }
  ASSERT_TRUE(w->grad.defined());
  EXPECT_DOUBLE_EQ(w->grad.at(1), 2.0 * w->value.at(1));
}

TEST(Graph, DeepChainsDoNotOverflowTheStack) {
  Graph g;
  Var x = g.variable(Tensor::scalar(0.5, DType::Float64));
  Var y = x;
  for (int i = 0; i < 100000; ++i) y = y * 1.0;
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
}

TEST(Export, DotHasOpsShapesAndCompositeClusters) {
  Graph g;
  Var x = g.variable(rnd({4, 3}, 18), "x");
  Var y;
  {
    Graph::CompositeScope scope(g, "Standardise");
    Var mu = ops::mean(x, {0}, true);
    y = ops::sum(ops::square(x - mu));
  }
  y.backward();
  const std::string dot = to_dot(g, {true, true});
  EXPECT_NE(dot.find("digraph"), std::string::npos);
  EXPECT_NE(dot.find("subgraph cluster_0"), std::string::npos);
  EXPECT_NE(dot.find("Standardise"), std::string::npos);
  EXPECT_NE(dot.find("mean"), std::string::npos);
  EXPECT_NE(dot.find("(4, 3)"), std::string::npos);
  EXPECT_NE(dot.find("grad"), std::string::npos);
  // One backslash: DOT's line break inside a label, not a literal "\\n".
  EXPECT_NE(dot.find("\\n(4, 3)"), std::string::npos);
  EXPECT_EQ(dot.find("\\\\n"), std::string::npos);
}

}  // namespace
}  // namespace npdl

namespace npdl {
namespace {

// Every primitive in one graph, so that a lean graph (Note [Lean graphs])
// must keep exactly the values its VJPs read: the gradients of a lean graph
// equal those of a graph that keeps everything, bit for bit.
std::vector<std::vector<double>> every_op_gradients(GraphOptions options) {
  Graph g(options);
  Var x = g.variable(Tensor::uniform({3, 4}, 11, DType::Float64, 0.5, 2.0), "x");
  Var w = g.variable(Tensor::randn({4, 2}, 12, DType::Float64), "w");
  Var h = ops::matmul(x, w);
  Var a = ops::relu(h) + ops::sigmoid(h) * ops::tanh(h);
  Var b = ops::sqrt(x) / ops::exp(-x) + ops::rsqrt(x) * ops::log(x) - ops::square(x);
  Var c = ops::softmax(a, 1) + ops::log_softmax(a, 0);
  Var d = ops::transpose(ops::reshape(ops::broadcast_to(ops::mean(b, {1}, true), {3, 4}), {4, 3}));
  Var loss = ops::sum(c * c) + ops::mean(d * x) + ops::sum(b / x) * 0.5;
  loss.backward();
  return {x.grad().to_vector(), w.grad().to_vector()};
}

TEST(Backward, LeanGraphGivesTheSameGradientsAsAFullOne) {
  EXPECT_EQ(every_op_gradients(GraphOptions{/*keep_intermediates=*/false}),
            every_op_gradients(GraphOptions{/*keep_intermediates=*/true}));
}

TEST(Backward, LeanGraphFreesIntermediatesAfterTheSweep) {
  Graph g(GraphOptions{/*keep_intermediates=*/false});
  Var x = g.variable(rnd({3}, 13));
  Var y = ops::exp(x);  // its VJP reads its output: kept until the sweep
  Var z = ops::sum(y * x);
  EXPECT_TRUE(g.impl()[y.vertex()].value.defined());
  z.backward();
  EXPECT_FALSE(g.impl()[y.vertex()].value.defined());
  EXPECT_FALSE(y.grad().defined());
  EXPECT_TRUE(x.grad().defined());   // leaves keep their gradients
  EXPECT_TRUE(y.value().defined());  // a Var holds its own value
}

// Note [Leaf gradient hook]: once per leaf that wants a gradient, as soon
// as every op that consumes it has run its VJP, with the gradient backward
// stores; never for inputs, constants or ops.
TEST(Backward, LeafGradHookReportsEachFinalLeafGradientOnceAsSoonAsItIsFinal) {
  ParameterPtr first = make_parameter(rnd({3}, 20), "first");
  ParameterPtr second = make_parameter(rnd({3}, 21), "second");
  Graph g;
  const Var x = g.variable(rnd({3}, 22), "x");
  const Var data = g.input(rnd({3}, 23), "data");
  const Var w1 = g.param(first), w2 = g.param(second);
  // `first` feeds the first op and, again, the last: its gradient is
  // complete only after the first op's VJP, the sweep's last.
  const Var pre = x * w1 + data;
  const Var h = ops::tanh(pre);
  const Var loss = ops::sum(h * w2 * 2.0 * w1);
  struct Report {
    Vertex leaf;
    const Parameter* parameter;
    Tensor grad;
    bool sweep_still_running;  // `pre` has no gradient yet
  };
  std::vector<Report> reports;
  BackwardOptions options;
  options.on_leaf_grad_ready = [&](Vertex leaf, const ParameterPtr& p, const Var& grad) {
    EXPECT_FALSE(g.impl()[leaf].node) << "reported a vertex that is not a leaf";
    reports.push_back({leaf, p.get(), grad.value().clone(), !pre.grad().defined()});
  };
  g.backward(loss, Var(), options);

  // x, w1, w2 once each; the data input (no gradient wanted) never.
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].leaf, w2.vertex());  // last used, first final
  EXPECT_TRUE(reports[0].sweep_still_running);
  std::vector<Vertex> rest{reports[1].leaf, reports[2].leaf};
  std::sort(rest.begin(), rest.end());
  EXPECT_EQ(rest, (std::vector<Vertex>{x.vertex(), w1.vertex()}));
  // Each report comes after every consumer of its leaf has been swept.
  const std::vector<Vertex>& order = g.last_sweep();
  auto position = [&](Vertex v) {
    return std::find(order.begin(), order.end(), v) - order.begin();
  };
  for (const Report& r : reports) {
    for (auto [e, end] = boost::out_edges(r.leaf, g.impl()); e != end; ++e) {
      EXPECT_LT(position(boost::target(*e, g.impl())), position(r.leaf));
    }
  }
  // The reported gradients are the final ones, bit for bit.
  for (const Report& r : reports) {
    const Tensor& stored = r.parameter ? r.parameter->grad : x.grad();
    EXPECT_EQ(r.grad.to_vector(), stored.to_vector());
    EXPECT_EQ(r.parameter == nullptr, r.leaf == x.vertex());
  }
}

TEST(Backward, LeafGradHookReportsAnOutputThatIsALeafAndSeesSecondOrderSweeps) {
  Graph g;
  const Var x = g.variable(rnd({1}, 24), "x");
  int calls = 0;
  BackwardOptions options;
  options.on_leaf_grad_ready = [&](Vertex leaf, const ParameterPtr& p, const Var& grad) {
    ++calls;
    EXPECT_EQ(leaf, x.vertex());
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(grad.value().item(), 1.0);
  };
  g.backward(x, Var(), options);  // the output is the leaf: no consumer to wait for
  EXPECT_EQ(calls, 1);

  // Under create_graph the reported gradient is a value on the graph.
  Graph h;
  const Var y = h.variable(rnd({2}, 25), "y");
  const Var cube = ops::sum(y * y * y);
  Var reported;
  options.create_graph = true;
  options.on_leaf_grad_ready = [&](Vertex, const ParameterPtr&, const Var& grad) {
    reported = grad;
  };
  h.backward(cube, Var(), options);
  ASSERT_TRUE(reported.tracked());
  ops::sum(reported).backward();  // d/dy sum(3 y^2) = 6 y
  EXPECT_DOUBLE_EQ(y.grad().at(1), 6.0 * y.value().at(1));
}

}  // namespace
}  // namespace npdl
