#pragma once
// What the Fashion-MNIST examples share to train two networks side by side
// and report them: the batches both networks see, each checkpoint's line, and
// the accuracy curves as a CSV file and (with gnuplot) a PNG plot.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "examples/fashion_mnist_data.hpp"
#include "npdl.hpp"

namespace fashion_mnist {

/// The rows of each step's batch, the same for both networks (and on every
/// rank: the same seed and the same program): a fresh permutation of the
/// training rows per epoch, cut into whole batches; the rows an epoch leaves
/// over wait for a later permutation, as in npdl.
class BatchOrder {
 public:
  BatchOrder(std::int64_t rows, std::int64_t batch_size, std::uint64_t seed)
      : rng_(seed), order_(static_cast<std::size_t>(rows)), batch_size_(batch_size) {
    if (per_epoch() == 0) {
      throw npdl::ValueError("--batch-size " + std::to_string(batch_size) + " is larger than the " +
                             std::to_string(rows) + " training images");
    }
    std::iota(order_.begin(), order_.end(), 0);
    cursor_ = order_.size();  // the first batch shuffles
  }
  std::int64_t per_epoch() const { return static_cast<std::int64_t>(order_.size()) / batch_size_; }
  /// The next batch's batch_size row indices.
  const std::int64_t* next() {
    if (cursor_ + static_cast<std::size_t>(batch_size_) > order_.size()) {
      std::shuffle(order_.begin(), order_.end(), rng_);
      cursor_ = 0;
    }
    const std::int64_t* rows = order_.data() + cursor_;
    cursor_ += static_cast<std::size_t>(batch_size_);
    return rows;
  }

 private:
  std::mt19937_64 rng_;
  std::vector<std::int64_t> order_;
  std::int64_t batch_size_;
  std::size_t cursor_ = 0;
};

/// Both networks' test accuracy after `step` steps.
struct Checkpoint {
  std::int64_t step;
  double epoch;
  double plain, normalised;
};

/// How an example names its two networks and its files.
struct Figure {
  std::string stem;   // the files: <out>/<stem>.csv, .png and .gp
  std::string title;  // the plot's
  std::string plain_name = "without BatchNormal";
  std::string normalised_name = "with BatchNormal";
  std::string plain_column = "test_accuracy_plain";
  std::string normalised_column = "test_accuracy_batchnormal";
  /// The x axis: epochs (the CSV then has an epoch column) or steps.
  bool by_epoch = true;
  /// The y axis's range as gnuplot writes it ("[0.8:0.9]"); empty: from
  /// the data. A range that leaves step 0's chance level out shows where
  /// two close curves part.
  std::string y_range;
};

/// One checkpoint's line on standard output, `seconds` after the start.
inline void print_checkpoint(const Checkpoint& p, const Figure& f, double seconds) {
  std::cout << "step " << std::setw(6) << p.step;
  if (f.by_epoch) std::cout << " (epoch " << std::setprecision(2) << p.epoch << ")";
  std::cout << "  test accuracy  " << f.plain_name << ' ' << std::setprecision(4) << p.plain << "  "
            << f.normalised_name << ' ' << p.normalised << "  (" << std::setprecision(1) << seconds
            << " s)\n"
            << std::flush;
}

inline void write_csv(const std::string& path, const std::vector<Checkpoint>& curve,
                      const Figure& f) {
  std::ofstream out(path);
  out << "step," << (f.by_epoch ? "epoch," : "") << f.plain_column << ',' << f.normalised_column
      << '\n'
      << std::setprecision(6);
  for (const Checkpoint& p : curve) {
    out << p.step << ',';
    if (f.by_epoch) out << p.epoch << ',';
    out << p.plain << ',' << p.normalised << '\n';
  }
  if (!out) throw npdl::IOError("cannot write " + path);
}

inline void plot(const std::string& csv, const std::string& png, const std::string& script,
                 const Figure& f) {
  const int x = f.by_epoch ? 2 : 1;  // the CSV's column of the x axis
  std::ofstream gp(script);
  gp << "set terminal pngcairo size 900,600 noenhanced\n"
     << "set output '" << png << "'\n"
     << "set datafile separator ','\n"
     << "set title '" << f.title << "'\n"
     << "set xlabel '" << (f.by_epoch ? "epochs" : "training steps")
     << "'\nset ylabel 'test accuracy'\n"
     << "set key bottom right\nset grid\n";
  if (!f.y_range.empty()) gp << "set yrange " << f.y_range << '\n';
  gp << "plot '" << csv << "' using " << x << ':' << x + 1 << " with linespoints title '"
     << f.plain_name << "', \\\n"
     << "     '" << csv << "' using " << x << ':' << x + 2 << " with linespoints title '"
     << f.normalised_name << "'\n";
  gp.close();
  run_gnuplot(script, csv);
}

/// Writes <out>/<stem>.csv and, when gnuplot is installed, <out>/<stem>.png,
/// and says where.
inline void write_curves(const std::string& out, const std::vector<Checkpoint>& curve,
                         const Figure& f) {
  std::error_code ignored;  // a folder that cannot be made shows as a CSV write error
  std::filesystem::create_directories(out, ignored);
  const std::string csv = out + "/" + f.stem + ".csv";
  write_csv(csv, curve, f);
  std::cout << "curves: " << csv << '\n';
  if (gnuplot_installed()) {
    const std::string png = out + "/" + f.stem + ".png";
    plot(csv, png, out + "/" + f.stem + ".gp", f);
    std::cout << "plot:   " << png << '\n';
  } else {
    std::cout << "(install gnuplot for a PNG plot of the curves)\n";
  }
}

/// The last checkpoint's accuracies, and whether the normalised network was
/// ahead at the first checkpoint after step 0.
inline void print_summary(const std::vector<Checkpoint>& curve, const Figure& f, double seconds) {
  const Checkpoint& last = curve.back();
  const Checkpoint& first = curve.size() > 1 ? curve[1] : curve[0];
  std::cout << std::setprecision(4) << "final test accuracy after " << last.step << " steps";
  if (f.by_epoch) std::cout << " (" << std::setprecision(2) << last.epoch << " epochs)";
  std::cout << ": " << f.plain_name << ' ' << std::setprecision(4) << last.plain << ", "
            << f.normalised_name << ' ' << last.normalised << std::setprecision(1) << "  (total "
            << seconds << " s)\n"
            << "at the first checkpoint (step " << first.step << ") the network "
            << f.normalised_name << " is " << (first.normalised > first.plain ? "" : "not ")
            << "ahead" << std::setprecision(4) << " (" << first.normalised << " against "
            << first.plain << ")\n";
}

}  // namespace fashion_mnist
