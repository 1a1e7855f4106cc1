// Depthwise kernels, AVX2 + FMA variant. Only called when the running CPU has both
// (cpu/common/cpu_isa.h). Every header is included before the target pragma, so the only
// code compiled for AVX2 is this file's own, in namespace cnnkern::cpu::avx2.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/direct/depthwise_core.h"

#include "cpu/common/avx2_begin.h"
#include "cpu/direct/depthwise_core_impl.h"
#include "cpu/common/avx2_end.h"
