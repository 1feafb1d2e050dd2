// Batch normalisation on Fashion-MNIST, after Figure 1 of Ioffe & Szegedy
// (2015): a 784-100-100-100-10 network with sigmoid activations, trained
// with and without BatchNormal after each hidden layer (before the
// activation), from the same initial weights, on the same batches, with the
// same optimiser and learning rate. Every --eval-every steps both networks
// are scored on the 10,000 test images; the curves go to a CSV file and,
// when gnuplot is installed, to a PNG plot.
//
//   ./build/examples/fashion_mnist [--data /usr/share/datasets/fashion-mnist]
//       [--steps N] [--batch-size B] [--lr LR] [--decay D] [--optimizer NAME]
//       [--eval-every K] [--out DIR] [--seed S] [--distributed]
//
// With --distributed, under mpirun, each rank trains on its shard of every
// global batch of --batch-size samples (SyncBatchNormal, gradients
// all-reduced; Note [Data-parallel training] in model/model.hpp), and
// rank 0 scores, prints and writes the files: the same curve as one
// process, to round-off (examples/distributed_options.hpp).
//   mpirun -np 2 ./build/examples/fashion_mnist --distributed
#include <CLI/CLI.hpp>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli/integer_option.hpp"
#include "examples/distributed_options.hpp"
#include "examples/fashion_mnist_data.hpp"
#include "examples/fashion_mnist_mlp_network.hpp"
#include "examples/side_by_side.hpp"
#include "npdl.hpp"

namespace {

using namespace npdl;

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::int64_t steps = 30000;
  std::int64_t batch_size = 60;  // the paper's
  double lr = 0.5;
  double decay = 5e-4;  // npdl's: lr_t = lr / (1 + decay * t); 0.5 falls to 0.031
  std::string optimizer = "sgd";
  std::int64_t eval_every = 500;
  std::string out = "fashion_mnist_out";
  std::uint64_t seed = 1;
  bool distributed = false;
};

/// The command line, through CLI11 (as the npdl program's). Exits for
/// --help and for a bad command line, with CLI11's message.
Options parse(int argc, char** argv) {
  Options o;
  constexpr std::int64_t kMinSteps = 1, kMaxSteps = 100000000;
  const CLI::Range rate(0.0, 1e6);
  CLI::App app{
      "Trains a 784-100-100-100-10 sigmoid network on Fashion-MNIST with and without\n"
      "BatchNormal (before each hidden activation), from the same initial weights on the\n"
      "same batches, and records both test accuracies (CSV, and a PNG with gnuplot).",
      "fashion_mnist"};
  app.add_option("--data", o.data, "folder of the four IDX .gz files")->capture_default_str();
  cli::add_integer_option(app, "--steps", o.steps, "training steps (batches) per network",
                          kMinSteps, kMaxSteps)
      ->capture_default_str();
  cli::add_integer_option(app, "--batch-size", o.batch_size, "samples per step", std::int64_t{2},
                          std::int64_t{60000})
      ->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate of both networks")
      ->check(rate)
      ->capture_default_str();
  app.add_option("--decay", o.decay, "learning-rate decay: lr_t = lr / (1 + decay * t)")
      ->check(rate)
      ->capture_default_str();
  app.add_option("--optimizer", o.optimizer, "npdl optimiser: sgd, momentum, adam, ...")
      ->capture_default_str();
  cli::add_integer_option(app, "--eval-every", o.eval_every,
                          "test both networks every this many steps", kMinSteps, kMaxSteps)
      ->capture_default_str();
  app.add_option("--out", o.out, "folder for the CSV and the PNG")->capture_default_str();
  cli::add_integer_option(app, "--seed", o.seed, "seed of the initial weights and the batch order",
                          cli::kMinSeed, cli::kMaxSeed)
      ->capture_default_str();
  fashion_mnist::add_distributed_flag(app, o.distributed);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);  // --help: 0; a bad command line: 2, as npdl's
  }
  return o;
}

using fashion_mnist::load_split;

/// The paper's network; with_batchnorm puts BatchNormal between each hidden
/// layer's affine map and its sigmoid.
std::unique_ptr<model::Model> make_network(bool with_batchnorm, const Options& o,
                                           const dist::CommunicatorPtr& comm) {
  set_seed(o.seed);  // both networks start from the same weights
  auto m = std::make_unique<model::Model>();
  std::function<std::shared_ptr<layers::Layer>()> sync_norm;
  if (o.distributed) {
    sync_norm = [&comm] {
      return std::make_shared<layers::SyncBatchNormal>(1e-6, 0.9, 0, "zero", "one", comm);
    };
  }
  fashion_mnist::add_mlp_layers(*m, with_batchnorm, sync_norm);
  model::OptimizerOptions options;
  options.lr = o.lr;
  options.decay = o.decay;
  m->compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
             model::get_optimizer(o.optimizer, options));
  if (o.distributed) m->set_communicator(comm);
  return m;
}

/// The paper's measure: how many steps the BatchNormal network needs to
/// reach the plain network's final accuracy.
void report_speed_up(const std::vector<fashion_mnist::Checkpoint>& curve) {
  const double target = curve.back().plain;
  std::int64_t ahead = 0;
  for (const auto& p : curve) ahead += p.step > 0 && p.normalised > p.plain;
  for (const auto& p : curve) {
    if (p.normalised >= target) {
      std::cout << std::setprecision(4) << "with BatchNormal the test accuracy reached " << target
                << " (the plain network's final one) at step " << p.step << " of "
                << curve.back().step << "; it was ahead at " << ahead << " of " << curve.size() - 1
                << " checkpoints\n";
      return;
    }
  }
  std::cout << "with BatchNormal the test accuracy never reached the plain network's final "
            << target << "; it was ahead at " << ahead << " of " << curve.size() - 1
            << " checkpoints\n";
}

int run(const Options& o, const dist::CommunicatorPtr& comm) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const int rank = comm->rank(), ranks = comm->size();
  fashion_mnist::check_global_batch(o.batch_size, ranks);
  // This rank's rows of each global batch.
  const dist::Shard shard = dist::shard_of(o.batch_size, rank, ranks);
  auto plain = make_network(false, o, comm);  // first: a bad option fails before the data loads
  auto batchnorm = make_network(true, o, comm);
  const fashion_mnist::Split train = load_split(o.data, "train");
  const fashion_mnist::Split test = load_split(o.data, "t10k");
  // Rank 0 speaks, scores and writes; the other ranks only train.
  if (o.distributed) fashion_mnist::announce(*comm, o.batch_size);
  if (rank == 0)
    std::cout << "Fashion-MNIST: " << train.x.dim(0) << " training and " << test.x.dim(0)
              << " test images (loaded in " << std::fixed << std::setprecision(1) << seconds()
              << " s)\n";

  fashion_mnist::BatchOrder batches(train.x.dim(0), o.batch_size, o.seed);
  fashion_mnist::Figure figure;
  figure.stem = "fashion_mnist_accuracy";
  figure.by_epoch = false;
  std::ostringstream title;
  title << "Fashion-MNIST, 784-100-100-100-10 sigmoid, " << o.optimizer << " lr " << o.lr
        << " decay " << o.decay << ", batch " << o.batch_size;
  figure.title = title.str();
  std::vector<fashion_mnist::Checkpoint> curve;
  auto score = [&](std::int64_t step) {
    if (rank != 0) return;  // inference only: the other ranks need not wait
    curve.push_back({step, double(step) / double(batches.per_epoch()),
                     plain->evaluate(test.x, test.y).accuracy,
                     batchnorm->evaluate(test.x, test.y).accuracy});
    fashion_mnist::print_checkpoint(curve.back(), figure, seconds());
  };
  score(0);
  for (std::int64_t step = 1; step <= o.steps; ++step) {
    const std::int64_t* rows = batches.next();
    const Tensor xb = model::take_rows(train.x, rows + shard.begin, shard.size());
    const Tensor yb = model::take_rows(train.y, rows + shard.begin, shard.size());
    plain->train_on_batch(xb, yb);
    batchnorm->train_on_batch(xb, yb);
    if (step % o.eval_every == 0 || step == o.steps) score(step);
  }

  if (rank != 0) return 0;
  fashion_mnist::write_curves(o.out, curve, figure);
  fashion_mnist::print_summary(curve, figure, seconds());
  report_speed_up(curve);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  return fashion_mnist::run_maybe_distributed(
      "fashion_mnist", o.distributed, &argc, &argv,
      [&](const dist::CommunicatorPtr& comm) { return run(o, comm); });
}
