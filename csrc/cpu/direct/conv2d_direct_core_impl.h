// The direct-convolution inner kernels (see conv2d_direct_core.h), written once over Vec<T>
// and compiled per instruction set: an ISA translation unit includes its headers, sets its
// `#pragma GCC target`, defines CNNKERN_ISA_NS and includes this file. No include guard on
// purpose; everything is in namespace cnnkern::cpu::CNNKERN_ISA_NS.

#include "cpu/common/simd.h"

namespace cnnkern {
namespace cpu {
namespace CNNKERN_ISA_NS {

// Register tile of the forward / grad-input kernel: KB output channels x QB vectors of flat
// positions; KB * QB accumulators + QB input vectors + 1 broadcast weight fit the 16 vector
// registers of SSE/AVX2.
constexpr int kMaxKB = 4;
constexpr int qb_for(int kb) { return kb == 1 ? 7 : kb == 2 ? 5 : 3; }

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Accumulates one tile: positions [i0, i0 + QB * N) for KB output channels, into buf
// (KB rows of QB * N).
// Cache lines a tile reads from one channel plane, as offsets from the tile's first position:
// the start, every line and the end of each run of taps that read one input row.
constexpr int kMaxPrefetch = 48;
constexpr int kPrefetchAhead = 3;  // channels

template <typename T>
inline int prefetch_lines(const FlatConvJob<T>& j, int64_t width, int64_t* pf) {
  constexpr int64_t line = 64 / sizeof(T);
  int64_t sorted[kMaxPrefetch];  // the first taps' offsets, ascending
  const int nt = static_cast<int>(min64(j.ntaps, kMaxPrefetch));
  for (int t = 0; t < nt; ++t) {
    int m = t;
    for (; m > 0 && sorted[m - 1] > j.off[t]; --m) sorted[m] = sorted[m - 1];
    sorted[m] = j.off[t];
  }
  int n = 0;
  for (int t = 0; t < nt && n < kMaxPrefetch;) {
    int t_end = t + 1;  // taps t .. t_end-1 read overlapping stretches of one row
    while (t_end < nt && sorted[t_end] - sorted[t_end - 1] <= line) ++t_end;
    const int64_t first = sorted[t], last = sorted[t_end - 1] + width - 1;
    for (int64_t e = first; e < last && n < kMaxPrefetch; e += line) pf[n++] = e;
    if (n < kMaxPrefetch) pf[n++] = last;
    t = t_end;
  }
  return n;
}

// Cache lines of one channel's weights, when consecutive channels' weights are far apart
// (grad-input reads the filter transposed); none when they form a stream the hardware
// prefetcher follows.
template <typename T>
inline int weight_prefetch_lines(const FlatConvJob<T>& j, int64_t* pf) {
  constexpr int64_t line = 64 / sizeof(T);
  if (j.w_cstride <= 2 * line || j.ntaps == 0) return 0;
  int64_t lo = j.woff[0], hi = j.woff[0];
  for (int64_t t = 1; t < j.ntaps; ++t) {
    lo = min64(lo, j.woff[t]);
    hi = max64(hi, j.woff[t]);
  }
  int n = 0;
  for (int64_t k = 0; k < j.kbn && n < kMaxPrefetch; ++k) {
    if (k > 0 && j.w_kstride <= line && k < j.kbn - 1) continue;  // covered by the span
    const int64_t a = (j.w_kstride <= line ? 0 : k * j.w_kstride) + lo;
    const int64_t b = k * j.w_kstride + hi;
    for (int64_t e = a; e < b && n < kMaxPrefetch; e += line) pf[n++] = e;
    if (n < kMaxPrefetch) pf[n++] = b;
  }
  return n;
}

// Pads a prefetch list to a multiple of 4 entries by repeating its last one.
inline int pad4(int64_t* pf, int n) {
  while (n % 4 != 0) {
    pf[n] = pf[n - 1];
    ++n;
  }
  return n;
}

template <typename T, int KB>
inline void conv_tile(const FlatConvJob<T>& j, int64_t i0, T* buf, const int64_t* pf, int npf,
                      const int64_t* wpf, int nwpf) {
  using V = Vec<T>;
  using reg = typename V::reg;
  constexpr int N = V::N, QB = qb_for(KB);
  reg acc[KB][QB];
  for (int k = 0; k < KB; ++k)
    for (int q = 0; q < QB; ++q) acc[k][q] = V::zero();
  const T* x = j.x + i0;
  const int64_t* off = j.off;
  const int64_t* woff = j.woff;
  const int64_t ntaps = j.ntaps, ks = j.w_kstride;
  const T* wc = j.w;
  const int64_t ahead = kPrefetchAhead * j.x_cstride, wahead = kPrefetchAhead * j.w_cstride;
  for (int64_t c = 0; c < j.cin; ++c, x += j.x_cstride, wc += j.w_cstride) {
    // The planes are far apart (one per channel): fetch a later channel's rows now.
    // (the lists are padded to multiples of 4 by repeating their last line)
    for (int m = 0; m < npf; m += 4) {
      __builtin_prefetch(x + ahead + pf[m], 0, 3);
      __builtin_prefetch(x + ahead + pf[m + 1], 0, 3);
      __builtin_prefetch(x + ahead + pf[m + 2], 0, 3);
      __builtin_prefetch(x + ahead + pf[m + 3], 0, 3);
    }
    for (int m = 0; m < nwpf; m += 4) {
      __builtin_prefetch(wc + wahead + wpf[m], 0, 3);
      __builtin_prefetch(wc + wahead + wpf[m + 1], 0, 3);
      __builtin_prefetch(wc + wahead + wpf[m + 2], 0, 3);
      __builtin_prefetch(wc + wahead + wpf[m + 3], 0, 3);
    }
    for (int64_t t = 0; t < ntaps; ++t) {
      const T* xp = x + off[t];
      const T* wt = wc + woff[t];
      reg xv[QB];
      for (int q = 0; q < QB; ++q) xv[q] = V::load(xp + q * N);
      for (int k = 0; k < KB; ++k) {
        const reg wv = V::bcast(wt + k * ks);
        for (int q = 0; q < QB; ++q) acc[k][q] = V::fmadd(wv, xv[q], acc[k][q]);
      }
    }
  }
  for (int k = 0; k < KB; ++k)
    for (int q = 0; q < QB; ++q) V::store(buf + (k * QB + q) * N, acc[k][q]);
}

// Stores the valid positions of a tile ([i0, i1), buffer rows of `width`) to dst.
template <typename T, int KB>
inline void scatter_tile(const FlatConvJob<T>& j, int64_t i0, int64_t i1, const T* buf,
                         int64_t width) {
  int64_t u = i0 / j.row_len, v = i0 % j.row_len;
  for (int64_t i = i0; i < i1; ++u, v = 0) {
    const int64_t seg = min64(i1 - i, j.row_len - v);  // this row's part of the tile
    if (u >= j.u_lo && u < j.u_hi) {
      const int64_t va = max64(v, j.v_lo), vb = min64(v + seg, j.v_hi);
      const int64_t row = j.dst_base + u * j.dst_row;
      for (int k = 0; k < KB; ++k) {
        const T* s = buf + k * width + (i - i0) - v;  // s[vv] is column vv of this row
        T* d = j.dst + k * j.dst_kstride + row;
        const T b = j.bias ? j.bias[k] : T(0);
        if (j.relu) {
          for (int64_t vv = va; vv < vb; ++vv) {
            const T y = s[vv] + b;
            d[vv * j.dst_col] = y < T(0) ? T(0) : y;
          }
        } else if (j.bias) {
          for (int64_t vv = va; vv < vb; ++vv) d[vv * j.dst_col] = s[vv] + b;
        } else {
          for (int64_t vv = va; vv < vb; ++vv) d[vv * j.dst_col] = s[vv];
        }
      }
    }
    i += seg;
  }
}

template <typename T, int KB>
void conv_job_kb(const FlatConvJob<T>& j) {
  constexpr int64_t width = qb_for(KB) * Vec<T>::N;
  alignas(64) T buf[KB * width];
  int64_t pf[kMaxPrefetch + 3], wpf[kMaxPrefetch + 3];
  const int npf = pad4(pf, prefetch_lines(j, width, pf));
  const int nwpf = pad4(wpf, weight_prefetch_lines(j, wpf));
  for (int64_t i0 = j.i_begin; i0 < j.i_end; i0 += width) {
    conv_tile<T, KB>(j, i0, buf, pf, npf, wpf, nwpf);
    scatter_tile<T, KB>(j, i0, min64(i0 + width, j.i_end), buf, width);
  }
}

template <typename T>
void conv_job(const FlatConvJob<T>& j) {
  switch (j.kbn) {
    case 1: return conv_job_kb<T, 1>(j);
    case 2: return conv_job_kb<T, 2>(j);
    case 3: return conv_job_kb<T, 3>(j);
    default: return conv_job_kb<T, 4>(j);
  }
}

// ---- grad-weight ----------------------------------------------------------------------------

// Register tile: KB output channels x TB taps of one input channel, vectors along v.
// AVX-512's 32 registers hold 6 x 4 accumulators + 4 input vectors + 1 grad_output vector +
// the tail mask: 24 FMAs per 10 loads, where the 16-register tile (3 x 3 + 3 + 1 + 1; 4 x 3
// would spill) does 9 per 6 and ran at 0.55x oneDNN on the 7x7 stride-2 conv1 of ResNet-18
// (3 -> 64 channels). The AVX2-emulated AVX-512 variant (a test vehicle) takes the same
// tile so that CI on AVX2 machines runs it, spills and all. Each accumulator sums its
// (filter, tap) over the positions in the same order whatever the tile, so the tile does not
// change the bits.
#if defined(CNNKERN_SIMD_AVX512) || defined(CNNKERN_SIMD_AVX512_EMULATED)
constexpr int kMaxKBW = 6;
constexpr int kMaxTB = 4;
#else
constexpr int kMaxKBW = 3;
constexpr int kMaxTB = 3;
#endif

// Adds sum over positions [i0, i1) of go(k, i) * (x(i + off[t]) & mask(i)) into the lane
// sums lanes[(t * KB + k) * N + lane] for t < TB.
template <typename T, int KB, int TB>
inline void weight_grad_tile(const FlatWeightGradJob<T>& j, const T* go, const T* x,
                             const int64_t* off, int64_t i0, int64_t i1, T* lanes) {
  using V = Vec<T>;
  using reg = typename V::reg;
  constexpr int N = V::N;
  reg acc[KB][TB];
  for (int k = 0; k < KB; ++k)
    for (int t = 0; t < TB; ++t) acc[k][t] = V::zero();
  const T* xt[TB];
  for (int t = 0; t < TB; ++t) xt[t] = x + off[t];
  const int64_t ks = j.go_kstride;
  for (int64_t i = i0; i < i1; i += N) {
    const reg m = V::load(j.mask + i);
    reg xv[TB];
    for (int t = 0; t < TB; ++t) xv[t] = V::and_bits(V::load(xt[t] + i), m);
    for (int k = 0; k < KB; ++k) {
      const reg gv = V::load(go + k * ks + i);
      for (int t = 0; t < TB; ++t) acc[k][t] = V::fmadd(gv, xv[t], acc[k][t]);
    }
  }
  for (int t = 0; t < TB; ++t)
    for (int k = 0; k < KB; ++k) {
      T* l = lanes + (t * KB + k) * N;
      V::store(l, V::add(V::load(l), acc[k][t]));
    }
}

// Lane sums run in the input precision over at most this many positions before they are
// folded into double lanes, so long reductions (large planes, large batches) keep their
// accuracy without costing small ones anything.
constexpr int64_t kFoldPositions = int64_t(1) << 16;

// The taps [0, ntaps) of one channel in tiles of TB, the remainder in one smaller tile.
template <typename T, int KB, int TB>
inline void weight_grad_taps(const FlatWeightGradJob<T>& j, const T* go, const T* x,
                             const int64_t* off, int64_t ntaps, int64_t i0, int64_t i1,
                             T* lanes) {
  constexpr int N = Vec<T>::N;
  int64_t t = 0;
  for (; t + TB <= ntaps; t += TB)
    weight_grad_tile<T, KB, TB>(j, go, x, off + t, i0, i1, lanes + t * KB * N);
  if constexpr (TB > 1) {
    if (t < ntaps)
      weight_grad_taps<T, KB, TB - 1>(j, go, x, off + t, ntaps - t, i0, i1, lanes + t * KB * N);
  }
}

template <typename T, int KB>
void weight_grad_job_kb(const FlatWeightGradJob<T>& j) {
  using V = Vec<T>;
  constexpr int N = V::N;
  const int64_t per_c = j.ntaps * KB * N, nl = j.cn * per_c;
  T* lanes = j.scratch;            // [c][t][k][lane], nl elements
  double* wide = nullptr;          // the folded lanes, once a fold happens
  for (int64_t e = 0; e < nl; ++e) lanes[e] = T(0);
  // Positions per chunk: the go rows of a chunk (KB x 1K elements) stay in L1 while every
  // channel and tap of the job reads them.
  constexpr int64_t chunk = 1024;
  int64_t since_fold = 0;
  for (int64_t n = 0; n < j.batch; ++n) {
    const T* go = j.go + n * j.go_nstride;
    for (int64_t i0 = 0; i0 < j.len; i0 += chunk) {
      const int64_t i1 = min64(i0 + chunk, j.len);
      for (int64_t c = 0; c < j.cn; ++c) {
        const T* x = j.x + n * j.x_nstride + c * j.x_cstride;
        weight_grad_taps<T, KB, kMaxTB>(j, go, x, j.off, j.ntaps, i0, i1, lanes + c * per_c);
      }
      since_fold += i1 - i0;
      if (since_fold >= kFoldPositions) {
        if (!wide) {
          wide = j.wide;
          for (int64_t e = 0; e < nl; ++e) wide[e] = 0.0;
        }
        for (int64_t e = 0; e < nl; ++e) {
          wide[e] += static_cast<double>(lanes[e]);
          lanes[e] = T(0);
        }
        since_fold = 0;
      }
    }
  }
  for (int64_t c = 0; c < j.cn; ++c)
    for (int64_t t = 0; t < j.ntaps; ++t)
      for (int k = 0; k < KB; ++k) {
        const int64_t e = c * per_c + (t * KB + k) * N;
        T* out = j.gw + k * j.gw_kstride + c * j.gw_cstride + t;
        if (wide) {
          double s = 0;
          for (int lane = 0; lane < N; ++lane) s += wide[e + lane] + lanes[e + lane];
          *out = static_cast<T>(s);
        } else {
          *out = V::hsum(V::load(lanes + e));
        }
      }
}

// The job's kbn (1 .. kMaxKBW) filters as a compile-time tile height.
template <typename T, int KB = kMaxKBW>
void weight_grad_job(const FlatWeightGradJob<T>& j) {
  if constexpr (KB > 1) {
    if (j.kbn < KB) return weight_grad_job<T, KB - 1>(j);
  }
  weight_grad_job_kb<T, KB>(j);
}

const DirectKernels<float>& direct_kernels_f32() {
  static const DirectKernels<float> k{kMaxKB,          qb_for(kMaxKB) * Vec<float>::N,
                                      Vec<float>::N,   kMaxKBW,
                                      conv_job<float>, weight_grad_job<float>};
  return k;
}

const DirectKernels<double>& direct_kernels_f64() {
  static const DirectKernels<double> k{kMaxKB,           qb_for(kMaxKB) * Vec<double>::N,
                                       Vec<double>::N,   kMaxKBW,
                                       conv_job<double>, weight_grad_job<double>};
  return k;
}

}  // namespace CNNKERN_ISA_NS
}  // namespace cpu
}  // namespace cnnkern
