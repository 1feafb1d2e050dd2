#pragma once
// Shared by the npdl and LibTorch halves of the benchmark binary: the
// four benchmark workloads, the memory-bandwidth floor and the counters
// every batch-norm benchmark reports.
//
// Note [Bandwidth floor]
// Batch norm is memory-bound. Counting as STREAM counts (every array read or
// written once per pass, write-allocate traffic not counted), a training
// forward reads x twice (statistics, normalisation) and writes y: 3 tensors;
// the backward reads dy and x twice (two reductions, then dx) and writes dx:
// 5 tensors; forward + backward moves 8 tensors' bytes. The floor of a
// benchmark is those bytes at the STREAM triad bandwidth measured by this
// binary at the same thread count, so "x_floor" = time / floor is 1.0 for a
// kernel that streams as fast as the triad.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace npdl::bench {

struct Workload {
  std::string name;  // a, b, c, d
  std::vector<std::int64_t> shape;
  int axis = 1;
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::string shape_text() const {
    std::string s;
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
    return s;
  }
};

const std::vector<Workload>& workloads();

enum class Pass { Forward, Backward, ForwardBackward };
const char* pass_name(Pass p);
/// Tensors' worth of bytes a pass moves (Note [Bandwidth floor]).
int pass_tensors(Pass p);

/// Median STREAM triad bandwidth (bytes/s) at `threads` npdl threads,
/// measured once per thread count and cached.
double triad_bytes_per_second(int threads);

/// Times the benchmark's loop in wall-clock time, and on destruction sets
/// the counters GB/s (counted bytes over time) and x_floor (time over the
/// floor at this thread count).
class FloorCounters {
 public:
  FloorCounters(benchmark::State& state, double bytes, int threads)
      : state_(state), bytes_(bytes), floor_bps_(triad_bytes_per_second(threads)) {
    start_ = std::chrono::steady_clock::now();
  }
  ~FloorCounters() {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double per_iter =
        secs / double(std::max<benchmark::IterationCount>(state_.iterations(), 1));
    state_.counters["GB/s"] = bytes_ / per_iter / 1e9;
    state_.counters["x_floor"] = per_iter / (bytes_ / floor_bps_);
    state_.counters["floor_us"] = bytes_ / floor_bps_ * 1e6;
  }

 private:
  benchmark::State& state_;
  double bytes_, floor_bps_;
  std::chrono::steady_clock::time_point start_;
};

/// Benchmark name: bn/<workload>/<impl>/<pass>/<dtype>/threads:<n>.
std::string bn_name(const Workload& w, const char* impl, Pass p, bool f64, int threads);

/// Repetitions of every benchmark; tables show their medians.
inline constexpr int kRepetitions = 5;

/// The benchmark MLP: 784-100-100-100-10, sigmoid hidden activations,
/// softmax cross-entropy, plain SGD; BatchNormal (npdl's defaults: epsilon
/// 1e-6, momentum 0.9) before each hidden activation when `batchnorm`.
inline constexpr std::int64_t kMlpInputs = 784, kMlpHidden = 100, kMlpClasses = 10;
inline constexpr int kMlpHiddenLayers = 3;
inline constexpr double kMlpLearningRate = 0.01;
inline constexpr double kMlpBatchNormEpsilon = 1e-6;

struct TrainWorkload {
  bool batchnorm;
  std::int64_t batch;
};
const std::vector<TrainWorkload>& train_workloads();

/// Benchmark name: train/mlp/<bn|plain>/batch:<b>/<impl>/threads:<n>.
std::string train_name(const TrainWorkload& w, const char* impl, int threads);

/// npdl's matrix product at every kernel level against the process's BLAS,
/// one thread, at the MLP's shapes (bench_gemm.cpp).
void register_gemm();
void register_hessian();

/// One Model::train_on_batch step (bench_train.cpp).
void register_train_npdl(const TrainWorkload& w, int threads);

#ifdef NPDL_BENCH_TORCH
/// LibTorch's native batch norm and the composite of primitives under its
/// autograd (bench_torch.cpp).
void register_torch(const Workload& w, Pass p, bool f64, int threads);
/// The same MLP step in LibTorch's C++ frontend (bench_torch.cpp).
void register_train_torch(const TrainWorkload& w, int threads);
/// Records in the benchmark's context which BLAS LibTorch loaded and how the
/// peer is run (bench_torch.cpp).
void describe_torch_peer();
#endif

}  // namespace npdl::bench
