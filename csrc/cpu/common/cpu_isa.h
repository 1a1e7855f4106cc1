#pragma once
// The one instruction-set selector of the CPU backend: every family with ISA-specific variants
// (gemm, winograd, direct, depthwise, pool, bn_relu) asks it which to run. (The header is
// torch-free: the ISA translation units include it.)
//
// The library is compiled for baseline x86-64 (or whatever the host compiler targets); the
// AVX2 / AVX-512 variants live in their own translation units compiled with
// `#pragma GCC target` and are only called when the running CPU has those features. A family
// without a variant for the chosen ISA runs its best one below it.
//
// How a family's ISA is chosen (isa_choice), first match wins:
//   forced   CNNKERN_CPU_ISA names an ISA: every family runs it (or its best variant below);
//   only     the CPU runs one candidate of the family (no AVX-512, or no AVX-512 variant);
//   rule     CNNKERN_ISA_CALIBRATION=0: AVX-512 on Intel, AVX2 elsewhere (AMD Zen 4 runs
//            512-bit ops as two 256-bit halves, and issue 16 measured its AVX-512 GEMM
//            losing to the AVX2 one there; see isa_rule());
//   measured each candidate's micro-kernel timed once per process on a representative block
//            (cpu/common/isa_calibration.h), or read from the per-CPU-model cache file
//            (CNNKERN_ISA_CALIBRATION=emulated: avx512_emulated is a candidate on CPUs
//            without AVX-512, for the tests).
// The choice is not the widest the CPU reports: on Zen 4 the widest loses.

#include <string>
#include <utility>
#include <vector>

namespace cnnkern {
namespace cpu {

enum class Isa {
  generic,          // portable C++ (GCC vector extensions), any CPU
  avx2,             // AVX2 + FMA (x86-64)
  avx512_emulated,  // the AVX-512 variants' tile shapes and vector widths run with AVX2
                    // instructions: a test vehicle for machines without AVX-512, never chosen
                    // by default
  avx512,           // AVX-512F (+BW/DQ/VL where a family says so)
};

// The kernel families whose ISA is chosen separately (each times differently on each CPU).
enum class Family { gemm, winograd, direct, depthwise, pool, bn_relu };
constexpr Family kFamilies[] = {Family::gemm,      Family::winograd, Family::direct,
                                Family::depthwise, Family::pool,     Family::bn_relu};

const char* isa_name(Isa isa);
const char* family_name(Family f);

// Whether the running CPU can execute `isa`'s instructions.
bool cpu_supports(Isa isa);

// The ISAs this CPU runs, best first (avx512, avx2, avx512_emulated, generic as present).
std::vector<Isa> available_isas();

// The best ISA this CPU runs (never avx512_emulated).
Isa best_isa();

// Whether `f` has a variant of its own for AVX-512 (and so for avx512_emulated).
bool has_avx512_variant(Family f);

// What one family runs and why.
struct IsaChoice {
  Isa isa;
  const char* how;  // "forced", "only", "rule" or "measured"
  // measured only: the median seconds of each candidate's probe, and where they came from
  // ("measured in this process" or the cache file's path).
  std::vector<std::pair<Isa, double>> seconds;
  std::string source;
};

// The ISA family `f` runs now and why. CNNKERN_CPU_ISA and CNNKERN_ISA_CALIBRATION are read
// on every call, so that tests can run each variant in one process (a name the CPU cannot run
// throws, as parse_isa); the calibration runs at most once per process.
IsaChoice isa_choice(Family f);
Isa active_isa(Family f);

// The documented rule (calibration off): AVX-512 on GenuineIntel CPUs that have it, else the
// best below it.
Isa isa_rule();

// The ISA named `name`; throws (c10::Error) naming the choices if it is unknown or this CPU
// cannot run it. `what` says where the name came from ("CNNKERN_CPU_ISA", "isa").
Isa parse_isa(const std::string& name, const char* what);

// Whether a family's AVX2 variant serves `isa`: every ISA above generic, where the family
// has no wider variant.
inline bool uses_avx2(Isa isa) { return isa != Isa::generic; }

// The table `isa` runs of a family with generic, AVX2 and AVX-512 variants (the last also
// built emulated on AVX2 instructions, for the tests).
template <class Table>
inline const Table& pick_variant(Isa isa, const Table& generic, const Table& avx2,
                                 const Table& avx512, const Table& avx512_emulated) {
  switch (isa) {
    case Isa::avx512: return avx512;
    case Isa::avx512_emulated: return avx512_emulated;
    case Isa::avx2: return avx2;
    case Isa::generic: break;
  }
  return generic;
}

}  // namespace cpu
}  // namespace cnnkern
