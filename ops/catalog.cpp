#include "ops/info.hpp"
#include "ops/ops.hpp"

namespace npdl::ops {

const std::vector<const OpInfo*>& catalog() {
  using namespace info;
  static const std::vector<const OpInfo*> all{
      &kAdd,     &kSub,        &kMul,     &kDiv,         &kAddScalar, &kMulScalar,
      &kNeg,     &kSquare,     &kSqrt,    &kRsqrt,       &kExp,       &kLog,
      &kSum,     &kMean,       &kReshape, &kBroadcastTo, &kTranspose, &kMatmul,
      &kRelu,    &kSigmoid,    &kTanh,    &kSoftplus,    &kLeakyRelu, &kElu,
      &kSoftmax, &kLogSoftmax, &kConv2d,  &kMaxPool2d,   &kMeanPool2d};
  return all;
}

}  // namespace npdl::ops
