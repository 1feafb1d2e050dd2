// Second order on graphs of every size from one op to several hundred, with
// unrelated vertices recorded before and between (Note [Vertex storage
// moves]). A reference into the vertex storage held across a recording goes
// wrong only when that recording grows the storage, which a graph of a few
// ops rarely does: so each family below runs at every size in a range, and
// each size on a fresh thread, whose graphs start from the smallest storage
// (a thread that ran larger graphs hands their storage on, Note [Recycled
// graph storage], and would hide the mistake).
//
// Every check compares reverse over reverse with float64 central
// differences of the first derivative: H v against (g(x + h v) - g(x - h v)) / 2h,
// and the first derivative recorded under create_graph with the plain one.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <thread>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl {
namespace {

Tensor rnd(Shape s, std::uint64_t seed) {
  return Tensor::randn(std::move(s), seed, DType::Float64);
}

/// Runs `check` on a new thread (its recycled graph storage is empty) and
/// hands a GoogleTest failure message back to the test's thread.
void on_fresh_thread(const std::function<std::string()>& check) {
  std::string failure;
  std::thread([&] {
    try {
      failure = check();
    } catch (const std::exception& e) {
      failure = std::string("threw: ") + e.what();
    }
  }).join();
  EXPECT_EQ(failure, "");
}

std::vector<Tensor> first_order_gradient(const GraphFunction& f, const std::vector<Tensor>& x) {
  Graph g;
  std::vector<Var> vars;
  for (const Tensor& t : x) vars.push_back(g.variable(t));
  std::vector<Tensor> out;
  for (const Var& gv : grad({f(vars)}, vars)) out.push_back(gv.value());
  return out;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (std::int64_t i = 0; i < t.size(); ++i) m = std::max(m, std::fabs(t.at(i)));
  return m;
}

/// Central differences of the first-order gradient along v, step h.
std::vector<Tensor> gradient_differences(const GraphFunction& f, const std::vector<Tensor>& x,
                                         const std::vector<Tensor>& v, double h) {
  std::vector<Tensor> up = x, down = x;
  for (std::size_t i = 0; i < x.size(); ++i) {
    up[i] = math::add(x[i], math::scale(v[i], h));
    down[i] = math::sub(x[i], math::scale(v[i], h));
  }
  const std::vector<Tensor> g_up = first_order_gradient(f, up);
  const std::vector<Tensor> g_down = first_order_gradient(f, down);
  std::vector<Tensor> d;
  for (std::size_t i = 0; i < x.size(); ++i) {
    d.push_back(math::scale(math::sub(g_up[i], g_down[i]), 1 / (2 * h)));
  }
  return d;
}

/// Empty when H v (reverse over reverse, and the gradient recorded with
/// create_graph) agree with central differences of the plain gradient;
/// otherwise what disagreed.
std::string compare_hvp_with_differences(const GraphFunction& f, const std::vector<Tensor>& x,
                                         const std::vector<Tensor>& v) {
  Graph g;
  std::vector<Var> vars;
  for (const Tensor& t : x) vars.push_back(g.variable(t));
  const Var out = f(vars);
  const std::vector<Var> recorded = grad({out}, vars, {}, /*create_graph=*/true);
  std::vector<Var> directions;
  for (const Tensor& t : v) directions.push_back(Var(t));
  const std::vector<Var> hv = grad(recorded, vars, directions);

  const std::vector<Tensor> plain = first_order_gradient(f, x);
  const std::vector<Tensor> d1 = gradient_differences(f, x, v, 1e-5);
  const std::vector<Tensor> d2 = gradient_differences(f, x, v, 2e-5);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double scale = max_abs(d1[i]) + max_abs(plain[i]) + 1;
    const TensorComparison first =
        compare_tensors("gradient " + std::to_string(i) + " recorded with create_graph",
                        recorded[i].value(), plain[i], 1e-12 * scale, 0);
    if (!first.ok) return first.describe();
    // The differences' truncation error is about a third of |d1 - d2|; a
    // lost contribution is off by a sizeable fraction of H v.
    const double truncation = max_abs(math::sub(d1[i], d2[i]));
    const TensorComparison second = compare_tensors(
        "H v, input " + std::to_string(i), hv[i].value(), d1[i], 2 * truncation + 1e-8 * scale, 0);
    if (!second.ok) return second.describe();
  }
  return "";
}

std::vector<Tensor> directions_like(const std::vector<Tensor>& x, std::uint64_t seed) {
  std::vector<Tensor> v;
  for (const Tensor& t : x) v.push_back(rnd(t.shape(), seed++));
  return v;
}

// gradgradcheck also calls the function on untracked values (no graph).
void record_unused_leaves(const std::vector<Var>& in, int count) {
  Graph* graph = in[0].graph();
  if (graph == nullptr) return;
  for (int i = 0; i < count; ++i) graph->input(Tensor::zeros({1}, DType::Float64));
}

// x is used three times and w twice: under create_graph their gradients
// are sums of contributions, each sum a recorded vertex.
Var fan_out_function(const std::vector<Var>& v) {
  const Var& x = v[0];
  const Var& w = v[1];
  const Var y = ops::tanh(x * w);
  return ops::sum(y * y * x) + ops::sum(ops::exp(x * 0.5) * w);
}

TEST(SecondOrderAtSize, AfterEveryNumberOfUnusedLeaves) {
  const std::vector<Tensor> x = {rnd({3}, 1), rnd({3}, 2)};
  const std::vector<Tensor> v = directions_like(x, 3);
  for (int unused = 0; unused < 256; ++unused) {
    SCOPED_TRACE("unused leaves: " + std::to_string(unused));
    const GraphFunction f = [unused](const std::vector<Var>& in) {
      record_unused_leaves(in, unused);
      return fan_out_function(in);
    };
    on_fresh_thread([&] { return compare_hvp_with_differences(f, x, v); });
  }
}

TEST(SecondOrderAtSize, GradGradCheckAfterUnusedLeaves) {
  for (int unused = 0; unused <= 80; ++unused) {
    SCOPED_TRACE("unused leaves: " + std::to_string(unused));
    const GraphFunction f = [unused](const std::vector<Var>& in) {
      record_unused_leaves(in, unused);
      return fan_out_function(in);
    };
    on_fresh_thread([&] {
      const GradCheckReport r = gradgradcheck(f, {rnd({3}, 4), rnd({3}, 5)});
      return r.ok() ? std::string() : r.describe();
    });
  }
}

// h <- h + tanh(h W): one shared W, so its gradient sums a contribution
// per layer.
Var matmul_residual_chain(const std::vector<Var>& v, int depth) {
  Var h = v[0];
  for (int i = 0; i < depth; ++i) h = h + ops::tanh(ops::matmul(h, v[1]) * 0.5);
  return ops::sum(h * h);
}

TEST(SecondOrderAtSize, MatmulTanhResidualChainsOfDepthOneToSixty) {
  const std::vector<Tensor> x = {rnd({2, 3}, 6), math::scale(rnd({3, 3}, 7), 0.3)};
  const std::vector<Tensor> v = directions_like(x, 8);
  for (int depth = 1; depth <= 60; ++depth) {
    SCOPED_TRACE("depth " + std::to_string(depth));
    const GraphFunction f = [depth](const std::vector<Var>& in) {
      return matmul_residual_chain(in, depth);
    };
    on_fresh_thread([&] { return compare_hvp_with_differences(f, x, v); });
  }
}

Var conv_residual_chain(const std::vector<Var>& v, int depth) {
  Var h = v[0];
  for (int i = 0; i < depth; ++i) {
    h = h + ops::tanh(ops::conv2d(h, v[1], 1, ops::Padding2d{1, 1, 1, 1}) * 0.3);
  }
  return ops::sum(h * h);
}

TEST(SecondOrderAtSize, Conv2dTanhResidualChainsOfDepthOneToSixty) {
  const std::vector<Tensor> x = {rnd({1, 2, 3, 3}, 9), math::scale(rnd({2, 2, 3, 3}, 10), 0.3)};
  const std::vector<Tensor> v = directions_like(x, 11);
  for (int depth = 1; depth <= 60; ++depth) {
    SCOPED_TRACE("depth " + std::to_string(depth));
    const GraphFunction f = [depth](const std::vector<Var>& in) {
      return conv_residual_chain(in, depth);
    };
    on_fresh_thread([&] { return compare_hvp_with_differences(f, x, v); });
  }
}

TEST(SecondOrderAtSize, GradGradCheckOfLongChains) {
  for (int depth : {9, 12, 17, 20, 41}) {
    SCOPED_TRACE("depth " + std::to_string(depth));
    const GraphFunction f = [depth](const std::vector<Var>& in) {
      return conv_residual_chain(in, depth);
    };
    on_fresh_thread([&] {
      const GradCheckReport r =
          gradgradcheck(f, {rnd({1, 1, 2, 2}, 12), math::scale(rnd({1, 1, 3, 3}, 13), 0.3)});
      return r.ok() ? std::string() : r.describe();
    });
  }
}

// A loss summed over k micro-batches plus L2 weight decay: the Hessian's
// decay term 2 lambda v comes from the last contribution to W's gradient.
Var micro_batch_loss(const std::vector<Var>& v, int k) {
  const Var& w = v[0];
  Var loss = ops::sum(w * w) * 0.01;
  for (int b = 0; b < k; ++b) {
    const Var x(rnd({4, 3}, 100 + b));
    const Var y(rnd({4, 2}, 200 + b));
    loss = loss + ops::mean(ops::square(ops::tanh(ops::matmul(x, w)) - y));
  }
  return loss;
}

TEST(SecondOrderAtSize, MicroBatchesWithWeightDecayFromOneToFortyBatches) {
  const std::vector<Tensor> x = {rnd({3, 2}, 14)};
  const std::vector<Tensor> v = directions_like(x, 15);
  for (int k = 1; k <= 40; ++k) {
    SCOPED_TRACE("micro-batches: " + std::to_string(k));
    const GraphFunction f = [k](const std::vector<Var>& in) { return micro_batch_loss(in, k); };
    on_fresh_thread([&] { return compare_hvp_with_differences(f, x, v); });
  }
}

// Unrelated ops recorded between the function's own (another model's
// forward on the same graph, say): up to 300 ops in all.
TEST(SecondOrderAtSize, UnrelatedOpsRecordedBetweenTheFunctionsOps) {
  const std::vector<Tensor> x = {rnd({2, 3}, 16), math::scale(rnd({3, 3}, 17), 0.3)};
  const std::vector<Tensor> v = directions_like(x, 18);
  for (int between = 0; between <= 5; ++between) {
    for (int depth : {1, 7, 20, 50}) {
      SCOPED_TRACE("depth " + std::to_string(depth) + ", between " + std::to_string(between));
      const GraphFunction f = [depth, between](const std::vector<Var>& in) {
        Var noise(rnd({2}, 19));
        if (Graph* g = in[0].graph()) noise = g->variable(noise.value());
        Var h = in[0];
        for (int i = 0; i < depth; ++i) {
          for (int j = 0; j < between; ++j) noise = ops::exp(noise * 0.1);
          h = h + ops::tanh(ops::matmul(h, in[1]) * 0.5);
        }
        return ops::sum(h * h);
      };
      on_fresh_thread([&] { return compare_hvp_with_differences(f, x, v); });
    }
  }
}

// Lean graphs free each intermediate gradient once passed on; one asked for
// by gradients() is kept.
TEST(SecondOrderAtSize, GradWithRespectToAnIntermediateOnEveryKindOfGraph) {
  for (bool keep : {true, false}) {
    SCOPED_TRACE(keep ? "full graph" : "lean graph");
    // y = 2x, z = sum(y * y): dz/dy = 2y = [4, 8, 12], dz/dx = 8x.
    struct Problem {
      Graph g;
      Var x, y, z;
      explicit Problem(bool keep) : g(GraphOptions{keep}) {
        x = g.variable(Tensor::from_vector({3}, {1.0, 2.0, 3.0}, DType::Float64));
        y = x * 2.0;
        z = ops::sum(y * y);
      }
    };
    Problem a(keep);
    EXPECT_EQ(grad({a.z}, {a.y})[0].value().to_vector(), (std::vector<double>{4, 8, 12}));
    Problem b(keep);
    EXPECT_EQ(grad({b.z}, {b.z})[0].value().to_vector(), (std::vector<double>{1}));
    Problem c(keep);
    const std::vector<Var> both = grad({c.z}, {c.x, c.y});
    EXPECT_EQ(both[0].value().to_vector(), (std::vector<double>{8, 16, 24}));
    EXPECT_EQ(both[1].value().to_vector(), (std::vector<double>{4, 8, 12}));
  }
}

}  // namespace
}  // namespace npdl
