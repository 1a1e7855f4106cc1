// Direct-convolution inner kernels, portable variant (GCC vector extensions, any CPU).
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/direct/conv2d_direct_core.h"

#define CNNKERN_ISA_NS generic
#include "cpu/direct/conv2d_direct_core_impl.h"
