#pragma once
// Hessian-vector products by reverse over reverse: the gradient of a scalar
// is recorded with create_graph, then differentiated along v:
//   H v = d<grad f(x), v>/dx.
// It costs about two backward sweeps and keeps the graph of the first
// derivative, never the n x n Hessian.
#include <cstdint>
#include <functional>
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

/// Note [Lanczos]
/// The extreme eigenvalues of a symmetric linear operator on lists of
/// tensors (a HessianOperator: one tensor per input), by Lanczos with full
/// reorthogonalisation. From a random unit vector (Tensor::randn from
/// `seed`) shaped as `like`, each of `iterations` products extends an
/// orthonormal basis Q of the Krylov space (every new vector is made
/// orthogonal to all earlier ones, twice, so that round-off does not bring
/// back converged directions as spurious copies) and the tridiagonal
/// T = Q' A Q; T's eigenvalues (the Ritz values, by Eigen's
/// SelfAdjointEigenSolver) are returned, largest first. They lie within
/// the operator's spectrum, and the extreme ones converge first: about 20
/// products give the top few of a network's Hessian. The basis is kept in
/// float64 (elements x iterations); products run in `like`'s dtypes.
/// Fewer values come back when the Krylov space is exhausted sooner: after
/// as many products as elements, or on an invariant subspace.
/// Throws ValueError for iterations < 1, a `like` without elements, or a
/// product with NaN or Inf; ShapeError when the operator returns tensors
/// that are not shaped as `like`.
std::vector<double> lanczos_ritz_values(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& op,
    const std::vector<Tensor>& like, int iterations, std::uint64_t seed = 0);

}  // namespace npdl
