// LibTorch as the peer of the CNN benchmarks: the Fashion-MNIST CNN in the
// C++ frontend (torch::nn, SGD with momentum 0.9, cross-entropy on logits)
// and torch::conv2d forward + backward under autograd, at the same thread
// count. OpenBLAS (Debian's libblas.so.3 alternative) gets the same thread
// count through openblas_set_num_threads when it is the BLAS loaded.
#include <torch/torch.h>

#include "bench_cnn.hpp"
#include "torch_setup.hpp"

namespace npdl::bench {
namespace {

struct CnnImpl : torch::nn::Module {
  explicit CnnImpl(bool batchnorm) : bn(batchnorm) {
    namespace nn = torch::nn;
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(1, 32, 3)));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(32, 64, 3)));
    fc1 = register_module("fc1", nn::Linear(64 * 5 * 5, 128));
    fc2 = register_module("fc2", nn::Linear(128, 10));
    if (bn) {
      bn1 = register_module("bn1", nn::BatchNorm2d(32));
      bn2 = register_module("bn2", nn::BatchNorm2d(64));
      bn3 = register_module("bn3", nn::BatchNorm1d(128));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    x = conv1(x);
    if (bn) x = bn1(x);
    x = torch::max_pool2d(torch::relu(x), 2);
    x = conv2(x);
    if (bn) x = bn2(x);
    x = torch::max_pool2d(torch::relu(x), 2);
    x = fc1(x.flatten(1));
    if (bn) x = bn3(x);
    return fc2(torch::relu(x));
  }
  bool bn;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::BatchNorm1d bn3{nullptr};
};

void BM_TorchCnnStep(benchmark::State& state, bool batchnorm, std::int64_t batch, int threads) {
  set_torch_threads(threads);
  torch::manual_seed(1);
  auto net = std::make_shared<CnnImpl>(batchnorm);
  const torch::Tensor x = torch::rand({batch, 1, 28, 28});
  const torch::Tensor target = torch::arange(batch, torch::kLong) % 10;
  time_training_steps(state, net, x, target, kCnnLr, kCnnMomentum);
}

void BM_TorchConv(benchmark::State& state, const ConvShape& s, int threads) {
  set_torch_threads(threads);
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({s.N, s.C, s.H, s.W}).requires_grad_(true);
  const torch::Tensor w = (torch::randn({s.F, s.C, s.K, s.K}) * 0.05).requires_grad_(true);
  torch::Tensor gy;
  {
    torch::NoGradGuard no_grad;
    gy = torch::randn_like(torch::conv2d(x, w, {}, s.stride, s.padding));
  }
  for (auto _ : state) {
    const torch::Tensor y = torch::conv2d(x, w, {}, s.stride, s.padding);
    auto g = torch::autograd::grad({y}, {x, w}, {gy});
    benchmark::DoNotOptimize(g[1].data_ptr());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(3.0 * s.flops_fwd() * 1e-9 * state.iterations(),
                                                 benchmark::Counter::kIsRate);
}

}  // namespace

void register_torch_cnn_step(bool batchnorm, std::int64_t batch, int threads) {
  configure(benchmark::RegisterBenchmark(cnn_step_name(batchnorm, "torch", batch, threads).c_str(),
                                         BM_TorchCnnStep, batchnorm, batch, threads));
}

void register_torch_conv(const ConvShape& s, int threads) {
  configure(benchmark::RegisterBenchmark(conv_name(s, "torch", threads).c_str(), BM_TorchConv, s,
                                         threads));
}

std::string torch_setup() {
  const std::string blas = torch_blas();
  return "LibTorch " + std::string(TORCH_VERSION) + ", BLAS " + blas + ", oneDNN (mkldnn) " +
         (at::hasMKLDNN() ? "on" : "absent");
}

}  // namespace npdl::bench
