// npdl gradcheck lstm | gru: a recurrent layer's gradients three ways on a
// small built-in problem (reverse mode through the composite cell, the
// fused cell's hand-derived backward, float64 central differences), one
// table; exit status 3 on a mismatch.
#include <functional>
#include <memory>
#include <ostream>

#include "autodiff/gradcheck.hpp"
#include "cli/batchnorm_problem.hpp"
#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "layers/recurrent.hpp"
#include "tensor/random.hpp"

namespace npdl::cli {
namespace {

struct CellCheckOptions {
  std::vector<std::int64_t> shape{3, 4, 2};  // N, T, F
  std::int64_t hidden = 3;
  std::uint64_t seed = 1;
  bool return_sequence = false;
};

using LayerFactory = std::function<std::unique_ptr<layers::Recurrent>(
    std::int64_t n_out, const layers::RecurrentOptions&, const layers::GateOptions&)>;

template <class Layer>
LayerFactory factory() {
  return [](std::int64_t n_out, const layers::RecurrentOptions& o, const layers::GateOptions& g) {
    return std::make_unique<Layer>(n_out, o, g);
  };
}

// Gradients of sum(y * u) with respect to x and every parameter, by the
// layer's own backward.
std::vector<Tensor> layer_gradients(layers::Recurrent& layer, const Tensor& x, const Tensor& u) {
  layer.forward(x);
  std::vector<Tensor> out{layer.backward(u)};
  for (const Tensor& g : layer.grads()) out.push_back(g.clone());
  return out;
}

std::vector<Tensor> numeric_layer_gradients(layers::Recurrent& layer, const Tensor& x,
                                            const Tensor& u) {
  const std::vector<ParameterPtr> params = layer.params();
  std::vector<Tensor> inputs{x};
  for (const ParameterPtr& p : params) inputs.push_back(p->value.clone());
  const GraphFunction f = [&](const std::vector<Var>& v) {
    for (std::size_t i = 0; i < params.size(); ++i) params[i]->value = v[i + 1].value();
    return Var(layer.forward(v[0].value()));
  };
  std::vector<Tensor> numeric = finite_difference_gradients(f, inputs, u, 1e-6);
  for (std::size_t i = 0; i < params.size(); ++i) params[i]->value = inputs[i + 1];
  return numeric;
}

class CellGradcheck : public Command {
 public:
  CellGradcheck(const char* command, const char* layer, LayerFactory make)
      : command_(command), layer_(layer), make_(std::move(make)) {}

  CLI::App* add_to(CLI::App& parent) override {
    CLI::App* gradcheck = parent.get_subcommand("gradcheck");
    CLI::App* app = gradcheck->add_subcommand(command_, "Check " + layer_ + "'s gradients");
    app->footer("Compares " + layer_ +
                "'s gradients (input and every parameter) three ways: reverse mode through the "
                "cell composed of primitives (autodiff), the fused cell's hand-derived backward "
                "(fused) and float64 central differences, on seeded random sequences in float64. "
                "Exit status 3 on a mismatch.");
    add_integer_option(*app, "--shape", o_.shape, "N,T,F: sequences, steps, input features",
                       std::int64_t{1}, std::int64_t{64})
        ->delimiter(',')
        ->expected(3)
        ->type_name("N,T,F")
        ->capture_default_str();
    add_integer_option(*app, "--hidden", o_.hidden, "n_out, the state's size", std::int64_t{1},
                       std::int64_t{64})
        ->capture_default_str();
    add_integer_option(*app, "--seed", o_.seed, "seed of x, the weights and the upstream gradient",
                       kMinSeed, kMaxSeed)
        ->capture_default_str();
    app->add_flag("--return-sequence", o_.return_sequence,
                  "check the layer returning every step's state (default: the last)");
    return app;
  }

  int run(std::ostream& out) override {
    const Shape shape(o_.shape.begin(), o_.shape.end());
    if (numel(shape) > kMaxFiniteDifferenceElements) {
      throw ValueError("x has " + std::to_string(numel(shape)) +
                       " elements; finite differences run two forwards per element and "
                       "parameter, so at most " +
                       std::to_string(kMaxFiniteDifferenceElements) + " are allowed here");
    }
    const Tensor x = Tensor::randn(shape, o_.seed, DType::Float64);
    std::unique_ptr<layers::Recurrent> autodiff = make(layers::BackwardMode::Autodiff);
    std::unique_ptr<layers::Recurrent> fused = make(layers::BackwardMode::Fused);
    const Tensor y = autodiff->forward(x);
    const Tensor u = Tensor::randn(y.shape(), o_.seed + 1, DType::Float64);
    const std::vector<Tensor> a = layer_gradients(*autodiff, x, u);
    const std::vector<Tensor> f = layer_gradients(*fused, x, u);
    const std::vector<Tensor> n = numeric_layer_gradients(*autodiff, x, u);

    std::vector<std::string> names{"dx"};
    for (const ParameterPtr& p : autodiff->params()) names.push_back("d" + p->name);
    const GradCheckOptions numeric_tol = tolerances_for(DType::Float64);
    GradCheckOptions exact_tol;  // two computations of one formula in float64
    exact_tol.atol = 1e-12;
    exact_tol.rtol = 1e-10;
    std::vector<GradientAgreement> agreements;
    for (std::size_t i = 0; i < names.size(); ++i) {
      agreements.push_back(agreement(names[i], "autodiff vs finite diff", a[i], n[i], numeric_tol));
      agreements.push_back(agreement(names[i], "fused vs finite diff", f[i], n[i], numeric_tol));
      agreements.push_back(agreement(names[i], "fused vs autodiff", f[i], a[i], exact_tol));
    }
    write(out, x, y, agreements);
    throw_first_mismatch(agreements);
    return kSuccess;
  }

 private:
  // The layer in `mode`, its weights drawn from the seed when it connects
  // (the same for every mode).
  std::unique_ptr<layers::Recurrent> make(layers::BackwardMode mode) const {
    layers::RecurrentOptions o;
    o.return_sequence = o_.return_sequence;
    layers::GateOptions g;
    g.mode = mode;
    std::unique_ptr<layers::Recurrent> layer = make_(o_.hidden, o, g);
    set_seed(o_.seed);
    layer->connect_to(Shape{o_.shape[1], o_.shape[2]});  // draws the weights now
    return layer;
  }

  void write(std::ostream& out, const Tensor& x, const Tensor& y,
             const std::vector<GradientAgreement>& agreements) const {
    Report report(out, Format::Text);
    report.title("Gradient check of " + layer_);
    report.paragraph("x " + to_string(x.shape()) + " float64 (seed " + std::to_string(o_.seed) +
                     "), n_out " + std::to_string(o_.hidden) + ", y " + to_string(y.shape()) +
                     (o_.return_sequence ? " (every step)" : " (the last step)") +
                     ". Gradients of sum(y * u), u seeded random, through time over every step: "
                     "reverse mode through the cell composed of primitives (autodiff), the fused "
                     "cell's hand-derived backward (fused), float64 central differences (finite "
                     "diff). max rel diff = max |diff| / max |reference|.");
    report.table(agreement_table(agreements));
    bool all_ok = true;
    for (const GradientAgreement& a : agreements) all_ok = all_ok && a.ok();
    report.paragraph(all_ok ? "All gradients agree." : "MISMATCH: see the table above.");
  }

  std::string command_, layer_;
  LayerFactory make_;
  CellCheckOptions o_;
};

}  // namespace

std::unique_ptr<Command> make_gradcheck_lstm_command() {
  return std::make_unique<CellGradcheck>("lstm", "LSTM", factory<layers::LSTM>());
}

std::unique_ptr<Command> make_gradcheck_gru_command() {
  return std::make_unique<CellGradcheck>("gru", "GRU", factory<layers::GRU>());
}

}  // namespace npdl::cli
