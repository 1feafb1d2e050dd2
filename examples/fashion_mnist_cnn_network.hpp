#pragma once
// The convolutional network shared by examples/fashion_mnist_cnn
// and the training-step benchmark: conv 3x3x32 - BatchNormal(axis 1) - relu -
// max-pool 2 - conv 3x3x64 - BatchNormal(axis 1) - relu - max-pool 2 -
// flatten - Dense 128 - BatchNormal - relu - Dense 10 softmax (valid
// convolutions, 1x28x28 input), or the same without the BatchNormal layers.
#include <memory>

#include "npdl.hpp"

namespace fashion_mnist {

/// Without BatchNormal each convolution and the hidden dense layer apply
/// relu themselves; with it, BatchNormal sits between each affine map and its
/// relu. BatchNormal draws nothing from the generator (gamma one, beta zero),
/// so after the same set_seed both variants draw the same weights. Given a
/// communicator (data-parallel training), SyncBatchNormal over its ranks
/// takes BatchNormal's place, so that the statistics are the global batch's.
inline void add_cnn_layers(npdl::model::Model& m, bool with_batchnorm,
                           const npdl::dist::CommunicatorPtr& sync = nullptr) {
  using namespace npdl::layers;
  const char* activation = with_batchnorm ? "linear" : "relu";
  auto normalised_relu = [&](int axis) {
    if (!with_batchnorm) return;
    if (sync) {
      m.add<SyncBatchNormal>(1e-6, 0.9, axis, "zero", "one", sync);
    } else {
      m.add<BatchNormal>(1e-6, 0.9, axis);
    }
    m.add<Activation>("relu");
  };
  m.add<Convolution>(32, 3, npdl::Shape{1, 28, 28}, 1, "glorot_uniform", activation);
  normalised_relu(1);
  m.add<MaxPooling>(2);
  m.add<Convolution>(64, 3, npdl::Shape{}, 1, "glorot_uniform", activation);
  normalised_relu(1);
  m.add<MaxPooling>(2);
  m.add<Flatten>();
  m.add<Dense>(128, 0, "glorot_uniform", activation);
  normalised_relu(0);
  m.add<Dense>(10, 0, "glorot_uniform", "softmax");
}

}  // namespace fashion_mnist
