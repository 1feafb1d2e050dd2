#include "tensor/random.hpp"

namespace npdl {

std::mt19937_64& generator() {
  static thread_local std::mt19937_64 rng(5489u);
  return rng;
}

void set_seed(std::uint64_t seed) { generator().seed(seed); }

std::uint64_t next_seed() { return generator()(); }

}  // namespace npdl
