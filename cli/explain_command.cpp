// npdl explain batchnorm: the batch-norm gradient (--order 2: its double
// backward), derived in front of the user on numbers (cli/explanation.hpp
// builds it), as text, Markdown, JSON or a self-contained HTML page
// (cli/explain_views.hpp lays it out).
#include <optional>
#include <ostream>
#include <sstream>

#include "cli/batchnorm_problem.hpp"
#include "cli/commands.hpp"
#include "cli/explain_views.hpp"
#include "cli/graphviz.hpp"
#include "io/npy.hpp"

namespace npdl::cli {
namespace {

struct ExplainOptions {
  std::string x;
  int axis = 0;
  double epsilon = 1e-6;
  std::uint64_t seed = 1;
  int order = 1;
  std::string format = "text";
  std::string output;  // empty: standard output
};

class ExplainCommand : public Command {
 public:
  CLI::App* add_to(CLI::App& parent) override {
    CLI::App* explain = parent.add_subcommand("explain", "Teach how a gradient is derived");
    CLI::App* app = explain->add_subcommand("batchnorm", "How the batch-norm gradient is derived");
    app->footer(
        "Walks BatchNormal's composite graph forward and backward on a small input (a seeded "
        "random 4 x 3 batch unless --x is given), vertex by vertex; shows where branches add up "
        "and why the path from the variance through the mean contributes nothing; derives the "
        "fused backward formula; compares autodiff, fused and float64 finite differences. Exit "
        "status 3 when they disagree. --format json gives the same steps as data; --format html "
        "as one self-contained page (-o batchnorm.html; the graph drawn by Graphviz's dot) "
        "that shows them one at a time on the graph. --order 2 does the same for the double "
        "backward (the gradient of sum(ggx * dx) + sum(gggamma * dgamma) + sum(ggbeta * dbeta)).");
    app->add_option("--x", o_.x, ".npy input (default: a seeded random 4 x 3 batch)");
    add_integer_option(*app, "--axis", o_.axis, "feature axis", kMinAxis, kMaxAxis)
        ->capture_default_str();
    app->add_option("--epsilon", o_.epsilon, "added to the variance")->capture_default_str();
    add_integer_option(*app, "--seed", o_.seed, "seed of the built-in x, gamma, beta and dy",
                       kMinSeed, kMaxSeed)
        ->capture_default_str();
    add_integer_option(*app, "--order", o_.order,
                       "1: the gradient; 2: the gradient of the gradient (the double backward)", 1,
                       2)
        ->capture_default_str();
    app->add_option("--format", o_.format,
                    "text (80 columns), markdown, json, or html (one self-contained page; needs "
                    "Graphviz's dot)")
        ->check(CLI::IsMember({"text", "markdown", "json", "html"}))
        ->capture_default_str();
    app->add_option("-o,--output", o_.output,
                    "file to write, whole or not at all (default: standard output)");
    return app;
  }

  int run(std::ostream& out) override {
    ProblemSpec spec;
    spec.x_path = o_.x;
    spec.axis = o_.axis;
    spec.epsilon = o_.epsilon;
    spec.seed = o_.seed;
    // Before any work: without dot there is no page to make.
    std::optional<std::string> dot;
    if (o_.format == "html") {
      dot = require_dot(o_.output.empty() ? "the page" : o_.output, "choose another --format");
    }
    const Explanation explanation = explain_batchnorm(make_problem(spec), o_.order);
    const std::string rendered = render(explanation, dot);
    if (o_.output.empty()) {
      out << rendered;
    } else {
      io::FileBatch file;  // a temporary file beside the target, renamed when whole
      file.add_text(o_.output, rendered);
      file.commit();
      out << "wrote " << o_.output << " (" << rendered.size() << " bytes, "
          << explanation.steps.size() << " steps)\n";
    }
    // The explanation shows a mismatch; the exit status reports it too.
    throw_first_mismatch(explanation.agreements);
    return kSuccess;
  }

 private:
  std::string render(const Explanation& explanation, const std::optional<std::string>& dot) const {
    std::ostringstream os;
    if (o_.format == "json") {
      write_json(explanation, os);
    } else if (o_.format == "html") {
      const std::string target = o_.output.empty() ? "the page" : o_.output;
      os << explanation_page(explanation, render_svg(*dot, explanation.dot, target));
    } else {
      Report report(os, parse_format(o_.format));
      write_text(explanation, report);
    }
    return os.str();
  }

  ExplainOptions o_;
};

}  // namespace

std::unique_ptr<Command> make_explain_command() { return std::make_unique<ExplainCommand>(); }

}  // namespace npdl::cli
