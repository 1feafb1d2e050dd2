// Quick start: build a small graph from primitives, run reverse mode, check
// the gradients against finite differences, and print the graph as DOT.
//
//   ./build/examples/quickstart [--dot graph.dot]
#include <cstring>
#include <fstream>
#include <iostream>

#include "npdl.hpp"

int main(int argc, char** argv) {
  using namespace npdl;
  // A one-layer softmax classifier: loss = -mean(sum(y * log_softmax(x @ w + b))).
  const Tensor x = Tensor::randn({4, 3}, 1, DType::Float64);
  const Tensor y = Tensor::from_vector({4, 2}, {1, 0, 0, 1, 1, 0, 0, 1}, DType::Float64);
  auto model = [&y](const std::vector<Var>& v) {
    const Var logits = ops::matmul(v[0], v[1]) + v[2];
    return -ops::mean(ops::sum(Var(y) * ops::log_softmax(logits, 1), {1}));
  };

  Graph graph;
  const Var xv = graph.input(x, "x");
  const Var w = graph.variable(Tensor::randn({3, 2}, 2, DType::Float64), "w");
  const Var b = graph.variable(Tensor::zeros({2}, DType::Float64), "b");
  const Var loss = model({xv, w, b});
  loss.backward({}, /*retain_graph=*/true);

  std::cout << "loss = " << loss.value().item() << "\n\n"
            << "dloss/dw = " << w.grad() << "\n\n"
            << "dloss/db = " << b.grad() << "\n\n";

  auto of_params = [&x, &model](const std::vector<Var>& v) { return model({Var(x), v[0], v[1]}); };
  const GradCheckReport report = gradcheck(of_params, {w.value(), b.value()}, {}, {"w", "b"});
  std::cout << "gradient check (reverse mode vs float64 central differences):\n"
            << report.describe() << (report.ok() ? "PASS" : "FAIL") << "\n";

  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--dot") == 0) {
      std::ofstream out(argv[i + 1]);
      write_dot(out, graph, {true, true});
      std::cout << "graph written to " << argv[i + 1] << "\n";
    }
  }
  return report.ok() ? 0 : 1;
}
