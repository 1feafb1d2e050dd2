// LibTorch as the peer of the LSTM benchmark: torch::nn::LSTM (batch
// first, one layer) and torch::nn::Linear on its last step's output, cross
// entropy on logits, SGD with momentum, at the same thread count (OpenBLAS
// too, when it is the BLAS loaded).
#include <torch/torch.h>

#include "bench_lstm.hpp"
#include "torch_setup.hpp"

namespace npdl::bench {
namespace {

struct SequenceNetImpl : torch::nn::Module {
  SequenceNetImpl() {
    namespace nn = torch::nn;
    lstm = register_module("lstm", nn::LSTM(nn::LSTMOptions(kFeatures, kHidden).batch_first(true)));
    fc = register_module("fc", nn::Linear(kHidden, kClasses));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor h = std::get<0>(lstm->forward(x));  // (N, T, H)
    return fc(h.select(1, kSteps - 1));
  }
  torch::nn::LSTM lstm{nullptr};
  torch::nn::Linear fc{nullptr};
};

void BM_TorchLstmStep(benchmark::State& state, std::int64_t batch, int threads) {
  set_torch_threads(threads);
  torch::manual_seed(1);
  auto net = std::make_shared<SequenceNetImpl>();
  const torch::Tensor x = torch::rand({batch, kSteps, kFeatures});
  const torch::Tensor target = torch::arange(batch, torch::kLong) % kClasses;
  time_training_steps(state, net, x, target, kLstmLr, kLstmMomentum);
}

}  // namespace

void register_torch_lstm_step(std::int64_t batch, int threads) {
  benchmark::RegisterBenchmark(lstm_step_name("plain", "torch", batch, threads).c_str(),
                               BM_TorchLstmStep, batch, threads)
      ->Repetitions(5)
      ->ReportAggregatesOnly(true)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

std::string torch_lstm_setup() {
  const std::string blas = torch_blas();
  return "LibTorch " + std::string(TORCH_VERSION) + ", BLAS " + blas;
}

}  // namespace npdl::bench
