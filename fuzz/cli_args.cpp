// Fuzz target: the command line, in-process through npdl::cli::run. The
// input is the argument list, one argument per line. The program must
// return a status in {0, 1, 2, 3}, and on failure print exactly one line of
// error; an exception escaping run, a crash or a sanitizer report is a
// finding.
//
// The sandbox: the process works in its scratch folder, which holds a few
// valid .npy files (x.npy 4x3 float32, x64.npy 6x2 float64, dy.npy of x's
// shape, g.npy and b.npy of 3) for the arguments to name. Inputs are skipped
// (not run) when an argument could reach outside that folder (it contains
// '/' or starts with "..") or asks for --svg, which starts Graphviz in a
// child process: the fuzzer explores npdl, not the file system or dot.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "fuzz/fuzz_support.hpp"
#include "io/npy.hpp"

namespace {

const std::set<std::string> kFixtures{"x.npy", "x64.npy", "dy.npy", "g.npy", "b.npy"};

// Written before every input, in the scratch folder (the current folder
// then): an input may overwrite one (graph --out x.npy), and each input must
// start from the same folder.
void write_fixtures() {
  using npdl::Tensor;
  npdl::io::save_npy("x.npy", Tensor::randn({4, 3}, 1));
  npdl::io::save_npy("x64.npy", Tensor::randn({6, 2}, 2, npdl::DType::Float64));
  npdl::io::save_npy("dy.npy", Tensor::randn({4, 3}, 3));
  npdl::io::save_npy("g.npy", Tensor::uniform({3}, 4, npdl::DType::Float32, 0.5, 2));
  npdl::io::save_npy("b.npy", Tensor::randn({3}, 5));
}

bool stays_in_sandbox(const std::string& arg) {
  return arg.find('/') == std::string::npos && arg.rfind("..", 0) != 0 &&
         arg.find("--svg") == std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args;
  std::string current;
  for (std::size_t i = 0; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    if (c == '\n') {
      args.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) args.push_back(current);
  if (args.size() > 32) return 0;
  for (const std::string& a : args) {
    if (!stays_in_sandbox(a)) return 0;
  }

  // In the scratch folder only while the program runs: libFuzzer reads the
  // corpus and writes crash files relative to the folder it started in.
  static const int home = ::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (home < 0 || ::chdir(npdl::fuzz::scratch_dir().c_str()) != 0) std::abort();
  write_fixtures();
  std::ostringstream out, err;
  const int status = npdl::cli::run(args, out, err);
  if (::fchdir(home) != 0) std::abort();
  if (status < 0 || status > 3) std::abort();
  if (status != 0) {
    const std::string e = err.str();
    if (e.empty() || e.back() != '\n' || e.find('\n') != e.size() - 1) std::abort();
  }
  // Remove what the input wrote, so that every input starts from the same folder.
  for (const auto& entry : std::filesystem::directory_iterator(npdl::fuzz::scratch_dir())) {
    if (kFixtures.count(entry.path().filename().string()) == 0) {
      std::error_code ec;
      std::filesystem::remove_all(entry.path(), ec);
    }
  }
  return 0;
}
