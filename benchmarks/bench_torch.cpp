// LibTorch as the peer: torch::batch_norm with autograd,
// and the same composite of primitives (mean, sub, mul, mean, add, rsqrt,
// mul, mul, add) under LibTorch's autograd, at the same thread count.
#include <dlfcn.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>

#include "bench_common.hpp"

namespace npdl::bench {
namespace {

// Note [Peer at its best]
// Debian's LibTorch calls whatever libblas.so.3 the alternatives system
// points at; with OpenBLAS there, OpenBLAS runs its own threads (as many as
// cores) beside LibTorch's OpenMP threads unless told otherwise. At its best
// (NPDL_BENCH_PEER unset or "best") every LibTorch benchmark limits
// OpenBLAS to the threads it grants LibTorch; with NPDL_BENCH_PEER=defaults
// it does not. Heap reuse and OpenMP's waiting are the process's set-up
// (benchmarks/run sets GLIBC_TUNABLES and OMP_WAIT_POLICY for the best run),
// recorded in the context.
bool peer_at_best() {
  const char* mode = std::getenv("NPDL_BENCH_PEER");
  return mode == nullptr || std::string(mode) != "defaults";
}

using SetBlasThreads = void (*)(int);

SetBlasThreads openblas_thread_setter() {
  return reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}

void set_peer_threads(int threads) {
  torch::set_num_threads(threads);
  if (!peer_at_best()) return;
  if (const SetBlasThreads set = openblas_thread_setter()) set(threads);
}

// The shared object that defines sgemm_, LibTorch's BLAS entry point.
std::string loaded_blas() {
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info{};
  if (sgemm == nullptr || dladdr(sgemm, &info) == 0 || info.dli_fname == nullptr) return "none";
  char resolved[4096];
  return realpath(info.dli_fname, resolved) ? resolved : info.dli_fname;
}

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
  set_peer_threads(threads);
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

// The benchmark MLP as a LibTorch user writes it; BatchNorm1d's momentum
// 0.1 is npdl's 0.9 (LibTorch weighs the new statistics by momentum).
torch::nn::Sequential make_torch_mlp(bool batchnorm) {
  torch::nn::Sequential net;
  std::int64_t n_in = kMlpInputs;
  for (int layer = 0; layer < kMlpHiddenLayers; ++layer) {
    net->push_back(torch::nn::Linear(n_in, kMlpHidden));
    if (batchnorm) {
      net->push_back(torch::nn::BatchNorm1d(
          torch::nn::BatchNorm1dOptions(kMlpHidden).eps(kMlpBatchNormEpsilon).momentum(0.1)));
    }
    net->push_back(torch::nn::Sigmoid());
    n_in = kMlpHidden;
  }
  net->push_back(torch::nn::Linear(kMlpHidden, kMlpClasses));
  return net;
}

void BM_TrainTorch(benchmark::State& state, TrainWorkload w, int threads) {
  set_peer_threads(threads);
  torch::manual_seed(1);
  torch::nn::Sequential net = make_torch_mlp(w.batchnorm);
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(kMlpLearningRate));
  const torch::Tensor x = torch::rand({w.batch, kMlpInputs});
  const torch::Tensor labels = torch::arange(w.batch, torch::kLong).remainder(kMlpClasses);
  const auto step = [&] {
    sgd.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(x), labels);
    loss.backward();
    sgd.step();
    return loss;
  };
  step();  // first-call set-up out of the timing, as for npdl
  for (auto _ : state) {
    const torch::Tensor loss = step();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * w.batch);
}

}  // namespace

void describe_torch_peer() {
  benchmark::AddCustomContext("peer_blas", loaded_blas());
  benchmark::AddCustomContext("peer_blas_threads", peer_at_best() && openblas_thread_setter()
                                                       ? "limited to the benchmark's threads"
                                                       : "BLAS default");
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  benchmark::AddCustomContext("peer_allocator",
                              tunables ? std::string("glibc malloc, GLIBC_TUNABLES=") + tunables
                                       : "glibc malloc, defaults");
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  benchmark::AddCustomContext("peer_omp_wait_policy",
                              wait_policy ? wait_policy : "libgomp default");
  benchmark::AddCustomContext("peer_mode", peer_at_best() ? "best" : "defaults");
}

void register_train_torch(const TrainWorkload& w, int threads) {
  benchmark::RegisterBenchmark(train_name(w, "torch", threads).c_str(), BM_TrainTorch, w, threads)
      ->Repetitions(kRepetitions)
      ->ReportAggregatesOnly(true)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

void register_torch(const Workload& w, Pass pass, bool f64, int threads) {
  for (bool native_bn : {true, false}) {
    benchmark::RegisterBenchmark(
        bn_name(w, native_bn ? "torch_native" : "torch_composite", pass, f64, threads).c_str(),
        BM_Torch, w, native_bn, pass, f64, threads)
        ->Repetitions(kRepetitions)
        ->ReportAggregatesOnly(true)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace npdl::bench
