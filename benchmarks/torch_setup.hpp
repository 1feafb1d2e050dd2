#pragma once
// LibTorch's side of the training-step benchmarks: the thread count for
// LibTorch and for OpenBLAS (when it is the BLAS loaded), and which BLAS
// library LibTorch's figures come from.
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

}  // namespace npdl::bench
