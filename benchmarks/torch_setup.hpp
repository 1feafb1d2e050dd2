#pragma once
// LibTorch's side of the training-step benchmarks: the thread count for
// LibTorch and for OpenBLAS (when it is the BLAS loaded), and which BLAS
// library LibTorch's figures come from; the timed training step.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <torch/torch.h>

#include <string>

namespace npdl::bench {

inline void set_torch_threads(int threads) {
  torch::set_num_threads(threads);
  using SetThreads = void (*)(int);
  if (auto* fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    fn(threads);
}

inline std::string torch_blas() {
  Dl_info info{};
  if (void* fn = dlsym(RTLD_DEFAULT, "sgemm_"); fn != nullptr && dladdr(fn, &info) != 0)
    return info.dli_fname;
  return "unknown";
}

/// Times training steps of `net` on (x, target): SGD with `lr` and
/// `momentum`, cross-entropy on the logits net->forward(x) returns, one
/// warm-up step first; items are samples.
template <class Net>
void time_training_steps(benchmark::State& state, Net& net, const torch::Tensor& x,
                         const torch::Tensor& target, double lr, double momentum) {
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(lr).momentum(momentum));
  auto step = [&] {
    sgd.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(x), target);
    loss.backward();
    sgd.step();
    return loss.item<float>();
  };
  step();  // warm up
  for (auto _ : state) benchmark::DoNotOptimize(step());
  state.SetItemsProcessed(state.iterations() * x.size(0));
}

}  // namespace npdl::bench
