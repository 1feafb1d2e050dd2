#pragma once
// Shared by the npdl and LibTorch halves of the CNN benchmark binary:
// the training step of the Fashion-MNIST CNN and conv2d
// forward + backward on ResNet-like shapes.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

namespace npdl::bench {

/// One conv2d: input (N, C, H, W), F filters of K x K, stride, padding.
struct ConvShape {
  std::string name;
  std::int64_t N, C, H, W, F, K, stride, padding;
  double flops_fwd() const {  // multiply-adds x 2
    const std::int64_t oh = (H + 2 * padding - K) / stride + 1;
    const std::int64_t ow = (W + 2 * padding - K) / stride + 1;
    return 2.0 * double(N * F * oh * ow) * double(C * K * K);
  }
};
const std::vector<ConvShape>& conv_shapes();

constexpr double kCnnLr = 0.01;
constexpr double kCnnMomentum = 0.9;

/// cnn_step/<bn|plain>/<impl>/batch:<B>/threads:<T>
std::string cnn_step_name(bool batchnorm, const char* impl, std::int64_t batch, int threads);
/// conv2d/<shape>/<impl>/threads:<T>
std::string conv_name(const ConvShape& s, const char* impl, int threads);

/// Repetitions, medians and wall-clock time, as every benchmark here.
benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b);

#ifdef NPDL_BENCH_TORCH
/// The same network and optimiser in LibTorch's C++ frontend, and
/// torch::conv2d under autograd (bench_cnn_torch.cpp).
void register_torch_cnn_step(bool batchnorm, std::int64_t batch, int threads);
void register_torch_conv(const ConvShape& s, int threads);
/// The BLAS, allocator and convolution backend behind LibTorch's figures.
std::string torch_setup();
#endif

}  // namespace npdl::bench
