#pragma once
// The max and average pooling forward kernels, built to run at memory bandwidth (included by
// pool2d_kernels.cu only).
//
// A thread takes a group of V outputs that are neighbours in memory:
//   - channels_last: V channels of one output pixel, read and written as one 16-byte vector
//     per tap (V = 16 / sizeof(T)) when C is a multiple of V and the buffers are aligned;
//   - NCHW: V outputs along one output row (V = 4, or 2 for float64), written as one vector
//     when Q is a multiple of V; their taps are read one element at a time (neighbouring
//     threads read neighbouring columns: coalesced), or as one 2-element vector per output
//     and row for the non-overlapping 2-wide windows of a 2x2 / stride-2 pool (VGG's).
// Anything else (odd C or Q, a misaligned view) takes V = 1, the scalar path of the same code.
//
// Indices are 32-bit (I = int32_t) and split with magic-number division (core/fast_divmod.h)
// when every index the kernel forms fits (fits_int32); 64-bit with plain division otherwise.
// The max kernel writes int64 indices only when given somewhere to write them.
//
// Each output follows ATen's rules exactly as core/pool2d_element.h does (same windows, taps
// in the same order, the same NaN rule and divisions): results are bitwise those of the
// per-element functions the backward kernels and the tests-only CPU op use.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/fast_divmod.h"
#include "core/pool2d_problem.h"
#include "cuda/kernel_utils.cuh"

namespace cnnkern {
namespace pool2d_forward {

using namespace cuda_detail;

template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <class T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

template <class I>
using DivmodOf =
    typename std::conditional<std::is_same<I, int32_t>::value, FastDivmod, PlainDivmod>::type;

__device__ __forceinline__ int32_t split(const FastDivmod& d, int32_t n, int32_t& rem) {
  uint32_t r;
  const uint32_t q = d.divmod(static_cast<uint32_t>(n), r);
  rem = static_cast<int32_t>(r);
  return static_cast<int32_t>(q);
}
__device__ __forceinline__ int64_t split(const PlainDivmod& d, int64_t n, int64_t& rem) {
  return d.divmod(n, rem);
}

// What a launch passes by value: the problem's sizes in the index type, and the divisors that
// split a group number into coordinates (NCHW: Q / V, then P; channels_last: C / V, Q, P).
template <class I>
struct Args {
  I C, H, W, kh, kw, sh, sw, ph, pw, dh, dw;
  I groups;        // outputs / V
  bool pairs;      // NCHW: read each output's two taps per row as one 2-element vector
  bool count_include_pad;
  I divisor_override;  // 0: none
  DivmodOf<I> d0, d1, d2;
};

// A window along one axis: taps begin, begin + step, ... < end; `padded` is what average
// pooling's count_include_pad divides by.
template <class I>
struct Span {
  I begin, end, step, padded;
};

// Max pooling, ATen's rule: start at -inf with the window's first in-bounds tap; a tap wins
// when greater or NaN.
template <class T_>
struct MaxPool {
  using T = T_;
  template <class I>
  struct State {
    acc_t<T> value;
    I index;
  };
  template <class I>
  __device__ static Span<I> window(I o, I in, I k, I s, I pad, I dil) {
    const WindowOf<I> w = max_pool_window<I>(o, in, k, s, pad, dil);
    return {w.begin, w.end, dil, 0};
  }
  template <class I>
  __device__ static void init(State<I>& st, const Span<I>& wh, const Span<I>& ww, I W) {
    st.value = neg_inf(acc_t<T>());
    st.index = wh.begin * W + ww.begin;
  }
  template <class I>
  __device__ static void take(State<I>& st, acc_t<T> v, I index) {
    if (v > st.value || v != v) {
      st.value = v;
      st.index = index;
    }
  }
  template <class I>
  __device__ static acc_t<T> result(const State<I>& st, const Span<I>&, const Span<I>&,
                                    const Args<I>&) {
    return st.value;
  }
  template <class I>
  __device__ static int64_t index(const State<I>& st) {
    return st.index;
  }
};

// Max pooling when no index is asked for (max_pool2d without return_indices, the eval path):
// the same values by the same rule and order, but no index is carried, so the inner loop
// issues no index arithmetic and no index select.
template <class T_>
struct MaxPoolValues {
  using T = T_;
  template <class I>
  struct State {
    acc_t<T> value;
  };
  template <class I>
  __device__ static Span<I> window(I o, I in, I k, I s, I pad, I dil) {
    return MaxPool<T>::window(o, in, k, s, pad, dil);
  }
  template <class I>
  __device__ static void init(State<I>& st, const Span<I>&, const Span<I>&, I) {
    st.value = neg_inf(acc_t<T>());
  }
  template <class I>
  __device__ static void take(State<I>& st, acc_t<T> v, I) {
    if (v > st.value || v != v) st.value = v;
  }
  template <class I>
  __device__ static acc_t<T> result(const State<I>& st, const Span<I>&, const Span<I>&,
                                    const Args<I>&) {
    return st.value;
  }
  template <class I>
  __device__ static int64_t index(const State<I>&) {
    return -1;  // never called: the launcher passes no index buffer
  }
};

// Average pooling: the sum over the window clipped to the input, in scan order, divided once.
template <class T_>
struct AvgPool {
  using T = T_;
  template <class I>
  struct State {
    acc_t<T> sum;
  };
  template <class I>
  __device__ static Span<I> window(I o, I in, I k, I s, I pad, I /*dil*/) {
    const AvgWindowOf<I> w = avg_pool_window<I>(o, in, k, s, pad);
    return {w.begin, w.end, 1, w.padded_size};
  }
  template <class I>
  __device__ static void init(State<I>& st, const Span<I>&, const Span<I>&, I) {
    st.sum = 0;
  }
  template <class I>
  __device__ static void take(State<I>& st, acc_t<T> v, I) {
    st.sum += v;
  }
  template <class I>
  __device__ static acc_t<T> result(const State<I>& st, const Span<I>& wh, const Span<I>& ww,
                                    const Args<I>& a) {
    if (wh.begin >= wh.end || ww.begin >= ww.end) return acc_t<T>(0);  // all padding: ATen's 0
    I div = a.divisor_override;
    if (div == 0)
      div = a.count_include_pad ? wh.padded * ww.padded
                                : (wh.end - wh.begin) * (ww.end - ww.begin);
    return st.sum / static_cast<acc_t<T>>(div);
  }
  template <class I>
  __device__ static int64_t index(const State<I>&) {
    return -1;  // never called: average pooling has no indices
  }
};

// Where group `grp` starts: the input element offset of its plane (NCHW) or of its first
// channel in image n (channels_last), its output row and its (first) output column.
template <class I>
struct Origin {
  I base, oh, ow;
};

template <bool CL, int V, class I>
__device__ __forceinline__ Origin<I> group_origin(const Args<I>& a, I grp) {
  if (CL) {
    I cg, ow, oh;
    const I pixel = split(a.d0, grp, cg);
    const I row = split(a.d1, pixel, ow);
    const I n = split(a.d2, row, oh);
    return {n * a.H * a.W * a.C + cg * V, oh, ow};
  }
  I qg, oh;
  const I row = split(a.d0, grp, qg);
  const I plane = split(a.d1, row, oh);
  return {plane * a.H * a.W, oh, qg * V};
}

template <class Op, bool CL, int V, class I>
__global__ void pool2d_forward_kernel(const Args<I> a, const typename Op::T* __restrict__ x,
                                      typename Op::T* __restrict__ out,
                                      int64_t* __restrict__ indices) {
  using T = typename Op::T;
  using State = typename Op::template State<I>;
  const I grid_stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I grp = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) +
                   static_cast<I>(threadIdx.x);
       grp < a.groups; grp += grid_stride) {
    const Origin<I> o = group_origin<CL, V>(a, grp);
    const Span<I> wh = Op::window(o.oh, a.H, a.kh, a.sh, a.ph, a.dh);
    Span<I> ww[V];
    State st[V];
    CNNKERN_UNROLL
    for (int v = 0; v < V; ++v) {
      ww[v] = Op::window(CL ? o.ow : o.ow + v, a.W, a.kw, a.sw, a.pw, a.dw);
      Op::init(st[v], wh, ww[v], a.W);
    }
    for (I h = wh.begin; h < wh.end; h += wh.step) {
      if (CL) {  // the V lanes share one window: one vector per tap
        for (I w = ww[0].begin; w < ww[0].end; w += ww[0].step) {
          const Pack<T, V> t = load_pack<T, V>(x + o.base + (h * a.W + w) * a.C);
          CNNKERN_UNROLL
          for (int v = 0; v < V; ++v) Op::take(st[v], to_acc(t.v[v]), h * a.W + w);
        }
        continue;
      }
      // Offsets in I (below input_numel: the windows are clipped to the input), so a tap's
      // address is one multiply-add off x, not 64-bit pointer arithmetic per tap.
      const I row = o.base + h * a.W;
      CNNKERN_UNROLL
      for (int v = 0; v < V; ++v) {
        if (a.pairs) {  // the window is [2 ow, 2 ow + 2), inside the row, 2-element aligned
          const Pack<T, 2> t = load_pack<T, 2>(x + (row + ww[v].begin));
          Op::take(st[v], to_acc(t.v[0]), h * a.W + ww[v].begin);
          Op::take(st[v], to_acc(t.v[1]), h * a.W + ww[v].begin + 1);
          continue;
        }
        for (I w = ww[v].begin; w < ww[v].end; w += ww[v].step)
          Op::take(st[v], ldg_acc(x + (row + w)), h * a.W + w);
      }
    }
    Pack<T, V> res;
    CNNKERN_UNROLL
    for (int v = 0; v < V; ++v) res.v[v] = from_acc<T>(Op::result(st[v], wh, ww[v], a));
    *reinterpret_cast<Pack<T, V>*>(out + grp * V) = res;
    if (indices != nullptr) {
      CNNKERN_UNROLL
      for (int v = 0; v < V; ++v) indices[grp * V + v] = Op::index(st[v]);
    }
  }
}

// ---- host side ------------------------------------------------------------------------------

// CNNKERN_POOL_INDEX64=1 sends every launch to the 64-bit path (read at each launch, so the
// tests can run both paths in one process on shapes far below 2^31).
inline bool index64_forced() {
  const char* v = std::getenv("CNNKERN_POOL_INDEX64");
  return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

// Whether every index the 32-bit kernel forms stays below 2^31: element offsets (below the
// element counts), flat plane indices h * W + w (below H * W), window bounds (from -pad to
// (out - 1) * stride + (k - 1) * dil + 1, and in + pad), the divisor, and the grid-stride
// loop's last step (group + grid size).
inline bool fits_int32(const Pool2dProblem& p, int64_t grid_threads) {
  const int64_t lim = INT32_MAX - grid_threads;
  const auto axis = [&](int64_t in, int64_t out, int64_t k, int64_t s, int64_t pad,
                        int64_t dil) {
    return out * s + (k - 1) * dil + 1 < lim && in + pad < lim && k * dil < lim;
  };
  return p.input_numel() < lim && p.output_numel() < lim && p.kh * p.kw < lim &&
         p.divisor_override < lim && p.divisor_override > -lim &&
         axis(p.H, p.P, p.kh, p.stride_h, p.pad_h, p.dil_h) &&
         axis(p.W, p.Q, p.kw, p.stride_w, p.pad_w, p.dil_w);
}

inline bool aligned(const void* ptr, size_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

template <class Op, bool CL, int V, class I>
cudaError_t launch_groups(const Pool2dProblem& p, bool pairs, const typename Op::T* x,
                          typename Op::T* out, int64_t* indices, cudaStream_t stream) {
  const int64_t groups = p.output_numel() / V;
  Args<I> a{};
  a.C = static_cast<I>(p.C), a.H = static_cast<I>(p.H), a.W = static_cast<I>(p.W);
  a.kh = static_cast<I>(p.kh), a.kw = static_cast<I>(p.kw);
  a.sh = static_cast<I>(p.stride_h), a.sw = static_cast<I>(p.stride_w);
  a.ph = static_cast<I>(p.pad_h), a.pw = static_cast<I>(p.pad_w);
  a.dh = static_cast<I>(p.dil_h), a.dw = static_cast<I>(p.dil_w);
  a.groups = static_cast<I>(groups);
  a.pairs = pairs;
  a.count_include_pad = p.count_include_pad;
  a.divisor_override = static_cast<I>(p.divisor_override);
  using D = DivmodOf<I>;
  if (CL) {
    a.d0 = D(p.C / V), a.d1 = D(p.Q), a.d2 = D(p.P);
  } else {
    a.d0 = D(p.Q / V), a.d1 = D(p.P);
  }
  pool2d_forward_kernel<Op, CL, V, I><<<blocks_for(groups), kThreads, 0, stream>>>(
      a, x, out, indices);
  return cudaGetLastError();
}

// Chooses the layout's vector width (or 1 where the sizes or the alignment do not allow it).
template <class Op, class I>
cudaError_t launch_with_index(const Pool2dProblem& p, const typename Op::T* x,
                              typename Op::T* out, int64_t* indices, cudaStream_t stream) {
  using T = typename Op::T;
  constexpr int kChannels = 16 / sizeof(T);          // one 16-byte vector of channels
  constexpr int kRow = kChannels < 4 ? kChannels : 4;  // outputs per thread along a row
  if (p.channels_last) {
    if (p.C % kChannels == 0 && aligned(x, 16) && aligned(out, 16))
      return launch_groups<Op, true, kChannels, I>(p, false, x, out, indices, stream);
    return launch_groups<Op, true, 1, I>(p, false, x, out, indices, stream);
  }
  const bool pairs = p.kw == 2 && p.stride_w == 2 && p.pad_w == 0 && p.dil_w == 1 &&
                     p.W % 2 == 0 && aligned(x, 2 * sizeof(T));
  if (p.Q % kRow == 0 && aligned(out, kRow * sizeof(T)))
    return launch_groups<Op, false, kRow, I>(p, pairs, x, out, indices, stream);
  return launch_groups<Op, false, 1, I>(p, pairs, x, out, indices, stream);
}

template <class Op>
cudaError_t launch(const Pool2dProblem& p, const typename Op::T* x, typename Op::T* out,
                   int64_t* indices, cudaStream_t stream) {
  const int64_t grid_threads = kMaxBlocks * kThreads;
  if (fits_int32(p, grid_threads) && !index64_forced())
    return launch_with_index<Op, int32_t>(p, x, out, indices, stream);
  return launch_with_index<Op, int64_t>(p, x, out, indices, stream);
}

}  // namespace pool2d_forward
}  // namespace cnnkern
