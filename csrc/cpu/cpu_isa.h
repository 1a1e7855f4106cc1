#pragma once
// Which instruction set the CPU kernels with ISA-specific variants (direct conv, pooling) use.
//
// The library is compiled for baseline x86-64 (or whatever the host compiler targets); the
// AVX2+FMA variants live in their own translation units compiled with `#pragma GCC target`
// and are only called when the running CPU has those features. Torch-free.

namespace cnnkern {
namespace cpu {

enum class Isa {
  generic,  // portable C++ (GCC vector extensions), any CPU
  avx2,     // AVX2 + FMA (x86-64)
};

const char* isa_name(Isa isa);

// The best ISA this CPU supports.
Isa best_isa();

// The ISA the kernels use now: best_isa(), unless the environment variable CNNKERN_CPU_ISA
// names another ("generic" or "avx2"); it is read on every call so that tests can run each
// variant in one process. Naming an ISA this CPU lacks, or an unknown name, throws
// std::invalid_argument with the reason.
Isa active_isa();

}  // namespace cpu
}  // namespace cnnkern
