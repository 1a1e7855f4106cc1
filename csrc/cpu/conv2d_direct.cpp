// Direct convolution on the CPU: forward, grad-input and grad-weight, for every stride,
// padding, dilation and group count.
//
// Each pass is parallel over planes it owns (no two threads write the same element), so the
// results do not depend on the thread count. The innermost loop runs along an output row
// over the range of q whose input column is in bounds (computed once per filter tap), so it
// has no branches and vectorises for stride 1.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <string>

#include "common/conv2d_algo.h"
#include "common/row_range.h"

namespace cnnkern {
namespace {

// Accumulator for long sums (grad-weight): double for float inputs.
template <typename T>
using wide_t = double;

template <typename T>
void forward_kernel(const T* in, const T* w, const T* bias, T* out, const Conv2dProblem& p) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  at::parallel_for(0, p.N * p.K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk) {
      const int64_t n = nk / p.K, k = nk % p.K, g = k / Kg;
      T* o = out + nk * p.P * p.Q;
      const T b = bias ? bias[k] : T(0);
      for (int64_t i = 0; i < p.P * p.Q; ++i) o[i] = b;
      for (int64_t c = 0; c < Cg; ++c) {
        const T* plane = in + ((n * p.C) + g * Cg + c) * p.H * p.W;
        const T* wk = w + ((k * Cg) + c) * p.R * p.S;
        for (int64_t r = 0; r < p.R; ++r) {
          for (int64_t s = 0; s < p.S; ++s) {
            const T wv = wk[r * p.S + s];
            const RowRange qr = row_range(p.Q, p.W, p.stride_w, p.pad_w, s * p.dil_w);
            for (int64_t oh = 0; oh < p.P; ++oh) {
              const int64_t h = p.in_h(oh, r);
              if (h < 0 || h >= p.H) continue;
              const T* src = plane + h * p.W;
              T* dst = o + oh * p.Q;
              for (int64_t q = qr.begin; q < qr.end; ++q)
                dst[q] += wv * src[q * p.stride_w + qr.offset];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void backward_input_kernel(const T* go, const T* w, T* gi, const Conv2dProblem& p) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  at::parallel_for(0, p.N * p.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / p.C, c = nc % p.C, g = c / Cg, cg = c % Cg;
      T* dst_plane = gi + nc * p.H * p.W;  // zero-filled by the caller
      for (int64_t k = g * Kg; k < (g + 1) * Kg; ++k) {
        const T* src_plane = go + (n * p.K + k) * p.P * p.Q;
        const T* wk = w + ((k * Cg) + cg) * p.R * p.S;
        for (int64_t r = 0; r < p.R; ++r) {
          for (int64_t s = 0; s < p.S; ++s) {
            const T wv = wk[r * p.S + s];
            const RowRange qr = row_range(p.Q, p.W, p.stride_w, p.pad_w, s * p.dil_w);
            for (int64_t oh = 0; oh < p.P; ++oh) {
              const int64_t h = p.in_h(oh, r);
              if (h < 0 || h >= p.H) continue;
              T* dst = dst_plane + h * p.W;
              const T* src = src_plane + oh * p.Q;
              for (int64_t q = qr.begin; q < qr.end; ++q)
                dst[q * p.stride_w + qr.offset] += wv * src[q];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void backward_weight_kernel(const T* go, const T* in, T* gw, const Conv2dProblem& p) {
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  at::parallel_for(0, p.K * Cg, 1, [&](int64_t begin, int64_t end) {
    for (int64_t kc = begin; kc < end; ++kc) {
      const int64_t k = kc / Cg, cg = kc % Cg, c = (k / Kg) * Cg + cg;
      for (int64_t r = 0; r < p.R; ++r) {
        for (int64_t s = 0; s < p.S; ++s) {
          const RowRange qr = row_range(p.Q, p.W, p.stride_w, p.pad_w, s * p.dil_w);
          wide_t<T> acc = 0;
          for (int64_t n = 0; n < p.N; ++n) {
            const T* src_plane = go + (n * p.K + k) * p.P * p.Q;
            const T* in_plane = in + (n * p.C + c) * p.H * p.W;
            for (int64_t oh = 0; oh < p.P; ++oh) {
              const int64_t h = p.in_h(oh, r);
              if (h < 0 || h >= p.H) continue;
              const T* x = in_plane + h * p.W;
              const T* dy = src_plane + oh * p.Q;
              T row = 0;  // one row in the input precision (vectorises), rows summed wide
              for (int64_t q = qr.begin; q < qr.end; ++q)
                row += dy[q] * x[q * p.stride_w + qr.offset];
              acc += row;
            }
          }
          gw[(kc * p.R + r) * p.S + s] = static_cast<T>(acc);
        }
      }
    }
  });
}

std::string why_not_direct(const Conv2dProblem&, at::ScalarType dtype) {
  if (dtype == at::kFloat || dtype == at::kDouble) return "";
  return std::string("the CPU direct kernels support float32 and float64; got ") +
         c10::toString(dtype);
}

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   const c10::optional<at::Tensor>& bias, const Conv2dProblem& p) {
  at::Tensor out = at::empty({p.N, p.K, p.P, p.Q}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnkern_conv2d_direct_cpu", [&] {
    forward_kernel<scalar_t>(input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                             bias ? bias->const_data_ptr<scalar_t>() : nullptr,
                             out.mutable_data_ptr<scalar_t>(), p);
  });
  return out;
}

at::Tensor backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                          const Conv2dProblem& p) {
  at::Tensor gi = at::zeros({p.N, p.C, p.H, p.W}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnkern_conv2d_direct_bwd_input_cpu",
                             [&] {
                               backward_input_kernel<scalar_t>(
                                   grad_output.const_data_ptr<scalar_t>(),
                                   weight.const_data_ptr<scalar_t>(),
                                   gi.mutable_data_ptr<scalar_t>(), p);
                             });
  return gi;
}

at::Tensor backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                           const Conv2dProblem& p) {
  at::Tensor gw = at::empty({p.K, p.C_per_group(), p.R, p.S}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnkern_conv2d_direct_bwd_weight_cpu",
                             [&] {
                               backward_weight_kernel<scalar_t>(
                                   grad_output.const_data_ptr<scalar_t>(),
                                   input.const_data_ptr<scalar_t>(),
                                   gw.mutable_data_ptr<scalar_t>(), p);
                             });
  return gw;
}

}  // namespace

CONV2D_REGISTER_ALGO(Backend::CPU, Conv2dAlgo{"direct", /*auto_priority=*/10, why_not_direct,
                                              forward, backward_input, backward_weight});

}  // namespace cnnkern
