#pragma once
// The library's global random generator, as npdl's np.random: initialisers,
// dropout masks and shuffling draw from it, so one seed makes a run
// reproducible.
#include <cstdint>
#include <random>

namespace npdl {

void set_seed(std::uint64_t seed);
std::mt19937_64& generator();
/// A fresh seed drawn from the global generator (for seeded Tensor factories).
std::uint64_t next_seed();

}  // namespace npdl
