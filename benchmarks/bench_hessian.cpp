// What a Hessian-vector product costs on the benchmark MLP
// (784-100-100-100-10, sigmoid, softmax cross-entropy) against a gradient,
// in time and in peak memory held by tensors (StorageStats), on a lean graph.
#include <vector>

#include "autodiff/hessian.hpp"
#include "bench_common.hpp"
#include "ops/ops.hpp"
#include "tensor/parallel.hpp"
#include "tensor/storage.hpp"

namespace npdl::bench {
namespace {

struct Mlp {
  Tensor x, y;
  std::vector<Tensor> params;  // W1, b1, W2, b2, W3, b3, W4, b4
};

Mlp make_mlp(std::int64_t batch) {
  Mlp m;
  m.x = Tensor::uniform({batch, kMlpInputs}, 1);
  std::vector<double> onehot(static_cast<std::size_t>(batch * kMlpClasses), 0.0);
  for (std::int64_t i = 0; i < batch; ++i) onehot[i * kMlpClasses + i % kMlpClasses] = 1.0;
  m.y = Tensor::from_vector({batch, kMlpClasses}, onehot, DType::Float32);
  std::int64_t n_in = kMlpInputs;
  for (int layer = 0; layer <= kMlpHiddenLayers; ++layer) {
    const std::int64_t n_out = layer == kMlpHiddenLayers ? kMlpClasses : kMlpHidden;
    m.params.push_back(Tensor::uniform({n_in, n_out}, 10 + layer, DType::Float32, -0.1, 0.1));
    m.params.push_back(Tensor::zeros({n_out}, DType::Float32));
    n_in = n_out;
  }
  return m;
}

Var loss_of(const Mlp& m, Graph& graph, std::vector<Var>& params) {
  for (const Tensor& p : m.params) params.push_back(graph.variable(p));
  Var h = graph.input(m.x);
  for (std::size_t i = 0; i + 2 < params.size(); i += 2) {
    h = ops::sigmoid(ops::matmul(h, params[i]) + params[i + 1]);
  }
  const Var logits = ops::matmul(h, params[params.size() - 2]) + params.back();
  return -ops::sum(ops::log_softmax(logits) * Var(m.y)) / double(m.x.shape()[0]);
}

enum class Product { Gradient, HessianVector };

void BM_Hessian(benchmark::State& state, std::int64_t batch, Product product) {
  set_num_threads(1);
  const Mlp m = make_mlp(batch);
  std::vector<Tensor> v;
  for (std::size_t i = 0; i < m.params.size(); ++i) {
    v.push_back(Tensor::randn(m.params[i].shape(), 100 + i));
  }
  std::size_t peak = 0;
  for (auto _ : state) {
    reset_storage_peak();
    const std::size_t before = storage_stats().bytes_in_use;
    Graph graph(GraphOptions{false});
    std::vector<Var> params;
    const Var loss = loss_of(m, graph, params);
    if (product == Product::Gradient) {
      benchmark::DoNotOptimize(grad({loss}, params));
    } else {
      benchmark::DoNotOptimize(hvp(loss, params, v));
    }
    peak = std::max(peak, storage_stats().peak_bytes_in_use - before);
  }
  state.counters["peak_MB"] = double(peak) / (1 << 20);
  state.SetItemsProcessed(state.iterations() * batch);
}

}  // namespace

void register_hessian() {
  for (std::int64_t batch : {60, 1000}) {
    for (auto [product, name] :
         {std::pair{Product::Gradient, "gradient"}, std::pair{Product::HessianVector, "hvp"}}) {
      benchmark::RegisterBenchmark(
          ("hessian/mlp/" + std::string(name) + "/batch:" + std::to_string(batch)).c_str(),
          BM_Hessian, batch, product)
          ->Repetitions(kRepetitions)
          ->ReportAggregatesOnly(true)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace npdl::bench
