// One training step of the benchmark MLP (784-100-100-100-10,
// sigmoid, softmax cross-entropy, plain SGD), with and without BatchNormal
// before each hidden activation: npdl's Model::train_on_batch here, the same
// network and optimiser in LibTorch's C++ frontend in bench_torch.cpp.
#include <memory>
#include <vector>

#include "bench_common.hpp"
#include "layers/activation.hpp"
#include "layers/batch_norm/batch_normal.hpp"
#include "layers/linear.hpp"
#include "model/model.hpp"
#include "tensor/parallel.hpp"
#include "tensor/tensor.hpp"

namespace npdl::bench {

const std::vector<TrainWorkload>& train_workloads() {
  static const std::vector<TrainWorkload> w{{true, 60}, {true, 256}, {false, 60}, {false, 256}};
  return w;
}

std::string train_name(const TrainWorkload& w, const char* impl, int threads) {
  return std::string("train/mlp/") + (w.batchnorm ? "bn" : "plain") +
         "/batch:" + std::to_string(w.batch) + "/" + impl + "/threads:" + std::to_string(threads);
}

namespace {

std::unique_ptr<model::Model> make_mlp(bool batchnorm) {
  auto m = std::make_unique<model::Model>();
  for (int layer = 0; layer < kMlpHiddenLayers; ++layer) {
    const std::int64_t n_in = layer == 0 ? kMlpInputs : 0;
    if (batchnorm) {
      m->add<layers::Linear>(kMlpHidden, n_in);
      m->add<layers::BatchNormal>(kMlpBatchNormEpsilon);
      m->add<layers::Activation>("sigmoid");
    } else {
      m->add<layers::Dense>(kMlpHidden, n_in, "glorot_uniform", "sigmoid");
    }
  }
  m->add<layers::Dense>(kMlpClasses, 0, "glorot_uniform", "softmax");
  model::OptimizerOptions options;
  options.lr = kMlpLearningRate;
  m->compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
             model::get_optimizer("SGD", options));
  return m;
}

void BM_TrainNpdl(benchmark::State& state, TrainWorkload w, int threads) {
  set_num_threads(threads);
  auto net = make_mlp(w.batchnorm);
  const Tensor x = Tensor::uniform({w.batch, kMlpInputs}, 1);
  std::vector<int> labels(static_cast<std::size_t>(w.batch));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>(i % kMlpClasses);
  const Tensor y = model::one_hot(labels, kMlpClasses);
  net->train_on_batch(x, y);  // sizes the caches before timing
  for (auto _ : state) {
    const model::BatchResult r = net->train_on_batch(x, y);
    benchmark::DoNotOptimize(r.loss);
  }
  state.SetItemsProcessed(state.iterations() * w.batch);
}

}  // namespace

void register_train_npdl(const TrainWorkload& w, int threads) {
  benchmark::RegisterBenchmark(train_name(w, "npdl", threads).c_str(), BM_TrainNpdl, w, threads)
      ->Repetitions(kRepetitions)
      ->ReportAggregatesOnly(true)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace npdl::bench
