// BN+ReLU backward plane kernels, AVX2 variant. Only called when the running CPU has AVX2 and
// FMA (cpu/common/cpu_isa.h). Every header is included before the target pragma, so the only
// code compiled for AVX2 is this file's own, in namespace cnnkern::cpu::avx2.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/bn_relu/bn_relu_core.h"

#include "cpu/common/avx2_begin.h"
#include "cpu/bn_relu/bn_relu_core_impl.h"
#include "cpu/common/avx2_end.h"
