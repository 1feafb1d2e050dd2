#pragma once
// The fully connected network of Ioffe & Szegedy's Figure 1 (2015), shared
// by examples/fashion_mnist and examples/hessian_spectrum: 784-100-100-100-10
// with sigmoid activations and a softmax output, with or without a batch
// normalisation between each hidden layer's affine map and its sigmoid.
#include <functional>
#include <memory>

#include "npdl.hpp"

namespace fashion_mnist {

/// Without batch normalisation each hidden layer is a Dense with its
/// sigmoid; with it, Linear - norm - sigmoid, the norm made by
/// `make_norm` (a BatchNormal with npdl's defaults when none is given).
/// Batch norms draw nothing from the generator (gamma one, beta zero), so
/// after the same set_seed both variants draw the same weights.
inline void add_mlp_layers(
    npdl::model::Model& m, bool with_batchnorm,
    const std::function<std::shared_ptr<npdl::layers::Layer>()>& make_norm = {}) {
  using namespace npdl::layers;
  for (int layer = 0; layer < 3; ++layer) {
    const std::int64_t n_in = layer == 0 ? 784 : 0;
    if (with_batchnorm) {
      m.add<Linear>(100, n_in);
      if (make_norm) {
        m.add(make_norm());
      } else {
        m.add<BatchNormal>();
      }
      m.add<Activation>("sigmoid");
    } else {
      m.add<Dense>(100, n_in, "glorot_uniform", "sigmoid");
    }
  }
  m.add<Dense>(10, 0, "glorot_uniform", "softmax");
}

}  // namespace fashion_mnist
