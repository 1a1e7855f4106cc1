#include "cpu/cpu_isa.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cnnkern {
namespace cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2: return "avx2";
    case Isa::generic: break;
  }
  return "generic";
}

static bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2:
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
  }
  return false;
}

Isa best_isa() {
  static const Isa best = cpu_has(Isa::avx2) ? Isa::avx2 : Isa::generic;
  return best;
}

Isa active_isa() {
  const char* env = std::getenv("CNNKERN_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  for (Isa isa : {Isa::generic, Isa::avx2}) {
    if (std::strcmp(env, isa_name(isa)) != 0) continue;
    if (!cpu_has(isa))
      throw std::invalid_argument(std::string("CNNKERN_CPU_ISA=") + env +
                                  " but this CPU lacks that instruction set (best: " +
                                  isa_name(best_isa()) + ")");
    return isa;
  }
  throw std::invalid_argument(std::string("CNNKERN_CPU_ISA must be 'generic' or 'avx2' (or "
                                          "unset); got '") + env + "'");
}

}  // namespace cpu
}  // namespace cnnkern
