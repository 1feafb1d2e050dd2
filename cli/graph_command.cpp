// npdl graph batchnorm: the picture of BatchNormal's composite graph, with
// values and, after a backward from a random upstream gradient, gradients.
#include <optional>
#include <ostream>

#include "autodiff/export.hpp"
#include "cli/batchnorm_problem.hpp"
#include "cli/commands.hpp"
#include "cli/explanation.hpp"
#include "cli/graphviz.hpp"
#include "io/npy.hpp"

namespace npdl::cli {
namespace {

struct GraphOptions {
  std::string out, svg, x;
  int axis = 0;
  double epsilon = 1e-6;
  std::uint64_t seed = 1;
};

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
    if (!o_.svg.empty()) dot = require_dot(o_.svg, "leave out --svg");
    ProblemSpec spec;
    spec.x_path = o_.x;
    spec.axis = o_.axis;
    spec.epsilon = o_.epsilon;
    spec.seed = o_.seed;
    const RecordedBatchNorm recorded = record_batchnorm(make_problem(spec));

    io::FileBatch batch;  // both files or neither
    const std::string dot_temp =
        batch.add_text(o_.out, to_dot(*recorded.graph, batchnorm_dot_options()));
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
