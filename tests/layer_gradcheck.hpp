#pragma once
// A layer's backward (npdl's eager API) against float64 central differences
// of its forward, for the layer test suites.
#include <string>
#include <vector>

#include "npdl.hpp"

namespace npdl::layers {

/// Checks a layer's backward (input gradient and every parameter gradient)
/// against central differences of its forward, in float64. `reseed` makes
/// every forward draw the same random numbers (Dropout's mask).
inline GradCheckReport layer_gradcheck(Layer& layer, const Tensor& x, bool training = true,
                                       std::uint64_t reseed = 0) {
  auto forward = [&](const Tensor& in) {
    if (reseed != 0) set_seed(reseed);
    return layer.forward(in, training);
  };
  const Tensor x64 = x.astype(DType::Float64);
  const Tensor y = forward(x64);  // first forward: parameters become float64
  const Tensor upstream = Tensor::randn(y.shape(), 4242, DType::Float64);  // never all-ones
  const Tensor dx = layer.backward(upstream);
  std::vector<Tensor> analytic{dx};
  std::vector<Tensor> inputs{x64};
  std::vector<std::string> names{"dx"};
  const std::vector<ParameterPtr> params = layer.params();
  for (const ParameterPtr& p : params) {
    analytic.push_back(p->grad.clone());
    inputs.push_back(p->value.clone());
    names.push_back("d" + p->name);
  }
  // The layer's forward as a function of its input and its parameters.
  const GraphFunction f = [&](const std::vector<Var>& v) {
    for (std::size_t i = 0; i < params.size(); ++i) params[i]->value = v[i + 1].value();
    return Var(forward(v[0].value()));
  };
  const std::vector<Tensor> numeric = finite_difference_gradients(f, inputs, upstream, 1e-6);
  for (std::size_t i = 0; i < params.size(); ++i) params[i]->value = inputs[i + 1];
  GradCheckReport report;
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    report.tensors.push_back(compare_tensors(names[i], analytic[i], numeric[i], 1e-6, 1e-4));
  }
  return report;
}

}  // namespace npdl::layers
