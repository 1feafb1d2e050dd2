#pragma once
// The OpInfo of every primitive, defined next to its op in the op's .cpp file.
#include "autodiff/graph.hpp"

namespace npdl::ops::info {
extern const OpInfo kAdd, kSub, kMul, kDiv, kAddScalar, kMulScalar, kNeg, kSquare, kSqrt, kRsqrt,
    kExp, kLog;
extern const OpInfo kSum, kMean;
extern const OpInfo kReshape, kBroadcastTo, kTranspose;
extern const OpInfo kMatmul;
extern const OpInfo kRelu, kSigmoid, kTanh, kSoftplus, kLeakyRelu, kElu, kSoftmax, kLogSoftmax;
extern const OpInfo kConv2d, kConv2dInputGrad, kConv2dWeightGrad;
extern const OpInfo kMaxPool2d, kMaxPool2dBackward, kMaxPool2dGather, kMeanPool2d,
    kMeanPool2dBackward;
}  // namespace npdl::ops::info
