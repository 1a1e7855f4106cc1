#pragma once
// The work of ONE pooling output (forward) or ONE grad_input element (backward), for either
// memory layout the kernels read: NCHW-contiguous or channels_last (NHWC). The CUDA kernels
// run these functions one thread per element; the tests-only CPU op
// (testing/ops/pool2d_test_ops.cpp) runs them over whole tensors, so their index math is checked
// against torch on machines without a GPU; the CPU channels_last kernels use them for the
// channels that do not fill a vector.
//
// Elements are numbered in memory order (element i of a tensor is data[i]), so a thread's
// output or grad_input element is data[i] whatever the layout, and with channels_last,
// neighbouring threads take neighbouring channels: a warp reads contiguous channels.
// Indices keep torch's meaning in both layouts: the flat position h * W + w within the plane.
//
// Load::load(base, offset) reads base[offset] and converts it to the accumulator type A,
// Load::index(indices, offset) reads a max-pool index (the GPU reads through __ldg and
// converts half/bfloat16; the CPU reads plainly, or checked against the tensors' bounds). Orders of
// summation and the divisions follow ATen's CUDA kernels.

#include <cstdint>
#include <limits>

#include "core/pool2d_problem.h"

namespace cnnkern {

// Element strides of an N x C x Y x X tensor in one of the two layouts.
struct Pool2dStrides {
  int64_t n, c, y, x;
};

CNNKERN_HD Pool2dStrides pool2d_strides(int64_t C, int64_t Y, int64_t X, bool channels_last) {
  if (channels_last) return {Y * X * C, 1, X * C, C};
  return {C * Y * X, Y * X, X, 1};
}

// Coordinates of element i (memory order) of an N x C x Y x X tensor.
struct Pool2dCoord {
  int64_t n, c, y, x;
};

CNNKERN_HD Pool2dCoord pool2d_coord(int64_t i, int64_t C, int64_t Y, int64_t X,
                                    bool channels_last) {
  Pool2dCoord r;
  if (channels_last) {
    r.c = i % C;
    i /= C;
    r.x = i % X;
    i /= X;
    r.y = i % Y;
    r.n = i / Y;
  } else {
    r.x = i % X;
    i /= X;
    r.y = i % Y;
    i /= Y;
    r.c = i % C;
    r.n = i / C;
  }
  return r;
}

CNNKERN_HD Pool2dStrides pool2d_input_strides(const Pool2dProblem& p) {
  return pool2d_strides(p.C, p.H, p.W, p.channels_last);
}
CNNKERN_HD Pool2dStrides pool2d_output_strides(const Pool2dProblem& p) {
  return pool2d_strides(p.C, p.P, p.Q, p.channels_last);
}

// Outputs o in [0, out) whose window [o*stride - pad, o*stride - pad + span) contains input
// position i (ATen's p_start / p_end; span = (k - 1) * dilation + 1). i + pad >= 0 always.
CNNKERN_HD Window outputs_covering(int64_t i, int64_t pad, int64_t span, int64_t stride,
                                   int64_t out) {
  const int64_t x = i + pad;
  const int64_t begin = x < span ? 0 : (x - span) / stride + 1;
  const int64_t end = x / stride + 1;
  return {begin, end < out ? end : out};
}

// ---- one output, given its plane ------------------------------------------------------------
// x points at element (n, c, 0, 0) of the input; its rows and columns are sy and sx elements
// apart.

template <class A>
struct MaxResult {
  A value;
  int64_t index;  // h * W + w
};

// ATen's rule: start at -inf with the window's first in-bounds tap; a tap wins when it is
// greater or NaN (so the last NaN in scan order wins).
template <class A, class Load, class T>
CNNKERN_HD MaxResult<A> max_pool2d_element(const Pool2dProblem& p, const T* x, int64_t sy,
                                           int64_t sx, int64_t oh, int64_t ow) {
  const Window wh = max_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h, p.dil_h);
  const Window ww = max_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w, p.dil_w);
  MaxResult<A> r{-std::numeric_limits<A>::infinity(), wh.begin * p.W + ww.begin};
  for (int64_t h = wh.begin; h < wh.end; h += p.dil_h) {
    for (int64_t w = ww.begin; w < ww.end; w += p.dil_w) {
      const A v = Load::load(x, h * sy + w * sx);
      if (v > r.value || v != v) {
        r.value = v;
        r.index = h * p.W + w;
      }
    }
  }
  return r;
}

template <class A, class Load, class T>
CNNKERN_HD A avg_pool2d_element(const Pool2dProblem& p, const T* x, int64_t sy, int64_t sx,
                                int64_t oh, int64_t ow) {
  const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
  const AvgWindow ww = avg_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w);
  if (wh.begin >= wh.end || ww.begin >= ww.end) return A(0);  // all padding: ATen gives 0
  A sum = 0;
  for (int64_t h = wh.begin; h < wh.end; ++h)
    for (int64_t w = ww.begin; w < ww.end; ++w) sum += Load::load(x, h * sy + w * sx);
  return sum / static_cast<A>(avg_pool_divisor(p, wh, ww));
}

template <class A, class Load, class T>
CNNKERN_HD A adaptive_avg_pool2d_element(const Pool2dProblem& p, const T* x, int64_t sy,
                                         int64_t sx, int64_t oh, int64_t ow) {
  const Window wh = adaptive_window(oh, p.H, p.P);
  const Window ww = adaptive_window(ow, p.W, p.Q);
  A sum = 0;
  for (int64_t h = wh.begin; h < wh.end; ++h)
    for (int64_t w = ww.begin; w < ww.end; ++w) sum += Load::load(x, h * sy + w * sx);
  // Two divisions, in ATen's order.
  return sum / static_cast<A>(wh.end - wh.begin) / static_cast<A>(ww.end - ww.begin);
}

// ---- one grad_input element, given its planes -----------------------------------------------
// A gather over the outputs whose windows can contain input (h, w): every grad_input element
// is written once, with no atomics, in a fixed order (output row, then column). go (and idx)
// point at element (n, c, 0, 0) of grad_output (indices); rows and columns are sp, sq apart.

template <class A, class Load, class T>
CNNKERN_HD A max_pool2d_grad_element(const Pool2dProblem& p, const T* go, const int64_t* idx,
                                     int64_t sp, int64_t sq, int64_t h, int64_t w) {
  const Window rp = outputs_covering(h, p.pad_h, (p.kh - 1) * p.dil_h + 1, p.stride_h, p.P);
  const Window rq = outputs_covering(w, p.pad_w, (p.kw - 1) * p.dil_w + 1, p.stride_w, p.Q);
  const int64_t target = h * p.W + w;
  A acc = 0;
  // The stored index decides, for the windows that have (h, w) as a tap: an index outside the
  // plane matches no element, so it is never used to address memory. The tap test matters for
  // a window that lies entirely in the padding: its output is -inf and depends on no input, but
  // the index it stores (torch's: the first in-plane row and column its taps would reach)
  // can alias an element in the window's dilation gap or on the next row.
  for (int64_t oh = rp.begin; oh < rp.end; ++oh) {
    if ((h + p.pad_h - oh * p.stride_h) % p.dil_h != 0) continue;
    for (int64_t ow = rq.begin; ow < rq.end; ++ow) {
      if ((w + p.pad_w - ow * p.stride_w) % p.dil_w != 0) continue;
      const int64_t o = oh * sp + ow * sq;
      if (Load::index(idx, o) == target) acc += Load::load(go, o);
    }
  }
  return acc;
}

template <class A, class Load, class T>
CNNKERN_HD A avg_pool2d_grad_element(const Pool2dProblem& p, const T* go, int64_t sp,
                                     int64_t sq, int64_t h, int64_t w) {
  const Window rp = outputs_covering(h, p.pad_h, p.kh, p.stride_h, p.P);
  const Window rq = outputs_covering(w, p.pad_w, p.kw, p.stride_w, p.Q);
  A acc = 0;
  for (int64_t oh = rp.begin; oh < rp.end; ++oh) {
    const AvgWindow wh = avg_pool_window(oh, p.H, p.kh, p.stride_h, p.pad_h);
    if (h < wh.begin || h >= wh.end) continue;  // a window clipped by ceil_mode's overhang
    for (int64_t ow = rq.begin; ow < rq.end; ++ow) {
      const AvgWindow ww = avg_pool_window(ow, p.W, p.kw, p.stride_w, p.pad_w);
      if (w < ww.begin || w >= ww.end) continue;
      acc += Load::load(go, oh * sp + ow * sq) / static_cast<A>(avg_pool_divisor(p, wh, ww));
    }
  }
  return acc;
}

template <class A, class Load, class T>
CNNKERN_HD A adaptive_avg_pool2d_grad_element(const Pool2dProblem& p, const T* go, int64_t sp,
                                              int64_t sq, int64_t h, int64_t w) {
  // The outputs whose adaptive windows contain h are [floor(h*P/H), ceil((h+1)*P/H)): the
  // same formula with the roles of input and output swapped (clipped to P for safety).
  const Window rp = adaptive_window(h, p.P, p.H);
  const Window rq = adaptive_window(w, p.Q, p.W);
  A acc = 0;
  for (int64_t oh = rp.begin; oh < rp.end && oh < p.P; ++oh) {
    const Window wh = adaptive_window(oh, p.H, p.P);
    if (h < wh.begin || h >= wh.end) continue;
    for (int64_t ow = rq.begin; ow < rq.end && ow < p.Q; ++ow) {
      const Window ww = adaptive_window(ow, p.W, p.Q);
      if (w < ww.begin || w >= ww.end) continue;
      acc += Load::load(go, oh * sp + ow * sq) / static_cast<A>(wh.end - wh.begin) /
             static_cast<A>(ww.end - ww.begin);
    }
  }
  return acc;
}

// ---- element i of a whole tensor (what one CUDA thread does) --------------------------------
// i numbers the output (forward) or grad_input (backward) elements in memory order, in the
// problem's layout (p.channels_last); every tensor is contiguous in that layout.

template <class A, class Load, class T>
CNNKERN_HD MaxResult<A> max_pool2d_output_at(const Pool2dProblem& p, const T* input, int64_t i) {
  const Pool2dCoord o = pool2d_coord(i, p.C, p.P, p.Q, p.channels_last);
  const Pool2dStrides s = pool2d_input_strides(p);
  return max_pool2d_element<A, Load>(p, input + o.n * s.n + o.c * s.c, s.y, s.x, o.y, o.x);
}

template <class A, class Load, class T>
CNNKERN_HD A avg_pool2d_output_at(const Pool2dProblem& p, const T* input, int64_t i) {
  const Pool2dCoord o = pool2d_coord(i, p.C, p.P, p.Q, p.channels_last);
  const Pool2dStrides s = pool2d_input_strides(p);
  return avg_pool2d_element<A, Load>(p, input + o.n * s.n + o.c * s.c, s.y, s.x, o.y, o.x);
}

template <class A, class Load, class T>
CNNKERN_HD A adaptive_avg_pool2d_output_at(const Pool2dProblem& p, const T* input, int64_t i) {
  const Pool2dCoord o = pool2d_coord(i, p.C, p.P, p.Q, p.channels_last);
  const Pool2dStrides s = pool2d_input_strides(p);
  return adaptive_avg_pool2d_element<A, Load>(p, input + o.n * s.n + o.c * s.c, s.y, s.x, o.y,
                                              o.x);
}

template <class A, class Load, class T>
CNNKERN_HD A max_pool2d_grad_at(const Pool2dProblem& p, const T* grad_output,
                                const int64_t* indices, int64_t i) {
  const Pool2dCoord e = pool2d_coord(i, p.C, p.H, p.W, p.channels_last);
  const Pool2dStrides s = pool2d_output_strides(p);
  const int64_t plane = e.n * s.n + e.c * s.c;
  return max_pool2d_grad_element<A, Load>(p, grad_output + plane, indices + plane, s.y, s.x,
                                          e.y, e.x);
}

template <class A, class Load, class T>
CNNKERN_HD A avg_pool2d_grad_at(const Pool2dProblem& p, const T* grad_output, int64_t i) {
  const Pool2dCoord e = pool2d_coord(i, p.C, p.H, p.W, p.channels_last);
  const Pool2dStrides s = pool2d_output_strides(p);
  return avg_pool2d_grad_element<A, Load>(p, grad_output + e.n * s.n + e.c * s.c, s.y, s.x,
                                          e.y, e.x);
}

template <class A, class Load, class T>
CNNKERN_HD A adaptive_avg_pool2d_grad_at(const Pool2dProblem& p, const T* grad_output,
                                         int64_t i) {
  const Pool2dCoord e = pool2d_coord(i, p.C, p.H, p.W, p.channels_last);
  const Pool2dStrides s = pool2d_output_strides(p);
  return adaptive_avg_pool2d_grad_element<A, Load>(p, grad_output + e.n * s.n + e.c * s.c,
                                                   s.y, s.x, e.y, e.x);
}

}  // namespace cnnkern
