#pragma once
// npdl's Embedding layer: the rows of a table picked by integer indices, a
// batch of token sequences (N, T) becoming (N, T, n_out). The indices are
// int32 or int64 (Tensor::from_indices, or a .npy of integers); they get no
// gradient. The table's gradient sums the rows of repeated indices
// (ops::embedding).
#include <cstdint>
#include <string>

#include "layers/initializers.hpp"
#include "layers/layer.hpp"

namespace npdl::layers {

/// npdl's further Embedding arguments.
struct EmbeddingOptions {
  std::int64_t nb_batch = 0;                // batch size the layer accepts; 0: any
  std::int64_t nb_seq = 0;                  // sequence length the layer accepts; 0: any
  initializers::InitSpec init = "uniform";  // of a table the layer makes
};

class Embedding : public Layer {
 public:
  /// npdl's Embedding(input_size=..., n_out=...): a trainable table of
  /// input_size rows (the vocabulary) of n_out values, drawn from `init`
  /// (float32). ValueError unless both are at least 1.
  Embedding(std::int64_t input_size, std::int64_t n_out, EmbeddingOptions options = {});
  /// npdl's Embedding(embed_words=..., static=...): a given table (say,
  /// pretrained word vectors) of shape (rows, n_out), in its own dtype;
  /// trained unless `static_table`. ShapeError unless it is 2-D,
  /// DTypeError unless floating.
  explicit Embedding(Tensor embed_words, bool static_table = false, EmbeddingOptions options = {});

  std::string name() const override { return "Embedding"; }
  /// IndexError for an index outside [0, rows), DTypeError for floating
  /// indices, ShapeError against nb_batch and nb_seq; nothing changes then.
  Var apply(const Var& input, bool training) override;
  Shape output_shape() const override;
  /// npdl's order: {embed_words}, or none for a static table.
  std::vector<ParameterPtr> params() const override;

  const ParameterPtr& embed_words() const { return table_; }
  bool is_static() const { return static_; }

 private:
  void check_indices(const Var& input) const;

  ParameterPtr table_;
  bool static_;
  EmbeddingOptions options_;
};

}  // namespace npdl::layers
