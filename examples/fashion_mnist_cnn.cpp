// Batch normalisation in a convolutional network on Fashion-MNIST: conv
// 3x3x32 - BatchNormal(axis 1) - relu - max-pool 2 - conv 3x3x64 -
// BatchNormal(axis 1) - relu - max-pool 2 - flatten - Dense 128 -
// BatchNormal - relu - Dense 10 softmax, trained beside the same network
// without the BatchNormal layers, from the same initial weights, on the same
// batches, with the same optimiser. Every --eval-every steps both networks
// are scored on the 10,000 test images; the curves go to a CSV file and,
// when gnuplot is installed, to a PNG plot.
//
//   ./build/examples/fashion_mnist_cnn [--data /usr/share/datasets/fashion-mnist]
//       [--epochs E] [--batch-size B] [--optimizer NAME] [--lr LR] [--decay D]
//       [--eval-every K] [--threads T] [--out DIR] [--seed S] [--max-steps N]
//       [--distributed]
//
// --max-steps stops early (a quick look, or a test: tests/mpi runs two steps
// on a tiny data set). With --distributed, under mpirun, each rank trains on
// its shard of every global batch of --batch-size samples (SyncBatchNormal
// in place of BatchNormal, gradients all-reduced), and rank 0 scores, prints
// and writes the files: the same curve as one process with the same global
// batch, to round-off (examples/distributed_options.hpp).
//   mpirun -np 2 ./build/examples/fashion_mnist_cnn --distributed --threads 1
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <sstream>

#include "cli/integer_option.hpp"
#include "examples/distributed_options.hpp"
#include "examples/fashion_mnist_cnn_network.hpp"
#include "examples/fashion_mnist_data.hpp"
#include "examples/side_by_side.hpp"
#include "npdl.hpp"

namespace {

using namespace npdl;

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 5;
  std::int64_t batch_size = 60;
  // npdl's Adam (0.9, 0.999, 1e-8) at twice its default lr, with npdl's
  // decay lr_t = lr / (1 + decay * t): from 2e-3 to 8e-4 by step 500 and
  // 1.25e-4 by step 5,000. Measured against the former defaults (Momentum
  // 0.9, lr 0.05, decay 2e-3: 91.2% with BatchNormal after 5 epochs), Adam
  // 1e-3 with decay 1e-3 (91.2%) and Adam 3e-3 with decay 1e-2 (lower at
  // every checkpoint from epoch 2), this ended highest: 91.4% with
  // BatchNormal, 90.1% without (docs/models.md, "Convolutional networks"). A constant rate
  // left the test accuracy wandering by a point between checkpoints.
  std::string optimizer = "adam";
  double lr = 2e-3;
  double decay = 3e-3;
  std::int64_t eval_every = 500;
  int threads = 2;
  std::string out = "fashion_mnist_cnn_out";
  std::uint64_t seed = 1;
  std::int64_t max_steps = 0;  // 0: every step of the epochs
  bool distributed = false;
};

Options parse(int argc, char** argv) {
  Options o;
  const CLI::Range rate(0.0, 1e6);
  CLI::App app{
      "Trains a convolutional network on Fashion-MNIST with and without BatchNormal\n"
      "(per channel after each convolution, and after the hidden dense layer), from the\n"
      "same initial weights on the same batches, and records both test accuracies (CSV,\n"
      "and a PNG with gnuplot).",
      "fashion_mnist_cnn"};
  app.add_option("--data", o.data, "folder of the four IDX .gz files")->capture_default_str();
  cli::add_integer_option(app, "--epochs", o.epochs, "passes over the 60,000 training images", 1,
                          1000)
      ->capture_default_str();
  cli::add_integer_option(app, "--batch-size", o.batch_size, "samples per step", std::int64_t{2},
                          std::int64_t{60000})
      ->capture_default_str();
  app.add_option("--optimizer", o.optimizer, "npdl optimiser: sgd, momentum, nesterov, adam, ...")
      ->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate of both networks")
      ->check(rate)
      ->capture_default_str();
  app.add_option("--decay", o.decay, "learning-rate decay: lr_t = lr / (1 + decay * t)")
      ->check(rate)
      ->capture_default_str();
  cli::add_integer_option(app, "--eval-every", o.eval_every,
                          "test both networks every this many steps", std::int64_t{1},
                          std::int64_t{100000000})
      ->capture_default_str();
  cli::add_integer_option(app, "--threads", o.threads, "threads of npdl's kernels", 1, 256)
      ->capture_default_str();
  app.add_option("--out", o.out, "folder for the CSV and the PNG")->capture_default_str();
  cli::add_integer_option(app, "--seed", o.seed, "seed of the initial weights and the batch order",
                          cli::kMinSeed, cli::kMaxSeed)
      ->capture_default_str();
  cli::add_integer_option(app, "--max-steps", o.max_steps,
                          "stop after this many steps (0: all the epochs)", std::int64_t{0},
                          std::int64_t{100000000})
      ->capture_default_str();
  fashion_mnist::add_distributed_flag(app, o.distributed);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);  // --help: 0; a bad command line: 2
  }
  return o;
}

/// The network (examples/fashion_mnist_cnn_network.hpp), seeded so
/// that both variants start from the same weights; data-parallel over
/// `comm` with --distributed.
std::unique_ptr<model::Model> make_network(bool with_batchnorm, const Options& o,
                                           const dist::CommunicatorPtr& comm) {
  set_seed(o.seed);
  auto m = std::make_unique<model::Model>();
  fashion_mnist::add_cnn_layers(*m, with_batchnorm, o.distributed ? comm : nullptr);
  model::OptimizerOptions options;
  options.lr = o.lr;
  options.decay = o.decay;
  // compile sizes every layer from the first one's input_shape: the weights
  // are drawn here, in layer order.
  m->compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
             model::get_optimizer(o.optimizer, options));
  if (o.distributed) m->set_communicator(comm);
  return m;
}

/// The weights (W of every Convolution and Dense) of the two networks, in
/// order, must be equal bit for bit: the comparison is only fair then.
void check_same_initial_weights(const model::Model& a, const model::Model& b) {
  auto weights = [](const model::Model& m) {
    std::vector<Tensor> out;
    for (const ParameterPtr& p : m.params())
      if (p->name == "W") out.push_back(p->value);
    return out;
  };
  const auto wa = weights(a), wb = weights(b);
  bool same = wa.size() == wb.size();
  for (std::size_t i = 0; same && i < wa.size(); ++i)
    same = wa[i].shape() == wb[i].shape() && math::max_abs_diff(wa[i], wb[i]).abs == 0.0;
  if (!same) throw ValueError("the two networks do not start from the same weights");
}

/// Images as NCHW: (N, 784) -> (N, 1, 28, 28), sharing the pixels.
Tensor as_images(const Tensor& rows) { return rows.reshape({rows.dim(0), 1, 28, 28}); }

int run(const Options& o, const dist::CommunicatorPtr& comm) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const int rank = comm->rank(), ranks = comm->size();
  fashion_mnist::check_global_batch(o.batch_size, ranks);
  // This rank's rows of each global batch.
  const dist::Shard shard = dist::shard_of(o.batch_size, rank, ranks);
  set_num_threads(o.threads);
  auto plain = make_network(false, o, comm);  // first: a bad option fails before the data loads
  auto batchnorm = make_network(true, o, comm);
  check_same_initial_weights(*plain, *batchnorm);
  const fashion_mnist::Split train = fashion_mnist::load_split(o.data, "train");
  const fashion_mnist::Split test = fashion_mnist::load_split(o.data, "t10k");
  const Tensor test_x = as_images(test.x);
  // Rank 0 speaks, scores and writes; the other ranks only train.
  if (o.distributed) fashion_mnist::announce(*comm, o.batch_size);
  if (rank == 0) {
    std::cout << "Fashion-MNIST: " << train.x.dim(0) << " training and " << test.x.dim(0)
              << " test images (loaded in " << std::fixed << std::setprecision(1) << seconds()
              << " s), " << o.threads << " thread(s)" << (ranks > 1 ? " per rank" : "") << "\n";
  }

  fashion_mnist::BatchOrder batches(train.x.dim(0), o.batch_size, o.seed);
  std::int64_t steps = batches.per_epoch() * o.epochs;
  if (o.max_steps > 0) steps = std::min(steps, o.max_steps);
  fashion_mnist::Figure figure;
  figure.stem = "fashion_mnist_cnn_accuracy";
  std::ostringstream title;
  title << "Fashion-MNIST CNN (conv32-pool-conv64-pool-dense128), " << o.optimizer << " lr " << o.lr
        << " decay " << o.decay << ", batch " << o.batch_size;
  figure.title = title.str();
  std::vector<fashion_mnist::Checkpoint> curve;
  auto score = [&](std::int64_t step) {
    if (rank != 0) return;  // inference only: the other ranks need not wait
    curve.push_back({step, double(step) / double(batches.per_epoch()),
                     plain->evaluate(test_x, test.y).accuracy,
                     batchnorm->evaluate(test_x, test.y).accuracy});
    fashion_mnist::print_checkpoint(curve.back(), figure, seconds());
  };
  score(0);
  for (std::int64_t step = 1; step <= steps; ++step) {
    const std::int64_t* rows = batches.next();
    const Tensor xb = as_images(model::take_rows(train.x, rows + shard.begin, shard.size()));
    const Tensor yb = model::take_rows(train.y, rows + shard.begin, shard.size());
    plain->train_on_batch(xb, yb);
    batchnorm->train_on_batch(xb, yb);
    if (step % o.eval_every == 0 || step == steps) score(step);
  }

  if (rank != 0) return 0;
  fashion_mnist::write_curves(o.out, curve, figure);
  fashion_mnist::print_summary(curve, figure, seconds());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  return fashion_mnist::run_maybe_distributed(
      "fashion_mnist_cnn", o.distributed, &argc, &argv,
      [&](const dist::CommunicatorPtr& comm) { return run(o, comm); });
}
