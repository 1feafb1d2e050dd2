// npdl graph batchnorm: the picture of BatchNormal's composite graph, with
// values and, after a backward from a random upstream gradient, gradients.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <ostream>

#include "autodiff/export.hpp"
#include "cli/batchnorm_problem.hpp"
#include "cli/commands.hpp"
#include "io/npy.hpp"

extern char** environ;

namespace npdl::cli {
namespace {

struct GraphOptions {
  std::string out, svg, x;
  int axis = 0;
  double epsilon = 1e-6;
  std::uint64_t seed = 1;
};

// The `dot` program on PATH, as a shell would find it.
std::optional<std::string> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::string dirs = path;
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = end > start ? dirs.substr(start, end - start) : ".";
    const std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

// Runs Graphviz's dot directly (no shell, so no quoting to get wrong).
void run_dot(const std::string& dot, const std::string& dot_file, const std::string& svg_file,
             const std::string& target) {
  std::vector<std::string> args{"dot", "-Tsvg", "-o", svg_file, dot_file};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, dot.c_str(), nullptr, nullptr, argv.data(), environ);
  if (spawned != 0) {
    throw IOError("cannot make '" + target + "': starting " + dot +
                  " failed: " + std::strerror(spawned));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw IOError("cannot make '" + target + "': waiting for dot failed");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw IOError("cannot make '" + target + "': " + dot + " failed (exit status " +
                  std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
}

class GraphCommand : public Command {
 public:
  CLI::App* add_to(CLI::App& parent) override {
    CLI::App* graph = parent.add_subcommand("graph", "Draw a composite's graph");
    CLI::App* app = graph->add_subcommand("batchnorm", "BatchNormal's graph as DOT (and SVG)");
    app->footer(
        "Writes BatchNormal's composite graph as Graphviz DOT: the primitives inside the "
        "BatchNormal cluster, shapes on the edges, values and gradients (after a backward from a "
        "seeded random upstream gradient) on the vertices. With --svg also the picture, through "
        "Graphviz's dot (Debian package graphviz).");
    app->add_option("--out", o_.out, "required: DOT file to write");
    app->add_option("--svg", o_.svg, "SVG file to render with Graphviz's dot");
    app->add_option("--x", o_.x, ".npy input (default: a seeded random 4 x 3 batch)");
    add_integer_option(*app, "--axis", o_.axis, "feature axis", kMinAxis, kMaxAxis)
        ->capture_default_str();
    app->add_option("--epsilon", o_.epsilon, "added to the variance")->capture_default_str();
    add_integer_option(*app, "--seed", o_.seed, "seed of the built-in x, gamma, beta and dy",
                       kMinSeed, kMaxSeed)
        ->capture_default_str();
    return app;
  }

  int run(std::ostream& out) override {
    require_option(o_.out, "--out", "npdl graph batchnorm");
    // Before any work: without dot there is no picture to make.
    std::optional<std::string> dot;
    if (!o_.svg.empty()) {
      dot = find_on_path("dot");
      if (!dot) {
        throw IOError("cannot make '" + o_.svg +
                      "': Graphviz's dot is not on PATH; install the "
                      "Debian package graphviz (apt-get install graphviz), or leave out --svg");
      }
    }
    ProblemSpec spec;
    spec.x_path = o_.x;
    spec.axis = o_.axis;
    spec.epsilon = o_.epsilon;
    spec.seed = o_.seed;
    const RecordedBatchNorm recorded = record_batchnorm(make_problem(spec));
    DotOptions options;
    options.values = true;
    options.gradients = true;

    io::FileBatch batch;  // both files or neither
    const std::string dot_temp = batch.add_text(o_.out, to_dot(*recorded.graph, options));
    if (dot) run_dot(*dot, dot_temp, batch.add_external(o_.svg), o_.svg);
    batch.commit();
    out << "wrote " << o_.out << " (" << recorded.graph->size() << " vertices)\n";
    if (dot) out << "wrote " << o_.svg << '\n';
    return kSuccess;
  }

 private:
  GraphOptions o_;
};

}  // namespace

std::unique_ptr<Command> make_graph_command() { return std::make_unique<GraphCommand>(); }

}  // namespace npdl::cli
