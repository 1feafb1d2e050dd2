// npdl's Embedding: rows by index, the table's gradient summing repeated
// indices, static tables, bad indices, and a sequence model trained through
// Model on integer inputs.
#include <gtest/gtest.h>

#include <random>

#include "gradcheck_gtest.hpp"
#include "npdl.hpp"

namespace npdl {
namespace {

TEST(Embedding, PicksRowsAndSumsTheGradientsOfRepeatedIndices) {
  const Tensor table = Tensor::randn({5, 3}, 1, DType::Float64);
  layers::Embedding layer(table);
  const Tensor indices = Tensor::from_indices({2, 3}, {4, 0, 4, 1, 1, 1});
  const Tensor y = layer.forward(indices);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 3}));
  for (std::int64_t j = 0; j < 3; ++j) EXPECT_EQ(y.at(j), table.at(4 * 3 + j));
  const Tensor up = Tensor::randn({2, 3, 3}, 2, DType::Float64);
  EXPECT_FALSE(layer.backward(up).defined());  // indices have no gradient
  const Tensor g = layer.grads()[0];
  for (std::int64_t j = 0; j < 3; ++j) {
    EXPECT_DOUBLE_EQ(g.at(4 * 3 + j), up.at(0 * 3 + j) + up.at(2 * 3 + j));  // index 4 twice
    EXPECT_DOUBLE_EQ(g.at(1 * 3 + j), up.at(3 * 3 + j) + up.at(4 * 3 + j) + up.at(5 * 3 + j));
    EXPECT_EQ(g.at(2 * 3 + j), 0.0);  // never picked
  }
  EXPECT_EQ(layer.output_shape(), (Shape{3, 3}));
}

TEST(Embedding, NpdlsConstructorsAndStaticTables) {
  set_seed(3);
  layers::Embedding drawn(10, 4);
  ASSERT_EQ(drawn.params().size(), 1u);
  EXPECT_EQ(drawn.embed_words()->value.shape(), (Shape{10, 4}));
  for (double v : drawn.embed_words()->value.to_vector()) EXPECT_LE(std::abs(v), 0.05);  // uniform
  layers::Embedding frozen(Tensor::randn({6, 2}, 4), /*static_table=*/true);
  EXPECT_TRUE(frozen.params().empty());
  EXPECT_THROW(layers::Embedding(0, 3), ValueError);
  EXPECT_THROW(layers::Embedding(Tensor::zeros({6})), ShapeError);
  EXPECT_THROW(layers::Embedding(Tensor::from_indices({2, 2}, {1, 2, 3, 4})), DTypeError);
}

TEST(Embedding, BadIndicesAreTypedErrorsAndChangeNothing) {
  layers::Embedding layer(Tensor::randn({4, 2}, 5));
  EXPECT_THROW(layer.forward(Tensor::from_indices({1, 2}, {0, 4})), IndexError);
  EXPECT_THROW(layer.forward(Tensor::from_indices({1, 2}, {-1, 0})), IndexError);
  EXPECT_THROW(layer.forward(Tensor::zeros({1, 2})), DTypeError);
  EXPECT_FALSE(layer.connected());
  try {
    layer.forward(Tensor::from_indices({1, 2}, {0, 9}));
  } catch (const IndexError& e) {
    EXPECT_NE(std::string(e.what()).find("9"), std::string::npos) << e.what();
  }
}

// A token-sequence classifier as npdl writes one (Embedding, LSTM, Dense
// softmax) trained by Model.fit on int64 inputs: does token 1 occur in the
// sequence? The LSTM must carry what it saw across the steps.
TEST(Embedding, AnLstmClassifierLearnsFromTokenSequences) {
  set_seed(21);
  const std::int64_t n = 256, steps = 6, vocabulary = 5;
  std::vector<std::int64_t> tokens;
  std::vector<int> labels;
  std::mt19937_64 gen(22);
  std::uniform_int_distribution<std::int64_t> other(2, vocabulary - 1);
  std::bernoulli_distribution rare(0.11);  // about half the sequences lack token 1
  for (std::int64_t i = 0; i < n; ++i) {
    bool seen = false;
    for (std::int64_t t = 0; t < steps; ++t) {
      const std::int64_t token = rare(gen) ? 1 : other(gen);
      seen = seen || token == 1;
      tokens.push_back(token);
    }
    labels.push_back(seen ? 1 : 0);
  }
  const Tensor X = Tensor::from_indices({n, steps}, tokens);
  const Tensor Y = model::one_hot(labels, 2);
  model::Model m;
  m.add<layers::Embedding>(vocabulary, 8);
  m.add<layers::LSTM>(16);
  m.add<layers::Dense>(2, 0, "glorot_uniform", "softmax");
  model::OptimizerOptions o;
  o.lr = 0.01;
  m.compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
            model::get_optimizer("adam", o));
  model::FitOptions f;
  f.epochs = 30;
  f.batch_size = 32;
  f.log = nullptr;
  const std::vector<model::EpochStats> h = m.fit(X, Y, f);
  EXPECT_GE(h.back().accuracy, 0.95) << "first epoch " << h.front().accuracy;
  EXPECT_EQ(m.predict(X).shape(), (Shape{n, 2}));
}

}  // namespace
}  // namespace npdl
