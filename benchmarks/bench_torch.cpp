// LibTorch as the peer (SPEC section 5): torch::batch_norm with autograd,
// and the same composite of primitives (mean, sub, mul, mean, add, rsqrt,
// mul, mul, add) under LibTorch's autograd, at the same thread count.
#include <torch/torch.h>

#include "bench_common.hpp"

namespace npdl::bench {
namespace {

constexpr double kEpsilon = 1e-5;

struct TorchData {
  torch::Tensor x, dy, gamma, beta, running_mean, running_var;
  std::vector<std::int64_t> reduced, param_view;
  TorchData(const Workload& w, bool f64) {
    torch::manual_seed(1);
    const auto opts = torch::TensorOptions().dtype(f64 ? torch::kFloat64 : torch::kFloat32);
    x = (torch::randn(w.shape, opts) * 2.0 + 0.5).requires_grad_(true);
    dy = torch::randn(w.shape, opts);
    const std::int64_t c = w.shape[w.axis];
    gamma = (torch::rand({c}, opts) + 0.5).requires_grad_(true);
    beta = torch::randn({c}, opts).requires_grad_(true);
    running_mean = torch::zeros({c}, opts);
    running_var = torch::ones({c}, opts);
    for (int i = 0; i < static_cast<int>(w.shape.size()); ++i) {
      if (i != w.axis) reduced.push_back(i);
      param_view.push_back(i == w.axis ? c : 1);
    }
  }

  torch::Tensor native() const {
    return torch::batch_norm(x, gamma, beta, running_mean, running_var, /*training=*/true,
                             /*momentum=*/0.1, kEpsilon, /*cudnn_enabled=*/false);
  }

  torch::Tensor composite() const {
    const auto mean = x.mean(reduced, /*keepdim=*/true);
    const auto xmu = x - mean;
    const auto var = (xmu * xmu).mean(reduced, /*keepdim=*/true);
    const auto invstd = torch::rsqrt(var + kEpsilon);
    const auto xhat = xmu * invstd;
    return gamma.view(param_view) * xhat + beta.view(param_view);
  }

  torch::Tensor forward(bool native_bn) const { return native_bn ? native() : composite(); }

  void backward(const torch::Tensor& y, bool retain) const {
    auto g = torch::autograd::grad({y}, {x, gamma, beta}, {dy}, retain);
    benchmark::DoNotOptimize(g[0].data_ptr());
  }
};

void BM_Torch(benchmark::State& state, const Workload& w, bool native_bn, Pass pass, bool f64,
              int threads) {
  torch::set_num_threads(threads);
  const TorchData d(w, f64);
  const double bytes = double(pass_tensors(pass)) * double(d.x.numel()) * (f64 ? 8.0 : 4.0);
  if (pass == Pass::Backward) {
    const torch::Tensor y = d.forward(native_bn);
    FloorCounters counters(state, bytes, threads);
    for (auto _ : state) d.backward(y, /*retain=*/true);
  } else {
    FloorCounters counters(state, bytes, threads);
    for (auto _ : state) {
      torch::Tensor y = d.forward(native_bn);
      if (pass == Pass::ForwardBackward) d.backward(y, /*retain=*/false);
      benchmark::DoNotOptimize(y.data_ptr());
    }
  }
}

}  // namespace

void register_torch(const Workload& w, Pass pass, bool f64, int threads) {
  for (bool native_bn : {true, false}) {
    benchmark::RegisterBenchmark(
        bn_name(w, native_bn ? "torch_native" : "torch_composite", pass, f64, threads).c_str(),
        BM_Torch, w, native_bn, pass, f64, threads)
        ->Repetitions(5)
        ->ReportAggregatesOnly(true)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace npdl::bench
