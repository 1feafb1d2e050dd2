#pragma once
// The model that fuzz_model_load loads into and fuzz_make_seeds saves: small,
// with every kind of saved state (weights, biases, gamma/beta and the
// BatchNormal running statistics).
#include "layers/batch_norm/batch_normal.hpp"
#include "layers/linear.hpp"
#include "model/model.hpp"

namespace npdl::fuzz {

inline void build_seed_model(model::Model& m) {
  m.add<layers::Dense>(4, 3, "glorot_uniform", "relu");
  m.add<layers::BatchNormal>();
  m.add<layers::Dense>(2, 0, "glorot_uniform", "softmax");
  m.build({3});
}

}  // namespace npdl::fuzz
