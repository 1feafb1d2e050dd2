// npdl bn: BatchNormal on .npy files.
#include <filesystem>
#include <ostream>

#include "cli/batchnorm_problem.hpp"
#include "cli/commands.hpp"
#include "io/npy.hpp"

namespace npdl::cli {
namespace {

namespace fs = std::filesystem;

struct BnOptions {
  std::string x, dy, gamma, beta, running_mean, running_var;
  std::string out = ".";
  int axis = 0;
  double epsilon = 1e-6;
  double momentum = 0.9;
  bool inference = false;
  bool buggy_std = false;
  std::string backward = "fused";
};

// Every input array is converted to x's dtype: results keep the input's
// dtype whatever the dtype of the parameter files.
Tensor load_as(const std::string& path, DType dtype) { return io::load_npy(path).astype(dtype); }

struct BnResults {
  Tensor y, running_mean, running_var;
  Tensor dx, dgamma, dbeta;  // defined with --dy
};

BnResults compute(const BnOptions& o) {
  const Tensor x = io::load_npy(o.x);
  const DType dtype = x.dtype();
  layers::BatchNormal layer(o.epsilon, o.momentum, o.axis);
  layer.set_backward_mode(layers::parse_backward_mode(o.backward));
  if (o.buggy_std) layer.set_variant(layers::Variant::NpdlStd);
  if (x.rank() < 2) {
    throw ShapeError(
        "bn expects x with a samples axis and at least one feature axis (rank >= 2), "
        "got shape " +
        to_string(x.shape()) + " from '" + o.x + "'");
  }
  layer.connect_to(Shape(x.shape().begin() + 1, x.shape().end()));
  adopt_dtype(layer, dtype);
  if (!o.gamma.empty()) layer.set_gamma(load_as(o.gamma, dtype));
  if (!o.beta.empty()) layer.set_beta(load_as(o.beta, dtype));
  if (!o.running_mean.empty() || !o.running_var.empty()) {
    layer.set_running_stats(
        o.running_mean.empty() ? layer.running_mean() : load_as(o.running_mean, dtype),
        o.running_var.empty() ? layer.running_var() : load_as(o.running_var, dtype));
  }
  // Read before the forward, so that a bad file fails before any work.
  const Tensor dy = o.dy.empty() ? Tensor() : load_as(o.dy, dtype);

  BnResults r;
  r.y = layer.forward(x, /*training=*/!o.inference);
  r.running_mean = layer.running_mean();
  r.running_var = layer.running_var();
  if (dy.defined()) {
    r.dx = layer.backward(dy);
    const std::vector<Tensor> grads = layer.grads();  // npdl's order: dbeta, dgamma
    r.dbeta = grads[0];
    r.dgamma = grads[1];
  }
  return r;
}

// All files or none: each goes to a temporary file first, renamed into place
// only when every one of them has been written.
void write_results(const BnResults& r, const std::string& out_dir, std::ostream& out) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir)) {
    throw IOError("cannot write into '" + out_dir +
                  "': " + (ec ? ec.message() : std::string("not a directory")));
  }
  const std::vector<std::pair<std::string, Tensor>> files{{"y.npy", r.y},
                                                          {"running_mean.npy", r.running_mean},
                                                          {"running_var.npy", r.running_var},
                                                          {"dx.npy", r.dx},
                                                          {"dgamma.npy", r.dgamma},
                                                          {"dbeta.npy", r.dbeta}};
  io::FileBatch batch;
  for (const auto& [name, tensor] : files) {
    if (tensor.defined()) batch.add((fs::path(out_dir) / name).string(), tensor);
  }
  batch.commit();
  for (const auto& [name, tensor] : files) {
    if (!tensor.defined()) continue;
    out << "wrote " << (fs::path(out_dir) / name).string() << "  " << to_string(tensor.shape())
        << ' ' << to_string(tensor.dtype()) << '\n';
  }
}

class BnCommand : public Command {
 public:
  CLI::App* add_to(CLI::App& parent) override {
    CLI::App* app = parent.add_subcommand("bn", "BatchNormal on .npy files");
    app->footer(
        "Runs BatchNormal's forward (training, or --inference) and, with --dy, its backward. "
        "Writes y.npy, running_mean.npy and running_var.npy (and dx.npy, dgamma.npy, dbeta.npy "
        "with --dy) into --out, only when everything succeeded. Every array is converted to x's "
        "dtype, so the results have x's dtype. Exit status: 0 done, 1 bad input or file, 2 bad "
        "command line, 3 --backward checked found autodiff and fused disagreeing.");
    app->add_option("--x", o_.x, "required: input batch, .npy (float32 or float64, rank >= 2)");
    app->add_option("--dy", o_.dy, "upstream gradient, .npy of x's shape: runs the backward");
    app->add_option("--gamma", o_.gamma, "scale, .npy of the parameter shape (default ones)");
    app->add_option("--beta", o_.beta, "shift, .npy of the parameter shape (default zeros)");
    add_integer_option(*app, "--axis", o_.axis,
                       "feature axis; 0 (default): every position of a sample is a feature",
                       kMinAxis, kMaxAxis)
        ->capture_default_str();
    app->add_option("--epsilon", o_.epsilon, "added to the variance")->capture_default_str();
    app->add_option("--momentum", o_.momentum, "weight of the old running statistics")
        ->capture_default_str();
    app->add_option("--running-mean", o_.running_mean, "running mean, .npy (default zeros)");
    app->add_option("--running-var", o_.running_var, "running variance, .npy (default ones)");
    app->add_flag("--inference", o_.inference,
                  "normalise with the running statistics (they stay as they are)");
    app->add_option("--backward", o_.backward,
                    "autodiff (reverse mode through the primitives), fused (hand-derived) or "
                    "checked (both; exit status 3 when they disagree)")
        ->check(CLI::IsMember({"autodiff", "fused", "checked"}))
        ->capture_default_str();
    app->add_flag("--buggy-std", o_.buggy_std,
                  "normalise by sqrt(std + epsilon) as npdl's Python original did (its backward "
                  "assumes the variance: --backward checked catches it)");
    app->add_option("--out", o_.out, "output folder, created if missing")->capture_default_str();
    return app;
  }

  int run(std::ostream& out) override {
    require_option(o_.x, "--x", "npdl bn");
    const BnResults results = compute(o_);  // nothing is written unless it all succeeds
    write_results(results, o_.out, out);
    return kSuccess;
  }

 private:
  BnOptions o_;
};

}  // namespace

std::unique_ptr<Command> make_bn_command() { return std::make_unique<BnCommand>(); }

}  // namespace npdl::cli
