// Direct convolution on the CPU: forward, grad-input and grad-weight, for every stride,
// padding, dilation and group count, float32 and float64 (float16/bfloat16 through them:
// cpu/common/half_via_float32.h).
//
// Each pass repacks its input planes (zero padding, and a split into stride phases) so that
// the register-blocked kernels of conv2d_direct_core.h see one "flat correlation": output
// position i of a channel block reads x[c][i + off[t]] through tap t. The kernels broadcast
// weights and run vectors of consecutive output positions, KB output channels at a time, so
// every input vector load feeds KB fused multiply-adds.
//
//   forward     x = padded input (phases for stride > 1), virtual output rows of the padded
//               row length; positions past the real output width are computed and dropped.
//   grad-input  the transposed convolution: grad_output padded by the flipped kernel's reach
//               and correlated with the flipped filter (its channel axes swapped), one job set
//               per stride phase of grad_input (a stride-1 correlation over a tap subset).
//   grad-weight gw[k][c][t] = sum over n and output positions of go(k) * x(c, + off[t]), on
//               the forward's packed input and grad_output laid out on the same virtual
//               rows, vectorised along the positions (dropped ones masked to zero).
//
// Every output element is computed by one job, in an order fixed by the problem (never by
// the thread count or by which thread runs the job), so results are bitwise reproducible
// across thread counts. Jobs are handed out dynamically for load balance.
//
// Padding is multiplied as zeros (as im2col does), so an infinite weight meets a padded zero
// as NaN where a kernel that skips padded taps would give +-inf.
//
// Depthwise problems (groups == in_channels) have no channel reuse for those kernels to
// exploit; every pass sends them to the per-plane path of depthwise.h instead.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "ops/conv2d_algo.h"
#include "core/int_math.h"
#include "cpu/direct/conv2d_direct_core.h"
#include "cpu/direct/depthwise.h"
#include "cpu/common/half_via_float32.h"

namespace cnnkern {
namespace {

using cpu::DirectKernels;
using cpu::FlatConvJob;
using cpu::FlatWeightGradJob;

int64_t floor_div64(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Runs fn(job) for job in [0, njobs) on every intra-op thread, jobs handed out in order from
// a shared counter.
template <typename F>
void for_each_job(int64_t njobs, const F& fn) {
  if (njobs <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), njobs);
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t j = next.fetch_add(1); j < njobs; j = next.fetch_add(1)) fn(j);
  });
}

template <typename T>
const DirectKernels<T>& kernels() {
  return cpu::direct_kernels<T>(cpu::active_isa(cpu::Family::direct));
}

// Packed planes: plane m of `src` (H x W) becomes sh * sw phase planes of Hv x Wv, phase
// (a, b) holding padded element (y * sh + a, x * sw + b), i.e. source element
// (y * sh + a - pad_top, x * sw + b - pad_left), zero outside the source. Pads may be
// negative (a crop). `slack` zeros follow the last plane, for the kernels' over-reads.
struct Packing {
  int64_t sh = 1, sw = 1, Hv = 0, Wv = 0, pad_top = 0, pad_left = 0;
  int64_t plane() const { return sh * sw * Hv * Wv; }
};

// Planes are `stride` >= pk.plane() elements apart (zeros in between).
template <typename T>
at::Tensor pack_planes(const T* src, int64_t nplanes, int64_t H, int64_t W, const Packing& pk,
                       int64_t slack, const at::TensorOptions& opts, int64_t stride = 0) {
  const int64_t plane = std::max(stride, pk.plane());
  at::Tensor out = at::empty({nplanes * plane + slack}, opts);
  T* dst = out.mutable_data_ptr<T>();
  std::fill(dst + nplanes * plane, dst + nplanes * plane + slack, T(0));
  at::parallel_for(0, nplanes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const T* s = src + m * H * W;
      T* d = dst + m * plane;
      std::fill(d + pk.plane(), d + plane, T(0));
      for (int64_t a = 0; a < pk.sh; ++a) {
        for (int64_t b = 0; b < pk.sw; ++b) {
          // columns x whose source column x * sw + b - pad_left is in [0, W)
          const int64_t x0 = std::max<int64_t>(0, -floor_div64(b - pk.pad_left, pk.sw));
          const int64_t x1 =
              std::min<int64_t>(pk.Wv, floor_div64(W - 1 + pk.pad_left - b, pk.sw) + 1);
          for (int64_t y = 0; y < pk.Hv; ++y, d += pk.Wv) {
            const int64_t h = y * pk.sh + a - pk.pad_top;
            if (h < 0 || h >= H || x1 <= x0) {
              std::fill(d, d + pk.Wv, T(0));
              continue;
            }
            const T* first = s + h * W + (x0 * pk.sw + b - pk.pad_left);  // column of x0
            std::fill(d, d + x0, T(0));
            if (pk.sw == 1) {
              std::memcpy(d + x0, first, (x1 - x0) * sizeof(T));
            } else {
              for (int64_t x = x0; x < x1; ++x) d[x] = first[(x - x0) * pk.sw];
            }
            std::fill(d + x1, d + pk.Wv, T(0));
          }
        }
      }
    }
  });
  return out;
}

// The forward's packing of the input and its tap offsets (also used by grad-weight).
struct ForwardLayout {
  Packing pk;
  std::vector<int64_t> off, woff;  // per tap t = r * S + s
  int64_t slack = 0;
};

ForwardLayout forward_layout(const Conv2dProblem& p) {
  ForwardLayout L;
  Packing& pk = L.pk;
  pk.sh = p.stride_h;
  pk.sw = p.stride_w;
  pk.Hv = ceil_div(p.H + 2 * p.pad_h, p.stride_h);
  pk.Wv = ceil_div(p.W + 2 * p.pad_w, p.stride_w);
  pk.pad_top = p.pad_h;
  pk.pad_left = p.pad_w;
  int64_t max_off = 0;
  for (int64_t r = 0; r < p.R; ++r) {
    for (int64_t s = 0; s < p.S; ++s) {
      const int64_t eh = r * p.dil_h, ew = s * p.dil_w;
      const int64_t a = eh % pk.sh, b = ew % pk.sw;
      const int64_t o = ((a * pk.sw + b) * pk.Hv + eh / pk.sh) * pk.Wv + ew / pk.sw;
      L.off.push_back(o);
      L.woff.push_back(r * p.S + s);
      max_off = std::max(max_off, o);
    }
  }
  L.slack = max_off + 256;  // tiles overrun a job's last position by < 256 elements
  return L;
}

// Job size along the flat positions: a multiple of the kernel's tile, long enough to amortise
// the per-job overhead, short enough that the input rows a job reads stay in L2 while the
// output-channel blocks of that strip are computed one after another.
int64_t strip_length(int64_t tile, int64_t row_len, int64_t total) {
  const int64_t want = std::max<int64_t>(8 * tile, 2 * row_len);
  const int64_t len = ceil_div(std::min(want, total), tile) * tile;
  return std::max<int64_t>(len, tile);
}

template <typename T>
void forward_impl(const at::Tensor& input, const at::Tensor& weight, const T* bias, T* out,
                  const Conv2dProblem& p, bool relu) {
  const DirectKernels<T>& kn = kernels<T>();
  const ForwardLayout L = forward_layout(p);
  const at::Tensor X = pack_planes<T>(input.const_data_ptr<T>(), p.N * p.C, p.H, p.W, L.pk,
                                      L.slack, input.options());
  const T* x = X.const_data_ptr<T>();
  const T* w = weight.const_data_ptr<T>();
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), T_ = p.R * p.S;
  const int64_t plane = L.pk.plane(), Wv = L.pk.Wv;
  const int64_t flat = p.P * Wv;
  const int64_t strip = strip_length(kn.tile, Wv, flat);
  const int64_t nstrips = ceil_div(flat, strip), nkb = ceil_div(Kg, kn.kb);
  const int64_t njobs = p.N * p.groups * nstrips * nkb;
  for_each_job(njobs, [&](int64_t job) {
    const int64_t kb = job % nkb, st = (job / nkb) % nstrips;
    const int64_t g = (job / (nkb * nstrips)) % p.groups, n = job / (nkb * nstrips * p.groups);
    const int64_t k0 = g * Kg + kb * kn.kb;
    FlatConvJob<T> j;
    j.x = x + (n * p.C + g * Cg) * plane;
    j.x_cstride = plane;
    j.cin = Cg;
    j.off = L.off.data();
    j.ntaps = T_;
    j.w = w + k0 * Cg * T_;
    j.w_kstride = Cg * T_;
    j.w_cstride = T_;
    j.woff = L.woff.data();
    j.kbn = std::min(kn.kb, Kg - kb * kn.kb);
    j.i_begin = st * strip;
    j.i_end = std::min(flat, j.i_begin + strip);
    j.row_len = Wv;
    j.u_lo = 0;
    j.u_hi = p.P;
    j.v_lo = 0;
    j.v_hi = p.Q;
    j.dst = out + (n * p.K + k0) * p.P * p.Q;
    j.dst_base = 0;
    j.dst_kstride = p.P * p.Q;
    j.dst_row = p.Q;
    j.dst_col = 1;
    j.bias = bias ? bias + k0 : nullptr;
    j.relu = relu;
    kn.conv(j);
  });
}

// One stride phase (a, b) of grad_input along both axes: the taps that reach it, their
// offsets in the padded grad_output and their filter positions, and the phase's valid rows
// and columns.
struct Phase {
  std::vector<int64_t> off, woff;
  int64_t u_lo, u_hi, v_lo, v_hi, dst_base;
};

// Along one axis (input size `in`, output size `out`, kernel k, stride s, pad, dilation d):
// grad_input position h = s * u' + a + s * sigma - pad for phase a and virtual row u'.
struct AxisPhases {
  int64_t reach;   // max over taps of (d * r) / s: the padding grad_output needs before row 0
  int64_t sigma;   // min over phases of the first valid u (rows before it are not computed)
  int64_t len;     // virtual rows / packed rows of grad_output
  std::vector<int64_t> lo, hi;  // per phase: valid u' in [lo, hi)
};

AxisPhases axis_phases(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d) {
  AxisPhases A;
  A.reach = (d * (k - 1)) / s;
  A.sigma = pad / s;  // the smallest first-valid u, which phase a = pad % s attains
  int64_t max_hi = 0;
  for (int64_t a = 0; a < s; ++a) {
    // h = s * u + a - pad in [0, in)  <=>  u in [ceil((pad - a) / s), floor((in - 1 + pad - a) / s)]
    const int64_t lo = std::max<int64_t>(0, ceil_div(std::max<int64_t>(pad - a, 0), s));
    const int64_t hi = floor_div64(in - 1 + pad - a, s) + 1;
    A.lo.push_back(lo - A.sigma);
    A.hi.push_back(std::max(hi, lo) - A.sigma);
    max_hi = std::max(max_hi, A.hi.back());
  }
  A.len = max_hi + A.reach;
  return A;
}

template <typename T>
void backward_input_impl(const at::Tensor& grad_output, const at::Tensor& weight, T* gi,
                         const Conv2dProblem& p) {
  const DirectKernels<T>& kn = kernels<T>();
  const AxisPhases AH = axis_phases(p.H, p.R, p.stride_h, p.pad_h, p.dil_h);
  const AxisPhases AW = axis_phases(p.W, p.S, p.stride_w, p.pad_w, p.dil_w);
  // G[y][x] = go[y + sigma - reach][x + sigma_w - reach_w]
  Packing pk;
  pk.Hv = AH.len;
  pk.Wv = AW.len;
  pk.pad_top = AH.reach - AH.sigma;
  pk.pad_left = AW.reach - AW.sigma;
  const int64_t Wg = pk.Wv, plane = pk.plane();
  std::vector<Phase> phases;
  int64_t max_off = 0;
  for (int64_t a = 0; a < p.stride_h; ++a) {
    for (int64_t b = 0; b < p.stride_w; ++b) {
      Phase ph;
      for (int64_t r = 0; r < p.R; ++r) {
        if ((r * p.dil_h) % p.stride_h != a) continue;  // tap r reaches phase a only
        for (int64_t s = 0; s < p.S; ++s) {
          if ((s * p.dil_w) % p.stride_w != b) continue;
          const int64_t o = (AH.reach - (r * p.dil_h) / p.stride_h) * Wg +
                            (AW.reach - (s * p.dil_w) / p.stride_w);
          ph.off.push_back(o);
          ph.woff.push_back(r * p.S + s);
          max_off = std::max(max_off, o);
        }
      }
      // Taps in ascending offset order, so the kernel walks each plane forwards.
      std::vector<size_t> order(ph.off.size());
      for (size_t t = 0; t < order.size(); ++t) order[t] = t;
      std::sort(order.begin(), order.end(),
                [&](size_t l, size_t r) { return ph.off[l] < ph.off[r]; });
      std::vector<int64_t> off, woff;
      for (size_t t : order) {
        off.push_back(ph.off[t]);
        woff.push_back(ph.woff[t]);
      }
      ph.off = std::move(off);
      ph.woff = std::move(woff);
      ph.u_lo = AH.lo[a];
      ph.u_hi = AH.hi[a];
      ph.v_lo = AW.lo[b];
      ph.v_hi = AW.hi[b];
      // h = s * (u' + sigma) + a - pad
      ph.dst_base = (p.stride_h * AH.sigma + a - p.pad_h) * p.W +
                    (p.stride_w * AW.sigma + b - p.pad_w);
      phases.push_back(std::move(ph));
    }
  }
  const at::Tensor G = pack_planes<T>(grad_output.const_data_ptr<T>(), p.N * p.K, p.P, p.Q,
                                      pk, max_off + 256, grad_output.options());
  const T* x = G.const_data_ptr<T>();
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), RS = p.R * p.S;
  const int64_t ncb = ceil_div(Cg, kn.kb);
  // The filter with its channel axes swapped, wt[g][c][k][r][s] = w[g * Kg + k][c][r][s]:
  // then a job's weights for its grad_input channels are contiguous streams along the
  // grad_output channels, as the forward's are (runs of R * S elements, a cheap copy).
  at::Tensor wt = at::empty({p.groups * Cg * Kg * RS}, weight.options());
  {
    const T* src = weight.const_data_ptr<T>();
    T* dst = wt.mutable_data_ptr<T>();
    at::parallel_for(0, p.groups * Kg, 1, [&](int64_t begin, int64_t end) {
      for (int64_t gk = begin; gk < end; ++gk) {
        const int64_t g = gk / Kg, k = gk % Kg;
        for (int64_t c = 0; c < Cg; ++c)
          std::memcpy(dst + ((g * Cg + c) * Kg + k) * RS, src + (gk * Cg + c) * RS,
                      RS * sizeof(T));
      }
    });
  }
  const T* w = wt.const_data_ptr<T>();
  // Phases of a stride-s problem differ in tap count; the flat range of each phase is split
  // into strips of the same length, jobs ordered (n, g, phase, strip, channel block).
  struct PhaseJobs {
    int64_t strip, nstrips, first_job;
  };
  std::vector<PhaseJobs> pj;
  int64_t per_ng = 0;
  for (const Phase& ph : phases) {
    const int64_t flat = (ph.u_hi - ph.u_lo) * Wg;
    const int64_t strip = strip_length(kn.tile, Wg, std::max<int64_t>(flat, 1));
    const int64_t nstrips = flat > 0 && ph.v_hi > ph.v_lo ? ceil_div(flat, strip) : 0;
    pj.push_back({strip, nstrips, per_ng});
    per_ng += nstrips * ncb;
  }
  const int64_t njobs = p.N * p.groups * per_ng;
  for_each_job(njobs, [&](int64_t job) {
    const int64_t ng = job / per_ng, rem = job % per_ng;
    const int64_t n = ng / p.groups, g = ng % p.groups;
    size_t f = 0;
    while (f + 1 < pj.size() && rem >= pj[f + 1].first_job) ++f;
    const Phase& ph = phases[f];
    const int64_t local = rem - pj[f].first_job;
    const int64_t cb = local % ncb, st = local / ncb;
    const int64_t c0 = g * Cg + cb * kn.kb;
    FlatConvJob<T> j;
    j.x = x + (n * p.K + g * Kg) * plane;
    j.x_cstride = plane;
    j.cin = Kg;
    j.off = ph.off.data();
    j.ntaps = static_cast<int64_t>(ph.off.size());
    // weight(kk = grad_input channel, c = grad_output channel k, t) = wt[g][cb * kb + kk][k][t]
    j.w = w + (g * Cg + cb * kn.kb) * Kg * RS;
    j.w_kstride = Kg * RS;
    j.w_cstride = RS;
    j.woff = ph.woff.data();
    j.kbn = std::min(kn.kb, Cg - cb * kn.kb);
    j.i_begin = ph.u_lo * Wg + st * pj[f].strip;
    j.i_end = std::min(ph.u_hi * Wg, j.i_begin + pj[f].strip);
    j.row_len = Wg;
    j.u_lo = ph.u_lo;
    j.u_hi = ph.u_hi;
    j.v_lo = ph.v_lo;
    j.v_hi = ph.v_hi;
    j.dst = gi + (n * p.C + c0) * p.H * p.W;
    j.dst_base = ph.dst_base;
    j.dst_kstride = p.H * p.W;
    j.dst_row = p.stride_h * p.W;
    j.dst_col = p.stride_w;
    j.bias = nullptr;
    j.relu = false;
    kn.conv(j);
  });
}

// Input channels per grad-weight job (its scratch grows with them; workspace_of counts it).
constexpr int64_t kGradWeightChannels = 8;

template <typename T>
void backward_weight_impl(const at::Tensor& grad_output, const at::Tensor& input, T* gw,
                          const Conv2dProblem& p) {
  const DirectKernels<T>& kn = kernels<T>();
  const ForwardLayout L = forward_layout(p);
  const at::Tensor X = pack_planes<T>(input.const_data_ptr<T>(), p.N * p.C, p.H, p.W, L.pk,
                                      L.slack, input.options());
  const int64_t Wv = L.pk.Wv, len = ceil_div(p.P * Wv, kn.vec) * kn.vec;
  // grad_output on the virtual output plane (row length Wv, zero past column Q and past
  // position P * Wv), and the mask of the real positions.
  Packing gp;
  gp.Hv = p.P;
  gp.Wv = Wv;
  const at::Tensor GO = pack_planes<T>(grad_output.const_data_ptr<T>(), p.N * p.K, p.P, p.Q, gp,
                                       0, grad_output.options(), len);
  at::Tensor M = at::empty({len}, input.options());
  {
    T* m = M.mutable_data_ptr<T>();
    T ones, zero = T(0);
    std::memset(&ones, 0xff, sizeof(T));
    for (int64_t i = 0; i < len; ++i) m[i] = (i < p.P * Wv && i % Wv < p.Q) ? ones : zero;
  }
  const T* x = X.const_data_ptr<T>();
  const T* go = GO.const_data_ptr<T>();
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group(), T_ = p.R * p.S;
  const int64_t plane = L.pk.plane();
  // Jobs: (group, output-channel block, input-channel block). A job reads its go block once
  // per chunk of positions and every channel of its block against it.
  const int64_t cbs = kGradWeightChannels;
  const int64_t nkb = ceil_div(Kg, kn.kbw), ncb = ceil_div(Cg, cbs);
  const int64_t njobs = p.groups * nkb * ncb;
  for_each_job(njobs, [&](int64_t job) {
    const int64_t cb = job % ncb, kb = (job / ncb) % nkb, g = job / (ncb * nkb);
    const int64_t k0 = g * Kg + kb * kn.kbw, c0 = cb * cbs;
    FlatWeightGradJob<T> j;
    j.go = go + k0 * len;
    j.go_nstride = p.K * len;
    j.go_kstride = len;
    j.kbn = std::min(kn.kbw, Kg - kb * kn.kbw);
    j.x = x + (g * Cg + c0) * plane;
    j.x_nstride = p.C * plane;
    j.x_cstride = plane;
    j.cn = std::min(cbs, Cg - c0);
    j.mask = M.const_data_ptr<T>();
    j.off = L.off.data();
    j.ntaps = T_;
    j.batch = p.N;
    j.len = len;
    j.gw = gw + (k0 * Cg + c0) * T_;
    j.gw_kstride = Cg * T_;
    j.gw_cstride = T_;
    // Per-thread scratch, kept between jobs and calls (the kernel initialises what it uses).
    thread_local std::vector<T> scratch;
    thread_local std::vector<double> wide;
    const size_t need = static_cast<size_t>(j.cn * T_ * kn.kbw * 16);
    if (scratch.size() < need) scratch.resize(need);
    if (wide.size() < need) wide.resize(need);
    j.scratch = scratch.data();
    j.wide = wide.data();
    kn.weight_grad(j);
  });
}

// Every shape; the dtype rule is with_cpu_dtypes' (cpu/common/half_via_float32.h).
std::string why_not_direct(const Conv2dProblem&, at::ScalarType) { return ""; }

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                   const Conv2dEpilogue& epi, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor out = at::empty({p.N, p.K, p.P, p.Q}, input.options());
  if (out.numel() == 0) return out;
  if (p.C_per_group() == 0) {  // nothing to sum: the bias alone
    if (bias) out.copy_(bias->view({1, p.K, 1, 1}).expand_as(out));
    else out.zero_();
    if (epi.relu) out.relu_();
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnkern_conv2d_direct_cpu", [&] {
    const scalar_t* b = bias ? bias->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    if (depthwise::applies(p)) depthwise::forward<scalar_t>(input, weight, b, o, p, epi.relu);
    else forward_impl<scalar_t>(input, weight, b, o, p, epi.relu);
  });
  return out;
}

at::Tensor backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                          const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  // Every element of grad_input is in exactly one stride phase and written by one job (zero
  // where no tap reaches it), so it needs no zero fill, unless there is nothing to compute.
  if (p.N * p.C * p.H * p.W == 0 || p.output_numel() == 0 || p.K_per_group() == 0)
    return at::zeros({p.N, p.C, p.H, p.W}, grad_output.options());
  at::Tensor gi = at::empty({p.N, p.C, p.H, p.W}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnkern_conv2d_direct_bwd_input_cpu",
                             [&] {
                               scalar_t* g = gi.mutable_data_ptr<scalar_t>();
                               if (depthwise::applies(p))
                                 depthwise::backward_input<scalar_t>(grad_output, weight, g, p);
                               else backward_input_impl<scalar_t>(grad_output, weight, g, p);
                             });
  return gi;
}

at::Tensor backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                           const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor gw = at::zeros({p.K, p.C_per_group(), p.R, p.S}, grad_output.options());
  if (gw.numel() == 0 || p.output_numel() == 0) return gw;
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnkern_conv2d_direct_bwd_weight_cpu",
                             [&] {
                               scalar_t* g = gw.mutable_data_ptr<scalar_t>();
                               if (depthwise::applies(p))
                                 depthwise::backward_weight<scalar_t>(grad_output, input, g, p);
                               else backward_weight_impl<scalar_t>(grad_output, input, g, p);
                             });
  return gw;
}

// The repacked planes and scratch the passes above allocate, from the same layouts. Not
// zero: every pass copies its input planes padded (and split into stride phases) first.
template <typename T>
Conv2dWorkspace workspace_of(const Conv2dProblem& p, ConvPass pass) {
  const DirectKernels<T>& kn = kernels<T>();
  const int64_t bytes = sizeof(T);
  Conv2dWorkspace ws;
  if (pass == ConvPass::BackwardInput) {
    const AxisPhases AH = axis_phases(p.H, p.R, p.stride_h, p.pad_h, p.dil_h);
    const AxisPhases AW = axis_phases(p.W, p.S, p.stride_w, p.pad_w, p.dil_w);
    // backward_input_impl's G (its largest tap offset is tap (0, 0)'s) and wt.
    const int64_t slack = AH.reach * AW.len + AW.reach + 256;
    ws.per_call = (p.N * p.K * AH.len * AW.len + slack + p.weight_numel()) * bytes;
    ws.what = "grad_output repacked with the flipped kernel's padding, and the filters with "
              "their channel axes swapped (per call)";
    return ws;
  }
  const ForwardLayout L = forward_layout(p);
  const int64_t x_elems = p.N * p.C * L.pk.plane() + L.slack;
  if (pass == ConvPass::Forward) {
    ws.per_call = x_elems * bytes;
    ws.what = "the input repacked: zero-padded, split into stride phases (per call)";
    return ws;
  }
  // backward_weight_impl: X, GO on rows of len positions, the mask M; per thread its
  // kernel's scratch and wide (double) accumulators.
  const int64_t len = ceil_div(p.P * L.pk.Wv, kn.vec) * kn.vec;
  ws.per_call = (x_elems + p.N * p.K * len + len) * bytes;
  const int64_t need = std::min(kGradWeightChannels, p.C_per_group()) * p.R * p.S * kn.kbw * 16;
  ws.per_thread = need * (bytes + int64_t(sizeof(double)));
  ws.what = "the input repacked as the forward's, grad_output on the same rows and their mask "
            "(per call); the kernel's accumulators (per thread, kept)";
  return ws;
}

Conv2dWorkspace workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  if (depthwise::applies(p)) return depthwise::workspace(p, dtype, pass);
  return dtype == at::kDouble ? workspace_of<double>(p, pass) : workspace_of<float>(p, pass);
}

}  // namespace

CONV2D_REGISTER_ALGO(Backend::CPU,
                     cpu::with_cpu_dtypes(Conv2dAlgo{"direct", /*auto_priority=*/10,
                                                     why_not_direct, forward, backward_input,
                                                     backward_weight, workspace}));

}  // namespace cnnkern
