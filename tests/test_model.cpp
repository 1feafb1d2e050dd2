// Model: overfitting a small batch, seeded reproducibility, the fused final
// activation, save/load round trips (bit-identical predictions), the
// progress line, and every bad input (state compared bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "npdl.hpp"
#include "tests/temp_dir_test.hpp"

namespace npdl::model {
namespace {

using layers::Activation;
using layers::BatchNormal;
using layers::Dense;
using layers::Linear;

struct Data {
  Tensor x, y;
  std::vector<int> labels;
};

/// Random points with random labels: only memorising fits them.
Data random_batch(std::int64_t n, std::int64_t features, int classes, std::uint64_t seed) {
  Data d;
  d.x = Tensor::randn({n, features}, seed);
  std::mt19937_64 rng(seed);
  for (std::int64_t i = 0; i < n; ++i) d.labels.push_back(int(rng() % classes));
  d.y = one_hot(d.labels, classes);
  return d;
}

void build_plain(Model& m, std::int64_t n_in) {
  m.add<Dense>(32, n_in, "glorot_uniform", "relu");
  m.add<Dense>(3, 0, "glorot_uniform", "softmax");
}

void build_batchnorm(Model& m) {
  m.add<Linear>(32);
  m.add<BatchNormal>();
  m.add<Activation>("relu");
  m.add<Dense>(3, 0, "glorot_uniform", "softmax");
}

FitOptions quiet(int epochs, std::int64_t batch_size) {
  FitOptions o;
  o.epochs = epochs;
  o.batch_size = batch_size;
  o.log = nullptr;
  return o;
}

std::vector<Tensor> snapshot(const Model& m) {
  std::vector<Tensor> out;
  for (const ParameterPtr& p : m.params()) out.push_back(p->value.clone());
  for (const auto& l : m.layers()) {
    if (auto* bn = dynamic_cast<BatchNormal*>(l.get())) {
      out.push_back(bn->running_mean().clone());
      out.push_back(bn->running_var().clone());
    }
  }
  return out;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

void expect_same_state(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(bit_identical(a[i], b[i])) << "tensor " << i;
}

// Files go to a fresh folder per test: CTest runs tests in parallel processes.
class ModelFiles : public npdl::testing::TempDirTest {};

TEST(Model, OverfitsASmallBatchToFullTrainingAccuracy) {
  set_seed(1);
  const Data d = random_batch(24, 6, 3, 2);
  Model m;
  build_plain(m, 6);
  m.compile(get_objective("scce"), std::make_shared<Adam>(0.9, 0.999, 1e-8, [] {
              OptimizerOptions o;
              o.lr = 0.02;
              return o;
            }()));
  const Evaluation before = m.evaluate(d.x, d.y);
  m.fit(d.x, d.y, quiet(300, 24));
  const Evaluation after = m.evaluate(d.x, d.y);
  EXPECT_LT(before.accuracy, 0.8);
  EXPECT_DOUBLE_EQ(after.accuracy, 1.0);
  EXPECT_LT(after.loss, 0.1 * before.loss);
  EXPECT_EQ(m.steps(), 300);
}

TEST(Model, WithBatchNormalOverfitsToo) {
  set_seed(3);
  const Data d = random_batch(24, 6, 3, 4);
  Model m;
  build_batchnorm(m);
  OptimizerOptions o;
  o.lr = 0.5;
  m.compile(get_objective("SoftmaxCategoricalCrossEntropy"), std::make_shared<Momentum>(0.9, o));
  m.fit(d.x, d.y, quiet(300, 24));
  EXPECT_DOUBLE_EQ(m.evaluate(d.x, d.y).accuracy, 1.0);
}

TEST(Model, EvaluatesTheFusedSoftmaxAsCrossEntropyOfItsPredictions) {
  set_seed(5);
  const Data d = random_batch(10, 4, 3, 6);
  Model m;
  build_plain(m, 4);
  m.compile("scce", "sgd");
  const Tensor probabilities = m.predict(d.x);
  double expected = 0.0;
  for (int i = 0; i < 10; ++i) expected -= std::log(probabilities.at({i, d.labels[i]}));
  EXPECT_NEAR(m.evaluate(d.x, d.y).loss, expected / 10, 1e-5);
  // Rows of the predictions are probabilities: the final softmax is applied.
  const Tensor row_sums = math::sum(probabilities, {1});
  for (double s : row_sums.to_vector()) EXPECT_NEAR(s, 1.0, 1e-5);
}

TEST(Model, SeededRunsAreBitIdentical) {
  auto train = [] {
    set_seed(11);
    const Data d = random_batch(40, 5, 3, 12);
    Model m;
    build_batchnorm(m);
    m.compile("scce", "adam");
    m.fit(d.x, d.y, quiet(3, 8));
    return snapshot(m);
  };
  expect_same_state(train(), train());
}

TEST_F(ModelFiles, SaveLoadRoundTripGivesBitIdenticalPredictions) {
  set_seed(7);
  const Data d = random_batch(32, 5, 3, 8);
  Model trained;
  build_batchnorm(trained);
  trained.compile("scce", "momentum");
  trained.fit(d.x, d.y, quiet(5, 8));
  const Tensor expected = trained.predict(d.x);
  const std::string file = path("roundtrip.bin");
  trained.save(file);
  EXPECT_FALSE(std::ifstream(file + ".tmp").good());  // the temporary was renamed

  set_seed(99);  // different initial weights
  Model restored;
  build_batchnorm(restored);
  restored.build({5});
  EXPECT_FALSE(bit_identical(restored.predict(d.x), expected));
  restored.load(file);
  EXPECT_TRUE(bit_identical(restored.predict(d.x), expected));
  expect_same_state(snapshot(restored), snapshot(trained));
}

class FailedLoad : public npdl::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    set_seed(21);
    build_batchnorm(model_);
    model_.compile("scce", "sgd");
    data_ = random_batch(16, 5, 3, 22);
    model_.fit(data_.x, data_.y, quiet(2, 8));
    good_path_ = path("good.bin");
    model_.save(good_path_);
    std::ifstream in(good_path_, std::ios::binary);
    good_bytes_.assign(std::istreambuf_iterator<char>(in), {});
    // Change the model after saving, so that a load that half-worked would show.
    model_.fit(data_.x, data_.y, quiet(1, 8));
    before_ = snapshot(model_);
    predictions_ = model_.predict(data_.x);
  }
  std::string bad_path() const { return path("bad.bin"); }
  void write_bad(const std::string& bytes) {
    std::ofstream out(bad_path(), std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  void expect_unchanged() {
    expect_same_state(snapshot(model_), before_);
    EXPECT_TRUE(bit_identical(model_.predict(data_.x), predictions_));
  }

  Model model_;
  Data data_;
  std::string good_path_, good_bytes_;
  std::vector<Tensor> before_;
  Tensor predictions_;
};

TEST_F(FailedLoad, BadMagic) {
  std::string bytes = good_bytes_;
  bytes[0] = 'X';
  write_bad(bytes);
  try {
    model_.load(bad_path());
    FAIL() << "expected an IOError";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find("NPDLMODL"), std::string::npos) << e.what();
  }
  expect_unchanged();
}

TEST_F(FailedLoad, TruncatedAnywhere) {
  for (std::size_t cut :
       {std::size_t(4), std::size_t(20), good_bytes_.size() / 2, good_bytes_.size() - 1}) {
    write_bad(good_bytes_.substr(0, cut));
    EXPECT_THROW(model_.load(bad_path()), IOError) << "cut at " << cut;
    expect_unchanged();
  }
}

// Regression (model_load fuzzer): a tensor whose header claims terabytes in
// a file of a few hundred bytes was allocated before its data was looked
// for. Now it is an IOError naming the truncation, and nothing is allocated.
TEST_F(FailedLoad, AHugeShapeWithoutItsDataIsTruncatedNotAllocated) {
  std::string bytes = good_bytes_.substr(0, 16);  // magic, version, the right tensor count
  auto put = [&](auto v) { bytes.append(reinterpret_cast<const char*>(&v), sizeof v); };
  const std::string name = "0.Linear.W";
  put(std::uint32_t(name.size()));
  bytes += name;
  put(std::uint8_t(0));  // float32
  put(std::uint32_t(2));
  put(std::int64_t(1) << 20);
  put(std::int64_t(1) << 20);
  put(std::uint64_t(1) << 42);  // 2^40 floats: 4 TiB, and none of it in the file
  write_bad(bytes);
  reset_storage_peak();
  const std::size_t peak_before = storage_stats().peak_bytes_in_use;
  try {
    model_.load(bad_path());
    FAIL() << "no IOError";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_EQ(storage_stats().peak_bytes_in_use, peak_before);
  expect_unchanged();
}

TEST_F(FailedLoad, TrailingBytes) {
  write_bad(good_bytes_ + "extra");
  EXPECT_THROW(model_.load(bad_path()), IOError);
  expect_unchanged();
}

// A running variance below zero (or NaN, or Inf) would make every prediction
// NaN: the file is refused by name before anything is loaded.
TEST_F(FailedLoad, ARunningVarianceThatIsNegativeOrNotFinite) {
  const std::string name = "1.BatchNormal.running_var";
  const std::size_t at = good_bytes_.find(name);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(good_bytes_[at + name.size()], 0) << "expected float32";
  // After the name: dtype (u8), rank (u32), one dimension (i64), data size (u64).
  const std::size_t feature_3 = at + name.size() + 1 + 4 + 8 + 8 + 3 * sizeof(float);
  for (const float bad : {-0.5f, std::nanf(""), INFINITY}) {
    std::string bytes = good_bytes_;
    std::memcpy(&bytes[feature_3], &bad, sizeof bad);
    write_bad(bytes);
    try {
      model_.load(bad_path());
      ADD_FAILURE() << "loaded a running variance of " << bad;
    } catch (const ValueError& e) {
      const std::string message = e.what();
      std::ostringstream value;
      value << bad;
      EXPECT_NE(message.find(bad_path()), std::string::npos) << message;
      EXPECT_NE(message.find("1.BatchNormal"), std::string::npos) << message;
      EXPECT_NE(message.find("running variance of feature 3 is " + value.str()), std::string::npos)
          << message;
    }
    expect_unchanged();
  }
}

TEST_F(FailedLoad, MissingFile) {
  EXPECT_THROW(model_.load(path("does_not_exist.bin")), IOError);
  expect_unchanged();
}

TEST_F(FailedLoad, AnotherArchitecture) {
  set_seed(1);
  Model wider;
  wider.add<Linear>(40);
  wider.add<BatchNormal>();
  wider.add<Activation>("relu");
  wider.add<Dense>(3, 0, "glorot_uniform", "softmax");
  wider.build({5});
  wider.save(bad_path());
  try {
    model_.load(bad_path());
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("0.Linear.W"), std::string::npos) << message;
    EXPECT_NE(message.find("(5, 32)"), std::string::npos) << message;
    EXPECT_NE(message.find("(5, 40)"), std::string::npos) << message;
  }
  expect_unchanged();
}

TEST_F(ModelFiles, SaveIntoAMissingFolderIsAnIOErrorAndWritesNothing) {
  set_seed(1);
  Model m;
  build_plain(m, 4);
  m.compile("scce", "sgd");
  const std::string file = path("no_such_dir/model.bin");
  EXPECT_THROW(m.save(file), IOError);
  EXPECT_FALSE(std::ifstream(file).good());
  Model unbuilt;
  unbuilt.add<Dense>(3);
  EXPECT_THROW(unbuilt.save(path("unbuilt.bin")), GraphError);
}

TEST(Model, NonFiniteLossStopsTrainingAndKeepsTheParameters) {
  set_seed(2);
  const Data d = random_batch(8, 4, 3, 3);
  Model m;
  m.add<Dense>(3, 4, "glorot_uniform", "linear");
  OptimizerOptions o;
  o.lr = 1e30;  // the first step throws the weights far enough to overflow
  m.compile(get_objective("mse"), std::make_shared<SGD>(o));
  m.train_on_batch(d.x, d.y);
  const std::vector<Tensor> before = snapshot(m);
  try {
    m.train_on_batch(d.x, d.y);
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("step 2"), std::string::npos) << e.what();
  }
  expect_same_state(snapshot(m), before);
  EXPECT_EQ(m.steps(), 1);
}

TEST(Model, NaNInTheDataStopsFitNamingTheStep) {
  set_seed(2);
  Data d = random_batch(8, 4, 3, 3);
  d.x.data<float>()[5] = std::nanf("");
  Model m;
  build_plain(m, 4);
  m.compile("scce", "sgd");
  const std::vector<Tensor> before = snapshot(m);
  FitOptions o = quiet(1, 8);
  o.shuffle = false;
  try {
    m.fit(d.x, d.y, o);
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("epoch 1, batch 1"), std::string::npos) << message;
    EXPECT_NE(message.find("step 1"), std::string::npos) << message;
  }
  expect_same_state(snapshot(m), before);
}

TEST(Model, AFailedStepLeavesBatchNormalRunningStatisticsAsTheyWere) {
  set_seed(6);
  Data d = random_batch(8, 4, 3, 7);
  Model m;
  m.add<Linear>(8, 4);
  m.add<BatchNormal>();
  m.add<Activation>("sigmoid");
  m.add<Dense>(3, 0, "glorot_uniform", "softmax");
  m.compile("scce", "sgd");
  m.train_on_batch(d.x, d.y);
  const std::vector<Tensor> before = snapshot(m);
  // NaN targets: the forward (and its running-statistics update) succeeds,
  // the loss does not.
  d.y.data<float>()[4] = std::nanf("");
  EXPECT_THROW(m.train_on_batch(d.x, d.y), ValueError);
  expect_same_state(snapshot(m), before);
}

// Nothing of a finished step (its graph, the failure guard's snapshots, a
// layer's cache) may keep holding a parameter's buffer: the optimiser would
// then copy every parameter before updating it, each step. The buffers stay
// where they are, and hold the updated values.
TEST(Model, ATrainingStepUpdatesEveryParameterInPlace) {
  const auto check = [](Model& m, const Tensor& x, const Tensor& y, const std::string& what) {
    m.compile("scce", "momentum");
    m.train_on_batch(x, y);  // builds the layers and the optimiser's state
    const std::vector<Tensor> before = snapshot(m);
    std::vector<const void*> buffers;
    for (const ParameterPtr& p : m.params()) buffers.push_back(p->value.raw_data());
    m.train_on_batch(x, y);
    const std::vector<ParameterPtr> ps = m.params();
    ASSERT_EQ(ps.size(), buffers.size()) << what;
    for (std::size_t i = 0; i < ps.size(); ++i) {
      EXPECT_EQ(ps[i]->value.raw_data(), buffers[i]) << what << ": " << ps[i]->name;
      EXPECT_FALSE(bit_identical(ps[i]->value, before[i])) << what << ": " << ps[i]->name;
    }
  };
  set_seed(8);
  const Data d = random_batch(6, 12, 3, 9);
  Model mlp;
  build_batchnorm(mlp);
  check(mlp, d.x, d.y, "Linear, BatchNormal, Dense");
  Model cnn;
  cnn.add<layers::Convolution>(2, 3, Shape{1, 4, 3}, 1, "glorot_uniform", "relu", 1);
  cnn.add<layers::MaxPooling>(2);
  cnn.add<layers::Flatten>();
  cnn.add<Dense>(3, 0, "glorot_uniform", "softmax");
  check(cnn, d.x.reshape({6, 1, 4, 3}), d.y, "Convolution, MaxPooling, Dense");
  Model rnn;
  rnn.add<layers::LSTM>(4, layers::RecurrentOptions{}, layers::GateOptions{},
                        layers::RecurrentBatchNorm{true});
  rnn.add<Dense>(3, 0, "glorot_uniform", "softmax");
  check(rnn, d.x.reshape({6, 4, 3}), d.y, "LSTM with batch norm, Dense");
}

TEST(Model, BadInputsAreTypedErrors) {
  set_seed(4);
  const Data d = random_batch(10, 4, 3, 5);
  Model m;
  build_plain(m, 5);  // declared for 5 features; the data has 4
  EXPECT_THROW(m.fit(d.x, d.y, quiet(1, 5)), GraphError);  // not compiled
  m.compile("scce", "sgd");
  const std::vector<Tensor> before = snapshot(m);
  try {
    m.fit(d.x, d.y, quiet(1, 5));
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("(5,)"), std::string::npos) << message;
    EXPECT_NE(message.find("(10, 4)"), std::string::npos) << message;
  }
  Model ok;
  build_plain(ok, 4);
  ok.compile("scce", "sgd");
  try {
    ok.fit(d.x, slice_rows(d.y, 0, 9), quiet(1, 5));
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("10 samples"), std::string::npos) << message;
    EXPECT_NE(message.find("9 samples"), std::string::npos) << message;
  }
  EXPECT_THROW(ok.fit(d.x, d.y.reshape({10, 3, 1}), quiet(1, 5)), ShapeError);
  EXPECT_THROW(ok.compile("nope", "sgd"), ValueError);
  EXPECT_THROW(ok.compile("scce", "nope"), ValueError);
  FitOptions bad_split = quiet(1, 5);
  bad_split.validation_split = 1.0;
  EXPECT_THROW(ok.fit(d.x, d.y, bad_split), ValueError);
  EXPECT_THROW(ok.fit(d.x, d.y, quiet(1, 0)), ValueError);
  expect_same_state(snapshot(m), before);
  Model empty;
  EXPECT_THROW(empty.compile("scce", "sgd"), GraphError);
}

// A batch larger than the training samples (after the validation split)
// was shrunk to them without a word, and zero epochs trained nothing; both
// are ValueErrors raised before anything moves: parameters, running
// statistics, steps and the random stream are as they were.
TEST(Model, FitRefusesABatchLargerThanItsSamplesAndZeroEpochs) {
  set_seed(4);
  const Data d = random_batch(10, 4, 3, 5);
  Model m;
  build_batchnorm(m);
  m.compile("scce", "sgd");
  m.train_on_batch(d.x, d.y);  // sized, with running statistics
  const std::vector<Tensor> before = snapshot(m);
  FitOptions half = quiet(1, 8);
  half.validation_split = 0.5;
  const std::vector<std::pair<FitOptions, std::vector<std::string>>> cases{
      {quiet(1, 11), {"batch_size 11", "10 training samples", "expected 1 to 10"}},
      {half, {"batch_size 8", "5 training samples", "expected 1 to 5"}},
      {quiet(0, 5), {"epochs", "expected 1 or more, got 0"}},
      {quiet(-2, 5), {"epochs", "expected 1 or more, got -2"}},
  };
  for (const auto& [options, needles] : cases) {
    SCOPED_TRACE(needles.front());
    const std::mt19937_64 stream = generator();
    try {
      m.fit(d.x, d.y, options);
      ADD_FAILURE() << "expected a ValueError";
    } catch (const ValueError& e) {
      for (const std::string& needle : needles) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      }
    }
    EXPECT_TRUE(generator() == stream) << "the random stream moved";
    expect_same_state(snapshot(m), before);
    EXPECT_EQ(m.steps(), 1);
  }
}

// Validation data shaped unlike the training data used to fail only at the
// first validation, after a whole epoch of steps on a model not yet built.
// It is a ShapeError before any step: the model stays unbuilt, nothing moves.
TEST(Model, FitRefusesValidationDataShapedUnlikeTheTrainingData) {
  set_seed(5);
  const Data d = random_batch(10, 4, 3, 6);
  const Data narrow = random_batch(6, 3, 3, 7);
  const Data other_classes = random_batch(6, 4, 2, 8);
  for (const Data* v : {&narrow, &other_classes}) {
    Model m;
    build_batchnorm(m);
    m.compile("scce", "sgd");
    const std::mt19937_64 stream = generator();
    FitOptions o = quiet(1, 5);
    o.validation_data = std::make_pair(v->x, v->y);
    try {
      m.fit(d.x, d.y, o);
      ADD_FAILURE() << "fit accepted validation data of shapes " << to_string(v->x.shape())
                    << " and " << to_string(v->y.shape());
    } catch (const ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find("validation_data must hold samples shaped as"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(m.steps(), 0);
    EXPECT_FALSE(m.layers().front()->connected());
    EXPECT_TRUE(generator() == stream) << "the random stream moved";
  }
}

TEST(Model, ValidationSplitHoldsOutTheLastSamples) {
  set_seed(8);
  const Data d = random_batch(40, 4, 3, 9);
  Model m;
  build_plain(m, 4);
  m.compile("scce", "adam");
  FitOptions o = quiet(2, 8);
  o.validation_split = 0.25;
  const std::vector<EpochStats> history = m.fit(d.x, d.y, o);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].batches, 30 / 8);  // whole batches of the 30 training samples
  ASSERT_TRUE(history[1].val_loss.has_value());
  const Evaluation held_out = m.evaluate(slice_rows(d.x, 30, 40), slice_rows(d.y, 30, 40));
  EXPECT_DOUBLE_EQ(*history[1].val_loss, held_out.loss);
  EXPECT_DOUBLE_EQ(*history[1].val_accuracy, held_out.accuracy);
}

TEST(Model, ProgressIsOnePlainLinePerEpochOffATerminal) {
  set_seed(8);
  const Data d = random_batch(32, 4, 3, 9);
  Model m;
  build_plain(m, 4);
  m.compile("scce", "adam");
  std::ostringstream log;
  FitOptions o = quiet(3, 8);
  o.log = &log;
  m.fit(d.x, d.y, o);
  const std::string text = log.str();
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
  for (const char* field : {"epoch 3/3", "4/4 batches", "loss", "acc", "samples/s"}) {
    EXPECT_NE(text.find(field), std::string::npos) << field << " in " << text;
  }
  std::ostringstream redrawn;
  o.log = &redrawn;
  o.progress = ProgressStyle::Redraw;
  m.fit(d.x, d.y, o);
  EXPECT_NE(redrawn.str().find('\r'), std::string::npos);
  EXPECT_NE(redrawn.str().find("ETA"), std::string::npos);
}

TEST(Model, AccuracyAndOneHot) {
  const Tensor y = one_hot({2, 0, 1}, 3);
  EXPECT_EQ(y.to_vector(), (std::vector<double>{0, 0, 1, 1, 0, 0, 0, 1, 0}));
  const Tensor p = Tensor::from_vector({3, 3}, {0.1, 0.2, 0.7, 0.5, 0.4, 0.1, 0.6, 0.3, 0.1});
  EXPECT_DOUBLE_EQ(accuracy(p, y), 2.0 / 3.0);
  EXPECT_THROW(one_hot({3}, 3), ValueError);
  EXPECT_THROW(accuracy(p, Tensor::zeros({3, 2})), ShapeError);
}

// ---------------------------------------------------------------- record_loss

/// Parameters, their gradients and the running statistics, copied.
std::vector<Tensor> full_state(const Model& m) {
  std::vector<Tensor> out = snapshot(m);
  for (const ParameterPtr& p : m.params()) {
    if (p->grad.defined()) out.push_back(p->grad.clone());
  }
  return out;
}

void use_autodiff_batchnorm(Model& m) {
  for (const auto& l : m.layers()) {
    if (auto* bn = dynamic_cast<BatchNormal*>(l.get())) {
      bn->set_backward_mode(layers::BackwardMode::Autodiff);
    }
  }
}

TEST(RecordLoss, IsTheLossAndGradientOfTheNextTrainingStep) {
  for (const bool with_batchnorm : {false, true}) {
    SCOPED_TRACE(with_batchnorm ? "with BatchNormal" : "plain");
    set_seed(21);
    const Data d = random_batch(12, 4, 3, 22);
    Model m;
    if (with_batchnorm) {
      build_batchnorm(m);  // unbuilt: record_loss sizes it
    } else {
      build_plain(m, 4);
    }
    m.compile("scce", "sgd");
    Graph graph;
    const Var loss = m.record_loss(graph, d.x, d.y);
    const std::vector<Var> ws = m.param_vars(graph);
    const std::vector<Var> gs = grad({loss}, ws);
    ASSERT_EQ(gs.size(), m.params().size());
    const BatchResult r = m.train_on_batch(d.x, d.y);
    EXPECT_DOUBLE_EQ(loss.value().item(), r.loss);
    for (std::size_t i = 0; i < gs.size(); ++i) {
      EXPECT_TRUE(bit_identical(gs[i].value(), m.params()[i]->grad)) << m.params()[i]->name;
    }
  }
}

TEST(RecordLoss, LeavesTheModelExactlyAsItWas) {
  set_seed(23);
  const Data d = random_batch(16, 4, 3, 24);
  Model m;
  m.add<Linear>(8, 4);
  m.add<BatchNormal>();
  m.add<Activation>("sigmoid");
  m.add<Dense>(3, 0, "glorot_uniform", "softmax");
  m.compile("scce", "sgd");
  m.train_on_batch(d.x, d.y);  // running statistics and gradients that are not the initial ones
  use_autodiff_batchnorm(m);   // twice differentiable by construction
  const std::vector<Tensor> before = full_state(m);
  for (const bool training : {true, false}) {
    Graph graph;
    const Var loss = m.record_loss(graph, d.x, d.y, training);
    const HessianOperator hessian(loss, m.param_vars(graph));
    std::vector<Tensor> v;
    for (const ParameterPtr& p : m.params()) v.push_back(Tensor::ones(p->value.shape()));
    hessian(v);
    expect_same_state(full_state(m), before);
  }
  EXPECT_EQ(m.steps(), 1);
  // A later step is the one it would have been: the same loss as a twin's.
  set_seed(23);
  Model twin;
  twin.add<Linear>(8, 4);
  twin.add<BatchNormal>();
  twin.add<Activation>("sigmoid");
  twin.add<Dense>(3, 0, "glorot_uniform", "softmax");
  twin.compile("scce", "sgd");
  twin.train_on_batch(d.x, d.y);
  use_autodiff_batchnorm(twin);
  EXPECT_DOUBLE_EQ(m.train_on_batch(d.x, d.y).loss, twin.train_on_batch(d.x, d.y).loss);
  expect_same_state(snapshot(m), snapshot(twin));
}

Tensor plus(const Tensor& x, double a, const Tensor& v) {
  std::vector<double> out = x.to_vector();
  const std::vector<double> dv = v.to_vector();
  for (std::size_t i = 0; i < out.size(); ++i) out[i] += a * dv[i];
  return Tensor::from_vector(x.shape(), out, x.dtype());
}

TEST(RecordLoss, ItsHessianProductsMatchFiniteDifferencesOfItsGradient) {
  set_seed(25);
  Data d = random_batch(10, 3, 3, 26);
  d.x = d.x.astype(DType::Float64);
  d.y = d.y.astype(DType::Float64);
  Model m;
  m.add<Linear>(5, 3);
  m.add<BatchNormal>();
  m.add<Activation>("tanh");
  m.add<Dense>(3, 0, "glorot_uniform", "softmax");
  m.compile("scce", "sgd");
  m.evaluate(d.x, d.y);  // a first forward in float64 makes the parameters float64
  use_autodiff_batchnorm(m);
  const std::vector<ParameterPtr> ps = m.params();
  std::vector<Tensor> v;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    v.push_back(Tensor::randn(ps[i]->value.shape(), 30 + i, DType::Float64));
  }
  auto gradient_at = [&](double h) {
    std::vector<Tensor> saved;
    for (std::size_t i = 0; i < ps.size(); ++i) {
      saved.push_back(ps[i]->value);
      ps[i]->value = plus(ps[i]->value, h, v[i]);
    }
    Graph graph;
    const Var loss = m.record_loss(graph, d.x, d.y);
    std::vector<Tensor> g;
    for (const Var& gi : grad({loss}, m.param_vars(graph))) g.push_back(gi.value());
    for (std::size_t i = 0; i < ps.size(); ++i) ps[i]->value = saved[i];
    return g;
  };
  Graph graph;
  const Var loss = m.record_loss(graph, d.x, d.y);
  const std::vector<Tensor> hv = HessianOperator(loss, m.param_vars(graph))(v);
  const double h = 1e-5;
  const std::vector<Tensor> up = gradient_at(h), down = gradient_at(-h);
  for (std::size_t i = 0; i < ps.size(); ++i) {
    const std::vector<double> a = hv[i].to_vector(), u = up[i].to_vector(), w = down[i].to_vector();
    for (std::size_t j = 0; j < a.size(); ++j) {
      EXPECT_NEAR(a[j], (u[j] - w[j]) / (2 * h), 1e-6) << ps[i]->name << " [" << j << "]";
    }
  }
}

TEST(RecordLoss, BadInputsAreTypedErrorsAndChangeNothing) {
  set_seed(27);
  const Data d = random_batch(10, 4, 3, 28);
  Model m;
  build_plain(m, 4);
  Graph graph;
  EXPECT_THROW(m.record_loss(graph, d.x, d.y), GraphError);  // not compiled
  m.compile("scce", "sgd");
  const std::vector<Tensor> before = full_state(m);
  try {
    m.record_loss(graph, d.x, slice_rows(d.y, 0, 9));
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("record_loss"), std::string::npos) << message;
    EXPECT_NE(message.find("9 samples"), std::string::npos) << message;
  }
  try {
    m.record_loss(graph, random_batch(10, 5, 3, 29).x, d.y);
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("(10, 5)"), std::string::npos) << e.what();
  }
  try {
    m.record_loss(graph, d.x.astype(DType::Float64), d.y);
    FAIL() << "expected a DTypeError";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("float64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(m.record_loss(graph, d.x, d.y.reshape({10, 3, 1})), ShapeError);
  expect_same_state(full_state(m), before);
  EXPECT_EQ(m.steps(), 0);
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::format_duration(3.21), "3.2s");
  EXPECT_EQ(Progress::format_duration(125), "2m05s");
  EXPECT_EQ(Progress::format_duration(3725), "1h02m05s");
}

}  // namespace
}  // namespace npdl::model
