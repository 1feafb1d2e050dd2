// Recurrent batch normalisation on sequential Fashion-MNIST, after Cooijmans
// et al. (2016), "Recurrent Batch Normalization": each image is read as a
// sequence of 28 steps of 28 pixels (row by row) by an LSTM of 128 units
// whose last hidden state a Dense layer maps to 10 classes. The same network
// with recurrent batch norm (the LSTM normalises x_t U and h_{t-1} W apart,
// and c_t before the output's tanh, with statistics per time step and gamma
// starting at 0.1) trains beside it, from the same initial weights, on the
// same batches, with the same optimiser. Every --eval-every steps both
// networks are scored on the 10,000 test images; the curves go to a CSV file
// and, when gnuplot is installed, to a PNG plot.
//
//   ./build/examples/sequential_fashion_mnist [--data /usr/share/datasets/fashion-mnist]
//       [--steps N] [--batch-size B] [--optimizer NAME] [--lr LR] [--decay D]
//       [--eval-every K] [--threads T] [--out DIR] [--seed S]
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <sstream>

#include "cli/integer_option.hpp"
#include "examples/fashion_mnist_data.hpp"
#include "examples/side_by_side.hpp"
#include "npdl.hpp"

namespace {

using namespace npdl;

constexpr std::int64_t kRows = 28, kPixels = 28, kHidden = 128;

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  // About 8.5 epochs of batches of 64. npdl's Adam at twice its default lr
  // with npdl's decay lr_t = lr / (1 + decay * t), from 2e-3 to 2.2e-4 at the
  // last step. Measured: after 4,000 steps the batch-normalised LSTM stood at
  // 88.2% and the plain one at 87.8%, both still rising (docs/models.md).
  std::int64_t steps = 8000;
  std::int64_t batch_size = 64;
  std::string optimizer = "adam";
  double lr = 2e-3;
  double decay = 1e-3;
  std::int64_t eval_every = 500;
  int threads = 2;
  std::string out = "sequential_fashion_mnist_out";
  std::uint64_t seed = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  constexpr std::int64_t kMinSteps = 1, kMaxSteps = 100000000;
  const CLI::Range rate(0.0, 1e6);
  CLI::App app{
      "Reads each Fashion-MNIST image as 28 steps of 28 pixels and trains an LSTM(128)\n"
      "classifier with and without recurrent batch norm, from the same initial weights on\n"
      "the same batches, and records both test accuracies (CSV, and a PNG with gnuplot).",
      "sequential_fashion_mnist"};
  app.add_option("--data", o.data, "folder of the four IDX .gz files")->capture_default_str();
  cli::add_integer_option(app, "--steps", o.steps, "training steps (batches) per network",
                          kMinSteps, kMaxSteps)
      ->capture_default_str();
  cli::add_integer_option(app, "--batch-size", o.batch_size, "samples per step", std::int64_t{2},
                          std::int64_t{60000})
      ->capture_default_str();
  app.add_option("--optimizer", o.optimizer, "npdl optimiser: sgd, momentum, adam, ...")
      ->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate of both networks")
      ->check(rate)
      ->capture_default_str();
  app.add_option("--decay", o.decay, "learning-rate decay: lr_t = lr / (1 + decay * t)")
      ->check(rate)
      ->capture_default_str();
  cli::add_integer_option(app, "--eval-every", o.eval_every,
                          "test both networks every this many steps", kMinSteps, kMaxSteps)
      ->capture_default_str();
  cli::add_integer_option(app, "--threads", o.threads, "threads of npdl's kernels", 1, 256)
      ->capture_default_str();
  app.add_option("--out", o.out, "folder for the CSV and the PNG")->capture_default_str();
  cli::add_integer_option(app, "--seed", o.seed, "seed of the initial weights and the batch order",
                          cli::kMinSeed, cli::kMaxSeed)
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);  // --help: 0; a bad command line: 2
  }
  return o;
}

/// LSTM(128) over (N, 28, 28), then Dense(10) softmax. Recurrent batch norm
/// draws nothing from the generator (gamma is a constant, beta zero), so
/// after the same set_seed both variants draw the same weights.
std::unique_ptr<model::Model> make_network(bool with_batch_norm, const Options& o) {
  set_seed(o.seed);
  auto m = std::make_unique<model::Model>();
  layers::RecurrentOptions sequence;
  sequence.n_in = kPixels;
  sequence.nb_seq = kRows;
  layers::RecurrentBatchNorm batch_norm;
  batch_norm.enabled = with_batch_norm;
  m->add<layers::LSTM>(kHidden, sequence, layers::GateOptions{}, batch_norm);
  m->add<layers::Dense>(10, 0, "glorot_uniform", "softmax");
  model::OptimizerOptions options;
  options.lr = o.lr;
  options.decay = o.decay;
  // compile sizes the layers from the LSTM's (nb_seq, n_in): the weights are
  // drawn here, in layer order.
  m->compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
             model::get_optimizer(o.optimizer, options));
  return m;
}

/// The weights of the two networks (every parameter of the plain one, which
/// the normalised one has too, in the same order before its batch norms'),
/// equal bit for bit: the comparison is only fair then.
void check_same_initial_weights(const model::Model& plain, const model::Model& normalised) {
  std::vector<Tensor> a, b;
  for (const ParameterPtr& p : plain.params()) a.push_back(p->value);
  for (const ParameterPtr& p : normalised.params())
    if (p->name.rfind("bn_", 0) != 0) b.push_back(p->value);
  bool same = a.size() == b.size();
  for (std::size_t i = 0; same && i < a.size(); ++i)
    same = a[i].shape() == b[i].shape() && math::max_abs_diff(a[i], b[i]).abs == 0.0;
  if (!same) throw ValueError("the two networks do not start from the same weights");
}

/// Images as sequences of rows: (N, 784) -> (N, 28, 28), sharing the pixels.
Tensor as_sequences(const Tensor& rows) { return rows.reshape({rows.dim(0), kRows, kPixels}); }

int run(const Options& o) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  set_num_threads(o.threads);
  auto plain = make_network(false, o);  // first: a bad option fails before the data loads
  auto normalised = make_network(true, o);
  check_same_initial_weights(*plain, *normalised);
  const fashion_mnist::Split train = fashion_mnist::load_split(o.data, "train");
  const fashion_mnist::Split test = fashion_mnist::load_split(o.data, "t10k");
  const Tensor test_x = as_sequences(test.x);
  std::cout << "Fashion-MNIST as sequences of 28 rows: " << train.x.dim(0) << " training and "
            << test.x.dim(0) << " test images (loaded in " << std::fixed << std::setprecision(1)
            << seconds() << " s), " << o.threads << " thread(s)\n";

  fashion_mnist::BatchOrder batches(train.x.dim(0), o.batch_size, o.seed);
  fashion_mnist::Figure figure;
  figure.stem = "sequential_fashion_mnist_accuracy";
  figure.plain_name = "LSTM";
  figure.normalised_name = "LSTM with recurrent batch norm";
  figure.plain_column = "test_accuracy_lstm";
  figure.normalised_column = "test_accuracy_bn_lstm";
  std::ostringstream title;
  title << "Sequential Fashion-MNIST (28 rows of 28 pixels), LSTM(128), " << o.optimizer << " lr "
        << o.lr << " decay " << o.decay << ", batch " << o.batch_size;
  figure.title = title.str();
  figure.y_range = "[0.8:0.91]";  // both end within two points of each other

  std::vector<fashion_mnist::Checkpoint> curve;
  auto score = [&](std::int64_t step) {
    curve.push_back({step, double(step) / double(batches.per_epoch()),
                     plain->evaluate(test_x, test.y).accuracy,
                     normalised->evaluate(test_x, test.y).accuracy});
    fashion_mnist::print_checkpoint(curve.back(), figure, seconds());
  };
  score(0);
  for (std::int64_t step = 1; step <= o.steps; ++step) {
    const std::int64_t* rows = batches.next();
    const Tensor xb = as_sequences(model::take_rows(train.x, rows, o.batch_size));
    const Tensor yb = model::take_rows(train.y, rows, o.batch_size);
    plain->train_on_batch(xb, yb);
    normalised->train_on_batch(xb, yb);
    if (step % o.eval_every == 0 || step == o.steps) score(step);
  }
  fashion_mnist::write_curves(o.out, curve, figure);
  fashion_mnist::print_summary(curve, figure, seconds());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const npdl::Error& e) {
    std::cerr << "sequential_fashion_mnist: " << e.what() << '\n';
    return 2;
  }
}
