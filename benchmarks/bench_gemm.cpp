// Which matrix product npdl should call. npdl's own (Eigen's GEMM,
// compiled per instruction-set level, tensor/kernels/level.cpp) at every
// level this CPU runs, against the BLAS loaded in the process (OpenBLAS,
// whose kernels are chosen at run time, when LibTorch brought
// libblas.so.3), on one thread, at the MLP's shapes: batch x 784 @ 784 x 100
// (forward), its transposed-operand products (backward), and the 100-wide
// layers.
#include <dlfcn.h>

#include <string>
#include <vector>

#include "bench_common.hpp"
#include "tensor/kernels/kernels.hpp"

namespace npdl::bench {
namespace {

struct GemmShape {
  std::int64_t m, k, n;
  bool trans_a;  // the weight gradient's x^T @ dy
};

std::vector<GemmShape> gemm_shapes() {
  std::vector<GemmShape> shapes;
  for (std::int64_t batch : {60, 256}) {
    shapes.push_back({batch, 784, 100, false});
    shapes.push_back({784, batch, 100, true});
    shapes.push_back({batch, 100, 100, false});
    shapes.push_back({100, batch, 100, true});
  }
  return shapes;
}

std::string shape_name(const GemmShape& s) {
  return std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n) +
         (s.trans_a ? "/At" : "/A");
}

struct Operands {
  std::vector<float> a, b, c;
  explicit Operands(const GemmShape& s)
      : a(static_cast<std::size_t>(s.m * s.k), 0.5f),
        b(static_cast<std::size_t>(s.k * s.n), 0.25f),
        c(static_cast<std::size_t>(s.m * s.n)) {}
};

void set_items(benchmark::State& state, const GemmShape& s) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(s.m * s.k * s.n) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_GemmNpdl(benchmark::State& state, GemmShape s, kernels::Capability level) {
  const kernels::TypedKernels<float>& k = kernels::table_for(level).f32;
  Operands o(s);
  // a is stored (k, m) when transposed.
  const std::int64_t lda = s.trans_a ? s.m : s.k;
  for (auto _ : state) {
    k.gemm(s.m, s.n, s.k, o.a.data(), lda, s.trans_a, o.b.data(), s.n, false, o.c.data(), s.n);
    benchmark::DoNotOptimize(o.c.data());
  }
  set_items(state, s);
}

// Fortran BLAS sgemm_, column-major: row-major C = op(A) B is column-major
// C^T = B^T op(A)^T.
using Sgemm = void (*)(const char*, const char*, const int*, const int*, const int*, const float*,
                       const float*, const int*, const float*, const int*, const float*, float*,
                       const int*);

void BM_GemmBlas(benchmark::State& state, GemmShape s, Sgemm sgemm) {
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
  }
  Operands o(s);
  const int m = int(s.m), n = int(s.n), k = int(s.k);
  const int lda = s.trans_a ? m : k;
  const float one = 1.0f, zero = 0.0f;
  const char trans_a = s.trans_a ? 'T' : 'N';
  for (auto _ : state) {
    sgemm("N", &trans_a, &n, &m, &k, &one, o.b.data(), &n, o.a.data(), &lda, &zero, o.c.data(), &n);
    benchmark::DoNotOptimize(o.c.data());
  }
  set_items(state, s);
}

}  // namespace

void register_gemm() {
  const auto sgemm = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "sgemm_"));
  for (const GemmShape& s : gemm_shapes()) {
    for (kernels::Capability level : kernels::supported_capabilities()) {
      benchmark::RegisterBenchmark(
          ("gemm/" + shape_name(s) + "/npdl_" + kernels::to_string(level)).c_str(), BM_GemmNpdl, s,
          level)
          ->Repetitions(kRepetitions)
          ->ReportAggregatesOnly(true)
          ->Unit(benchmark::kMicrosecond);
    }
    if (sgemm != nullptr) {
      benchmark::RegisterBenchmark(("gemm/" + shape_name(s) + "/blas").c_str(), BM_GemmBlas, s,
                                   sgemm)
          ->Repetitions(kRepetitions)
          ->ReportAggregatesOnly(true)
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace npdl::bench
