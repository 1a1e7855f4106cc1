// The channels_last pooling kernels (see pool2d_nhwc.h), compiled per instruction set: an ISA
// translation unit includes its headers, sets its `#pragma GCC target`, defines
// CNNKERN_ISA_NS and includes this file. No include guard on purpose; everything is in
// namespace cnnkern::cpu::CNNKERN_ISA_NS.
//
// The loops over channels are plain element-wise loops on __restrict__ pointers, which the
// compiler vectorises for the target; element-wise vector arithmetic is the scalar arithmetic
// lane by lane, so each channel's result stays bitwise the per-element functions' of
// core/pool2d_element.h.

namespace cnnkern {
namespace cpu {
namespace CNNKERN_ISA_NS {
namespace pool_nhwc {

struct PlainLoad {
  template <typename T>
  static T load(const T* base, int64_t off) {
    return base[off];
  }
  static int64_t index(const int64_t* base, int64_t off) { return base[off]; }
};

// Channels per block of the max kernel (its running indices live on the stack).
constexpr int64_t kMaxBlock = 128;

// One output pixel's channels [c0, c0 + cn): x, out and idx point at channel c0 of the
// pixel's image, output and indices. Indices run as T (exact: the caller checks H * W).
// kIdx false: the values alone (idx unused), one compare and select per channel and tap.
template <bool kIdx, typename T>
inline void max_pixel_block(const Pool2dProblem& p, const Window& wh, const Window& ww,
                            const T* __restrict__ x, T* __restrict__ out,
                            int64_t* __restrict__ idx, int64_t cn) {
  const int64_t sy = p.W * p.C, sx = p.C;
  T bi[kMaxBlock];
  const T first = static_cast<T>(wh.begin * p.W + ww.begin);
  for (int64_t c = 0; c < cn; ++c) {
    out[c] = -__builtin_inf();
    if (kIdx) bi[c] = first;
  }
  for (int64_t h = wh.begin; h < wh.end; h += p.dil_h) {
    for (int64_t w = ww.begin; w < ww.end; w += p.dil_w) {
      const T* __restrict__ v = x + h * sy + w * sx;
      const T tap = static_cast<T>(h * p.W + w);
      for (int64_t c = 0; c < cn; ++c) {
        const bool take = v[c] > out[c] || v[c] != v[c];  // ATen's rule: greater, or NaN
        out[c] = take ? v[c] : out[c];
        if (kIdx) bi[c] = take ? tap : bi[c];
      }
    }
  }
  if (kIdx)
    for (int64_t c = 0; c < cn; ++c) idx[c] = static_cast<int64_t>(bi[c]);
}

template <bool kIdx, typename T>
void max_rows_of(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* x, T* out,
                 int64_t* idx) {
  // Flat indices are exact in T below 2^24 (float) / 2^53 (double); larger planes take the
  // per-element function channel by channel.
  const bool exact =
      !kIdx || p.H * p.W <= (sizeof(T) == 4 ? (int64_t(1) << 24) : (int64_t(1) << 53));
  const int64_t C = p.C;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / p.P, oh = r % p.P;
    const T* img = x + n * p.H * p.W * C;
    const Window wh = max_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h, p.dil_h);
    for (int64_t ow = 0; ow < p.Q; ++ow) {
      const int64_t o = (r * p.Q + ow) * C;
      if (!exact) {
        for (int64_t c = 0; c < C; ++c) {
          const MaxResult<T> m = max_pool2d_element<T, PlainLoad>(p, img + c, p.W * C, C, oh, ow);
          out[o + c] = m.value;
          idx[o + c] = m.index;
        }
        continue;
      }
      const Window ww = max_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w, p.dil_w);
      for (int64_t c0 = 0; c0 < C; c0 += kMaxBlock) {
        const int64_t cn = C - c0 < kMaxBlock ? C - c0 : kMaxBlock;
        max_pixel_block<kIdx>(p, wh, ww, img + c0, out + o + c0, kIdx ? idx + o + c0 : nullptr,
                              cn);
      }
    }
  }
}

// idx == nullptr: the values alone.
template <typename T>
void max_rows(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* x, T* out,
              int64_t* idx) {
  if (idx != nullptr) max_rows_of<true>(p, r0, r1, x, out, idx);
  else max_rows_of<false>(p, r0, r1, x, out, nullptr);
}

// dst[c] = sum over the window's taps of x (in h, w order, from 0), then / div1 [/ div2].
template <typename T>
inline void sum_window(const Pool2dProblem& p, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                       const T* __restrict__ img, T* __restrict__ dst) {
  const int64_t C = p.C, sy = p.W * C;
  for (int64_t c = 0; c < C; ++c) dst[c] = T(0);
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) {
      const T* __restrict__ v = img + h * sy + w * C;
      for (int64_t c = 0; c < C; ++c) dst[c] += v[c];
    }
  }
}

template <typename T>
void avg_rows(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* x, T* out) {
  const int64_t C = p.C;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / p.P, oh = r % p.P;
    const T* img = x + n * p.H * p.W * C;
    const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
    for (int64_t ow = 0; ow < p.Q; ++ow) {
      T* __restrict__ dst = out + (r * p.Q + ow) * C;
      const AvgWindow ww = avg_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w);
      // An all-padding window sums nothing: 0, as ATen gives.
      sum_window(p, wh.begin, wh.end, ww.begin, ww.end, img, dst);
      if (wh.begin >= wh.end || ww.begin >= ww.end) continue;
      const T div = static_cast<T>(avg_pool_divisor(p, wh, ww));
      for (int64_t c = 0; c < C; ++c) dst[c] = dst[c] / div;
    }
  }
}

template <typename T>
void adaptive_rows(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* x, T* out) {
  const int64_t C = p.C;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / p.P, oh = r % p.P;
    const T* img = x + n * p.H * p.W * C;
    const Window wh = adaptive_window(oh, p.H, p.P);
    const T hc = static_cast<T>(wh.end - wh.begin);
    for (int64_t ow = 0; ow < p.Q; ++ow) {
      T* __restrict__ dst = out + (r * p.Q + ow) * C;
      const Window ww = adaptive_window(ow, p.W, p.Q);
      const T wc = static_cast<T>(ww.end - ww.begin);
      sum_window(p, wh.begin, wh.end, ww.begin, ww.end, img, dst);
      for (int64_t c = 0; c < C; ++c) dst[c] = dst[c] / hc / wc;  // ATen's two divisions
    }
  }
}

// ---- backward: a gather per grad_input pixel -------------------------------------------

template <typename T>
void max_backward_rows(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* go,
                       const int64_t* idx, T* gi) {
  const int64_t C = p.C;
  const int64_t span_h = (p.kh - 1) * p.dil_h + 1, span_w = (p.kw - 1) * p.dil_w + 1;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / p.H, h = r % p.H;
    const int64_t img_out = n * p.P * p.Q * C;
    const Window rp = outputs_covering(h, p.pad_h, span_h, p.stride_h, p.P);
    for (int64_t w = 0; w < p.W; ++w) {
      T* __restrict__ dst = gi + (r * p.W + w) * C;
      const Window rq = outputs_covering(w, p.pad_w, span_w, p.stride_w, p.Q);
      const int64_t target = h * p.W + w;
      for (int64_t c = 0; c < C; ++c) dst[c] = T(0);
      // Only the windows that have (h, w) as a tap (core/pool2d_element.h's rule): the index
      // a window entirely in the padding stores can alias an element in a dilation gap.
      for (int64_t oh = rp.begin; oh < rp.end; ++oh) {
        if ((h + p.pad_h - oh * p.stride_h) % p.dil_h != 0) continue;
        for (int64_t ow = rq.begin; ow < rq.end; ++ow) {
          if ((w + p.pad_w - ow * p.stride_w) % p.dil_w != 0) continue;
          const int64_t o = img_out + (oh * p.Q + ow) * C;
          const T* __restrict__ g = go + o;
          const int64_t* __restrict__ ix = idx + o;
          // Adding +0 where the index does not match leaves the sum bitwise as skipping it
          // (it starts at +0 and x + 0 == x), and keeps the loop branch-free.
          for (int64_t c = 0; c < C; ++c) dst[c] += ix[c] == target ? g[c] : T(0);
        }
      }
    }
  }
}

template <typename T>
void avg_backward_rows(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* go, T* gi) {
  const int64_t C = p.C;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / p.H, h = r % p.H;
    const T* img_go = go + n * p.P * p.Q * C;
    const Window rp = outputs_covering(h, p.pad_h, p.kh, p.stride_h, p.P);
    for (int64_t w = 0; w < p.W; ++w) {
      T* __restrict__ dst = gi + (r * p.W + w) * C;
      const Window rq = outputs_covering(w, p.pad_w, p.kw, p.stride_w, p.Q);
      for (int64_t c = 0; c < C; ++c) dst[c] = T(0);
      for (int64_t oh = rp.begin; oh < rp.end; ++oh) {
        const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
        if (h < wh.begin || h >= wh.end) continue;
        for (int64_t ow = rq.begin; ow < rq.end; ++ow) {
          const AvgWindow ww = avg_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w);
          if (w < ww.begin || w >= ww.end) continue;
          const T div = static_cast<T>(avg_pool_divisor(p, wh, ww));
          const T* __restrict__ g = img_go + (oh * p.Q + ow) * C;
          for (int64_t c = 0; c < C; ++c) dst[c] += g[c] / div;
        }
      }
    }
  }
}

template <typename T>
void adaptive_backward_rows(const Pool2dProblem& p, int64_t r0, int64_t r1, const T* go,
                            T* gi) {
  const int64_t C = p.C;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / p.H, h = r % p.H;
    const T* img_go = go + n * p.P * p.Q * C;
    const Window rp = adaptive_window(h, p.P, p.H);
    for (int64_t w = 0; w < p.W; ++w) {
      T* __restrict__ dst = gi + (r * p.W + w) * C;
      const Window rq = adaptive_window(w, p.Q, p.W);
      for (int64_t c = 0; c < C; ++c) dst[c] = T(0);
      for (int64_t oh = rp.begin; oh < rp.end && oh < p.P; ++oh) {
        const Window wh = adaptive_window(oh, p.H, p.P);
        if (h < wh.begin || h >= wh.end) continue;
        const T hc = static_cast<T>(wh.end - wh.begin);
        for (int64_t ow = rq.begin; ow < rq.end && ow < p.Q; ++ow) {
          const Window ww = adaptive_window(ow, p.W, p.Q);
          if (w < ww.begin || w >= ww.end) continue;
          const T wc = static_cast<T>(ww.end - ww.begin);
          const T* __restrict__ g = img_go + (oh * p.Q + ow) * C;
          for (int64_t c = 0; c < C; ++c) dst[c] += g[c] / hc / wc;
        }
      }
    }
  }
}

}  // namespace pool_nhwc

const PoolNhwcKernels<float>& pool_nhwc_kernels_f32() {
  using namespace pool_nhwc;
  static const PoolNhwcKernels<float> k{max_rows<float>,          avg_rows<float>,
                                        adaptive_rows<float>,     max_backward_rows<float>,
                                        avg_backward_rows<float>, adaptive_backward_rows<float>};
  return k;
}

const PoolNhwcKernels<double>& pool_nhwc_kernels_f64() {
  using namespace pool_nhwc;
  static const PoolNhwcKernels<double> k{
      max_rows<double>,          avg_rows<double>,          adaptive_rows<double>,
      max_backward_rows<double>, avg_backward_rows<double>, adaptive_backward_rows<double>};
  return k;
}

}  // namespace CNNKERN_ISA_NS
}  // namespace cpu
}  // namespace cnnkern
