#!/usr/bin/env bash
# Note [Kernels per instruction set] (tensor/kernels/kernels.hpp): checks
# that the kernel objects of each level cannot leak into another level.
# Usage: kernel_symbols.sh LEVEL=OBJECT... (a level may come with several
# objects, one per per-level source)
#  - no level defines a weak or unique symbol outside its own namespaces
#    (<some namespace>::level_<name>, as npdl::kernels::level_<name> or
#    npdl::layers::bn_level::level_<name>, and Eigen_<name>): the linker
#    would keep one copy of such a symbol for every level;
#  - the default level's code uses no AVX registers (ymm/zmm), and the
#    avx2 level none of AVX-512's (zmm).
set -euo pipefail
status=0
for arg in "$@"; do
  level="${arg%%=*}"
  object="${arg#*=}"
  # nm -C: "<address> <type> <demangled name>"; W/V weak, u unique global.
  # DW.ref.__gxx_personality_v0 is the C++ runtime's, the same in every object.
  shared=$(nm -C --defined-only "$object" | awk '$2 ~ /^[WVu]$/' |
    grep -v -e "::level_${level}::" -e "Eigen_${level}::" \
      -e "DW.ref.__gxx_personality_v0" || true)
  if [[ -n "$shared" ]]; then
    echo "level $level defines symbols other levels could share:"
    echo "$shared" | head -20
    status=1
  fi
  case "$level" in
    default) forbidden='%[yz]mm' ;;
    avx2) forbidden='%zmm' ;;
    *) forbidden='' ;;
  esac
  if [[ -n "$forbidden" ]]; then
    count=$(objdump -d --no-show-raw-insn "$object" | grep -c -E "$forbidden" || true)
    if [[ "$count" != 0 ]]; then
      echo "level $level: $count instructions use registers beyond the level ($forbidden)"
      status=1
    fi
  fi
  echo "level $level, $(basename "$object"): $(nm --defined-only "$object" | wc -l) symbols checked"
done
exit $status
