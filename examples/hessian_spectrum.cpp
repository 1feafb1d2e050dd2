// The top eigenvalues of the training loss's Hessian (with respect to every
// parameter) along training, for the Fashion-MNIST network of
// examples/fashion_mnist (784-100-100-100-10 sigmoid, softmax cross-entropy)
// with and without BatchNormal, from the same initial weights on the same
// batches. Every --eval-every steps (and, before the first, at steps 1, 2,
// 5, 10, 20, 50, ...: the spectrum moves fastest early), on a fixed batch of
// --samples training images, each network's loss is recorded once with its gradient
// (Model::record_loss, HessianOperator) and Lanczos (lanczos_ritz_values,
// --iterations Hessian-vector products) estimates the largest eigenvalues;
// the test accuracy is scored beside them. The curves go to a CSV file and,
// when gnuplot is installed, to a PNG plot.
//
//   ./build/examples/hessian_spectrum [--data /usr/share/datasets/fashion-mnist]
//       [--epochs E] [--max-steps N] [--batch-size B] [--lr LR] [--decay D]
//       [--optimizer NAME] [--eval-every K] [--samples S] [--iterations I]
//       [--top T] [--out DIR] [--seed S]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "cli/integer_option.hpp"
#include "examples/fashion_mnist_data.hpp"
#include "examples/fashion_mnist_mlp_network.hpp"
#include "npdl.hpp"

namespace {

using namespace npdl;

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 30;             // 30,000 steps of 60, as fashion_mnist's
  std::int64_t max_steps = 0;  // 0: every step of the epochs
  std::int64_t batch_size = 60;
  double lr = 0.5;
  double decay = 5e-4;
  std::string optimizer = "sgd";
  std::int64_t eval_every = 500;
  std::int64_t samples = 1000;
  int iterations = 20;
  int top = 5;
  std::string out = "hessian_spectrum_out";
  std::uint64_t seed = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  const CLI::Range rate(0.0, 1e6);
  CLI::App app{
      "Estimates the largest eigenvalues of the training loss's Hessian (Lanczos on\n"
      "Hessian-vector products) along the training of the 784-100-100-100-10 sigmoid\n"
      "network of examples/fashion_mnist, with and without BatchNormal, from the same\n"
      "initial weights on the same batches (CSV, and a PNG with gnuplot).",
      "hessian_spectrum"};
  app.add_option("--data", o.data, "folder of the four IDX .gz files")->capture_default_str();
  cli::add_integer_option(app, "--epochs", o.epochs, "passes over the training images", 1, 1000)
      ->capture_default_str();
  cli::add_integer_option(app, "--max-steps", o.max_steps,
                          "stop after this many steps (0: no limit)", std::int64_t{0},
                          std::int64_t{100000000})
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
  cli::add_integer_option(
      app, "--eval-every", o.eval_every,
      "measure both networks every this many steps (and at 1, 2, 5, 10, ... before)",
      std::int64_t{1}, std::int64_t{100000000})
      ->capture_default_str();
  cli::add_integer_option(app, "--samples", o.samples,
                          "training images in the Hessian's batch (the first ones)",
                          std::int64_t{2}, std::int64_t{60000})
      ->capture_default_str();
  cli::add_integer_option(app, "--iterations", o.iterations,
                          "Lanczos iterations (Hessian-vector products)", 1, 1000)
      ->capture_default_str();
  cli::add_integer_option(app, "--top", o.top,
                          "eigenvalues written per measurement (at most --iterations)", 1, 1000)
      ->capture_default_str();
  app.add_option("--out", o.out, "folder for the CSV and the PNG")->capture_default_str();
  cli::add_integer_option(app, "--seed", o.seed,
                          "seed of the initial weights, the batch order and Lanczos", cli::kMinSeed,
                          cli::kMaxSeed)
      ->capture_default_str();
  try {
    app.parse(argc, argv);
    if (o.top > o.iterations) {
      throw CLI::ValidationError("--top", "--top " + std::to_string(o.top) +
                                              " needs --iterations " + std::to_string(o.top) +
                                              " or more, got " + std::to_string(o.iterations));
    }
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);  // --help: 0; a bad command line: 2
  }
  return o;
}

std::unique_ptr<model::Model> make_network(bool with_batchnorm, const Options& o) {
  set_seed(o.seed);  // both networks start from the same weights, fashion_mnist's
  auto m = std::make_unique<model::Model>();
  fashion_mnist::add_mlp_layers(*m, with_batchnorm);
  model::OptimizerOptions options;
  options.lr = o.lr;
  options.decay = o.decay;
  m->compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
             model::get_optimizer(o.optimizer, options));
  return m;
}

struct Measurement {
  std::int64_t step = 0;
  std::string network;      // "plain" or "batchnormal"
  std::vector<double> top;  // the largest Ritz values, largest first
  double train_loss = 0.0;  // on the Hessian's batch, training mode
  double test_accuracy = 0.0;
  double seconds = 0.0;  // of the Lanczos products
};

/// The largest eigenvalues of the Hessian of `m`'s training-mode loss on
/// (x, y) with respect to every parameter. Leaves `m` as it was.
Measurement measure(model::Model& m, const Tensor& x, const Tensor& y, const Options& o) {
  // BatchNormal keeps its fused mode: under create_graph its backward
  // becomes nodes whose VJPs are the hand-derived double backward
  // (layers/batch_norm/second_order.hpp), checked against the composite of
  // primitives differentiated twice in tests/test_batch_norm_second_order.cpp.
  Graph graph;
  const Var loss = m.record_loss(graph, x, y, /*training=*/true);
  const std::vector<Var> params = m.param_vars(graph);
  const HessianOperator hessian(loss, params);
  std::vector<Tensor> like;
  for (const Var& p : params) like.push_back(p.value());
  const auto start = std::chrono::steady_clock::now();
  std::vector<double> ritz = lanczos_ritz_values(hessian, like, o.iterations, o.seed);
  Measurement r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // An exhausted Krylov space gives fewer values than asked: NaN for the rest.
  ritz.resize(static_cast<std::size_t>(o.top), std::numeric_limits<double>::quiet_NaN());
  r.top = std::move(ritz);
  r.train_loss = loss.value().item();
  return r;
}

/// One row per measurement, the plain network's rows first, each network's
/// in step order (gnuplot then draws each curve without breaks).
void write_csv(const std::string& path, std::vector<Measurement> rows, int top) {
  std::stable_sort(rows.begin(), rows.end(), [](const Measurement& a, const Measurement& b) {
    return (a.network == "plain") > (b.network == "plain");
  });
  std::ofstream out(path);
  out << "step,network";
  for (int i = 1; i <= top; ++i) out << ",lambda_" << i;
  out << ",train_loss,test_accuracy\n" << std::setprecision(6);
  for (const Measurement& r : rows) {
    out << r.step << ',' << r.network;
    for (double l : r.top) out << ',' << l;
    out << ',' << r.train_loss << ',' << r.test_accuracy << '\n';
  }
  if (!out) throw IOError("cannot write " + path);
}

void plot(const std::string& csv, const std::string& png, const std::string& script,
          const Options& o, bool plain_sgd) {
  // Columns: 1 step, 2 network, 3.. lambda_1..lambda_top, then loss, accuracy.
  const int accuracy = 3 + o.top + 1;
  auto only = [](const char* network, int column) {
    return "(strcol(2) eq '" + std::string(network) + "' ? $" + std::to_string(column) + " : 1/0)";
  };
  std::ofstream gp(script);
  gp << "set terminal pngcairo size 1200,520 noenhanced\n"
     << "set output '" << png << "'\n"
     << "set datafile separator ','\n"
     << "set key autotitle columnhead\n"
     << "set multiplot layout 1,2 title 'Fashion-MNIST, 784-100-100-100-10 sigmoid, " << o.optimizer
     << " lr " << o.lr << " decay " << o.decay << ", batch " << o.batch_size << "; Hessian on "
     << o.samples << " training images, " << o.iterations << " Lanczos steps'\n"
     << "set grid\nset xlabel 'training steps (step 0 is in the CSV)'\nset autoscale xfix\n"
     << "set ylabel 'Hessian eigenvalue'\nset logscale xy\nset key top left\n"
     << "two_over_lr(t) = 2 * (1 + " << o.decay << " * t) / " << o.lr << "\n"
     << "plot '" << csv << "' using 1:" << only("plain", 3)
     << " with linespoints lc 1 pt 7 title 'lambda_1 without BatchNormal', \\\n"
     << "     '' using 1:" << only("plain", 2 + o.top) << " with lines lc 1 dt 2 title 'lambda_"
     << o.top << " without', \\\n"
     << "     '' using 1:" << only("batchnormal", 3)
     << " with linespoints lc 2 pt 5 title 'lambda_1 with BatchNormal', \\\n"
     << "     '' using 1:" << only("batchnormal", 2 + o.top)
     << " with lines lc 2 dt 2 title 'lambda_" << o.top << " with'"
     << (plain_sgd ? ", \\\n     two_over_lr(x) with lines lc 8 dt 3 title '2 / lr'\n" : "\n")
     << "unset logscale y\nset ylabel 'test accuracy'\nset key bottom right\n"
     << "plot '" << csv << "' using 1:" << only("plain", accuracy)
     << " with linespoints lc 1 pt 7 title 'without BatchNormal', \\\n"
     << "     '' using 1:" << only("batchnormal", accuracy)
     << " with linespoints lc 2 pt 5 title 'with BatchNormal'\n"
     << "unset multiplot\n";
  gp.close();
  fashion_mnist::run_gnuplot(script, csv);
}

/// Steps 1, 2, 5, 10, 20, 50, ...
bool one_two_five(std::int64_t step) {
  while (step >= 10 && step % 10 == 0) step /= 10;
  return step == 1 || step == 2 || step == 5;
}

std::string eigenvalues_text(const std::vector<double>& top) {
  std::ostringstream s;
  s << std::setprecision(4);
  for (std::size_t i = 0; i < top.size(); ++i) s << (i ? " " : "") << top[i];
  return s.str();
}

int run(const Options& o) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto plain = make_network(false, o);  // first: a bad option fails before the data loads
  auto batchnorm = make_network(true, o);
  const fashion_mnist::Split train = fashion_mnist::load_split(o.data, "train");
  const fashion_mnist::Split test = fashion_mnist::load_split(o.data, "t10k");
  const std::int64_t samples = std::min(o.samples, train.x.dim(0));
  // The Hessian's batch: the first training images (the file is shuffled).
  const Tensor hx = model::slice_rows(train.x, 0, samples);
  const Tensor hy = model::slice_rows(train.y, 0, samples);
  const std::int64_t per_epoch = train.x.dim(0) / o.batch_size;
  const std::int64_t steps =
      o.max_steps > 0 ? std::min(o.max_steps, per_epoch * o.epochs) : per_epoch * o.epochs;
  std::cout << "Fashion-MNIST: " << train.x.dim(0) << " training and " << test.x.dim(0)
            << " test images (loaded in " << std::fixed << std::setprecision(1) << seconds()
            << " s); " << steps << " steps, the Hessian on " << samples << " images every "
            << o.eval_every << " steps, " << o.iterations << " Lanczos iterations\n"
            << std::defaultfloat;

  const bool plain_sgd = dynamic_cast<const model::SGD*>(plain->optimizer()) != nullptr &&
                         plain->optimizer()->options().clip <= 0;
  std::vector<Measurement> rows;
  auto checkpoint = [&](std::int64_t step) {
    std::cout << "step " << std::setw(6) << step;
    if (plain_sgd) {
      // Plain gradient descent at rate lr_t is stable along an eigenvector of
      // a quadratic while its eigenvalue is below 2 / lr_t.
      std::cout << "  (2 / lr " << std::setprecision(4) << 2.0 / plain->optimizer()->current_lr()
                << ")";
    }
    std::cout << '\n';
    for (auto* net : {plain.get(), batchnorm.get()}) {
      Measurement r = measure(*net, hx, hy, o);
      r.step = step;
      r.network = net == plain.get() ? "plain" : "batchnormal";
      r.test_accuracy = net->evaluate(test.x, test.y).accuracy;
      std::cout << "  " << std::setw(11) << r.network << "  top eigenvalues "
                << eigenvalues_text(r.top) << "  train loss " << std::setprecision(4)
                << r.train_loss << "  test accuracy " << r.test_accuracy << "  ("
                << std::setprecision(3) << r.seconds << " s for the Hessian)\n";
      rows.push_back(std::move(r));
    }
    std::cout << std::flush;
  };

  // Both networks see the same batches: a fresh permutation whenever the
  // rest of the current one cannot fill a batch (as in fashion_mnist).
  std::mt19937_64 order_rng(o.seed);
  std::vector<std::int64_t> order(static_cast<std::size_t>(train.x.dim(0)));
  std::iota(order.begin(), order.end(), 0);
  std::size_t cursor = order.size();
  checkpoint(0);
  for (std::int64_t step = 1; step <= steps; ++step) {
    if (cursor + static_cast<std::size_t>(o.batch_size) > order.size()) {
      std::shuffle(order.begin(), order.end(), order_rng);
      cursor = 0;
    }
    const std::int64_t* rows_of_batch = order.data() + cursor;
    cursor += static_cast<std::size_t>(o.batch_size);
    const Tensor xb = model::take_rows(train.x, rows_of_batch, o.batch_size);
    const Tensor yb = model::take_rows(train.y, rows_of_batch, o.batch_size);
    plain->train_on_batch(xb, yb);
    batchnorm->train_on_batch(xb, yb);
    if (step % o.eval_every == 0 || step == steps || (step < o.eval_every && one_two_five(step))) {
      checkpoint(step);
    }
  }

  std::error_code ignored;  // a folder that cannot be made shows as a CSV write error
  std::filesystem::create_directories(o.out, ignored);
  const std::string csv = o.out + "/hessian_spectrum.csv";
  write_csv(csv, rows, o.top);
  std::cout << "curves: " << csv << '\n';
  if (fashion_mnist::gnuplot_installed()) {
    const std::string png = o.out + "/hessian_spectrum.png";
    plot(csv, png, o.out + "/hessian_spectrum.gp", o, plain_sgd);
    std::cout << "plot:   " << png << '\n';
  } else {
    std::cout << "(install gnuplot for a PNG plot of the curves)\n";
  }
  std::cout << "total " << std::fixed << std::setprecision(1) << seconds() << " s\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const npdl::Error& e) {
    std::cerr << "hessian_spectrum: " << e.what() << '\n';
    return 2;
  }
}
