#pragma once
// The one instruction-set selector of the CPU backend: every family with ISA-specific variants
// (gemm, direct, winograd, pool) asks it which to run, and one environment variable overrides
// it for all of them. (The header is torch-free: the ISA translation units include it.)
//
// The library is compiled for baseline x86-64 (or whatever the host compiler targets); the
// AVX2 / AVX-512 variants live in their own translation units compiled with
// `#pragma GCC target` and are only called when the running CPU has those features. A family
// without a variant for the active ISA runs its best one below it (direct and pooling have
// generic and AVX2 only).

#include <string>
#include <vector>

namespace cnnkern {
namespace cpu {

enum class Isa {
  generic,          // portable C++ (GCC vector extensions), any CPU
  avx2,             // AVX2 + FMA (x86-64)
  avx512_emulated,  // the AVX-512 GEMM's tile shapes and block sizes run with AVX2 instructions:
                    // a test vehicle for machines without AVX-512, never chosen by default
  avx512,           // AVX-512F
};

const char* isa_name(Isa isa);

// Whether the running CPU can execute `isa`'s instructions.
bool cpu_supports(Isa isa);

// The ISAs this CPU runs, best first (avx512, avx2, avx512_emulated, generic as present).
std::vector<Isa> available_isas();

// The best ISA this CPU runs (never avx512_emulated).
Isa best_isa();

// The ISA the kernels use now: best_isa(), unless the environment variable CNNKERN_CPU_ISA
// names another; it is read on every call so that tests can run each variant in one process
// (a name the CPU cannot run throws, as parse_isa).
Isa active_isa();

// The ISA named `name`; throws (c10::Error) naming the choices if it is unknown or this CPU
// cannot run it. `what` says where the name came from ("CNNKERN_CPU_ISA", "isa").
Isa parse_isa(const std::string& name, const char* what);

// Whether a family's AVX2 variant serves `isa`: every ISA above generic, where the family
// has no wider variant.
inline bool uses_avx2(Isa isa) { return isa != Isa::generic; }

}  // namespace cpu
}  // namespace cnnkern
