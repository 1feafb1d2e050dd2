// The CNN benchmarks: one training step (forward, loss,
// backward, SGD with momentum 0.9) of the Fashion-MNIST CNN with and
// without BatchNormal, batch 60 and 256, 1 and 2 threads, in samples per
// second; and conv2d forward + backward alone on ResNet-like shapes, in
// GFLOP/s. LibTorch's peers are registered beside them when CMake found
// Torch (bench_cnn_torch.cpp).
//
// Note [Heap reuse]
// LibTorch frees every large tensor back to glibc, which returns it to the
// kernel, so each iteration pays page faults: a fair comparison asks for the
// peer at its best, with the heap kept. main raises M_MMAP_THRESHOLD to
// glibc's ceiling (32 MiB on 64-bit; the CNN's largest tensor, the first
// convolution's output at batch 256, is 22 MB) and stops trimming, before
// anything allocates; npdl recycles its buffers in its own storage cache
// and is not affected. benchmarks/run also makes LibTorch's OpenMP threads
// wait passively (OMP_WAIT_POLICY), as the batch-norm benchmarks do.
#include "bench_cnn.hpp"

#include "bench_main.hpp"
#include "examples/fashion_mnist_cnn_network.hpp"
#include "npdl.hpp"

namespace npdl::bench {

const std::vector<ConvShape>& conv_shapes() {
  // ResNet stages at batch 8: 3x3 convolutions of each width, a stride-2
  // 3x3 and a stride-2 1x1 projection between stages, and the 7x7 stem;
  // then the Fashion-MNIST CNN's two convolutions (valid) at batch 60.
  static const std::vector<ConvShape> s{
      {"56x56x64_3x3", 8, 64, 56, 56, 64, 3, 1, 1},
      {"28x28x128_3x3", 8, 128, 28, 28, 128, 3, 1, 1},
      {"14x14x256_3x3", 8, 256, 14, 14, 256, 3, 1, 1},
      {"56x56x64_3x3_s2", 8, 64, 56, 56, 128, 3, 2, 1},
      {"56x56x64_1x1_s2", 8, 64, 56, 56, 128, 1, 2, 0},
      {"224x224x3_7x7_s2", 8, 3, 224, 224, 64, 7, 2, 3},
      {"cnn1_28x28x1_3x3", 60, 1, 28, 28, 32, 3, 1, 0},
      {"cnn2_13x13x32_3x3", 60, 32, 13, 13, 64, 3, 1, 0},
  };
  return s;
}

std::string cnn_step_name(bool batchnorm, const char* impl, std::int64_t batch, int threads) {
  return std::string("cnn_step/") + (batchnorm ? "bn" : "plain") + "/" + impl +
         "/batch:" + std::to_string(batch) + "/threads:" + std::to_string(threads);
}

std::string conv_name(const ConvShape& s, const char* impl, int threads) {
  return "conv2d/" + s.name + "/" + impl + "/threads:" + std::to_string(threads);
}

benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b) {
  return b->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime()->Unit(
      benchmark::kMillisecond);
}

namespace {

void BM_NpdlCnnStep(benchmark::State& state, bool batchnorm, std::int64_t batch, int threads) {
  set_num_threads(threads);
  set_seed(1);
  model::Model m;
  fashion_mnist::add_cnn_layers(m, batchnorm);
  model::OptimizerOptions options;
  options.lr = kCnnLr;
  m.compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
            std::make_shared<model::Momentum>(kCnnMomentum, options));
  const Tensor x = Tensor::uniform({batch, 1, 28, 28}, 2);
  std::vector<int> labels;
  for (std::int64_t i = 0; i < batch; ++i) labels.push_back(int(i % 10));
  const Tensor y = model::one_hot(labels, 10);
  m.train_on_batch(x, y);  // warm the storage cache
  for (auto _ : state) benchmark::DoNotOptimize(m.train_on_batch(x, y).loss);
  state.SetItemsProcessed(state.iterations() * batch);
}

void BM_NpdlConv(benchmark::State& state, const ConvShape& s, int threads) {
  set_num_threads(threads);
  const Tensor x = Tensor::randn({s.N, s.C, s.H, s.W}, 1);
  const Tensor w = Tensor::randn({s.F, s.C, s.K, s.K}, 2, DType::Float32, 0.0, 0.05);
  const ops::Padding2d pad{s.padding, s.padding, s.padding, s.padding};
  const Tensor gy = Tensor::randn(math::conv2d(x, w, s.stride, pad).shape(), 3);
  for (auto _ : state) {
    Graph graph(GraphOptions{/*keep_intermediates=*/false});
    const Var xv = graph.variable(x), wv = graph.variable(w);
    const Var yv = ops::conv2d(xv, wv, s.stride, pad);
    graph.backward(yv, gy);
    benchmark::DoNotOptimize(wv.grad().raw_data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(3.0 * s.flops_fwd() * 1e-9 * state.iterations(),
                                                 benchmark::Counter::kIsRate);
}

void register_all() {
  for (int threads : {1, 2}) {
    for (std::int64_t batch : {60, 256}) {
      for (bool bn : {true, false}) {
        configure(benchmark::RegisterBenchmark(cnn_step_name(bn, "npdl", batch, threads).c_str(),
                                               BM_NpdlCnnStep, bn, batch, threads));
#ifdef NPDL_BENCH_TORCH
        register_torch_cnn_step(bn, batch, threads);
#endif
      }
    }
    for (const ConvShape& s : conv_shapes()) {
      configure(benchmark::RegisterBenchmark(conv_name(s, "npdl", threads).c_str(), BM_NpdlConv, s,
                                             threads));
#ifdef NPDL_BENCH_TORCH
      register_torch_conv(s, threads);
#endif
    }
  }
}

}  // namespace
}  // namespace npdl::bench

int main(int argc, char** argv) {
#ifdef NPDL_BENCH_TORCH
  const std::string peer = npdl::bench::torch_setup();
#else
  const std::string peer;
#endif
  return npdl::bench::run_benchmarks(argc, argv, npdl::bench::register_all, peer);
}
