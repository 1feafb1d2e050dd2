#pragma once
// How a layer with a hand-derived backward (BatchNormal, the LSTM cell)
// computes its gradients:
//   autodiff  reverse mode through the primitives of its forward;
//   fused     one node whose VJP is the hand-derived formula;
//   checked   the fused node, whose VJP also runs reverse mode through the
//             primitives and throws GradientMismatch when the two disagree
//             beyond the dtype's tolerance.
#include <string>

namespace npdl::layers {

enum class BackwardMode { Autodiff, Fused, Checked };
/// "autodiff", "fused" or "checked"; throws ValueError otherwise.
BackwardMode parse_backward_mode(const std::string& name);
std::string backward_mode_name(BackwardMode mode);

}  // namespace npdl::layers
