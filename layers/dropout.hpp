#pragma once
// npdl's Dropout: in training, each input element is kept with probability
// 1 - p and the kept ones are scaled by 1 / (1 - p) ("inverted" dropout), so
// that inference is the identity and the expected output is the same in
// both modes. (npdl's Python original scales at training time and also
// multiplies by 1 - p at inference, which shrinks inference outputs; this
// layer follows the inverted convention throughout.)
#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include "layers/layer.hpp"

namespace npdl::layers {

class Dropout : public Layer {
 public:
  /// `p` is the fraction of inputs dropped, in [0, 1). Masks draw from the
  /// global generator (npdl::set_seed) or, with `seed`, from the layer's own.
  explicit Dropout(double p = 0.0, std::optional<std::uint64_t> seed = std::nullopt);

  std::string name() const override { return "Dropout"; }
  Var apply(const Var& input, bool training) override;
  double p() const { return p_; }

 private:
  Tensor draw_mask(const Shape& shape, DType dtype);

  double p_;
  std::optional<std::mt19937_64> own_generator_;
};

}  // namespace npdl::layers
