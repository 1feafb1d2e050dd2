#include "layers/embedding.hpp"

#include <optional>
#include <utility>

#include "ops/sequence.hpp"

namespace npdl::layers {

namespace {

ParameterPtr make_table(Tensor value) {
  ParameterPtr p = make_parameter(std::move(value), "embed_words");
  p->grad = Tensor::zeros(p->value.shape(), p->value.dtype());
  return p;
}

Tensor drawn_table(std::int64_t input_size, std::int64_t n_out, const EmbeddingOptions& o) {
  if (input_size < 1 || n_out < 1) {
    throw ValueError("Embedding: input_size and n_out must be at least 1, got " +
                     std::to_string(input_size) + " and " + std::to_string(n_out));
  }
  return o.init({input_size, n_out}, DType::Float32);
}

Tensor checked_table(Tensor t) {
  t.check_defined();
  if (t.rank() != 2) {
    throw ShapeError("Embedding: embed_words must be a table (rows, n_out), got shape " +
                     to_string(t.shape()));
  }
  check_floating(t.dtype(), "Embedding's embed_words");
  return t;
}

}  // namespace

Embedding::Embedding(std::int64_t input_size, std::int64_t n_out, EmbeddingOptions options)
    : table_(make_table(drawn_table(input_size, n_out, options))),
      static_(false),
      options_(std::move(options)) {}

Embedding::Embedding(Tensor embed_words, bool static_table, EmbeddingOptions options)
    : table_(make_table(checked_table(std::move(embed_words)))),
      static_(static_table),
      options_(std::move(options)) {}

std::vector<ParameterPtr> Embedding::params() const {
  if (static_) return {};
  return {table_};
}

Shape Embedding::output_shape() const {
  Shape out = input_shape();
  out.push_back(table_->value.shape()[1]);
  return out;
}

void Embedding::check_indices(const Var& input) const {
  if (is_floating(input.dtype())) {
    throw DTypeError("Embedding expects int32 or int64 indices, got " + to_string(input.dtype()) +
                     " (Tensor::from_indices, or astype(DType::Int64))");
  }
  const Shape& s = input.shape();
  if (options_.nb_batch > 0 && (s.empty() || s[0] != options_.nb_batch)) {
    throw ShapeError("Embedding was declared with nb_batch = " + std::to_string(options_.nb_batch) +
                     ", got indices of shape " + to_string(s));
  }
  if (options_.nb_seq > 0 && (s.size() < 2 || s[1] != options_.nb_seq)) {
    throw ShapeError("Embedding was declared with nb_seq = " + std::to_string(options_.nb_seq) +
                     ", got indices of shape " + to_string(s));
  }
}

Var Embedding::apply(const Var& input, bool /*training*/) {
  std::optional<Graph::CompositeScope> scope;
  if (input.graph() != nullptr) scope.emplace(*input.graph(), name());
  check_indices(input);
  // The table first: an index out of range throws before the layer connects.
  Graph* graph = input.graph();
  const Var table = graph != nullptr && !static_ ? graph->param(table_) : Var(table_->value);
  Var out = ops::embedding(table, input.value());
  ensure_connected(input.shape());
  fix_dtype();
  return out;
}

}  // namespace npdl::layers
