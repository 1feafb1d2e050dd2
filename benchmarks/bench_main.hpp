#pragma once
// The main of the training-step benchmark binaries (CNN, LSTM): Note [Heap
// reuse] (bench_cnn.cpp), the run's context (heap, OpenMP wait policy, the
// peer's setup), then the benchmarks `register_all` registers.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdlib>
#include <string>

namespace npdl::bench {

inline int run_benchmarks(int argc, char** argv, void (*register_all)(), const std::string& peer) {
  // Before anything allocates: keep freed memory in the heap.
  const bool heap_kept =
      mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1;
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("heap", heap_kept ? "kept (mmap threshold 32 MiB, no trim)"
                                                : "glibc defaults (mallopt refused)");
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  benchmark::AddCustomContext("omp_wait_policy", wait_policy ? wait_policy : "libgomp default");
  if (!peer.empty()) benchmark::AddCustomContext("torch", peer);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace npdl::bench
