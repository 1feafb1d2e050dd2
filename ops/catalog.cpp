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
      // convolution, with the primitives its VJP is made of, and pooling
      &kConv2d, &kConv2dInputGrad, &kConv2dWeightGrad, &kMaxPool2d, &kMeanPool2d};
  return all;
}

}  // namespace npdl::ops
