#pragma once
// Shared by the npdl and LibTorch halves of the LSTM benchmark binary: one
// training step of the sequential Fashion-MNIST network, LSTM(128) over 28
// rows of 28 pixels, then a linear layer to 10 classes, softmax
// cross-entropy, SGD with momentum 0.9.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

namespace npdl::bench {

constexpr std::int64_t kSteps = 28, kFeatures = 28, kHidden = 128, kClasses = 10;
constexpr double kLstmLr = 0.01, kLstmMomentum = 0.9;

/// lstm_step/<variant>/<impl>/batch:<B>/threads:<T>
std::string lstm_step_name(const char* variant, const char* impl, std::int64_t batch, int threads);

#ifdef NPDL_BENCH_TORCH
/// torch::nn::LSTM (batch first) and torch::nn::Linear, the same step.
void register_torch_lstm_step(std::int64_t batch, int threads);
std::string torch_lstm_setup();
#endif

}  // namespace npdl::bench
