#pragma once
// What the fused batch-norm nodes' VJPs do under create_graph (Note
// [Differentiable VJPs] in autodiff/graph.hpp): their gradients become
// values on the graph, differentiable again, in one of two ways.
//
//   Recorded  the hand-derived first backward, recorded from primitives
//             (mean, sub, rsqrt, mul, sum...) on the graph's x and gamma:
//             reverse mode through it is the second derivative, to any order.
//   Hand      dx and dgamma of the fused kernel as two nodes whose VJPs are
//             the hand-derived double backward (double_backward.hpp),
//             as PyTorch ships it; a third derivative through them is
//             refused by name.
// With `checked`, the Hand nodes' VJPs also differentiate the composite twice
// by reverse mode, in float64, and throw GradientMismatch on disagreement.
#include <string>

#include "autodiff/graph.hpp"
#include "layers/batch_norm/kernels.hpp"

namespace npdl::layers {

enum class DoubleBackward { Hand, Recorded };

/// The Hand nodes: dx and dgamma of the fused kernel, each a function of
/// (dy, x, gamma). dbeta = sum(dy) is linear in dy alone and is recorded
/// from primitives. (Their catalogue entries sit with the fused training
/// node, which makes them: layers/batch_norm/batch_normal.cpp.)
extern const OpInfo kHandDx, kHandDgamma;
/// "hand" or "recorded"; throws ValueError otherwise.
DoubleBackward parse_double_backward(const std::string& name);

/// The training node's gradients (dx, dgamma, dbeta) under create_graph,
/// for the upstream c.grad; the node saves x, gamma and beta as inputs, and
/// `stats` are its batch statistics.
Vars batchnorm_train_grads_on_graph(const VjpArgs& c, const BatchNormLayout& layout, double epsilon,
                                    Variant variant, const BatchNormStats& stats,
                                    DoubleBackward how, bool checked);

/// The inference node's gradients under create_graph (running statistics
/// are constants): the affine map's backward, recorded from primitives.
Vars batchnorm_infer_grads_on_graph(const VjpArgs& c, const BatchNormLayout& layout, double epsilon,
                                    const Tensor& running_mean, const Tensor& running_var);

}  // namespace npdl::layers
