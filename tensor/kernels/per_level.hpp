#pragma once
// Per-level sources besides level.cpp (Note [Kernels per instruction set] in
// kernels.hpp): batch norm's kernels (layers/batch_norm/detail/level.cpp), the
// optimisers' updates (model/detail/optimizer_level.cpp) and Winograd's
// transforms (tensor/detail/winograd_level.cpp). CMake's
// npdl_compile_per_level compiles such a source once per level, as it does
// level.cpp, and the source defines `const Table& table()` in the namespace
// <its namespace>::level_<name>. The code that calls it declares the tables
// with NPDL_PER_LEVEL_TABLES and picks one per call with
// `kLevelTables.for_this_thread()`: the level kernels::active() chose, or the
// one a ScopedLevel sets on this thread for a comparison between levels.
#include "tensor/kernels/kernels.hpp"

namespace npdl::kernels {

/// The level whose per-level tables the calling thread uses: active()'s,
/// unless a ScopedLevel is alive on this thread.
Capability level_for_this_thread();

/// While alive, level_for_this_thread() returns `level` on the calling
/// thread (for tests and benchmarks that compare levels; a kernel resolves
/// its table on the calling thread before it hands work to others). Throws
/// ValueError when this CPU cannot run `level`.
class ScopedLevel {
 public:
  explicit ScopedLevel(Capability level);
  ~ScopedLevel();
  ScopedLevel(const ScopedLevel&) = delete;
  ScopedLevel& operator=(const ScopedLevel&) = delete;

 private:
  int previous_;  // the override this one hides, -1 for none
};

/// One per-level source's tables, indexed by Capability.
template <class Table>
struct LevelTables {
  const Table& (*by_level[3])();

  const Table& at(Capability level) const { return by_level[static_cast<int>(level)](); }
  const Table& for_this_thread() const { return at(level_for_this_thread()); }
};

}  // namespace npdl::kernels

// Declares ns::level_<name>::table() for every level this build compiles and
// defines ns::kLevelTables (LevelTables<Table>) over them. Where only the
// default level is compiled (NPDL_KERNELS_DEFAULT_ONLY, non-x86 processors)
// every entry is the default level's; no other level can be chosen there.
#ifdef NPDL_KERNELS_DEFAULT_ONLY
#define NPDL_PER_LEVEL_TABLES(ns, Table)                                   \
  namespace ns::level_default {                                            \
  const Table& table();                                                    \
  }                                                                        \
  namespace ns {                                                           \
  constexpr ::npdl::kernels::LevelTables<Table> kLevelTables{              \
      {level_default::table, level_default::table, level_default::table}}; \
  }
#else
#define NPDL_PER_LEVEL_TABLES(ns, Table)                               \
  namespace ns::level_default {                                        \
  const Table& table();                                                \
  }                                                                    \
  namespace ns::level_avx2 {                                           \
  const Table& table();                                                \
  }                                                                    \
  namespace ns::level_avx512 {                                         \
  const Table& table();                                                \
  }                                                                    \
  namespace ns {                                                       \
  constexpr ::npdl::kernels::LevelTables<Table> kLevelTables{          \
      {level_default::table, level_avx2::table, level_avx512::table}}; \
  }
#endif
