// Chooses the kernels' instruction-set level once (Note [Kernels per
// instruction set] in kernels.hpp).
#include <cstdlib>

#include "tensor/error.hpp"
#include "tensor/kernels/kernels.hpp"
#include "tensor/kernels/per_level.hpp"

// Each level's table() is defined by level.cpp compiled for that level.
NPDL_PER_LEVEL_TABLES(npdl::kernels, ::npdl::kernels::KernelTable)

namespace npdl::kernels {
namespace {

// __builtin_cpu_supports also checks that the operating system saves the
// wider registers (XCR0), not only that the CPU has the instructions.
bool cpu_can_run(Capability level) {
#if !defined(NPDL_KERNELS_DEFAULT_ONLY) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  switch (level) {
    case Capability::Default:
      return true;
    case Capability::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Capability::Avx512:
      return cpu_can_run(Capability::Avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl");
  }
  return false;
#else
  return level == Capability::Default;
#endif
}

}  // namespace

Capability choose_capability(const char* requested) {
  const Capability best = supported_capabilities().back();
  if (requested == nullptr || *requested == '\0') return best;
  const Capability level = parse_capability(requested);
  if (!cpu_can_run(level)) {
    throw ValueError("NPDL_CPU_CAPABILITY=" + std::string(requested) +
                     " needs instructions this CPU lacks; expected a level up to " +
                     to_string(best));
  }
  return level;
}

const KernelTable& active() {
  static const KernelTable& chosen =
      table_for(choose_capability(std::getenv("NPDL_CPU_CAPABILITY")));
  return chosen;
}

const KernelTable& table_for(Capability level) {
  if (!cpu_can_run(level)) {
    throw ValueError("kernel level " + to_string(level) + " needs instructions this CPU lacks");
  }
  return kLevelTables.at(level);
}

std::vector<Capability> supported_capabilities() {
  std::vector<Capability> levels;
  for (Capability c : {Capability::Default, Capability::Avx2, Capability::Avx512}) {
    if (cpu_can_run(c)) levels.push_back(c);
  }
  return levels;
}

namespace {
constexpr const char* kUnaryNames[kUnaryOpCount] = {
    "neg", "square", "sqrt", "rsqrt", "exp", "log", "relu", "sigmoid", "tanh", "step"};
}  // namespace

std::string to_string(UnaryOp op) { return kUnaryNames[static_cast<int>(op)]; }

std::optional<UnaryOp> parse_unary_op(std::string_view name) {
  for (int i = 0; i < kUnaryOpCount; ++i) {
    if (name == kUnaryNames[i]) return static_cast<UnaryOp>(i);
  }
  return std::nullopt;
}

std::string to_string(Capability level) {
  switch (level) {
    case Capability::Avx2:
      return "avx2";
    case Capability::Avx512:
      return "avx512";
    case Capability::Default:
      break;
  }
  return "default";
}

Capability parse_capability(const std::string& name) {
  for (Capability c : {Capability::Default, Capability::Avx2, Capability::Avx512}) {
    if (name == to_string(c)) return c;
  }
  throw ValueError("NPDL_CPU_CAPABILITY expects one of default, avx2, avx512, got '" + name + "'");
}

namespace {
// The level a ScopedLevel set on this thread, -1 for none.
thread_local int scoped_level = -1;
}  // namespace

Capability level_for_this_thread() {
  return scoped_level < 0 ? active().capability : static_cast<Capability>(scoped_level);
}

ScopedLevel::ScopedLevel(Capability level) : previous_(scoped_level) {
  table_for(level);  // throws when this CPU cannot run it
  scoped_level = static_cast<int>(level);
}

ScopedLevel::~ScopedLevel() { scoped_level = previous_; }

}  // namespace npdl::kernels
