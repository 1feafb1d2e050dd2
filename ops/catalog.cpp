#include "ops/info.hpp"
#include "ops/ops.hpp"

namespace npdl::ops {

const std::vector<const OpInfo*>& catalog() {
  using namespace info;
  static const std::vector<const OpInfo*> all{
      // elementwise
      &kAdd, &kSub, &kMul, &kDiv, &kAddScalar, &kMulScalar, &kNeg, &kSquare, &kSqrt, &kRsqrt, &kExp,
      &kLog,
      // reductions, shapes, linear algebra
      &kSum, &kMean, &kReshape, &kBroadcastTo, &kTranspose, &kMatmul,
      // activations
      &kRelu, &kSigmoid, &kTanh, &kSoftplus, &kLeakyRelu, &kElu, &kSoftmax, &kLogSoftmax,
      // convolution and pooling, with the primitives their VJPs are made of
      &kConv2d, &kConv2dInputGrad, &kConv2dWeightGrad, &kMaxPool2d, &kMaxPool2dBackward,
      &kMaxPool2dGather, &kMeanPool2d, &kMeanPool2dBackward};
  return all;
}

}  // namespace npdl::ops
