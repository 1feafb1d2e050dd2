#pragma once
// Hessian-vector products by reverse over reverse: the gradient of a scalar
// is recorded with create_graph, then differentiated along v:
//   H v = d<grad f(x), v>/dx.
// It costs about two backward sweeps and keeps the graph of the first
// derivative, never the n x n Hessian.
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/graph.hpp"

namespace npdl {

/// The Hessian of a scalar `output` with respect to `inputs` as an operator:
/// the gradient is recorded once, and each product is one more sweep over it
/// (the graph is retained between products), as power iteration or Lanczos
/// want. The graph must outlive the operator.
class HessianOperator {
 public:
  /// Throws ShapeError when `output` is not one element, GraphError when an
  /// input is not a value of its graph that wants a gradient.
  HessianOperator(const Var& output, std::vector<Var> inputs);
  /// H v, one v (of its input's shape) per input; ShapeError otherwise.
  std::vector<Tensor> operator()(const std::vector<Tensor>& v) const;
  /// The gradient at the point, as recorded.
  std::vector<Tensor> gradient() const;

 private:
  std::vector<Var> inputs_;
  std::vector<Var> grads_;  // recorded with create_graph, one per input
};

/// H v for a scalar `output` already recorded from `inputs` (values of its
/// graph that want a gradient: variables or parameters), one v per input.
/// Throws ShapeError when `output` is not one element or a v's shape is not
/// its input's.
std::vector<Tensor> hvp(const Var& output, const std::vector<Var>& inputs,
                        const std::vector<Tensor>& v);

/// H v of the scalar f at x, on a fresh graph.
std::vector<Tensor> hvp(const GraphFunction& f, const std::vector<Tensor>& x,
                        const std::vector<Tensor>& v);

}  // namespace npdl
