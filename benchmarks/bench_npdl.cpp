// npdl's benchmarks: batch norm fused and
// composite on the four benchmark workloads, a STREAM triad for the
// bandwidth floor, and the cost of recording one op; LibTorch's peers are
// registered beside them when CMake found Torch (bench_torch.cpp).
//
// Every timing is wall-clock (UseRealTime: npdl's own pool does the work),
// repeated, and reported as median/mean/stddev aggregates.
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "autodiff/graph.hpp"
#include "bench_common.hpp"
#include "distributed/communicator.hpp"
#include "layers/batch_norm/batch_normal.hpp"
#include "layers/batch_norm/sync_batch_normal.hpp"
#include "ops/ops.hpp"
#include "tensor/parallel.hpp"
#include "tensor/storage.hpp"
#include "tensor/tensor.hpp"

namespace npdl::bench {

const std::vector<Workload>& workloads() {
  static const std::vector<Workload> w{
      {"a", {256, 1024}, 1},
      {"b", {64, 64, 56, 56}, 1},
      {"c", {128, 256, 14, 14}, 1},
      {"d", {32, 3, 8, 8}, 1},
  };
  return w;
}

const char* pass_name(Pass p) {
  switch (p) {
    case Pass::Forward:
      return "fwd";
    case Pass::Backward:
      return "bwd";
    case Pass::ForwardBackward:
      return "fwdbwd";
  }
  return "?";
}

int pass_tensors(Pass p) {
  switch (p) {
    case Pass::Forward:
      return 3;
    case Pass::Backward:
      return 5;
    case Pass::ForwardBackward:
      return 8;
  }
  return 0;
}

std::string bn_name(const Workload& w, const char* impl, Pass p, bool f64, int threads) {
  return "bn/" + w.name + "/" + impl + "/" + pass_name(p) + "/" + (f64 ? "f64" : "f32") +
         "/threads:" + std::to_string(threads);
}

namespace {

// STREAM triad a = b + s * c over arrays far larger than the 32 MiB L3,
// split over npdl's pool exactly as the kernels are.
constexpr std::int64_t kTriadElements = std::int64_t{1} << 25;  // 128 MiB per float array

struct TriadArrays {
  Tensor a, b, c;
  TriadArrays()
      : a(Tensor::zeros({kTriadElements})),
        b(Tensor::full({kTriadElements}, 1.0)),
        c(Tensor::full({kTriadElements}, 2.0)) {}
  void run() {
    float* pa = a.data<float>();
    const float* pb = b.data<float>();
    const float* pc = c.data<float>();
    const float s = 3.0f;
    parallel_for(kTriadElements, kElementGrain, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t i = lo; i < hi; ++i) pa[i] = pb[i] + s * pc[i];
    });
    benchmark::DoNotOptimize(pa);
    benchmark::ClobberMemory();
  }
  static double bytes() { return 3.0 * double(kTriadElements) * sizeof(float); }
};

TriadArrays& triad_arrays() {
  static TriadArrays arrays;
  return arrays;
}

void BM_Triad(benchmark::State& state, int threads) {
  set_num_threads(threads);
  TriadArrays& t = triad_arrays();
  t.run();
  for (auto _ : state) t.run();
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(TriadArrays::bytes()));
  state.counters["GB/s"] =
      benchmark::Counter(TriadArrays::bytes() / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

double triad_bytes_per_second(int threads) {
  static std::mutex mutex;
  static std::map<int, double> measured;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = measured.find(threads);
  if (it != measured.end()) return it->second;
  const int before = get_num_threads();
  set_num_threads(threads);
  TriadArrays& t = triad_arrays();
  t.run();
  std::vector<double> secs;
  for (int i = 0; i < 21; ++i) {
    const auto start = std::chrono::steady_clock::now();
    t.run();
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(secs.begin(), secs.begin() + secs.size() / 2, secs.end());
  set_num_threads(before);
  return measured[threads] = TriadArrays::bytes() / secs[secs.size() / 2];
}

namespace {

using layers::BatchNormLayout;
constexpr double kEpsilon = 1e-5;

struct BnData {
  Tensor x, dy, gamma, beta;
  BatchNormLayout layout;
  BnData(const Workload& w, bool f64) {
    const DType dt = f64 ? DType::Float64 : DType::Float32;
    const Shape s(w.shape.begin(), w.shape.end());
    x = Tensor::randn(s, 1, dt, 0.5, 2.0);
    dy = Tensor::randn(s, 2, dt);
    layout = layers::batchnorm_layout(s, w.axis);
    gamma = Tensor::uniform(layout.param_shape, 3, dt, 0.5, 1.5);
    beta = Tensor::randn(layout.param_shape, 4, dt);
  }
};

// One recorded batch norm on a lean graph, as a layer records it
// (Note [Lean graphs]): x, gamma and beta want gradients.
struct Recorded {
  Graph graph{GraphOptions{/*keep_intermediates=*/false}};
  Var x, y;
};

enum class Impl { Fused, Composite, Kernel };

void record_bn(Recorded& r, const BnData& d, Impl impl) {
  const Var x = r.x = r.graph.variable(d.x, "x");
  const Var gamma = r.graph.variable(d.gamma, "gamma");
  const Var beta = r.graph.variable(d.beta, "beta");
  r.y = impl == Impl::Composite
            ? layers::batchnorm_composite_train(x, gamma, beta, d.layout, kEpsilon)
            : layers::batchnorm_fused_train(x, gamma, beta, d.layout, kEpsilon);
}

void BM_BatchNorm(benchmark::State& state, const Workload& w, Impl impl, Pass pass, bool f64,
                  int threads) {
  set_num_threads(threads);
  const BnData d(w, f64);
  const double bytes = double(pass_tensors(pass)) * double(d.x.nbytes());
  std::size_t peak_extra = 0;
  if (impl == Impl::Kernel) {
    layers::BatchNormStats stats;
    Tensor y = layers::batchnorm_forward_train(d.x, d.gamma, d.beta, d.layout, kEpsilon, stats);
    FloorCounters counters(state, bytes, threads);
    for (auto _ : state) {
      if (pass != Pass::Backward) {
        y = Tensor();
        y = layers::batchnorm_forward_train(d.x, d.gamma, d.beta, d.layout, kEpsilon, stats);
        benchmark::DoNotOptimize(y.raw_data());
      }
      if (pass != Pass::Forward) {
        layers::BatchNormGrads g =
            layers::batchnorm_backward_train(d.dy, d.x, d.gamma, stats, d.layout);
        benchmark::DoNotOptimize(g.dx.raw_data());
      }
    }
  } else if (pass == Pass::Backward) {
    // The same graph swept again and again (retain_graph keeps its saved
    // tensors); each sweep starts from zero gradients.
    Recorded r;
    record_bn(r, d, impl);
    FloorCounters counters(state, bytes, threads);
    for (auto _ : state) {
      r.graph.backward(r.y, d.dy, /*retain_graph=*/true);
      benchmark::DoNotOptimize(r.x.grad().raw_data());
    }
  } else {
    FloorCounters counters(state, bytes, threads);
    for (auto _ : state) {
      const std::size_t before = storage_stats().bytes_in_use;
      reset_storage_peak();
      {
        Recorded r;
        record_bn(r, d, impl);
        if (pass == Pass::ForwardBackward) {
          r.graph.backward(r.y, d.dy);
          benchmark::DoNotOptimize(r.x.grad().raw_data());
        }
        benchmark::DoNotOptimize(r.y.value().raw_data());
      }
      peak_extra = std::max(peak_extra, storage_stats().peak_bytes_in_use - before);
    }
  }
  if (peak_extra > 0) {
    // Bytes the pass allocated at its peak (y, dx and every intermediate;
    // not the caller's x and dy), in units of x's size.
    state.counters["peak_mem_x"] = double(peak_extra) / double(d.x.nbytes());
  }
}

// SyncBatchNormal's own arithmetic, on a single-process
// communicator (its collectives are then copies), against BatchNormal, both
// as layers in fused mode: npdl's eager forward and backward, running
// statistics updated every step. The ratio is what SyncBatchNormal adds per
// layer before any communication (docs/distributed.md, "Loopback measurements").
void BM_BatchNormLayer(benchmark::State& state, const Workload& w, bool sync, int threads) {
  set_num_threads(threads);
  const BnData d(w, /*f64=*/false);
  std::unique_ptr<layers::BatchNormal> bn;
  if (sync) {
    bn = std::make_unique<layers::SyncBatchNormal>(
        kEpsilon, 0.9, w.axis, "zero", "one", std::make_shared<dist::SingleProcessCommunicator>());
  } else {
    bn = std::make_unique<layers::BatchNormal>(kEpsilon, 0.9, w.axis);
  }
  bn->set_backward_mode(layers::BackwardMode::Fused);
  bn->forward(d.x);
  bn->backward(d.dy);
  FloorCounters counters(state, double(pass_tensors(Pass::ForwardBackward)) * double(d.x.nbytes()),
                         threads);
  for (auto _ : state) {
    const Tensor y = bn->forward(d.x);
    const Tensor dx = bn->backward(d.dy);
    benchmark::DoNotOptimize(y.raw_data());
    benchmark::DoNotOptimize(dx.raw_data());
  }
}

// What recording one small op costs (its value computed, a vertex,
// two edges and a VJP closure). 1000 ops per graph; the graph's
// construction and destruction are part of the cost. `mode` is where the ops
// go: a full graph, a lean one (what a layer records on), or none (values
// only: what recording adds on top).
enum class RecordOn { FullGraph, LeanGraph, NoGraph };

void BM_RecordOp(benchmark::State& state, RecordOn mode) {
  set_num_threads(1);
  constexpr int kOps = 1000;
  const Tensor a = Tensor::randn({4}, 1), b = Tensor::randn({4}, 2);
  for (auto _ : state) {
    std::optional<Graph> g;
    if (mode != RecordOn::NoGraph) g.emplace(GraphOptions{mode == RecordOn::FullGraph});
    Var x = g ? g->variable(a, "a") : Var(a);
    const Var y = g ? g->variable(b, "b") : Var(b);
    for (int i = 0; i < kOps; ++i) x = ops::mul(x, y);
    benchmark::DoNotOptimize(x.value().raw_data());
  }
  state.counters["ns/op"] =
      benchmark::Counter(double(kOps) * 1e-9, benchmark::Counter::kIsIterationInvariantRate |
                                                  benchmark::Counter::kInvert);
}

benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b) {
  return b->Repetitions(kRepetitions)
      ->ReportAggregatesOnly(true)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

void register_all() {
  for (int threads : {1, 2}) {
    configure(benchmark::RegisterBenchmark(("triad/threads:" + std::to_string(threads)).c_str(),
                                           BM_Triad, threads));
  }
  configure(benchmark::RegisterBenchmark("record_op/mul_4/full", BM_RecordOp, RecordOn::FullGraph));
  configure(benchmark::RegisterBenchmark("record_op/mul_4/lean", BM_RecordOp, RecordOn::LeanGraph));
  configure(
      benchmark::RegisterBenchmark("record_op/mul_4/no_grad", BM_RecordOp, RecordOn::NoGraph));
  register_gemm();
  register_hessian();
  for (int threads : {1, 2}) {
    for (const TrainWorkload& w : train_workloads()) {
      register_train_npdl(w, threads);
#ifdef NPDL_BENCH_TORCH
      register_train_torch(w, threads);
#endif
    }
  }
  for (const Workload& w : workloads()) {
    for (bool f64 : {false, true}) {
      if (f64 && w.name != "b") continue;
      for (int threads : {1, 2}) {
        for (Pass pass : {Pass::ForwardBackward, Pass::Forward, Pass::Backward}) {
          const std::pair<Impl, const char*> impls[] = {
              {Impl::Fused, "fused"}, {Impl::Composite, "composite"}, {Impl::Kernel, "kernel"}};
          for (const auto& [impl, label] : impls) {
            configure(benchmark::RegisterBenchmark(bn_name(w, label, pass, f64, threads).c_str(),
                                                   BM_BatchNorm, w, impl, pass, f64, threads));
          }
#ifdef NPDL_BENCH_TORCH
          register_torch(w, pass, f64, threads);
#endif
        }
      }
    }
    for (int threads : {1, 2}) {
      for (bool sync : {false, true}) {
        configure(benchmark::RegisterBenchmark(
            bn_name(w, sync ? "sync_layer_1rank" : "layer", Pass::ForwardBackward, false, threads)
                .c_str(),
            BM_BatchNormLayer, w, sync, threads));
      }
    }
  }
}

}  // namespace
}  // namespace npdl::bench

int main(int argc, char** argv) {
  npdl::bench::register_all();
  benchmark::Initialize(&argc, argv);
#ifdef NPDL_BENCH_TORCH
  npdl::bench::describe_torch_peer();
#endif
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
