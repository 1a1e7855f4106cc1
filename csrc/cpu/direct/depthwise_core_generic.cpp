// Depthwise kernels, portable variant (GCC vector extensions, any CPU).
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/direct/depthwise_core.h"

#define CNNKERN_ISA_NS generic
#include "cpu/direct/depthwise_core_impl.h"
