#pragma once
// What the Fashion-MNIST examples share: loading a split of the dataset and
// running gnuplot when it is installed.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "npdl.hpp"

namespace fashion_mnist {

struct Split {
  npdl::Tensor x, y;  // x: (N, 784) pixels in [0, 1]; y: one-hot (N, 10)
  std::vector<int> labels;
};

/// The "train" or "t10k" split from `dir`; IOError naming the Debian package
/// when the files are missing.
inline Split load_split(const std::string& dir, const std::string& prefix) {
  using namespace npdl;
  const std::string images = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string labels = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  for (const std::string& f : {images, labels}) {
    if (!std::filesystem::exists(f)) {
      throw IOError("Fashion-MNIST not found: " + f +
                    " is missing. Install the Debian package dataset-fashion-mnist "
                    "(apt-get install dataset-fashion-mnist) or pass --data DIR");
    }
  }
  Split s;
  s.x = io::read_idx_images(images);  // pixels in [0, 1], float32
  s.labels = io::read_idx_labels(labels);
  if (static_cast<std::int64_t>(s.labels.size()) != s.x.dim(0)) {
    throw ShapeError(prefix + ": " + std::to_string(s.x.dim(0)) + " images but " +
                     std::to_string(s.labels.size()) + " labels");
  }
  s.y = model::one_hot(s.labels, 10);
  return s;
}

inline bool gnuplot_installed() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

/// Runs a gnuplot script; a warning (the CSV still has the curves) if it fails.
inline void run_gnuplot(const std::string& script, const std::string& csv) {
  const std::string command = "gnuplot '" + script + "'";
  if (std::system(command.c_str()) != 0) {
    std::cerr << "warning: gnuplot failed; the CSV " << csv << " has the curves\n";
  }
}

}  // namespace fashion_mnist
