// The depthwise passes of the CPU direct algorithm (see depthwise.h and depthwise_core.h).
//
// Work is split by (image, input channel) plane with at::parallel_for: each plane is packed
// (zero-padded, stride-phase split) into its thread's scratch, where it stays in cache while
// the plane's channel-multiplier outputs are computed from it. Every output element belongs
// to one plane and is summed in a fixed order, and grad-weight keeps one double partial per
// (image, output channel, tap) that a second loop adds over the images in image order: all
// three passes give bitwise the same result for any thread count.
//
//   forward      out[n][k] = correlation of padded x[n][k / m] with w[k] (m = K / C).
//   grad-input   gi[n][c] = stride-1 correlation, with the flipped filters, of the m planes
//                go[n][c * m + j] with zeros inserted between elements (stride > 1) and
//                padded by the kernel's reach less the forward's padding; the m planes are
//                one job of m * R * S taps.
//   grad-weight  gw[k][t] = sum_n sum_(u,v) go[n][k](u,v) * x_padded[n][k / m](tap t of (u,v)).

#include "cpu/direct/depthwise.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "core/int_math.h"
#include "cpu/direct/depthwise_core.h"

namespace cnnkern {
namespace depthwise {
namespace {

using cpu::DwConvJob;
using cpu::DwPackJob;
using cpu::DwWeightJob;

template <typename T>
const cpu::DepthwiseKernels<T>& kernels() {
  return cpu::depthwise_kernels<T>(cpu::active_isa(cpu::Family::depthwise));
}

// How one plane is packed and where each tap reads it (offsets relative to an output row's
// start, which advances by row_step per output row).
struct Layout {
  int64_t rows = 0, cols = 0, sw = 1, top = 0, left = 0, uh = 1, uw = 1, row_step = 0;
  std::vector<int64_t> off;
  int64_t plane() const { return sw * rows * cols; }
};

// Forward and grad-weight: the padded input plane split into stride_w column phases; tap
// (r, s) reads phase (s * dil_w) % sw, row u * stride_h + r * dil_h, column v + (s * dil_w) / sw.
Layout forward_layout(const Conv2dProblem& p) {
  Layout L;
  L.sw = p.stride_w;
  L.rows = p.H + 2 * p.pad_h;
  L.cols = ceil_div(p.W + 2 * p.pad_w, p.stride_w);
  L.top = p.pad_h;
  L.left = p.pad_w;
  L.row_step = p.stride_h * L.cols;
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t s = 0; s < p.S; ++s) {
      const int64_t e = s * p.dil_w;
      L.off.push_back(((e % L.sw) * L.rows + r * p.dil_h) * L.cols + e / L.sw);
    }
  return L;
}

// Grad-input: grad_output with stride - 1 zeros between elements, shifted by the kernel's
// reach less the padding (negative: cropped), so that
//   gi[h][w] = sum_(r,s) w[R-1-r][S-1-s] * Z[h + r * dil_h][w + s * dil_w];
// the channel multiplier's m planes follow each other, taps j * R * S + r * S + s.
Layout backward_input_layout(const Conv2dProblem& p) {
  Layout L;
  L.rows = p.H + (p.R - 1) * p.dil_h;
  L.cols = p.W + (p.S - 1) * p.dil_w;
  L.top = (p.R - 1) * p.dil_h - p.pad_h;
  L.left = (p.S - 1) * p.dil_w - p.pad_w;
  L.uh = p.stride_h;
  L.uw = p.stride_w;
  L.row_step = L.cols;
  const int64_t m = p.K / p.C;
  for (int64_t j = 0; j < m; ++j)
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s)
        L.off.push_back(j * L.plane() + r * p.dil_h * L.cols + s * p.dil_w);
  return L;
}

template <typename T>
void pack_plane(const cpu::DepthwiseKernels<T>& kn, const Layout& L, const T* src, int64_t Hs,
                int64_t Ws, T* dst) {
  DwPackJob<T> j{src, Hs, Ws, dst, L.rows, L.cols, L.sw, L.top, L.left, L.uh, L.uw};
  kn.pack(j);
}

// This thread's packing buffer for `planes` planes of L plus the kernels' over-read slack,
// grow-only and kept between calls. The packing writes only the elements that come from a
// source plane, so the buffer is zeroed whenever this thread packs a different layout (or
// source size) than last time; then its padding and inserted zeros are already in place.
// What lies past the packed planes only ever feeds vector lanes that are dropped (forward,
// grad-input) or masked (grad-weight).
template <typename T>
T* plane_scratch(const Layout& L, int64_t planes, int64_t Hs, int64_t Ws) {
  thread_local std::vector<T> buf;
  thread_local std::vector<int64_t> key;
  std::vector<int64_t> now{L.rows, L.cols, L.sw, L.top, L.left, L.uh, L.uw, planes, Hs, Ws};
  const size_t need = static_cast<size_t>(planes * L.plane() + cpu::kDepthwiseSlack);
  if (buf.size() < need) buf.resize(need);
  if (now != key) {
    std::fill(buf.begin(), buf.begin() + need, T(0));
    key = std::move(now);
  }
  return buf.data();
}

// The forward and the weight gradient both walk the input one (image, channel) plane at a
// time, padded into the thread's scratch, and hand it to body(plane, n, c).
template <typename T, typename Body>
void for_each_packed_input_plane(const cpu::DepthwiseKernels<T>& kn, const Layout& L, const T* x,
                                 const Conv2dProblem& p, const Body& body) {
  at::parallel_for(0, p.N * p.C, 1, [&](int64_t begin, int64_t end) {
    T* buf = plane_scratch<T>(L, 1, p.H, p.W);
    for (int64_t nc = begin; nc < end; ++nc) {
      pack_plane(kn, L, x + nc * p.H * p.W, p.H, p.W, buf);
      body(static_cast<const T*>(buf), nc / p.C, nc % p.C);
    }
  });
}

}  // namespace

template <typename T>
void forward(const at::Tensor& input, const at::Tensor& weight, const T* bias, T* out,
             const Conv2dProblem& p, bool relu) {
  const cpu::DepthwiseKernels<T>& kn = kernels<T>();
  const Layout L = forward_layout(p);
  const T* x = input.const_data_ptr<T>();
  const T* w = weight.const_data_ptr<T>();
  const int64_t m = p.K / p.C, RS = p.R * p.S;
  for_each_packed_input_plane(kn, L, x, p, [&](const T* buf, int64_t n, int64_t c) {
    for (int64_t j = 0; j < m; ++j) {
      const int64_t k = c * m + j;
      DwConvJob<T> job{buf,        L.row_step, L.off.data(), w + k * RS, RS,
                       p.P,        p.Q,        out + (n * p.K + k) * p.P * p.Q,
                       bias != nullptr, bias ? bias[k] : T(0), relu};
      kn.conv(job);
    }
  });
}

template <typename T>
void backward_input(const at::Tensor& grad_output, const at::Tensor& weight, T* gi,
                    const Conv2dProblem& p) {
  const cpu::DepthwiseKernels<T>& kn = kernels<T>();
  const Layout L = backward_input_layout(p);
  const int64_t m = p.K / p.C, RS = p.R * p.S;
  // Flipped filters, one row of m * R * S taps per input channel: wf[c][j][t] = w[c*m+j][RS-1-t].
  std::vector<T> wf(p.K * RS);
  const T* w = weight.const_data_ptr<T>();
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t t = 0; t < RS; ++t) wf[k * RS + t] = w[k * RS + RS - 1 - t];
  const T* go = grad_output.const_data_ptr<T>();
  at::parallel_for(0, p.N * p.C, 1, [&](int64_t begin, int64_t end) {
    T* buf = plane_scratch<T>(L, m, p.P, p.Q);
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / p.C, c = nc % p.C;
      for (int64_t j = 0; j < m; ++j)
        pack_plane(kn, L, go + (n * p.K + c * m + j) * p.P * p.Q, p.P, p.Q,
                   buf + j * L.plane());
      DwConvJob<T> job{buf, L.row_step, L.off.data(), wf.data() + c * m * RS, m * RS,
                       p.H, p.W,        gi + nc * p.H * p.W, false, T(0), false};
      kn.conv(job);
    }
  });
}

template <typename T>
void backward_weight(const at::Tensor& grad_output, const at::Tensor& input, T* gw,
                     const Conv2dProblem& p) {
  const cpu::DepthwiseKernels<T>& kn = kernels<T>();
  const Layout L = forward_layout(p);
  const int64_t m = p.K / p.C, RS = p.R * p.S;
  const T* x = input.const_data_ptr<T>();
  const T* go = grad_output.const_data_ptr<T>();
  // partial[n][k][t]: image n's sum for tap t of filter k.
  std::vector<double> partial(p.N * p.K * RS);
  for_each_packed_input_plane(kn, L, x, p, [&](const T* buf, int64_t n, int64_t c) {
    for (int64_t j = 0; j < m; ++j) {
      const int64_t nk = n * p.K + c * m + j;
      DwWeightJob<T> job{buf, L.row_step, L.off.data(), RS, go + nk * p.P * p.Q,
                         p.P, p.Q,        partial.data() + nk * RS};
      kn.weight_grad(job);
    }
  });
  for (int64_t kt = 0; kt < p.K * RS; ++kt) {
    double s = 0;
    for (int64_t n = 0; n < p.N; ++n) s += partial[n * p.K * RS + kt];
    gw[kt] = static_cast<T>(s);
  }
}

Conv2dWorkspace workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  const int64_t bytes = dtype == at::kDouble ? 8 : 4, RS = p.R * p.S, m = p.K / p.C;
  Conv2dWorkspace ws;
  if (pass == ConvPass::BackwardInput) {
    const Layout L = backward_input_layout(p);
    ws.per_call = p.K * RS * bytes;
    ws.per_thread = (m * L.plane() + cpu::kDepthwiseSlack) * bytes;
    ws.what = "the flipped filters (per call); grad_output planes with zeros inserted for the "
              "stride and padded by the kernel's reach (per thread, kept)";
    return ws;
  }
  const Layout L = forward_layout(p);
  ws.per_thread = (L.plane() + cpu::kDepthwiseSlack) * bytes;
  if (pass == ConvPass::Forward) {
    ws.what = "one input plane zero-padded and split into stride phases (per thread, kept)";
    return ws;
  }
  ws.per_call = p.N * p.K * RS * int64_t(sizeof(double));
  ws.what = "per-image double partial sums of the filter gradient (per call); one input plane "
            "zero-padded and split into stride phases (per thread, kept)";
  return ws;
}

#define CNNKERN_INSTANTIATE(T)                                                                 \
  template void forward<T>(const at::Tensor&, const at::Tensor&, const T*, T*,                 \
                           const Conv2dProblem&, bool);                                        \
  template void backward_input<T>(const at::Tensor&, const at::Tensor&, T*,                    \
                                  const Conv2dProblem&);                                       \
  template void backward_weight<T>(const at::Tensor&, const at::Tensor&, T*, const Conv2dProblem&);
CNNKERN_INSTANTIATE(float)
CNNKERN_INSTANTIATE(double)
#undef CNNKERN_INSTANTIATE

}  // namespace depthwise
}  // namespace cnnkern
