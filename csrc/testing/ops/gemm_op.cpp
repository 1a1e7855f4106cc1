// cnnkern_testing::gemm: an INTERNAL, tests-only op exposing the CPU GEMM (cpu/gemm/gemm.h) so that
// tests/internals/test_gemm.py can check it against torch.matmul with odd sizes, transposed views,
// every kernel set this CPU runs, and the pre-packed A path. Not part of the public API.
//
//   gemm(a, b, c, trans_a, trans_b, prepack_a, custom_b, row_bias, isa)
//     = op(a) @ op(b) (+ c when given) (+ row_bias[:, None] when given)
//
// op(x) is x or x.t(); a and b may be any strided 2-D views (their strides reach the GEMM
// as they are). prepack_a runs gemm_pack_a + gemm_packed; custom_b (implies prepack_a)
// runs gemm_packed_custom_b with a packing function that reads b element by element;
// row_bias needs one of the two. The result is computed into a buffer with a padded row stride and an extra
// row, NaN-filled (so beta = 0 must ignore C's contents), and the op fails if the GEMM
// wrote outside C.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>
#include <string>

#include "cpu/gemm/gemm_dispatch.h"

namespace cnnkern {
namespace {

constexpr const char* kOp = "cnnkern_testing.gemm";

at::Tensor gemm_op(const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& c,
                   bool trans_a, bool trans_b, bool prepack_a, bool custom_b,
                   const c10::optional<at::Tensor>& row_bias, c10::string_view isa) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, kOp, ": a and b must be 2-D; got a of size ",
              a.sizes(), " and b of size ", b.sizes());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), kOp, ": a is ", a.scalar_type(),
              " but b is ", b.scalar_type());
  TORCH_CHECK(a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble, kOp,
              ": supports float32 and float64; got ", a.scalar_type());
  const at::Tensor A = trans_a ? a.t() : a;
  const at::Tensor B = trans_b ? b.t() : b;
  const int64_t M = A.size(0), K = A.size(1), N = B.size(1);
  TORCH_CHECK(B.size(0) == K, kOp, ": op(a) is ", M, " x ", K, " but op(b) is ", B.size(0),
              " x ", N);
  if (c.has_value()) {
    TORCH_CHECK(c->sizes() == at::IntArrayRef({M, N}), kOp, ": c must be ", M, " x ", N,
                "; got ", c->sizes());
    TORCH_CHECK(c->scalar_type() == a.scalar_type(), kOp, ": c is ", c->scalar_type(),
                " but a is ", a.scalar_type());
  }
  if (row_bias.has_value()) {
    TORCH_CHECK(prepack_a || custom_b, kOp, ": row_bias needs prepack_a or custom_b");
    TORCH_CHECK(row_bias->dim() == 1 && row_bias->size(0) == M, kOp,
                ": row_bias must have size ", M, "; got ", row_bias->sizes());
    TORCH_CHECK(row_bias->scalar_type() == a.scalar_type(), kOp, ": row_bias is ",
                row_bias->scalar_type(), " but a is ", a.scalar_type());
  }
  const at::Tensor bias = row_bias.has_value() ? row_bias->contiguous() : at::Tensor();
  constexpr int64_t kPad = 3;
  at::Tensor buf = at::full({M + 1, N + kPad}, std::numeric_limits<double>::quiet_NaN(),
                            a.options());
  at::Tensor out = buf.narrow(0, 0, M).narrow(1, 0, N);
  if (c.has_value()) out.copy_(*c);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), kOp, [&] {
    using namespace cpu::gemm_detail;
    const GemmKernels<scalar_t>& kt = kernels_for<scalar_t>(std::string(isa));
    const scalar_t beta = c.has_value() ? scalar_t(1) : scalar_t(0);
    const scalar_t* pa = A.const_data_ptr<scalar_t>();
    const scalar_t* pb = B.const_data_ptr<scalar_t>();
    scalar_t* pc = out.mutable_data_ptr<scalar_t>();
    const scalar_t* bias_ptr = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    if (custom_b) {
      const auto packed = gemm_pack_a_with(kt, M, K, pa, A.stride(0), A.stride(1));
      const int64_t rsb = B.stride(0), csb = B.stride(1);
      const cpu::GemmPackB<scalar_t> pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                                int64_t nr, scalar_t* dst) {
        for (int64_t panel = 0; panel * nr < nc; ++panel) {
          for (int64_t k = 0; k < kc; ++k) {
            for (int64_t lane = 0; lane < nr; ++lane) {
              const int64_t j = panel * nr + lane;
              dst[(panel * kc + k) * nr + lane] =
                  j < nc ? pb[(k0 + k) * rsb + (j0 + j) * csb] : scalar_t(0);
            }
          }
        }
      };
      cpu::gemm_packed_custom_b(packed, N, pack, beta, pc, N + kPad, bias_ptr);
    } else if (prepack_a) {
      const auto packed = gemm_pack_a_with(kt, M, K, pa, A.stride(0), A.stride(1));
      cpu::gemm_packed(packed, N, pb, B.stride(0), B.stride(1), beta, pc, N + kPad, bias_ptr);
    } else {
      gemm_with(kt, M, N, K, pa, A.stride(0), A.stride(1), pb, B.stride(0), B.stride(1), beta,
                pc, N + kPad);
    }
  });
  const bool untouched = buf.narrow(1, N, kPad).isnan().all().item<bool>() &&
                         buf.narrow(0, M, 1).isnan().all().item<bool>();
  TORCH_CHECK(untouched, kOp, ": the GEMM wrote outside C (M=", M, ", N=", N, ", K=", K, ")");
  return out.contiguous();
}

}  // namespace
}  // namespace cnnkern

TORCH_LIBRARY_IMPL(cnnkern_testing, CPU, m) { m.impl("gemm", TORCH_FN(cnnkern::gemm_op)); }
