#include "cpu/common/cpu_isa.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>

#include "cpu/common/isa_calibration.h"

namespace cnnkern {
namespace cpu {

namespace {
constexpr Isa kBestFirst[] = {Isa::avx512, Isa::avx2, Isa::avx512_emulated, Isa::generic};

bool env_is(const char* name, const char* value) {
  const char* env = std::getenv(name);
  return env != nullptr && std::strcmp(env, value) == 0;
}

// The best variant of `f` at or below `isa` on this CPU: the one a forced ISA runs.
Isa served(Family f, Isa isa) {
  if ((isa == Isa::avx512 || isa == Isa::avx512_emulated) && !has_avx512_variant(f))
    return Isa::avx2;
  return isa;
}
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

const char* family_name(Family f) {
  switch (f) {
    case Family::gemm: return "gemm";
    case Family::winograd: return "winograd";
    case Family::direct: return "direct";
    case Family::depthwise: return "depthwise";
    case Family::pool: return "pool";
    case Family::bn_relu: break;
  }
  return "bn_relu";
}

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2:
    case Isa::avx512_emulated:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:  // the AVX-512 variants use F, BW, DQ and VL (masked 256-bit ops too)
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
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

Isa isa_rule() {
  static const Isa rule = [] {
    const Isa best = best_isa();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (best == Isa::avx512 && !__builtin_cpu_is("intel")) return Isa::avx2;
#endif
    return best;
  }();
  return rule;
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

IsaChoice isa_choice(Family f) {
  const char* env = std::getenv("CNNKERN_CPU_ISA");
  if (env != nullptr && *env != '\0')
    return {served(f, parse_isa(env, "CNNKERN_CPU_ISA")), "forced", {}, ""};
  const std::vector<Isa> cands = calibration_candidates(f);
  if (cands.size() == 1) return {cands[0], "only", {}, ""};
  if (env_is("CNNKERN_ISA_CALIBRATION", "0")) return {served(f, isa_rule()), "rule", {}, ""};
  const Calibration& cal = calibration();
  const Calibration::Entry& e = cal.entries[static_cast<int>(f)];
  return {e.isa, "measured", e.seconds, cal.source};
}

Isa active_isa(Family f) { return isa_choice(f).isa; }

}  // namespace cpu
}  // namespace cnnkern
