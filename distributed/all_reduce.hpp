#pragma once
// The all-reduce as a primitive op of the graph.
//
//   forward  y = sum over ranks of x      (every rank gets the same y)
//   VJP      gx = sum over ranks of g     (the all-reduce of the gradient)
//
// Why the VJP is an all-reduce: the loss of data-parallel training is the
// sum of the ranks' losses, L = sum_r L_r, and y_r = sum_s x_s, so
// dL/dx_s = sum_r dL_r/dy_r: rank s needs every rank's upstream gradient.
// Each rank's reverse sweep meets its all-reduce vertices in the same order
// (the ranks record the same graph), so the collectives in the backward
// pair up as they did in the forward.
#include "autodiff/graph.hpp"
#include "distributed/communicator.hpp"

namespace npdl::dist {

extern const OpInfo kAllReduceSum;

/// All-reduce (sum) of x's value over the ranks of `comm`, recorded on x's
/// graph when x is tracked. Every rank must call it with the same shape and
/// dtype; a rank whose shape differs makes all of them throw ShapeError
/// naming each rank's shape (one small allgather before the reduction).
Var all_reduce_sum(const Var& x, const CommunicatorPtr& comm);

}  // namespace npdl::dist
