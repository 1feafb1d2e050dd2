// npdl's smaller layers and helpers, with npdl's names and defaults: the
// Softmax layer, DimShuffle, Flatten(outdim=1), pooling over (N, H, W),
// Convolution's 4-entry input_shape, Elliot's steepness, Orthogonal's
// 'relu' gain, SCCE's epsilon, one_hot without a class count, unhot.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck_gtest.hpp"
#include "layer_gradcheck.hpp"
#include "npdl.hpp"

namespace npdl {
namespace {

TEST(SoftmaxLayer, IsADenseLayerEndingInASoftmax) {
  layers::Softmax softmax(3, 4);
  layers::Dense dense(3, 4, "glorot_uniform", "softmax");
  set_seed(1);
  softmax.connect_to(Shape{4});  // draws the weights
  set_seed(1);
  dense.connect_to(Shape{4});
  const Tensor x = Tensor::randn({5, 4}, 2);
  EXPECT_EQ(softmax.forward(x).to_vector(), dense.forward(x).to_vector());
  EXPECT_EQ(softmax.name(), "Softmax");
  EXPECT_EQ(softmax.params().size(), 2u);
  layers::Softmax fresh(3);
  EXPECT_GRADIENTS_MATCH(layers::layer_gradcheck(fresh, x));
}

TEST(DimShuffle, InsertsAnAxisOfSizeOne) {
  layers::DimShuffle after_samples;  // npdl's default axis=1
  const Tensor x = Tensor::randn({2, 3}, 3, DType::Float64);
  EXPECT_EQ(after_samples.forward(x).shape(), (Shape{2, 1, 3}));
  EXPECT_EQ(after_samples.output_shape(), (Shape{1, 3}));
  layers::DimShuffle last(2);
  EXPECT_EQ(last.forward(x).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(last.backward(Tensor::randn({2, 3, 1}, 4, DType::Float64)).shape(), (Shape{2, 3}));
  EXPECT_THROW(layers::DimShuffle(0), ValueError);
  layers::DimShuffle too_far(3);
  EXPECT_THROW(too_far.forward(x), AxisError);
  EXPECT_FALSE(too_far.connected());
}

TEST(Flatten, OutdimOneMergesTheSamplesToo) {
  layers::Flatten all(1);
  const Tensor x = Tensor::randn({2, 3, 4}, 5, DType::Float64);
  const Tensor y = all.forward(x);
  EXPECT_EQ(y.shape(), (Shape{24}));
  EXPECT_EQ(y.to_vector(), x.to_vector());
  EXPECT_EQ(all.backward(Tensor::randn({24}, 6, DType::Float64)).shape(), x.shape());
  EXPECT_THROW(layers::Flatten(0), ValueError);
}

TEST(Pooling, TakesNpdlsThreeDimensionalInput) {
  const Tensor x = Tensor::randn({2, 4, 6}, 7, DType::Float64);
  const Tensor x4 = x.reshape({2, 1, 4, 6});
  layers::MeanPooling mean3(2), mean4(2);
  layers::MaxPooling max3(2), max4(2);
  const Tensor y = mean3.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(mean3.output_shape(), (Shape{2, 3}));
  EXPECT_EQ(y.to_vector(), mean4.forward(x4).to_vector());
  EXPECT_EQ(max3.forward(x).to_vector(), max4.forward(x4).to_vector());
  EXPECT_GRADIENTS_MATCH(layers::layer_gradcheck(mean3, x));
  layers::MaxPooling max_again(2);
  EXPECT_GRADIENTS_MATCH(layers::layer_gradcheck(max_again, x));
  layers::MeanPooling flat(2);
  EXPECT_THROW(flat.forward(Tensor::zeros({2, 4})), ShapeError);
}

TEST(Convolution, TakesNpdlsFourEntryInputShape) {
  layers::Convolution conv(2, 3, Shape{0, 1, 5, 5});  // npdl: (None, 1, 5, 5)
  EXPECT_EQ(conv.declared_input_shape(), (Shape{1, 5, 5}));
  EXPECT_EQ(conv.forward(Tensor::randn({3, 1, 5, 5}, 8)).shape(), (Shape{3, 2, 3, 3}));
  EXPECT_THROW(layers::Convolution(2, 3, Shape{1, 5}), ShapeError);
}

TEST(Activations, ElliotsSteepness) {
  const Tensor x = Tensor::from_vector({4}, {-2.0, -0.25, 0.0, 1.5}, DType::Float64);
  const Tensor e = layers::activate(layers::elliot(2.0), Var(x)).value();
  const Tensor se = layers::activate(layers::symmetric_elliot(3.0), Var(x)).value();
  for (std::int64_t i = 0; i < 4; ++i) {
    const double v = x.at(i);
    EXPECT_DOUBLE_EQ(e.at(i), 0.5 * 2 * v / (1 + std::abs(2 * v)) + 0.5);
    EXPECT_DOUBLE_EQ(se.at(i), 3 * v / (1 + std::abs(3 * v)));
  }
  set_seed(9);
  layers::Dense dense(3, 2, "glorot_uniform", layers::elliot(2.0));
  EXPECT_GRADIENTS_MATCH(layers::layer_gradcheck(dense, Tensor::randn({4, 2}, 10)));
  layers::Activation steep(layers::symmetric_elliot(0.5));
  EXPECT_GRADIENTS_MATCH(layers::layer_gradcheck(steep, Tensor::randn({3, 2}, 11)));
  EXPECT_THROW(layers::elliot(0.0), ValueError);
  EXPECT_THROW(layers::symmetric_elliot(std::nan("")), ValueError);
  layers::RecurrentOptions o;
  o.activation = layers::elliot(2.0);
  layers::SimpleRNN rnn(2, o);
  EXPECT_EQ(rnn.forward(Tensor::randn({2, 3, 2}, 12)).shape(), (Shape{2, 2}));
}

TEST(Initializers, OrthogonalWithTheReluGain) {
  initializers::Orthogonal relu("relu");
  EXPECT_DOUBLE_EQ(relu.gain(), std::sqrt(2.0));
  const Tensor W = relu({4, 4}, DType::Float64);
  const Tensor wwt = ops::matmul(Var(W), Var(W), false, true).value();
  for (std::int64_t i = 0; i < 4; ++i) {
    for (std::int64_t j = 0; j < 4; ++j) EXPECT_NEAR(wwt.at(i * 4 + j), i == j ? 2.0 : 0.0, 1e-12);
  }
  EXPECT_THROW(initializers::Orthogonal("tanh"), ValueError);
}

TEST(Objectives, SoftmaxCrossEntropyTakesNpdlsEpsilon) {
  EXPECT_EQ(model::SoftmaxCategoricalCrossEntropy().epsilon(), 1e-11);
  EXPECT_EQ(model::SoftmaxCategoricalCrossEntropy(1e-7).epsilon(), 1e-7);
  EXPECT_THROW(model::SoftmaxCategoricalCrossEntropy(0.0), ValueError);
  EXPECT_THROW(model::SoftmaxCategoricalCrossEntropy(-1.0), ValueError);
}

TEST(Labels, OneHotWithoutACountAndUnhot) {
  const std::vector<int> labels{2, 0, 1, 2};
  const Tensor t = model::one_hot(labels);
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  EXPECT_EQ(model::unhot(t), labels);
  EXPECT_EQ(model::unhot(Tensor::from_vector({2, 3}, {0.1, 0.7, 0.2, 0.5, 0.5, 0.0})),
            (std::vector<int>{1, 0}));  // ties: the first
  EXPECT_THROW(model::one_hot(std::vector<int>{}), ValueError);
  EXPECT_THROW(model::one_hot(std::vector<int>{1, -1}), ValueError);
  EXPECT_THROW(model::unhot(Tensor::zeros({3})), ShapeError);
}

}  // namespace
}  // namespace npdl
