// Direct 2-D convolution on CUDA (NCHW, contiguous, any stride/padding/dilation/groups).
// Forward: shared-memory tiles and register tiles (core/direct_tile.h), compile-time 3x3
// kernels and a one-tap-per-stage kernel for 1x1 and every other filter. Backward, still
// simple and exact rather than fast: one thread per input element (grad-input, a gather), one
// warp per weight element (grad-weight, a fixed-order reduction). No atomics anywhere, and
// each output is summed in one fixed order, so results are deterministic.

#include "cuda/conv2d_direct.h"

#include "core/direct_tile.h"
#include "cuda/kernel_utils.cuh"

namespace cnnkern {
namespace {

using namespace cuda_detail;
namespace dt = direct_tile;

// A thread's kKT filters of one tap, from shared memory in 16-byte reads (LDS.128 for float):
// the run starts at a multiple of kWeightAlign elements (weight_offset, and KB, kKT multiples
// of it), so the vectors are aligned. Scalar reads would cost 8 instructions per 32 FFMAs.
__device__ __forceinline__ void load_weight_run(const float* src, float (&dst)[dt::kKT]) {
  const float4* v = reinterpret_cast<const float4*>(src);
  CNNKERN_UNROLL
  for (int q = 0; q < dt::kKT / 4; ++q) {
    const float4 f = v[q];
    dst[4 * q] = f.x, dst[4 * q + 1] = f.y, dst[4 * q + 2] = f.z, dst[4 * q + 3] = f.w;
  }
}
__device__ __forceinline__ void load_weight_run(const double* src, double (&dst)[dt::kKT]) {
  const double2* v = reinterpret_cast<const double2*>(src);
  CNNKERN_UNROLL
  for (int q = 0; q < dt::kKT / 2; ++q) {
    const double2 f = v[q];
    dst[2 * q] = f.x, dst[2 * q + 1] = f.y;
  }
}

// The forward: see core/direct_tile.h for the tiling and the variants. R x S are the taps one
// stage holds (3x3 for the halo variants, 1x1 for Taps); Unit: the staged tile's steps are all
// 1 (stride 1 and dilation 1, or the Taps gather), so every shared-memory offset in the inner
// loop is a compile-time constant plus the thread's base.
// Two blocks per SM caps registers at 128: the fp32 (and fp16/bf16) variants fit it without
// spilling; fp64 accumulators take twice the registers, so fp64 asks for one block.
template <class T, int R, int S, bool Unit>
__global__ void __launch_bounds__(dt::kThreads, sizeof(acc_t<T>) == 8 ? 1 : 2)
    conv2d_direct_forward_kernel(const Conv2dProblem p, const dt::DirectPlan pl,
                                 const T* __restrict__ input, const T* __restrict__ weight,
                                 const T* __restrict__ bias, T* __restrict__ output, bool relu) {
  using A = acc_t<T>;
  constexpr int RS = R * S;
  extern __shared__ double2 direct_smem[];  // 16-byte aligned: the weights' vector reads
  A* const xs = reinterpret_cast<A*>(direct_smem);                        // [cb][ih][iw]
  A* const ws = xs + static_cast<int>(dt::weight_offset(pl.cb, pl.ih, pl.iw));  // [cb][RS][KB]
  // Sizes that make_plan / int32_why_not bounded below 2^31.
  const int H = static_cast<int>(p.H), W = static_cast<int>(p.W);
  const int P = static_cast<int>(p.P), Q = static_cast<int>(p.Q);
  const int Cg = static_cast<int>(p.C_per_group()), Kg = static_cast<int>(p.K_per_group());
  const int fR = static_cast<int>(p.R), fS = static_cast<int>(p.S);
  const int CgRS = Cg * fR * fS;
  const int ih = Unit ? dt::TH + R - 1 : pl.ih, iw = Unit ? dt::TW + S - 1 : pl.iw;
  const int tile_elems = pl.cb * ih * iw, w_elems = pl.cb * RS * dt::KB;
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % dt::kThreadsX, ty = (tid / dt::kThreadsX) % dt::kThreadsY;
  const int kg = tid / (dt::kThreadsX * dt::kThreadsY);  // one per warp pair: weight broadcasts
  const int oy0 = ty * dt::kOutH, ox0 = tx * dt::kOutW;
  // One block's work per iteration (grid-stride over the N*groups*k_blocks*tiles tiles).
  for (int64_t b = blockIdx.x; b < pl.blocks; b += gridDim.x) {
    const int tw = static_cast<int>(b % pl.tiles_w);
    int64_t t = b / pl.tiles_w;
    const int th = static_cast<int>(t % pl.tiles_h);
    t /= pl.tiles_h;
    const int kb = static_cast<int>(t % pl.k_blocks);
    t /= pl.k_blocks;
    const int64_t g = t % p.groups, n = t / p.groups;
    const int oh0 = th * dt::TH, ow0 = tw * dt::TW, k0 = kb * dt::KB;
    // 64-bit plane bases; 32-bit offsets within them.
    const T* const xg = input + (n * p.C + g * Cg) * p.H * p.W;
    const T* const wg = weight + (g * Kg + k0) * static_cast<int64_t>(CgRS);
    A acc[dt::kOutH][dt::kOutW][dt::kKT];
    CNNKERN_UNROLL
    for (int i = 0; i < dt::kOutH; ++i)
      CNNKERN_UNROLL
      for (int j = 0; j < dt::kOutW; ++j)
        CNNKERN_UNROLL
        for (int kk = 0; kk < dt::kKT; ++kk) acc[i][j][kk] = A(0);
    for (int c0 = 0; c0 < Cg; c0 += pl.cb) {
      for (int tr = 0; tr < pl.taps_h; ++tr) {
        for (int ts = 0; ts < pl.taps_w; ++ts) {
          __syncthreads();  // the previous stage's reads are done before it is overwritten
          // Input tile: consecutive threads take consecutive columns (coalesced loads);
          // padding, the tile's overhang and channels past Cg are staged as zeros.
          const int h_base = oh0 * static_cast<int>(p.stride_h) - static_cast<int>(p.pad_h) +
                             tr * static_cast<int>(p.dil_h);
          const int w_base = ow0 * static_cast<int>(p.stride_w) - static_cast<int>(p.pad_w) +
                             ts * static_cast<int>(p.dil_w);
          for (int e = tid; e < tile_elems; e += dt::kThreads) {
            const int c = e / (ih * iw), rem = e - c * (ih * iw);
            const int i = rem / iw, j = rem - i * iw;
            const int h = h_base + i * pl.gather_h, w = w_base + j * pl.gather_w;
            A v = A(0);
            if (c0 + c < Cg && h >= 0 && h < H && w >= 0 && w < W)
              v = to_acc(xg[static_cast<int64_t>(c0 + c) * (H * W) + h * W + w]);
            xs[e] = v;
          }
          // Weights [c][tap][k]: consecutive threads read consecutive taps of one filter.
          for (int e = tid; e < w_elems; e += dt::kThreads) {
            const int kk = e / (pl.cb * RS), rem = e - kk * (pl.cb * RS);
            const int c = rem / RS, tap = rem - c * RS;
            const int r = tr + tap / S, s = ts + tap % S;
            A v = A(0);
            if (k0 + kk < Kg && c0 + c < Cg)
              v = ldg_acc(wg + kk * CgRS + (c0 + c) * fR * fS + r * fS + s);
            ws[(c * RS + tap) * dt::KB + kk] = v;
          }
          __syncthreads();
          // The inner loop: shared memory only, 32-bit offsets, no bounds checks.
          const int sh = Unit ? 1 : pl.out_step_h, sw = Unit ? 1 : pl.out_step_w;
          const int dh = Unit ? 1 : pl.tap_step_h, dw = Unit ? 1 : pl.tap_step_w;
#pragma unroll 1
          for (int c = 0; c < pl.cb; ++c) {
            const A* const xc = xs + c * (ih * iw);
            const A* const wc = ws + c * (RS * dt::KB) + kg * dt::kKT;
            CNNKERN_UNROLL
            for (int r = 0; r < R; ++r) {
              CNNKERN_UNROLL
              for (int s = 0; s < S; ++s) {
                A wv[dt::kKT];
                load_weight_run(wc + (r * S + s) * dt::KB, wv);
                CNNKERN_UNROLL
                for (int i = 0; i < dt::kOutH; ++i) {
                  CNNKERN_UNROLL
                  for (int j = 0; j < dt::kOutW; ++j) {
                    const A xv = xc[((oy0 + i) * sh + r * dh) * iw + (ox0 + j) * sw + s * dw];
                    CNNKERN_UNROLL
                    for (int kk = 0; kk < dt::kKT; ++kk) acc[i][j][kk] += xv * wv[kk];
                  }
                }
              }
            }
          }
        }
      }
    }
    // Epilogue: bias, the fused ReLU, the store; here (not in the inner loop) the tile's
    // overhang past P, Q and Kg is cut off.
    CNNKERN_UNROLL
    for (int kk = 0; kk < dt::kKT; ++kk) {
      const int k = k0 + kg * dt::kKT + kk;
      if (k >= Kg) continue;
      const A bv = bias != nullptr ? ldg_acc(bias + g * Kg + k) : A(0);
      T* const yk = output + ((n * p.K + g * Kg + k) * p.P) * p.Q;
      CNNKERN_UNROLL
      for (int i = 0; i < dt::kOutH; ++i) {
        CNNKERN_UNROLL
        for (int j = 0; j < dt::kOutW; ++j) {
          const int oh = oh0 + oy0 + i, ow = ow0 + ox0 + j;
          if (oh >= P || ow >= Q) continue;
          A v = acc[i][j][kk] + bv;
          if (relu && v < A(0)) v = A(0);  // the fused ReLU epilogue; NaN stays NaN
          yk[oh * Q + ow] = from_acc<T>(v);
        }
      }
    }
  }
}

// Input (h, w) meets output (op, q) through tap (r, s) iff h = op*stride - pad + r*dil,
// i.e. h + pad - r*dil is a non-negative multiple of stride whose quotient is < P.
template <class T>
__global__ void conv2d_direct_backward_input_kernel(const Conv2dProblem p,
                                                    const T* __restrict__ grad_output,
                                                    const T* __restrict__ weight,
                                                    T* __restrict__ grad_input) {
  using A = acc_t<T>;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  const int64_t PQ = p.P * p.Q, CgRS = Cg * p.R * p.S;
  const int64_t total = p.input_numel();
  for (int64_t i = global_thread_id(); i < total; i += global_thread_count()) {
    const int64_t w = i % p.W;
    int64_t t = i / p.W;
    const int64_t h = t % p.H;
    t /= p.H;
    const int64_t c = t % p.C;
    const int64_t n = t / p.C;
    const int64_t g = c / Cg;
    const int64_t cl = c - g * Cg;
    const T* go = grad_output + (n * p.K + g * Kg) * PQ;      // + kk*PQ + op*Q + q
    const T* wg = weight + (g * Kg * Cg + cl) * p.R * p.S;   // + kk*CgRS + r*S + s
    A acc = 0;
    for (int64_t r = 0; r < p.R; ++r) {
      const int64_t hh = h + p.pad_h - r * p.dil_h;
      if (hh < 0 || hh % p.stride_h != 0) continue;
      const int64_t op = hh / p.stride_h;
      if (op >= p.P) continue;
      for (int64_t s = 0; s < p.S; ++s) {
        const int64_t ww = w + p.pad_w - s * p.dil_w;
        if (ww < 0 || ww % p.stride_w != 0) continue;
        const int64_t q = ww / p.stride_w;
        if (q >= p.Q) continue;
        const T* gp = go + op * p.Q + q;
        const T* wp = wg + r * p.S + s;
        for (int64_t kk = 0; kk < Kg; ++kk) acc += to_acc(gp[kk * PQ]) * ldg_acc(wp + kk * CgRS);
      }
    }
    grad_input[i] = from_acc<T>(acc);
  }
}

constexpr int kWarp = 32;

// One warp per weight element (k, c, r, s): lane l sums positions j = l, l+32, ... of the
// N*P*Q (n, op, q) positions, then a fixed shuffle tree adds the 32 partial sums.
template <class T>
__global__ void conv2d_direct_backward_weight_kernel(const Conv2dProblem p,
                                                     const T* __restrict__ grad_output,
                                                     const T* __restrict__ input,
                                                     T* __restrict__ grad_weight) {
  using A = acc_t<T>;
  const int64_t Cg = p.C_per_group(), Kg = p.K_per_group();
  const int64_t PQ = p.P * p.Q, HW = p.H * p.W;
  const int64_t NPQ = p.N * PQ;
  const int64_t total = p.weight_numel();
  const int lane = threadIdx.x % kWarp;
  const int64_t warps_per_block = blockDim.x / kWarp;
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / kWarp;
  const int64_t warp_count = static_cast<int64_t>(gridDim.x) * warps_per_block;
  // e depends only on the warp, so the whole warp stays together for the shuffles.
  for (int64_t e = warp_id; e < total; e += warp_count) {
    const int64_t s = e % p.S;
    int64_t t = e / p.S;
    const int64_t r = t % p.R;
    t /= p.R;
    const int64_t cl = t % Cg;
    const int64_t k = t / Cg;
    const int64_t c = (k / Kg) * Cg + cl;
    A acc = 0;
    for (int64_t j = lane; j < NPQ; j += kWarp) {
      const int64_t q = j % p.Q;
      const int64_t op = (j / p.Q) % p.P;
      const int64_t n = j / PQ;
      const int64_t h = p.in_h(op, r);
      const int64_t w = p.in_w(q, s);
      if (h < 0 || h >= p.H || w < 0 || w >= p.W) continue;
      acc += to_acc(grad_output[(n * p.K + k) * PQ + op * p.Q + q]) *
             to_acc(input[(n * p.C + c) * HW + h * p.W + w]);
    }
    for (int off = kWarp / 2; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) grad_weight[e] = from_acc<T>(acc);
  }
}

}  // namespace

cudaError_t launch_conv2d_direct_forward(CudaDType dtype, const Conv2dProblem& p,
                                         const void* input, const void* weight,
                                         const void* bias, void* output, bool relu,
                                         cudaStream_t stream) {
  if (p.output_numel() == 0) return cudaSuccess;
  if (dt::int32_why_not(p)[0] != '\0') return cudaErrorInvalidValue;  // the glue checked it
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dt::DirectPlan pl = dt::make_plan(p, sizeof(acc_t<T>));
    const unsigned int grid = blocks_for(pl.blocks, 1);
    // sass-report: smem <= kSmemBudget (make_plan keeps every stage under it)
    const size_t smem = static_cast<size_t>(pl.smem_elems) * sizeof(acc_t<T>);
    const auto* x = static_cast<const T*>(input);
    const auto* w = static_cast<const T*>(weight);
    const auto* b = static_cast<const T*>(bias);
    auto* y = static_cast<T*>(output);
    switch (pl.variant) {
      case dt::DirectVariant::Halo3x3Unit:
        conv2d_direct_forward_kernel<T, 3, 3, true><<<grid, dt::kThreads, smem, stream>>>(
            p, pl, x, w, b, y, relu);
        break;
      case dt::DirectVariant::Halo3x3Strided:
        conv2d_direct_forward_kernel<T, 3, 3, false><<<grid, dt::kThreads, smem, stream>>>(
            p, pl, x, w, b, y, relu);
        break;
      case dt::DirectVariant::Taps:
        conv2d_direct_forward_kernel<T, 1, 1, true><<<grid, dt::kThreads, smem, stream>>>(
            p, pl, x, w, b, y, relu);
        break;
    }
    return cudaGetLastError();
  });
}

cudaError_t launch_conv2d_direct_backward_input(CudaDType dt, const Conv2dProblem& p,
                                                const void* grad_output, const void* weight,
                                                void* grad_input, cudaStream_t stream) {
  const int64_t n = p.input_numel();
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv2d_direct_backward_input_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), static_cast<const T*>(weight),
        static_cast<T*>(grad_input));
    return cudaGetLastError();
  });
}

cudaError_t launch_conv2d_direct_backward_weight(CudaDType dt, const Conv2dProblem& p,
                                                 const void* grad_output, const void* input,
                                                 void* grad_weight, cudaStream_t stream) {
  const int64_t n = p.weight_numel();
  if (n == 0) return cudaSuccess;
  static_assert(kThreads % kWarp == 0, "whole warps per block");
  return dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv2d_direct_backward_weight_kernel<T><<<blocks_for(n, kThreads / kWarp), kThreads, 0, stream>>>(
        p, static_cast<const T*>(grad_output), static_cast<const T*>(input),
        static_cast<T*>(grad_weight));
    return cudaGetLastError();
  });
}

}  // namespace cnnkern
