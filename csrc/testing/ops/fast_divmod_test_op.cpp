// INTERNAL, tests-only op running core/fast_divmod.h (the magic-number division the CUDA
// pooling kernels split their 32-bit indices with) on the CPU, so that
// tests/internals/test_fast_divmod.py checks it against plain division on any machine.
//
//   fast_divmod(Tensor n, int d) -> Tensor
//       n: int64 dividends in [0, 2^31 - 1]; returns an int64 tensor of n's shape + (2,):
//       [..., 0] the quotients, [..., 1] the remainders, both from FastDivmod(d).

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdint>

#include "core/fast_divmod.h"

namespace cnnkern {
namespace {

at::Tensor fast_divmod_op(const at::Tensor& n, int64_t d) {
  constexpr int64_t kMax = INT32_MAX;
  TORCH_CHECK(d >= 1 && d <= kMax, "cnnkern_testing.fast_divmod: d must be in [1, 2^31 - 1]; got ",
              d);
  TORCH_CHECK(n.scalar_type() == at::kLong, "cnnkern_testing.fast_divmod: n must be int64; got ",
              n.scalar_type());
  const at::Tensor src = n.contiguous();
  const int64_t* in = src.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < src.numel(); ++i)
    TORCH_CHECK(in[i] >= 0 && in[i] <= kMax,
                "cnnkern_testing.fast_divmod: n must be in [0, 2^31 - 1]; got ", in[i]);
  std::vector<int64_t> shape(src.sizes().begin(), src.sizes().end());
  shape.push_back(2);
  at::Tensor out = at::empty(shape, src.options());
  int64_t* o = out.mutable_data_ptr<int64_t>();
  const FastDivmod div(static_cast<uint32_t>(d));
  for (int64_t i = 0; i < src.numel(); ++i) {
    uint32_t rem = 0;
    o[2 * i] = div.divmod(static_cast<uint32_t>(in[i]), rem);
    o[2 * i + 1] = rem;
  }
  return out;
}

}  // namespace
}  // namespace cnnkern

TORCH_LIBRARY_FRAGMENT(cnnkern_testing, m) {
  m.def("fast_divmod(Tensor n, int d) -> Tensor", &cnnkern::fast_divmod_op);
}
