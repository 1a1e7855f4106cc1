// float16 / bfloat16 <-> float32 runs, AVX-512 variant's width (16) on AVX2 + F16C instructions, a test vehicle (CNNKERN_CPU_ISA=avx512_emulated).
// Every header is included before the ISA's target pragma (see cpu/common/avx2_begin.h).
#include <cstdint>
#include <cstring>

#include "cpu/half/half_convert.h"

#include "cpu/common/avx512_emulated_begin.h"
#include "cpu/half/half_convert_impl.h"
#include "cpu/common/avx2_end.h"
