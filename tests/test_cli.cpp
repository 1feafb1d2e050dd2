// The `npdl` program, run in-process through npdl::cli::run with files in a
// fresh temporary folder: exit statuses, one-line errors, the files written
// (and not written), and the numbers in them.
#ifdef NPDL_HAVE_CLI
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "cli/batchnorm_problem.hpp"
#include "cli/cli.hpp"
#include "io/npy.hpp"
#include "layers/batch_norm/batch_normal.hpp"
#include "layers/batch_norm/double_backward.hpp"
#include "tensor/tensor_math.hpp"
#include "tests/json_reader.hpp"
#include "tests/temp_dir_test.hpp"

namespace npdl {
namespace {

namespace fs = std::filesystem;

struct CliResult {
  int status = -1;
  std::string out, err;
};

class CliTest : public testing::TempDirTest {
 protected:
  std::string save(const std::string& name, const Tensor& t) const {
    io::save_npy(path(name), t);
    return path(name);
  }

  static CliResult run(const std::vector<std::string>& args) {
    std::ostringstream out, err;
    CliResult r;
    r.status = cli::run(args, out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
  }

  std::vector<std::string> files_in(const std::string& name) const {
    std::vector<std::string> names;
    if (!fs::exists(path(name))) return names;
    for (const auto& entry : fs::directory_iterator(path(name))) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
};

// A failure is reported as exactly one line on stderr, naming the command.
void expect_one_line_error(const CliResult& r, const std::string& command,
                           const std::string& needle) {
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind(command + ": error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "'" << needle << "' not in: " << r.err;
}

// The text with line breaks and indentation as single spaces: phrases that a
// paragraph wraps (it wraps differently for a longer file name) stay whole.
std::string flat(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool blank = c == ' ' || c == '\n';
    if (!(blank && !out.empty() && out.back() == ' ')) out += blank ? ' ' : c;
  }
  return out;
}

void expect_fits_80_columns(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    EXPECT_LE(line.size(), 80u) << "line " << number << ": " << line;
  }
}

// The training forward in float64 from npdl::math, independent of the
// layer and its kernels.
Tensor reference_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const Axes& reduced, const Shape& broadcast, double eps) {
  namespace m = math;
  const Tensor x64 = x.astype(DType::Float64);
  const Tensor xmu = m::sub(x64, m::mean(x64, reduced, true));
  const Tensor invstd = m::rsqrt(m::add_scalar(m::mean(m::square(xmu), reduced, true), eps));
  return m::add(m::mul(m::mul(xmu, invstd), gamma.astype(DType::Float64).reshape(broadcast)),
                beta.astype(DType::Float64).reshape(broadcast));
}

double max_diff(const Tensor& a, const Tensor& b) {
  return math::max_abs_diff(a.astype(DType::Float64), b.astype(DType::Float64)).abs;
}

// ---------------------------------------------------------------------------
// npdl bn

TEST_F(CliTest, BnWritesTheSixResultsOfTheLayer) {
  const Tensor x = Tensor::randn({8, 3}, 1, DType::Float32, 2.0, 3.0);
  const Tensor dy = Tensor::randn({8, 3}, 2, DType::Float32);
  const Tensor gamma = Tensor::from_vector({3}, {0.5, 2.0, -1.0}, DType::Float32);
  const Tensor beta = Tensor::from_vector({3}, {0.1, 0.2, 0.3}, DType::Float32);
  const CliResult r = run({"bn", "--x", save("x.npy", x), "--dy", save("dy.npy", dy), "--gamma",
                           save("g.npy", gamma), "--beta", save("b.npy", beta), "--epsilon", "1e-5",
                           "--out", path("out")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(files_in("out"),
            (std::vector<std::string>{"dbeta.npy", "dgamma.npy", "dx.npy", "running_mean.npy",
                                      "running_var.npy", "y.npy"}));
  // The same layer in-process gives the same numbers.
  layers::BatchNormal layer(1e-5);
  layer.connect_to(Shape{3});
  layer.forward(Tensor::zeros({1, 3}), false);
  layer.set_gamma(gamma);
  layer.set_beta(beta);
  const Tensor y = layer.forward(x, true);
  const Tensor dx = layer.backward(dy);
  EXPECT_EQ(max_diff(io::load_npy(path("out/y.npy")), y), 0.0);
  EXPECT_EQ(max_diff(io::load_npy(path("out/dx.npy")), dx), 0.0);
  EXPECT_EQ(max_diff(io::load_npy(path("out/dbeta.npy")), layer.grads()[0]), 0.0);
  EXPECT_EQ(max_diff(io::load_npy(path("out/dgamma.npy")), layer.grads()[1]), 0.0);
  EXPECT_EQ(max_diff(io::load_npy(path("out/running_mean.npy")), layer.running_mean()), 0.0);
  // And y is batch normalisation, by an independent formula.
  EXPECT_LT(max_diff(io::load_npy(path("out/y.npy")),
                     reference_forward(x, gamma, beta, {0}, {1, 3}, 1e-5)),
            1e-5);
  // dbeta = sum(dy) over the samples.
  EXPECT_LT(max_diff(io::load_npy(path("out/dbeta.npy")), math::sum(dy, {0})), 1e-5);
}

TEST_F(CliTest, BnResultsKeepXsDtypeAndFloat64ParametersKeepTheirDigits) {
  const Tensor x = Tensor::randn({6, 2}, 3, DType::Float64);
  const Tensor gamma = Tensor::from_vector({2}, {0.1, 0.3}, DType::Float64);  // not float32-exact
  const Tensor beta = Tensor::from_vector({2}, {0.7, -0.9}, DType::Float64);
  ASSERT_EQ(run({"bn", "--x", save("x.npy", x), "--gamma", save("g.npy", gamma), "--beta",
                 save("b.npy", beta), "--out", path("out")})
                .status,
            0);
  const Tensor y = io::load_npy(path("out/y.npy"));
  EXPECT_EQ(y.dtype(), DType::Float64);
  // Rounding gamma through float32 would leave errors near 1e-9.
  EXPECT_LT(max_diff(y, reference_forward(x, gamma, beta, {0}, {1, 2}, 1e-6)), 1e-13);

  // float32 x with float64 parameter files: every result is float32.
  const CliResult r = run({"bn", "--x", save("x32.npy", x.astype(DType::Float32)), "--gamma",
                           path("g.npy"), "--dy", save("dy.npy", x), "--out", path("out32")});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const std::string& name : files_in("out32")) {
    EXPECT_EQ(io::load_npy(path("out32/" + name)).dtype(), DType::Float32) << name;
  }
}

TEST_F(CliTest, BnWithoutDyWritesTheForwardFilesOnly) {
  const CliResult r =
      run({"bn", "--x", save("x.npy", Tensor::randn({4, 2}, 1)), "--out", path("out")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(files_in("out"),
            (std::vector<std::string>{"running_mean.npy", "running_var.npy", "y.npy"}));
  EXPECT_NE(r.out.find("y.npy"), std::string::npos);
}

TEST_F(CliTest, BnTrainingUpdatesTheRunningStatisticsWithMomentum) {
  const Tensor x = Tensor::from_vector({4, 1}, {1, 2, 3, 6}, DType::Float64);  // mean 3, var 3.5
  ASSERT_EQ(run({"bn", "--x", save("x.npy", x), "--momentum", "0.25", "--out", path("out")}).status,
            0);
  // running = momentum * old + (1 - momentum) * batch; the variance unbiased: 3.5 * 4 / 3.
  EXPECT_NEAR(io::load_npy(path("out/running_mean.npy")).item(), 0.75 * 3.0, 1e-12);
  EXPECT_NEAR(io::load_npy(path("out/running_var.npy")).item(), 0.25 + 0.75 * 3.5 * 4 / 3, 1e-12);
}

TEST_F(CliTest, BnInferenceUsesTheGivenRunningStatisticsAndKeepsThem) {
  const Tensor x = Tensor::randn({5, 3}, 4, DType::Float64);
  const Tensor mean = Tensor::from_vector({3}, {1, -1, 0.5}, DType::Float64);
  const Tensor var = Tensor::from_vector({3}, {4, 0.25, 1}, DType::Float64);
  const CliResult r =
      run({"bn", "--x", save("x.npy", x), "--running-mean", save("m.npy", mean), "--running-var",
           save("v.npy", var), "--inference", "--dy",
           save("dy.npy", Tensor::ones({5, 3}, DType::Float64)), "--out", path("out")});
  ASSERT_EQ(r.status, 0) << r.err;
  const Tensor y = io::load_npy(path("out/y.npy"));
  const Tensor expected = math::mul(math::sub(x, mean.reshape({1, 3})),
                                    math::rsqrt(math::add_scalar(var.reshape({1, 3}), 1e-6)));
  EXPECT_LT(max_diff(y, expected), 1e-12);
  EXPECT_EQ(max_diff(io::load_npy(path("out/running_mean.npy")), mean), 0.0);
  EXPECT_EQ(max_diff(io::load_npy(path("out/running_var.npy")), var), 0.0);
  // dx = dy * gamma * rsqrt(var + eps), gamma = 1: for var = 4, 0.5 per element.
  EXPECT_NEAR(io::load_npy(path("out/dx.npy")).at({0, 0}), 1.0 / std::sqrt(4 + 1e-6), 1e-12);
}

TEST_F(CliTest, BnNormalisesPerChannelWithAxisOne) {
  const Tensor x = Tensor::randn({4, 3, 2, 2}, 5, DType::Float64, 5.0, 2.0);
  ASSERT_EQ(
      run({"bn", "--x", save("x.npy", x), "--axis", "1", "--dy",
           save("dy.npy", Tensor::randn({4, 3, 2, 2}, 6, DType::Float64)), "--out", path("out")})
          .status,
      0);
  EXPECT_EQ(io::load_npy(path("out/dgamma.npy")).shape(), (Shape{3}));
  const Tensor y = io::load_npy(path("out/y.npy"));
  EXPECT_LT(max_diff(y, reference_forward(x, Tensor::ones({3}, DType::Float64),
                                          Tensor::zeros({3}, DType::Float64), {0, 2, 3},
                                          {1, 3, 1, 1}, 1e-6)),
            1e-12);
}

TEST_F(CliTest, BnBackwardModesGiveTheSameGradients) {
  const std::string x = save("x.npy", Tensor::randn({6, 4}, 7, DType::Float64));
  const std::string dy = save("dy.npy", Tensor::randn({6, 4}, 8, DType::Float64));
  for (const std::string mode : {"autodiff", "fused", "checked"}) {
    const CliResult r = run({"bn", "--x", x, "--dy", dy, "--backward", mode, "--out", path(mode)});
    ASSERT_EQ(r.status, 0) << mode << ": " << r.err;
  }
  const Tensor fused = io::load_npy(path("fused/dx.npy"));
  EXPECT_LT(max_diff(io::load_npy(path("autodiff/dx.npy")), fused), 1e-12);
  EXPECT_EQ(max_diff(io::load_npy(path("checked/dx.npy")), fused), 0.0);
}

TEST_F(CliTest, BnCheckedCatchesTheBuggyStdAndWritesNothing) {
  const CliResult r = run({"bn", "--x", save("x.npy", Tensor::randn({6, 4}, 7)), "--dy",
                           save("dy.npy", Tensor::randn({6, 4}, 8)), "--backward", "checked",
                           "--buggy-std", "--out", path("out")});
  EXPECT_EQ(r.status, cli::kGradientMismatch);
  expect_one_line_error(r, "npdl bn", "disagree");
  EXPECT_FALSE(fs::exists(path("out")));
}

TEST_F(CliTest, BnBadInputIsOneLineErrorAndNothingWritten) {
  const std::string x = save("x.npy", Tensor::randn({8, 3}, 1));
  const std::string wrong_dy = save("dy.npy", Tensor::randn({8, 4}, 1));
  const std::string ints = path("ints.npy");
  {
    const std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n";
    std::ofstream f(ints, std::ios::binary);
    f << std::string("\x93NUMPY\x01\x00", 8) << static_cast<char>(header.size()) << '\0' << header
      << std::string(8, '\0');
  }
  struct Case {
    std::vector<std::string> args;
    int status;
    std::string needle;
  };
  const std::vector<Case> cases{
      {{"--bogus"}, cli::kUsage, "--bogus"},
      {{}, cli::kUsage, "--x is required"},
      {{"--x", x, "--axis", "7"}, cli::kFailed, "axis 7"},
      {{"--x", x, "--axis", "one"}, cli::kUsage, "--axis"},
      {{"--x", x, "--dy", wrong_dy}, cli::kFailed, "expected shape (8, 3), got (8, 4)"},
      {{"--x", x, "--backward", "symbolic"}, cli::kUsage, "symbolic"},
      {{"--x", path("missing.npy")}, cli::kFailed, "No such file"},
      {{"--x", dir_.string()}, cli::kFailed, "is a directory"},
      {{"--x", ints}, cli::kFailed, "int32 ('<i4')"},
      {{"--x", x, "--gamma", wrong_dy}, cli::kFailed, "gamma"},
      {{"--x", x, "--running-var", path("missing.npy")}, cli::kFailed, "missing.npy"},
      {{"--x", x, "--inference", "--running-var",
        save("negative.npy", Tensor::from_vector({3}, {1.0, -0.25, 2.0}))},
       cli::kFailed,
       "running variance of feature 1 is -0.25"},
      {{"--x", x, "--epsilon", "0"}, cli::kFailed, "epsilon"},
      {{"--x", x, "--momentum", "1.5"}, cli::kFailed, "momentum"},
      {{"--x", save("one.npy", Tensor::randn({1, 3}, 1))}, cli::kFailed, "at least 2"},
      {{"--x", save("rank1.npy", Tensor::randn({5}, 1))}, cli::kFailed, "rank >= 2"},
      {{"--x", save("nan.npy", Tensor::full({4, 2}, std::nan("")))}, cli::kFailed, "NaN"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args{"bn"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    args.insert(args.end(), {"--out", path("out")});
    SCOPED_TRACE(::testing::PrintToString(args));
    const CliResult r = run(args);
    EXPECT_EQ(r.status, c.status);
    expect_one_line_error(r, "npdl bn", c.needle);
    EXPECT_TRUE(files_in("out").empty()) << "written despite the error";
  }
}

// ---------------------------------------------------------------------------
// npdl explain batchnorm

// The numbers of the tensor printed under `heading`.
std::vector<double> numbers_after(const std::string& text, const std::string& heading) {
  const std::size_t at = text.find(heading);
  if (at == std::string::npos) return {};
  std::istringstream lines(text.substr(at + heading.size()));
  std::string line;
  std::getline(lines, line);  // rest of the heading line
  std::getline(lines, line);
  std::vector<double> values;
  std::istringstream row(line.substr(line.find('[') + 1));
  double v;
  while (row >> v) values.push_back(v);
  return values;
}

TEST_F(CliTest, ExplainOnTheBuiltInInputReportsAgreementIn80Columns) {
  const CliResult r = run({"explain", "batchnorm"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  expect_fits_80_columns(r.out);
  EXPECT_NE(flat(r.out).find("Verdict: all three agree"), std::string::npos);
  // Nine rows (three pairs for each of three gradients), none a mismatch.
  std::istringstream lines(r.out);
  std::string line;
  int rows = 0;
  while (std::getline(lines, line)) {
    if (line.find(" vs f") == std::string::npos) continue;
    ++rows;
    EXPECT_TRUE(line.size() >= 5 && (line.substr(line.size() - 5) == "close" ||
                                     line.substr(line.size() - 5) == "exact"))
        << line;
  }
  EXPECT_EQ(rows, 9);
}

TEST_F(CliTest, ExplainShowsTheVariancePathThroughTheMeanVanishes) {
  const CliResult r = run({"explain", "batchnorm"});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::vector<double> through_var =
      numbers_after(r.out, "through the variance (xmu^2): gb -> mean =");
  const std::vector<double> through_xhat = numbers_after(r.out, "through xhat: gb -> mean =");
  const std::vector<double> sum_xmu = numbers_after(r.out, "sum(xmu) over the reduced axes =");
  ASSERT_EQ(through_var.size(), 3u);
  ASSERT_EQ(through_xhat.size(), 3u);
  ASSERT_EQ(sum_xmu.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_LT(std::fabs(through_var[i]), 1e-14) << "the variance path is rounding only";
    EXPECT_GT(std::fabs(through_xhat[i]), 1e-3) << "the xhat path carries the gradient";
    EXPECT_LT(std::fabs(sum_xmu[i]), 1e-14);
  }
}

TEST_F(CliTest, ExplainWalksEveryVertexForwardAndBackward) {
  const CliResult r = run({"explain", "batchnorm", "--seed", "3"});
  ASSERT_EQ(r.status, 0) << r.err;
  // The same graph, recorded here: one backward entry with a VJP per op.
  cli::ProblemSpec spec;
  spec.seed = 3;
  const cli::RecordedBatchNorm recorded = cli::record_batchnorm(cli::make_problem(spec));
  std::size_t ops = 0;
  for (Vertex v : recorded.graph->last_sweep()) ops += recorded.graph->impl()[v].node != nullptr;
  std::size_t vjps = 0;
  for (std::size_t at = r.out.find("\n    VJP: "); at != std::string::npos;
       at = r.out.find("\n    VJP: ", at + 1)) {
    ++vjps;
  }
  EXPECT_EQ(vjps, ops);
  EXPECT_GE(ops, 9u);
  // Forward entries name each vertex by the derivation's symbols.
  for (const std::string entry :
       {"mean = mean(x)", "xmu = sub(x, mean)", "var = mean(xmu^2)", "invstd = rsqrt(var+eps)",
        "xhat = mul(xmu, invstd)", "y = add(gamma*xhat, beta)"}) {
    EXPECT_NE(r.out.find(entry), std::string::npos) << entry;
  }
  // Two fan-outs, each a sum of two contributions; the derivation's steps.
  EXPECT_NE(flat(r.out).find("x feeds 2 ops"), std::string::npos);
  EXPECT_NE(flat(r.out).find("xmu feeds 2 ops"), std::string::npos);
  for (const layers::DerivationStep& step : layers::batchnorm_derivation()) {
    EXPECT_NE(r.out.find(step.formula), std::string::npos) << step.formula;
  }
}

// Every number of a report, in order.
std::vector<std::string> numeric_tokens(const std::string& text) {
  static const std::regex number(R"(-?\d+(\.\d+)?(e[-+]\d+)?)");
  std::vector<std::string> tokens;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), number);
       it != std::sregex_iterator(); ++it) {
    tokens.push_back(it->str());
  }
  return tokens;
}

TEST_F(CliTest, ExplainMarkdownCarriesTheSameContent) {
  const CliResult text = run({"explain", "batchnorm"});
  const CliResult markdown = run({"explain", "batchnorm", "--format", "markdown"});
  ASSERT_EQ(markdown.status, 0) << markdown.err;
  EXPECT_EQ(markdown.out.rfind("# How reverse mode differentiates BatchNormal\n", 0), 0u);
  EXPECT_NE(markdown.out.find("\n## 6. "), std::string::npos);
  EXPECT_NE(markdown.out.find("\n```\n"), std::string::npos);
  EXPECT_NE(markdown.out.find("| dx | autodiff vs fused |"), std::string::npos);
  EXPECT_EQ(numeric_tokens(markdown.out), numeric_tokens(text.out));
}

TEST_F(CliTest, ExplainTakesTheUsersInputAndAxis) {
  const std::string x = save("x.npy", Tensor::randn({5, 2, 3}, 9, DType::Float32));
  const CliResult r = run({"explain", "batchnorm", "--x", x, "--axis", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(flat(r.out).find("M = 15"), std::string::npos);
  EXPECT_NE(r.out.find("float32"), std::string::npos);
  EXPECT_NE(flat(r.out).find("Verdict: all three agree"), std::string::npos);
  expect_fits_80_columns(r.out);
  // Long rows of a rank-3 tensor wrap within 80 columns too.
  const CliResult wide =
      run({"explain", "batchnorm", "--x", save("wide.npy", Tensor::randn({3, 2, 7}, 1))});
  ASSERT_EQ(wide.status, 0) << wide.err;
  EXPECT_NE(wide.out.find("[0, 1, :] ["), std::string::npos);
  expect_fits_80_columns(wide.out);
}

TEST_F(CliTest, ExplainBadInput) {
  CliResult r = run({"explain", "batchnorm", "--axis", "2"});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl explain batchnorm", "axis 2");
  r = run({"explain", "batchnorm", "--format", "pdf"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl explain batchnorm", "pdf");
  r = run({"explain", "batchnorm", "--x", path("missing.npy")});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl explain batchnorm", "No such file");
  r = run({"explain"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl explain", "subcommand");
  r = run({"explain", "batchnorm", "--x", save("big.npy", Tensor::zeros({200, 101}))});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl explain batchnorm", "at most 20000");
}

// ---------------------------------------------------------------------------
// npdl gradcheck batchnorm

TEST_F(CliTest, GradcheckOnTheBuiltInInputAgreesWithATablePerTensor) {
  const CliResult r = run({"gradcheck", "batchnorm"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  for (const std::string section : {"dx: gradient with respect to x, shape (4, 3)",
                                    "dgamma: gradient with respect to gamma, shape (3,)",
                                    "dbeta: gradient with respect to beta, shape (3,)"}) {
    EXPECT_NE(r.out.find(section), std::string::npos) << section;
  }
  EXPECT_NE(flat(r.out).find("All gradients agree."), std::string::npos);
  EXPECT_EQ(r.out.find("MISMATCH"), std::string::npos);
  expect_fits_80_columns(r.out);
}

TEST_F(CliTest, GradcheckAgreesForEveryDtypeAxisAndMode) {
  const std::vector<std::vector<std::string>> layouts{{"--shape", "5,3"},
                                                      {"--shape", "4,3,2,2", "--axis", "1"},
                                                      {"--shape", "3,2,4", "--axis", "-1"},
                                                      {"--shape", "3,2,2"},
                                                      {"--shape", "4,3,1,1", "--axis", "1"},
                                                      {"--shape", "4,1,3", "--axis", "1"}};
  for (const std::string dtype : {"float32", "float64"}) {
    for (const auto& layout : layouts) {
      for (bool inference : {false, true}) {
        std::vector<std::string> args{"gradcheck", "batchnorm", "--dtype", dtype};
        args.insert(args.end(), layout.begin(), layout.end());
        if (inference) args.push_back("--inference");
        SCOPED_TRACE(::testing::PrintToString(args));
        const CliResult r = run(args);
        EXPECT_EQ(r.status, 0) << r.err;
      }
    }
  }
}

TEST_F(CliTest, GradcheckCatchesTheBuggyStdAndNamesTheCulprit) {
  const CliResult r = run({"gradcheck", "batchnorm", "--buggy-std"});
  EXPECT_EQ(r.status, cli::kGradientMismatch);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "fused vs finite diff: dx");
  // Autodiff differentiates the forward that ran: it still agrees with finite
  // differences; the fused backward, which assumes the variance, does not.
  std::istringstream lines(r.out);
  std::string line;
  bool autodiff_close = false, fused_mismatch = false;
  while (std::getline(lines, line)) {
    if (line.find("autodiff vs finite diff") != std::string::npos) {
      autodiff_close = autodiff_close || line.find("close") != std::string::npos;
    }
    if (line.find("fused vs finite diff") != std::string::npos) {
      fused_mismatch = fused_mismatch || line.find("MISMATCH") != std::string::npos;
    }
  }
  EXPECT_TRUE(autodiff_close);
  EXPECT_TRUE(fused_mismatch);
}

TEST_F(CliTest, GradcheckTakesAFileAndConvertsItsDtype) {
  const std::string x = save("x.npy", Tensor::randn({6, 2, 3}, 4, DType::Float64));
  const CliResult r =
      run({"gradcheck", "batchnorm", "--x", x, "--axis", "2", "--dtype", "float32"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(flat(r.out).find("x (6, 2, 3) float32"), std::string::npos);
  EXPECT_NE(flat(r.out).find("M = 12"), std::string::npos);
}

TEST_F(CliTest, GradcheckOrderTwoComparesThreeWaysPerAxisCase) {
  for (const std::vector<std::string>& shape_axis :
       {std::vector<std::string>{"--shape", "4,3", "--axis", "0"},
        std::vector<std::string>{"--shape", "4,3,2,2", "--axis", "1"},
        std::vector<std::string>{"--shape", "3,2,3", "--axis", "-1"},
        std::vector<std::string>{"--shape", "4,3,1,1", "--axis", "1"}}) {
    for (const char* dtype : {"float64", "float32"}) {
      std::vector<std::string> args{"gradcheck", "batchnorm", "--order", "2", "--dtype", dtype};
      args.insert(args.end(), shape_axis.begin(), shape_axis.end());
      const CliResult r = run(args);
      EXPECT_EQ(r.status, 0) << r.out << r.err;
      for (const char* row : {"autodiff vs finite diff", "recorded vs finite diff",
                              "hand vs finite diff", "hand vs autodiff", "d/ddy"}) {
        EXPECT_NE(r.out.find(row), std::string::npos) << row;
      }
    }
  }
}

TEST_F(CliTest, GradcheckOrderTwoCatchesTheBuggyStd) {
  const CliResult r = run({"gradcheck", "batchnorm", "--order", "2", "--buggy-std"});
  EXPECT_EQ(r.status, cli::kGradientMismatch) << r.out;
  expect_one_line_error(r, "npdl gradcheck batchnorm", "vs finite diff: d/d");
  // The composite differentiates the forward that ran.
  EXPECT_NE(r.out.find("autodiff vs finite diff  "), std::string::npos);
  EXPECT_NE(r.out.find("hand vs finite diff"), std::string::npos);
}

TEST_F(CliTest, GradcheckBadInput) {
  CliResult r = run({"gradcheck", "batchnorm", "--buggy-std", "--inference"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "excludes");
  r = run({"gradcheck", "batchnorm", "--order", "2", "--inference"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "excludes");
  r = run({"gradcheck", "batchnorm", "--order", "3"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "--order");
  r = run({"gradcheck", "batchnorm", "--shape", "5"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "--shape");
  r = run({"gradcheck", "batchnorm", "--shape", "0,3"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "--shape");
  r = run({"gradcheck", "batchnorm", "--dtype", "float16"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "float16");
  r = run({"gradcheck", "batchnorm", "--shape", "4,3", "--axis", "-3"});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "axis -3");
}

// Every integer option: text that is not a decimal whole number, or one
// outside the option's range (negative for an unsigned one), is a bad
// command line naming the option, the range and the text, never a value
// wrapped, saturated or read in another base.
TEST_F(CliTest, IntegerOptionsRefuseWhatTheirRangeCannotHold) {
  const std::string u64 = "[0, 18446744073709551615]", i32 = "[-2147483648, 2147483647]",
                    sizes = "[1, 9223372036854775807]";
  struct Case {
    std::vector<std::string> command;
    std::string option, value, range, refused;  // refused: the element named
  };
  const std::vector<Case> cases{
      {{"gradcheck", "batchnorm"}, "--seed", "18446744073709551616", u64, ""},
      {{"gradcheck", "batchnorm"}, "--seed", "1e23", u64, ""},
      {{"gradcheck", "batchnorm"}, "--seed", "-1", u64, ""},
      {{"gradcheck", "batchnorm"}, "--seed", "0x10", u64, ""},
      {{"explain", "batchnorm"}, "--seed", "2.5", u64, ""},
      {{"graph", "batchnorm"}, "--seed", "99999999999999999999", u64, ""},
      {{"bn"}, "--axis", "2147483648", i32, ""},
      {{"bn"}, "--axis", "1.0", i32, ""},
      {{"explain", "batchnorm"}, "--axis", "-2147483649", i32, ""},
      {{"graph", "batchnorm"}, "--axis", "one", i32, ""},
      {{"gradcheck", "batchnorm"}, "--axis", "1e1", i32, ""},
      {{"gradcheck", "batchnorm"}, "--shape", "4,-3", sizes, "-3"},
      {{"gradcheck", "batchnorm"}, "--shape", "4,0", sizes, "0"},
      {{"gradcheck", "batchnorm"},
       "--shape",
       "99999999999999999999,3",
       sizes,
       "99999999999999999999"},
      {{"gradcheck", "batchnorm"}, "--order", "3", "[1, 2]", ""},
      {{"gradcheck", "batchnorm"}, "--order", "0x1", "[1, 2]", ""},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.command;
    args.insert(args.end(), {c.option, c.value});
    SCOPED_TRACE(::testing::PrintToString(args));
    const CliResult r = run(args);
    EXPECT_EQ(r.status, cli::kUsage);
    std::string command = "npdl";
    for (const std::string& word : c.command) command += " " + word;
    const std::string text = c.refused.empty() ? c.value : c.refused;
    expect_one_line_error(
        r, command, c.option + ": expected a whole number in " + c.range + ", got '" + text + "'");
  }
}

TEST_F(CliTest, IntegerOptionsTakeTheirWholeRangeInDecimal) {
  const CliResult largest = run({"gradcheck", "batchnorm", "--seed", "18446744073709551615"});
  EXPECT_EQ(largest.status, 0) << largest.err;
  // A leading zero is decimal, not octal: 010 is the seed 10.
  const CliResult ten = run({"explain", "batchnorm", "--seed", "10"});
  ASSERT_EQ(ten.status, 0) << ten.err;
  EXPECT_TRUE(run({"explain", "batchnorm", "--seed", "010"}).out == ten.out) << "010 is not 10";
  EXPECT_TRUE(run({"explain", "batchnorm", "--seed", "8"}).out != ten.out) << "8 is 10";
}

// On float32 features far from zero next to their spread,
// the float32 composite's own error is shown beside the fused kernel's, both
// against float64; only the fused kernel is held to them; checked mode
// raises no false alarm.
TEST_F(CliTest, GradcheckShowsTheFloat32CompositesRoundingWithoutFailing) {
  const std::string x = save("x.npy", Tensor::randn({64, 16}, 21, DType::Float32, 1e4, 1.0));
  const std::string dy = save("dy.npy", Tensor::randn({64, 16}, 22, DType::Float32));
  CliResult r = run({"gradcheck", "batchnorm", "--x", x});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("inexact"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("autodiff in float64 vs fused"), std::string::npos) << r.out;
  r = run({"bn", "--x", x, "--dy", dy, "--backward", "checked", "--out", path("out")});
  EXPECT_EQ(r.status, 0) << r.err;
  r = run({"gradcheck", "batchnorm", "--x", x, "--buggy-std"});
  EXPECT_EQ(r.status, cli::kGradientMismatch) << r.out;
}

// Empty and overflowing shapes exit 1 with a
// message instead of dying on a signal.
TEST_F(CliTest, EmptyAndOverflowingShapesAreOneLineErrors) {
  const std::string empty = save("empty.npy", Tensor::zeros({4, 0}));
  CliResult r = run({"explain", "batchnorm", "--x", empty});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl explain batchnorm", "at least one feature");
  r = run({"bn", "--x", empty, "--backward", "autodiff", "--out", path("out")});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl bn", "at least one feature");
  EXPECT_TRUE(files_in("out").empty());
  r = run({"gradcheck", "batchnorm", "--shape", "2305843009213693952,2"});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl gradcheck batchnorm", "2305843009213693952");
}

// ---------------------------------------------------------------------------
// npdl graph batchnorm

std::string read_text(const std::string& file) {
  std::ifstream in(file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(CliTest, GraphWritesTheClusterWithShapesValuesAndGradients) {
  const CliResult r = run({"graph", "batchnorm", "--out", path("bn.dot")});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string dot = read_text(path("bn.dot"));
  EXPECT_EQ(dot.rfind("digraph", 0), 0u);
  EXPECT_NE(dot.find("subgraph cluster_"), std::string::npos);
  EXPECT_NE(dot.find("label=\"BatchNormal\""), std::string::npos);
  EXPECT_NE(dot.find("label=\"(4, 3)\"]"), std::string::npos) << "shapes on the edges";
  EXPECT_NE(dot.find("label=\"(1, 3)\"]"), std::string::npos);
  // Stable ids, which the SVG keeps and the explanation's page points at.
  EXPECT_NE(dot.find("[id=\"v0\", label="), std::string::npos);
  EXPECT_NE(dot.find("[id=\"e0_3_0\", label="), std::string::npos);
  for (const std::string op : {"mean", "sub", "rsqrt", "add_scalar", "mul", "add"}) {
    EXPECT_NE(dot.find("label=\"" + op + "\\"), std::string::npos) << op;  // op, then a newline
  }
  // Gradients after the backward, on every op vertex and leaf.
  std::size_t grads = 0;
  for (std::size_t at = dot.find("grad "); at != std::string::npos;
       at = dot.find("grad ", at + 1)) {
    ++grads;
  }
  EXPECT_EQ(grads, 12u);
}

TEST_F(CliTest, GraphRendersSvgWithGraphviz) {
  if (std::system("command -v dot > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "Graphviz's dot is not installed (Debian package graphviz)";
  }
  const CliResult r =
      run({"graph", "batchnorm", "--out", path("bn.dot"), "--svg", path("pic dir.svg")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(read_text(path("pic dir.svg")).find("<svg"), std::string::npos);
  EXPECT_EQ(files_in("."), (std::vector<std::string>{"bn.dot", "pic dir.svg"}));
}

// PATH without dot, for one scope.
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& value) {
    const char* old = std::getenv("PATH");
    had_ = old != nullptr;
    if (had_) old_ = old;
    ::setenv("PATH", value.c_str(), 1);
  }
  ~ScopedPath() {
    if (had_) {
      ::setenv("PATH", old_.c_str(), 1);
    } else {
      ::unsetenv("PATH");
    }
  }

 private:
  bool had_ = false;
  std::string old_;
};

TEST_F(CliTest, GraphWithoutGraphvizNamesThePackageAndWritesNothing) {
  fs::create_directories(path("empty_bin"));
  CliResult r;
  {
    ScopedPath no_dot(path("empty_bin"));
    r = run({"graph", "batchnorm", "--out", path("bn.dot"), "--svg", path("bn.svg")});
  }
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl graph batchnorm", "Debian package graphviz");
  EXPECT_EQ(files_in("."), (std::vector<std::string>{"empty_bin"}));
}

TEST_F(CliTest, GraphBadInput) {
  CliResult r = run({"graph", "batchnorm"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl graph batchnorm", "--out is required");
  r = run({"graph", "batchnorm", "--out", path("bn.dot"), "--axis", "9"});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl graph batchnorm", "axis 9");
  EXPECT_FALSE(fs::exists(path("bn.dot")));
  r = run({"graph", "batchnorm", "--out", path("no/such/dir/bn.dot")});
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl graph batchnorm", "cannot write");
}

// ---------------------------------------------------------------------------
// npdl explain batchnorm --format json and html: views of the same
// explanation as the text.

using testing::JsonReader;
using testing::JsonValue;

// The numbers of the explanation's steps as the text prints them, in order.
std::vector<std::string> step_numbers(const JsonValue& json) {
  std::vector<std::string> numbers;
  for (const JsonValue& step : json["steps"].array) {
    for (const JsonValue& tensor : step["tensors"].array) {
      const JsonValue& shown = tensor["numbers"];
      if (shown.is_null() || shown.object.count("summary")) continue;
      for (const JsonValue& v : shown["values"].array) {
        numbers.push_back(cli::format_number(v.number));
      }
    }
  }
  return numbers;
}

// True when `part` is `whole` with elements left out.
bool is_subsequence(const std::vector<std::string>& part, const std::vector<std::string>& whole) {
  std::size_t at = 0;
  for (const std::string& w : whole) at += at < part.size() && part[at] == w;
  return at == part.size();
}

void expect_json_matches_text(const std::string& json_text, const std::string& text) {
  JsonValue json;
  ASSERT_NO_THROW(json = JsonReader::parse(json_text)) << json_text.substr(0, 200);
  const std::vector<std::string> numbers = step_numbers(json);
  EXPECT_GT(numbers.size(), 100u);
  EXPECT_TRUE(is_subsequence(numbers, numeric_tokens(text)))
      << "the steps' numbers are not the text's, in the text's order";
  // Every entry of the walks and the derivation, in the text's order.
  std::size_t at = 0, entries = 0, derivation_step = 0;
  for (const JsonValue& step : json["steps"].array) {
    const std::string kind = step["kind"].string;
    std::string label = step["title"].string;
    if (kind == "derivation") label = "Step " + std::to_string(++derivation_step) + ": " + label;
    if (kind != "forward" && kind != "backward" && kind != "derivation") continue;
    // Entry labels end in a space (and the shape or op) or the line's end.
    at = text.find("\n" + label + (kind == "derivation" ? "\n" : " "), at);
    ASSERT_NE(at, std::string::npos) << label;
    ++entries;
    if (!step["formula"].string.empty()) {
      EXPECT_NE(text.find(step["formula"].string, at), std::string::npos);
      EXPECT_EQ(step["mathml"].string.rfind("<math display=\"block\">", 0), 0u);
    }
  }
  // ... and no entry of the text that the JSON lacks.
  const std::regex entry_label(R"(\n(v\d+ |Step \d+: )[^\n]*\n    )");
  EXPECT_EQ(entries, static_cast<std::size_t>(
                         std::distance(std::sregex_iterator(text.begin(), text.end(), entry_label),
                                       std::sregex_iterator())));
  // Uses point back, at existing steps.
  for (const JsonValue& step : json["steps"].array) {
    for (const JsonValue& used : step["uses"].array) {
      EXPECT_LT(used.number, step["number"].number) << step["title"].string;
      EXPECT_GE(used.number, 1.0);
    }
  }
  // The three-way table, row by row, and the verdict.
  const JsonValue& comparison = json["comparison"];
  EXPECT_EQ(comparison["rows"].array.size(), 9u);
  for (const JsonValue& row : comparison["rows"].array) {
    const std::regex line(row["gradient"].string + " +" + row["pair"].string + " +" +
                          std::regex_replace(cli::format_number(row["max_abs"].number),
                                             std::regex(R"([.+])"), R"(\$&)") +
                          " +.* " + row["verdict"].string + "\n");
    EXPECT_TRUE(std::regex_search(text, line))
        << row["gradient"].string << " " << row["pair"].string;
  }
  EXPECT_NE(flat(text).find(comparison["verdict"].string), std::string::npos);
  EXPECT_EQ(
      json["steps"][static_cast<std::size_t>(json["fused"]["step"].number) - 1]["formula"].string,
      json["fused"]["formula"].string);
}

TEST_F(CliTest, ExplainJsonIsValidAndCarriesTheTextsStepsAndNumbers) {
  for (const std::vector<std::string>& options :
       {std::vector<std::string>{},
        {"--seed", "4", "--epsilon", "0.01"},
        {"--x", save("x.npy", Tensor::randn({5, 2, 3}, 9, DType::Float32)), "--axis", "1"}}) {
    std::vector<std::string> args{"explain", "batchnorm"};
    args.insert(args.end(), options.begin(), options.end());
    const CliResult text = run(args);
    args.insert(args.end(), {"--format", "json"});
    const CliResult json = run(args);
    ASSERT_EQ(json.status, 0) << json.err;
    EXPECT_EQ(json.err, "");
    expect_json_matches_text(json.out, text.out);
  }
}

TEST_F(CliTest, ExplainOrder2WalksTheFirstBackwardAndAgreesFourWays) {
  const CliResult text = run({"explain", "batchnorm", "--order", "2"});
  ASSERT_EQ(text.status, 0) << text.err;
  expect_fits_80_columns(text.out);
  EXPECT_NE(flat(text.out).find("Verdict: all four agree for d/dx, d/dgamma and d/ddy."),
            std::string::npos);
  for (const layers::DerivationStep& step : layers::batchnorm_double_derivation()) {
    EXPECT_NE(flat(text.out).find(step.title), std::string::npos) << step.title;
  }
  const CliResult json = run({"explain", "batchnorm", "--order", "2", "--format", "json"});
  ASSERT_EQ(json.status, 0) << json.err;
  const JsonValue parsed = JsonReader::parse(json.out);
  EXPECT_EQ(parsed["order"].number, 2.0);
  EXPECT_EQ(parsed["comparison"]["rows"].array.size(), 12u);
  // More vertices than the forward's 12: the first backward is on the graph.
  EXPECT_GT(parsed["graph"]["vertices"].array.size(), 24u);
  // Numbers and entries as the text shows them (the comparison has 12 rows,
  // not 9, so the shared check runs on the steps only).
  EXPECT_TRUE(is_subsequence(step_numbers(parsed), numeric_tokens(text.out)));
  // The walk's gradient at dy is the hand-derived double backward's ddy.
  const cli::BatchNormProblem problem = cli::make_problem(cli::ProblemSpec{});
  const Tensor hand = cli::second_order_gradients(problem, cli::SecondOrderWay::Hand)[2];
  bool found = false;
  for (const JsonValue& step : parsed["steps"].array) {
    if (step["title"].string != "dL2/ddy") continue;
    found = true;
    const JsonValue& values = step["tensors"][0]["numbers"]["values"];
    ASSERT_EQ(values.array.size(), static_cast<std::size_t>(hand.size()));
    for (std::size_t i = 0; i < values.array.size(); ++i) {
      EXPECT_NEAR(values[i].number, hand.to_vector()[i], 1e-12);
    }
  }
  EXPECT_TRUE(found);
  const CliResult bad = run({"explain", "batchnorm", "--order", "3", "--format", "json"});
  EXPECT_EQ(bad.status, cli::kUsage);
  expect_one_line_error(bad, "npdl explain batchnorm", "--order");
}

TEST_F(CliTest, ExplainJsonNamesTheGraphsVerticesAndEdges) {
  const JsonValue json = JsonReader::parse(run({"explain", "batchnorm", "--format", "json"}).out);
  std::set<std::string> vertices, edges;
  for (const JsonValue& v : json["graph"]["vertices"].array) vertices.insert(v["id"].string);
  for (const JsonValue& e : json["graph"]["edges"].array) {
    edges.insert(e["id"].string);
    EXPECT_TRUE(vertices.count(e["from"].string) && vertices.count(e["to"].string));
  }
  EXPECT_EQ(vertices.size(), 12u);
  for (const JsonValue& step : json["steps"].array) {
    for (const JsonValue& v : step["vertices"].array) EXPECT_TRUE(vertices.count(v.string));
    for (const JsonValue& e : step["edges"].array) EXPECT_TRUE(edges.count(e.string));
  }
  // The vertex the step "v4 xmu = sub(x, mean)" is about computes xmu.
  bool found = false;
  for (const JsonValue& v : json["graph"]["vertices"].array) {
    if (v["name"].string != "xmu") continue;
    found = true;
    EXPECT_EQ(v["op"].string, "sub");
    EXPECT_EQ(v["expression"].string, "sub(x, mean)");
    EXPECT_EQ(v["value"]["values"].array.size(), 12u);
  }
  EXPECT_TRUE(found);
}

bool have_dot() { return std::system("command -v dot > /dev/null 2>&1") == 0; }

// The element of `page` that starts with `open`, up to `close`.
std::string element(const std::string& page, const std::string& open, const std::string& close) {
  const std::size_t start = page.find(open);
  if (start == std::string::npos) return "";
  const std::size_t end = page.find(close, start);
  return page.substr(start + open.size(), end - start - open.size());
}

TEST_F(CliTest, ExplainHtmlIsOneSelfContainedPageOfTheJson) {
  if (!have_dot()) GTEST_SKIP() << "Graphviz's dot is not installed (Debian package graphviz)";
  const CliResult r =
      run({"explain", "batchnorm", "--seed", "2", "--format", "html", "-o", path("bn page.html")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("wrote " + path("bn page.html")), std::string::npos) << r.out;
  EXPECT_EQ(files_in("."), (std::vector<std::string>{"bn page.html"}));
  const std::string page = read_text(path("bn page.html"));
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  // Nothing to fetch: no remote or protocol-relative address, no script or
  // style from a file, and a policy that forbids requests.
  EXPECT_FALSE(std::regex_search(
      page, std::regex(R"((src|href)\s*=\s*["']?\s*(https?:)?//)", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(page, std::regex(R"(<script[^>]*\ssrc\s*=)", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(page, std::regex(R"(<link\b)", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(page, std::regex(R"(@import|url\s*\()", std::regex::icase)));
  EXPECT_NE(page.find("content=\"default-src 'none';"), std::string::npos);
  // The graph inline, its elements named by the ids the steps use.
  EXPECT_NE(page.find("<svg"), std::string::npos);
  EXPECT_EQ(page.find("<?xml"), std::string::npos);
  // The data the script renders is the JSON output, byte for byte.
  const CliResult json = run({"explain", "batchnorm", "--seed", "2", "--format", "json"});
  const std::string embedded =
      element(page, "<script type=\"application/json\" id=\"explanation\">", "</script>");
  EXPECT_TRUE(embedded == json.out) << "the page's data is not --format json's";
  // Kept in a variable: a range-for over a member of the temporary parse()
  // returns would read it after its end.
  const JsonValue explanation = JsonReader::parse(json.out);
  for (const JsonValue& v : explanation["graph"]["vertices"].array) {
    EXPECT_NE(page.find("<g id=\"" + v["id"].string + "\" class=\"node\""), std::string::npos)
        << v["id"].string;
  }
  for (const JsonValue& e : explanation["graph"]["edges"].array) {
    EXPECT_NE(page.find("<g id=\"" + e["id"].string + "\" class=\"edge\""), std::string::npos)
        << e["id"].string;
  }
}

TEST_F(CliTest, ExplainOutputThatCannotBeWrittenNamesThePathAndLeavesNoFile) {
  for (const std::string format : {"json", "html", "text"}) {
    if (format == "html" && !have_dot()) continue;
    // A folder that does not exist, and a folder where the file should be.
    fs::create_directories(path("taken.out"));
    for (const std::string& target : {path("no/such/dir/out"), path("taken.out")}) {
      const CliResult r = run({"explain", "batchnorm", "--format", format, "-o", target});
      EXPECT_EQ(r.status, cli::kFailed) << format << " " << target;
      expect_one_line_error(r, "npdl explain batchnorm", "cannot write '" + target + "'");
      EXPECT_EQ(r.out, "");
      EXPECT_EQ(files_in("."), (std::vector<std::string>{"taken.out"})) << "a partial file left";
      EXPECT_TRUE(files_in("taken.out").empty());
    }
  }
}

TEST_F(CliTest, ExplainHtmlWithoutGraphvizNamesThePackageAndWritesNothing) {
  fs::create_directories(path("empty_bin"));
  CliResult r;
  {
    ScopedPath no_dot(path("empty_bin"));
    r = run({"explain", "batchnorm", "--format", "html", "-o", path("bn.html")});
  }
  EXPECT_EQ(r.status, cli::kFailed);
  expect_one_line_error(r, "npdl explain batchnorm", "Debian package graphviz");
  EXPECT_NE(r.err.find(path("bn.html")), std::string::npos) << r.err;
  EXPECT_EQ(files_in("."), (std::vector<std::string>{"empty_bin"}));
}

TEST_F(CliTest, ExplainJsonAndHtmlGiveTheTextsTypedErrors) {
  for (const std::string format : {"json", "html"}) {
    const std::string out = path("out." + format);
    CliResult r = run({"explain", "batchnorm", "--format", format, "-o", out, "--axis", "2"});
    EXPECT_EQ(r.status, cli::kFailed);
    expect_one_line_error(r, "npdl explain batchnorm", "axis 2");
    r = run({"explain", "batchnorm", "--format", format, "--x", path("missing.npy")});
    EXPECT_EQ(r.status, cli::kFailed);
    expect_one_line_error(r, "npdl explain batchnorm", "No such file");
    r = run({"explain", "batchnorm", "--format", format, "--seed", "-1"});
    EXPECT_EQ(r.status, cli::kUsage);
    expect_one_line_error(r, "npdl explain batchnorm", "--seed");
    r = run({"explain", "batchnorm", "--format", format, "--epsilon", "tiny"});
    EXPECT_EQ(r.status, cli::kUsage);
    expect_one_line_error(r, "npdl explain batchnorm", "--epsilon");
    r = run({"explain", "batchnorm", "--format", format, "-o"});
    EXPECT_EQ(r.status, cli::kUsage);
    expect_one_line_error(r, "npdl explain batchnorm", "-o");
    EXPECT_TRUE(files_in(".").empty()) << format;
  }
}

// ---------------------------------------------------------------------------
// Help and the top level

TEST_F(CliTest, EveryCommandHasHelpThatFits80Columns) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> commands{
      {{"--help"}, "Usage: npdl [OPTIONS] [SUBCOMMAND]"},
      {{"bn", "--help"}, "Usage: npdl bn [OPTIONS]"},
      {{"explain", "--help"}, "Usage: npdl explain [OPTIONS] [SUBCOMMAND]"},
      {{"explain", "batchnorm", "--help"}, "Usage: npdl explain batchnorm [OPTIONS]"},
      {{"graph", "batchnorm", "--help"}, "Usage: npdl graph batchnorm [OPTIONS]"},
      {{"gradcheck", "batchnorm", "-h"}, "Usage: npdl gradcheck batchnorm [OPTIONS]"}};
  for (const auto& [args, usage] : commands) {
    SCOPED_TRACE(usage);
    const CliResult r = run(args);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.err, "");
    EXPECT_NE(r.out.find(usage), std::string::npos) << r.out;
    expect_fits_80_columns(r.out);
  }
  EXPECT_NE(run({"bn", "--help"}).out.find("--backward"), std::string::npos);
}

TEST_F(CliTest, TopLevelErrors) {
  CliResult r = run({});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl", "subcommand");
  r = run({"train"});
  EXPECT_EQ(r.status, cli::kUsage);
  expect_one_line_error(r, "npdl", "train");
}

}  // namespace
}  // namespace npdl
#endif  // NPDL_HAVE_CLI
