#pragma once
// Gradient checks: reverse mode against float64 central differences, or
// against a hand-derived (analytic) gradient. Reports name the worst element
// of each tensor, not whole matrices.
#include <functional>
#include <string>
#include <vector>

#include "autodiff/graph.hpp"

namespace npdl {

/// One tensor compared element by element: |actual - expected| must stay
/// within atol + rtol * |expected| everywhere.
struct TensorComparison {
  std::string name;
  Shape shape;
  std::int64_t worst_index = -1;  // flat, row-major
  double actual = 0.0;            // at worst_index
  double expected = 0.0;
  double abs_error = 0.0;
  double rel_error = 0.0;
  double tolerance = 0.0;      // atol + rtol * |expected| at worst_index
  double max_abs_error = 0.0;  // over all elements
  bool ok = true;
  std::string problem;  // set when the comparison could not be made (shape, NaN)
  std::string describe() const;
};

struct GradCheckReport {
  std::vector<TensorComparison> tensors;
  std::vector<std::string> problems;  // failed side checks (reentrancy, zero upstream)
  bool ok() const;
  std::string describe() const;
};

struct GradCheckOptions {
  double step = 1e-6;  // finite-difference step, in float64
  double atol = 1e-6;
  double rtol = 1e-4;
  std::uint64_t seed = 1234;  // of the random upstream gradient
};

/// A function of graph values; it is called on fresh graphs with variables
/// holding the inputs (converted to float64 for checks).
using GraphFunction = std::function<Var(const std::vector<Var>&)>;

/// Compares `actual` with `expected` (any dtypes, same shape).
TensorComparison compare_tensors(std::string name, const Tensor& actual, const Tensor& expected,
                                 double atol, double rtol);

/// Reverse mode of f against central differences of L = sum(f(x) * u), u a
/// seeded random upstream gradient, all in float64. Also checks that a
/// second backward gives the same gradients and that u = 0 gives zero.
GradCheckReport gradcheck(const GraphFunction& f, const std::vector<Tensor>& inputs,
                          const GradCheckOptions& options = {},
                          const std::vector<std::string>& names = {});

/// Hand-derived gradients: given the inputs and the upstream gradient u,
/// returns d(sum(f * u))/d(input i) for every input.
using AnalyticGradient =
    std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs, const Tensor& upstream)>;

/// Reverse mode of f against `analytic`, in the inputs' own dtype.
GradCheckReport check_against_analytic(const GraphFunction& f, const AnalyticGradient& analytic,
                                       const std::vector<Tensor>& inputs,
                                       const GradCheckOptions& options = {},
                                       const std::vector<std::string>& names = {});

/// A checked mode's verdict: throws GradientMismatch naming `what` and the
/// worst element when the hand-derived `computed` differs from the float64
/// autodiff `reference` beyond computed's dtype's tolerance (its absolute
/// part scaled by computed's root mean square).
void expect_hand_derived_close(const std::string& what, const Tensor& reference,
                               const Tensor& computed);

/// Reverse-mode gradients of sum(f(inputs) * upstream) w.r.t. every input.
std::vector<Tensor> reverse_mode_gradients(const GraphFunction& f,
                                           const std::vector<Tensor>& inputs,
                                           const Tensor& upstream);

/// Central-difference gradients of sum(f(inputs) * upstream), in float64.
std::vector<Tensor> finite_difference_gradients(const GraphFunction& f,
                                                const std::vector<Tensor>& inputs,
                                                const Tensor& upstream, double step);

/// Second order: reverse over reverse against float64 central differences of
/// the first derivative. With u a seeded random upstream gradient and v_i
/// one seeded random tensor per input, it differentiates
///   H(x, u) = sum_i <v_i, d<f(x), u>/dx_i>
/// with respect to every input and to u (a VJP must be differentiable in
/// its upstream gradient too), by reverse mode through the gradients
/// recorded with create_graph, and compares with central differences of H
/// computed from first-order reverse mode. It also checks that the
/// gradients recorded with create_graph equal the first-order ones.
GradCheckReport gradgradcheck(const GraphFunction& f, const std::vector<Tensor>& inputs,
                              const GradCheckOptions& options = {},
                              const std::vector<std::string>& names = {});

/// Central differences of the scalar `f` with respect to every element of
/// every (float64) tensor of `at`: each element is moved by +-step in place
/// (f reads `at`) and restored. What every finite-difference check runs.
std::vector<Tensor> central_differences(std::vector<Tensor>& at, const std::function<double()>& f,
                                        double step);

/// Tolerances that suit a dtype for comparing two gradient computations.
GradCheckOptions tolerances_for(DType dtype);

}  // namespace npdl
