#pragma once
// One batch-normalisation problem (input, parameters, upstream gradient) as
// the teaching and checking commands share it, and its gradients computed
// three ways: reverse mode through the composite, the fused hand-derived
// backward, and float64 central differences.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "cli/report.hpp"
#include "layers/batch_norm/batch_normal.hpp"

namespace npdl::cli {

/// What the user asked for: their x, or a seeded random one of `shape`.
struct ProblemSpec {
  std::string x_path;          // empty: built-in seeded input
  Shape shape{4, 3};           // of the built-in input
  std::optional<DType> dtype;  // default: x's, float64 for the built-in
  int axis = 0;
  double epsilon = 1e-6;
  std::uint64_t seed = 1;
  bool training = true;
  layers::Variant variant = layers::Variant::Correct;
};

struct BatchNormProblem {
  Tensor x, gamma, beta;
  Tensor dy;                         // seeded random upstream gradient
  Tensor ggx, gggamma, ggbeta;       // seeded, weigh dx, dgamma, dbeta at second order
  Tensor running_mean, running_var;  // used in inference
  int axis = 0;
  double epsilon = 1e-6;
  bool training = true;
  layers::Variant variant = layers::Variant::Correct;
  layers::BatchNormLayout layout;
  std::string origin;  // where x came from, in words
};

/// Finite differences run two forwards per element of every input: beyond
/// this many elements of x they take too long to be a check one waits for.
constexpr std::int64_t kMaxFiniteDifferenceElements = 20000;

/// Builds and validates a problem: x from the file or seeded, gamma in
/// [0.5, 1.5), beta in [-0.5, 0.5), dy ~ N(0, 1) and running statistics, all
/// seeded. Throws npdl::Error naming what is wrong.
BatchNormProblem make_problem(const ProblemSpec& spec);

/// The forward as a function of (x, gamma, beta) on the graph: the composite
/// of primitives whose reverse mode is the autodiff backward.
GraphFunction composite_function(const BatchNormProblem& p);

/// d sum(y * dy) / d(x, gamma, beta), three ways.
std::vector<Tensor> autodiff_gradients(const BatchNormProblem& p);
/// The composite's reverse mode in float64 on the promoted inputs.
std::vector<Tensor> autodiff_gradients_in_float64(const BatchNormProblem& p);
std::vector<Tensor> fused_gradients(const BatchNormProblem& p);
std::vector<Tensor> numeric_gradients(const BatchNormProblem& p);  // float64

/// One pair of gradient computations compared on one tensor.
struct GradientAgreement {
  std::string tensor;  // "dx", "dgamma", "dbeta"
  std::string pair;    // "autodiff vs fused", ...
  double max_abs = 0.0;
  double max_rel = 0.0;  // max_abs / max |reference|
  TensorComparison detail;
  std::string verdict;  // "exact", "close", "MISMATCH", or "inexact" (informational)
  /// Shown, never a failure: the float32 composite's own rounding error.
  bool informational = false;
  bool ok() const { return detail.ok || informational; }
  /// The worst element, saying which side is which.
  std::string describe() const;
};

/// `actual` against `reference` on one tensor, within `tolerance` (its atol
/// scaled by the reference's root mean square); an informational pair is
/// shown, never failed.
GradientAgreement agreement(const std::string& tensor, const std::string& pair,
                            const Tensor& actual, const Tensor& reference,
                            const GradCheckOptions& tolerance, bool informational = false);

/// The three pairs for each of dx, dgamma and dbeta, with tolerances that
/// suit the problem's dtype. For a float32 problem, "autodiff vs finite
/// diff" is informational (the float32 composite's own rounding, Note
/// [Checked mode's reference] in layers/batch_norm/batch_normal.cpp) and the fused
/// gradients are compared with the composite run in float64, as checked
/// mode does.
std::vector<GradientAgreement> compare_gradients(const BatchNormProblem& p,
                                                 const std::vector<Tensor>& autodiff,
                                                 const std::vector<Tensor>& fused,
                                                 const std::vector<Tensor>& numeric);

/// The comparisons as a table: gradient, pair, max abs and rel difference,
/// verdict.
Table agreement_table(const std::vector<GradientAgreement>& agreements);
/// Throws GradientMismatch naming the first comparison that failed, if any.
void throw_first_mismatch(const std::vector<GradientAgreement>& agreements);

/// Second order (training): the gradients of
///   H = <ggx, dx> + <gggamma, dgamma> + <ggbeta, dbeta>
/// with respect to (x, gamma, dy), (dx, dgamma, dbeta) being the first
/// derivative of sum(y * dy), three ways: the composite differentiated twice
/// by reverse mode, the fused backward recorded from primitives, and the
/// hand-derived double backward.
enum class SecondOrderWay { Autodiff, Recorded, Hand };
std::vector<Tensor> second_order_gradients(const BatchNormProblem& p, SecondOrderWay way);
/// Float64 central differences of H, its first derivative computed by
/// reverse mode through the composite of the forward that runs (so
/// --buggy-std's real derivative).
std::vector<Tensor> numeric_second_order_gradients(const BatchNormProblem& p);
/// Each way against finite differences, and the hand-derived one against
/// autodiff, for d/dx, d/dgamma and d/ddy. In float32 the two ways that
/// record in float32 (autodiff, recorded) are informational, as at first order.
std::vector<GradientAgreement> compare_second_order(const BatchNormProblem& p,
                                                    const std::vector<Tensor>& autodiff,
                                                    const std::vector<Tensor>& recorded,
                                                    const std::vector<Tensor>& hand,
                                                    const std::vector<Tensor>& numeric);

/// The layer recorded on a graph in autodiff mode, after a backward from dy
/// (graph retained, so that VJPs can be run again to show them).
struct RecordedBatchNorm {
  std::unique_ptr<Graph> graph;
  std::unique_ptr<layers::BatchNormal> layer;
  Var x, y;
  Var h;             // second order: H, from which backward ran; first order: undefined
  int cluster = -1;  // index of the BatchNormal composite
};
RecordedBatchNorm record_batchnorm(const BatchNormProblem& p);

/// Second order: the composite forward on (x, gamma, beta), its first
/// backward from dy recorded on the same graph (create_graph, so that its
/// VJPs are vertices too), and H = <ggx, dx> + <gggamma, dgamma> + <ggbeta,
/// dbeta> on top (the weights as inputs), after a backward from H (graph
/// retained): reverse mode through the first backward, vertex by vertex.
RecordedBatchNorm record_batchnorm_second_order(const BatchNormProblem& p);

/// Makes the layer's parameters and running statistics take `dtype` now.
/// BatchNormal creates them as float32 and converts them at its first
/// forward, so values set before that would be rounded through float32.
void adopt_dtype(layers::BatchNormal& layer, DType dtype);

/// Reads x's dtype option: "float32" or "float64".
DType parse_dtype(const std::string& name);

}  // namespace npdl::cli
