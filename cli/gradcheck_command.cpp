// npdl gradcheck batchnorm: finite differences vs autodiff vs fused, one
// table per tensor, exit status 3 on a mismatch; --order 2 does the same for
// the second derivative, three ways.
#include <ostream>

#include "cli/batchnorm_problem.hpp"
#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "layers/batch_norm/double_backward.hpp"

namespace npdl::cli {
namespace {

struct GradcheckOptions {
  std::string x;
  std::vector<std::int64_t> shape{4, 3};
  int axis = 0;
  std::string dtype;  // empty: x's, or float64 for the built-in input
  double epsilon = 1e-6;
  std::uint64_t seed = 1;
  bool inference = false;
  bool buggy_std = false;
  int order = 1;
};

ProblemSpec spec_from(const GradcheckOptions& o) {
  ProblemSpec spec;
  spec.x_path = o.x;
  spec.shape = Shape(o.shape.begin(), o.shape.end());
  if (!o.dtype.empty()) spec.dtype = parse_dtype(o.dtype);
  spec.axis = o.axis;
  spec.epsilon = o.epsilon;
  spec.seed = o.seed;
  spec.training = !o.inference;
  spec.variant = o.buggy_std ? layers::Variant::NpdlStd : layers::Variant::Correct;
  return spec;
}

void write_tables(const BatchNormProblem& p, const std::vector<GradientAgreement>& agreements,
                  const std::vector<const char*>& tensors, const std::vector<const char*>& inputs,
                  Report& report);

void write_report(const BatchNormProblem& p, const std::vector<GradientAgreement>& agreements,
                  std::ostream& out) {
  Report report(out, Format::Text);
  report.title("Gradient check of BatchNormal");
  report.paragraph("x " + to_string(p.x.shape()) + " " + to_string(p.x.dtype()) + ", " + p.origin +
                   "; axis " + std::to_string(p.axis) + ", M = " + std::to_string(p.layout.M) +
                   ", epsilon " + format_number(p.epsilon) + ", " +
                   (p.training ? "training"
                               : "inference (seeded running "
                                 "statistics)") +
                   ". Gradients of sum(y * dy), dy seeded random: reverse mode through the "
                   "primitives (autodiff), the hand-derived backward (fused) and float64 central "
                   "differences (finite diff). max rel diff = max |diff| / max |reference|.");
  if (p.variant == layers::Variant::NpdlStd) {
    report.paragraph(
        "--buggy-std: the forward divides by sqrt(std + epsilon) as npdl's Python BatchNormal "
        "did, while the fused backward assumes sqrt(var + epsilon). Autodiff differentiates the "
        "forward that actually ran, so it agrees with finite differences; the fused backward "
        "does not, and the check must say so.");
  }
  if (p.x.dtype() == DType::Float32) {
    report.paragraph(
        "float32: the autodiff rows record the composite in float32, so it rounds the batch "
        "mean and every intermediate to float32; where features sit far from zero next to "
        "their spread, that rounding alone moves its dx (verdict 'inexact', shown, not a "
        "failure). The fused kernel keeps its statistics in float64 and is held to float64 "
        "references: finite differences, and the composite run in float64 on the same inputs "
        "(what checked mode compares with).");
  }
  write_tables(p, agreements, {"dx", "dgamma", "dbeta"}, {"x", "gamma", "beta"}, report);
}

void write_second_order_report(const BatchNormProblem& p,
                               const std::vector<GradientAgreement>& agreements,
                               std::ostream& out) {
  Report report(out, Format::Text);
  report.title("Second-order gradient check of BatchNormal");
  report.paragraph(
      "x " + to_string(p.x.shape()) + " " + to_string(p.x.dtype()) + ", " + p.origin + "; axis " +
      std::to_string(p.axis) + ", M = " + std::to_string(p.layout.M) + ", epsilon " +
      format_number(p.epsilon) +
      ", training. (dx, dgamma, dbeta) is the first derivative of sum(y * dy); the second "
      "derivative is that of H = <ggx, dx> + <gggamma, dgamma> + <ggbeta, dbeta> (ggx, gggamma, "
      "ggbeta seeded random) with respect to x, gamma and dy, three ways: the composite of "
      "primitives differentiated twice by reverse mode (autodiff), the fused backward recorded "
      "from primitives and differentiated (recorded), and the hand-derived double backward "
      "(hand), against float64 central differences of the first derivative (finite diff).");
  if (p.variant == layers::Variant::NpdlStd) {
    report.paragraph(
        "--buggy-std: the forward divides by sqrt(std + epsilon); the fused backward and its "
        "double backward assume sqrt(var + epsilon). Finite differences and autodiff follow the "
        "forward that ran; the hand-derived rows must disagree.");
  }
  report.section("The hand-derived double backward, step by step");
  int step = 1;
  for (const layers::DerivationStep& s : layers::batchnorm_double_derivation()) {
    std::vector<std::string> lines = wrap(s.formula, kTextWidth - 4);
    for (const std::string& l : wrap(s.why, kTextWidth - 6)) lines.push_back("  " + l);
    report.entry("Step " + std::to_string(step++) + ": " + s.title, lines);
  }
  write_tables(p, agreements, {"d/dx", "d/dgamma", "d/ddy"}, {"x", "gamma", "dy"}, report);
}

void write_tables(const BatchNormProblem& p, const std::vector<GradientAgreement>& agreements,
                  const std::vector<const char*>& tensors, const std::vector<const char*>& inputs,
                  Report& report) {
  for (int i = 0; i < 3; ++i) {
    Table table;
    table.header = {"comparison", "max abs diff", "max rel diff", "verdict"};
    const GradientAgreement* worst = nullptr;
    for (const GradientAgreement& a : agreements) {
      if (a.tensor != tensors[i]) continue;
      table.rows.push_back({a.pair, format_number(a.max_abs), format_number(a.max_rel), a.verdict});
      if (!a.ok() && worst == nullptr) worst = &a;
    }
    const Shape& shape =
        i == 0 || std::string(inputs[i]) == "dy" ? p.x.shape() : p.layout.param_shape;
    report.section(std::string(tensors[i]) + ": gradient with respect to " + inputs[i] +
                   ", shape " + to_string(shape));
    report.table(table);
    if (worst != nullptr) report.paragraph(worst->describe());
  }
  bool all_ok = true;
  for (const auto& a : agreements) all_ok = all_ok && a.ok();
  report.paragraph(all_ok ? "All gradients agree." : "MISMATCH: see the tables above.");
}

class GradcheckCommand : public Command {
 public:
  CLI::App* add_to(CLI::App& parent) override {
    CLI::App* gradcheck = parent.add_subcommand("gradcheck", "Check a layer's gradients");
    CLI::App* app = gradcheck->add_subcommand("batchnorm", "Check BatchNormal's gradients");
    app->footer(
        "Compares BatchNormal's gradients three ways (autodiff, fused, float64 finite "
        "differences) on a random or given input, one table per tensor. Exit status 3 on a "
        "mismatch; --buggy-std shows one.");
    app->add_option("--x", o_.x, ".npy input (default: seeded random of --shape)");
    add_integer_option(*app, "--shape", o_.shape, "shape of the random input, e.g. 8,3,4,4",
                       std::int64_t{1}, std::numeric_limits<std::int64_t>::max())
        ->delimiter(',')
        ->expected(2, 16)
        ->type_name("SIZES")
        ->capture_default_str();
    add_integer_option(*app, "--axis", o_.axis, "feature axis", kMinAxis, kMaxAxis)
        ->capture_default_str();
    app->add_option("--dtype", o_.dtype, "float32 or float64 (default: x's; float64 if random)")
        ->check(CLI::IsMember({"float32", "float64"}));
    app->add_option("--epsilon", o_.epsilon, "added to the variance")->capture_default_str();
    add_integer_option(*app, "--seed", o_.seed,
                       "seed of x, gamma, beta, dy and the running statistics", kMinSeed, kMaxSeed)
        ->capture_default_str();
    CLI::Option* inference =
        app->add_flag("--inference", o_.inference, "check the inference forward's backward");
    // The bug is in the training forward, which --inference does not run.
    app->add_flag("--buggy-std", o_.buggy_std,
                  "run npdl's original std-for-variance bug (training), to see the check catch it")
        ->excludes(inference);
    add_integer_option(*app, "--order", o_.order,
                       "1: the gradient; 2: the second derivative, three ways (training)", 1, 2)
        ->excludes(inference)
        ->capture_default_str();
    return app;
  }

  int run(std::ostream& out) override {
    const BatchNormProblem p = make_problem(spec_from(o_));
    if (o_.order == 2) {
      const std::vector<GradientAgreement> agreements = compare_second_order(
          p, second_order_gradients(p, SecondOrderWay::Autodiff),
          second_order_gradients(p, SecondOrderWay::Recorded),
          second_order_gradients(p, SecondOrderWay::Hand), numeric_second_order_gradients(p));
      write_second_order_report(p, agreements, out);
      throw_first_mismatch(agreements);
      return kSuccess;
    }
    const std::vector<GradientAgreement> agreements =
        compare_gradients(p, autodiff_gradients(p), fused_gradients(p), numeric_gradients(p));
    write_report(p, agreements, out);
    throw_first_mismatch(agreements);
    return kSuccess;
  }

 private:
  GradcheckOptions o_;
};

}  // namespace

std::unique_ptr<Command> make_gradcheck_command() { return std::make_unique<GradcheckCommand>(); }

}  // namespace npdl::cli
