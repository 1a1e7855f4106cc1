#include "cpu/common/cpu_isa.h"

#include <c10/util/Exception.h>

#include <cstdlib>

namespace cnnkern {
namespace cpu {

namespace {
constexpr Isa kBestFirst[] = {Isa::avx512, Isa::avx2, Isa::avx512_emulated, Isa::generic};
}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx512_emulated: return "avx512_emulated";
    case Isa::avx2: return "avx2";
    case Isa::generic: break;
  }
  return "generic";
}

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2:
    case Isa::avx512_emulated:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512: return __builtin_cpu_supports("avx512f");
  }
  return false;
#else
  return isa == Isa::generic;
#endif
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : kBestFirst)
    if (cpu_supports(isa)) out.push_back(isa);
  return out;
}

Isa best_isa() {
  static const Isa best = [] {
    for (Isa isa : available_isas())
      if (isa != Isa::avx512_emulated) return isa;
    return Isa::generic;
  }();
  return best;
}

Isa parse_isa(const std::string& name, const char* what) {
  for (Isa isa : available_isas())
    if (name == isa_name(isa)) return isa;
  std::string choices;
  for (Isa isa : available_isas())
    choices += (choices.empty() ? "" : ", ") + std::string(isa_name(isa));
  TORCH_CHECK(false, "cnnkern: ", what, ": kernel set '", name,
              "' is not available on this CPU; choose from ", choices);
}

Isa active_isa() {
  const char* env = std::getenv("CNNKERN_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  return parse_isa(env, "CNNKERN_CPU_ISA");
}

}  // namespace cpu
}  // namespace cnnkern
