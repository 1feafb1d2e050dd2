// The LSTM benchmark: one training step (forward, loss, backward through
// time, SGD with momentum) of the sequential Fashion-MNIST network in npdl,
// its LSTM cell fused (the hand-derived backward) or composed of
// primitives (autodiff), with and without recurrent batch norm; and
// LibTorch's torch::nn::LSTM beside it when CMake found Torch
// (bench_lstm_torch.cpp). Batch 60 and 256, 1 and 2 threads, samples per
// second. Heap reuse as in the CNN benchmark (Note [Heap reuse] in
// bench_cnn.cpp).
#include "bench_lstm.hpp"

#include "bench_main.hpp"
#include "npdl.hpp"

namespace npdl::bench {

std::string lstm_step_name(const char* variant, const char* impl, std::int64_t batch, int threads) {
  return std::string("lstm_step/") + variant + "/" + impl + "/batch:" + std::to_string(batch) +
         "/threads:" + std::to_string(threads);
}

namespace {

benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b) {
  return b->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime()->Unit(
      benchmark::kMillisecond);
}

void BM_NpdlLstmStep(benchmark::State& state, layers::BackwardMode mode, bool batch_norm,
                     std::int64_t batch, int threads) {
  set_num_threads(threads);
  set_seed(1);
  layers::GateOptions gates;
  gates.mode = mode;
  layers::RecurrentBatchNorm bn;
  bn.enabled = batch_norm;
  model::Model m;
  m.add<layers::LSTM>(kHidden, layers::RecurrentOptions{}, gates, bn);
  m.add<layers::Linear>(kClasses);
  model::OptimizerOptions options;
  options.lr = kLstmLr;
  m.compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
            std::make_shared<model::Momentum>(kLstmMomentum, options));
  const Tensor x = Tensor::uniform({batch, kSteps, kFeatures}, 2);
  std::vector<int> labels;
  for (std::int64_t i = 0; i < batch; ++i) labels.push_back(int(i % kClasses));
  const Tensor y = model::one_hot(labels, kClasses);
  m.train_on_batch(x, y);  // warm the storage cache
  for (auto _ : state) benchmark::DoNotOptimize(m.train_on_batch(x, y).loss);
  state.SetItemsProcessed(state.iterations() * batch);
}

void register_all() {
  struct Variant {
    const char* name;
    layers::BackwardMode mode;
    bool batch_norm;
  };
  const Variant variants[] = {{"fused", layers::BackwardMode::Fused, false},
                              {"autodiff", layers::BackwardMode::Autodiff, false},
                              {"bn_fused", layers::BackwardMode::Fused, true}};
  for (int threads : {1, 2}) {
    for (std::int64_t batch : {60, 256}) {
      for (const Variant& v : variants) {
        configure(
            benchmark::RegisterBenchmark(lstm_step_name(v.name, "npdl", batch, threads).c_str(),
                                         BM_NpdlLstmStep, v.mode, v.batch_norm, batch, threads));
      }
#ifdef NPDL_BENCH_TORCH
      register_torch_lstm_step(batch, threads);
#endif
    }
  }
}

}  // namespace
}  // namespace npdl::bench

int main(int argc, char** argv) {
#ifdef NPDL_BENCH_TORCH
  const std::string peer = npdl::bench::torch_lstm_setup();
#else
  const std::string peer;
#endif
  return npdl::bench::run_benchmarks(argc, argv, npdl::bench::register_all, peer);
}
