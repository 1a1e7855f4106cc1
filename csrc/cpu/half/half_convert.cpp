#include "cpu/half/half_convert.h"

namespace cnnkern {
namespace cpu {

const HalfConvert& half_convert(HalfKind kind, Isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // Every AVX2 CPU made has F16C, but the feature bits are separate: ask.
  if (isa != Isa::generic && !__builtin_cpu_supports("f16c")) isa = Isa::generic;
#endif
  return pick_variant(isa, generic::half_convert(kind), avx2::half_convert(kind),
                      avx512::half_convert(kind), avx512_emulated::half_convert(kind));
}

}  // namespace cpu
}  // namespace cnnkern
