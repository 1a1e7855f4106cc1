#pragma once
// The tile geometry, block sizes and per-block phases of the CPU Winograd (forward and
// grad-weight share them). Internal to cpu/winograd_*.cpp.
//
// Tiles: output tile (n, ty, tx) covers rows ty*m .. ty*m + m - 1 and columns tx*m .. of
// image n; tiles are numbered n, ty, tx (row-major), and a block is a range of that
// numbering, so a block may span tile rows and images (small late layers still fill one).
// Within a block, column t of the workspaces is the block's t-th tile:
//   V[c][xi][t]  (C x a*a x ld)  transformed input tiles, all channels of all groups
//   M[k][xi][t]  (K x a*a x ld)  their products with the transformed filters
// (xi in the middle: a transform reads or writes a*a rows of one contiguous plane; with xi
// outermost its a*a rows would sit a multiple of 4 KiB apart and fight over L1 sets).
// The row kernels (cpu/winograd/winograd_kernels.h) transform runs of tiles along one tile row, read
// from / written to row buffers that a copy zero-pads and a copy crops.

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "core/conv2d_problem.h"
#include "core/int_math.h"
#include "core/winograd.h"
#include "cpu/common/thread_scratch.h"
#include "cpu/gemm/gemm.h"
#include "cpu/winograd/winograd_filters.h"
#include "cpu/winograd/winograd_kernels.h"

namespace cnnkern {
namespace cpu {
namespace wino {

template <typename T>
std::unique_ptr<T[]> alloc(int64_t n) {
  return std::unique_ptr<T[]>(new T[std::max<int64_t>(n, 1)]);
}

// Per-thread workspaces, grow-only and kept for the thread's lifetime: the same multi-MB
// buffers come back on every call, and fresh ones cost a page fault (and a zeroed page) per
// 4 KiB each time -- 10% of a 14x14 layer. What a thread keeps is bounded by the largest
// problem it ran: one block's V and M (about kBlockBytes), the filter-streaming V (at most
// kStreamBytes, calling thread only) and a filter chunk with its products
// (a*a*(C + tiles)*kChunk elements, tiles <= kStreamTiles), and a row buffer.
// (Their thread_scratch slots are ScratchSlot::Winograd*, cpu/common/thread_scratch.h.)

// Target size of one block's workspace (V and M). The transformed filters are read once
// per block, so blocks must be long enough for the GEMMs to reuse them; one block per
// thread should fit the last-level cache.
constexpr int64_t kBlockBytes = int64_t(8) << 20;
constexpr int64_t kMaxBlock = 256;
// Filter-streaming schedules (few tiles: all in one block, threads take chunks of filters)
// when there are at most this many tiles (the forward's output transform then has lanes over
// filters and scatters each tile's outputs: cheap for few tiles only), and the transformed
// tiles of all images fit in this many bytes.
constexpr int64_t kStreamTiles = 512;
constexpr int64_t kStreamBytes = int64_t(16) << 20;
// grad-weight keeps the transformed input and grad-output tiles (C + K channels) but writes no
// a*a*K*C dU, which the blocked schedule needs (with its partials: 32 MiB for 512 x 512 in
// F(2x2)); measured on 512x14x14 x 8, F(2x2): streaming 63 ms and 21 MB extra against
// blocked 96 ms and 48 MB, 1 thread.
constexpr int64_t kStreamBytesGradWeight = int64_t(32) << 20;
// Filters per work item of the filter-streaming schedules, at least (Plan::filter_chunk: a
// multiple of the GEMM's register tile width, which is 32 for AVX-512 float32).
constexpr int64_t kChunk = 16;
// Work items the filter-streaming schedules want at least, so that 2-4 threads taking whole
// chunks stay balanced: a chunk is widened to the GEMM's tile only while this many remain.
constexpr int64_t kMinChunks = 8;
// Channels per work item when the filter-streaming schedules transform and pack their tiles.
constexpr int64_t kPackChannels = 16;

// Below this many (direct-convolution) flops everything runs on the calling thread: opening a
// parallel region costs microseconds, the time of a whole small convolution.
constexpr int64_t kMinParallelFlops = 4000000;

// at::parallel_for(0, n, ...), on the calling thread alone when `serial` (still marked as a
// parallel region, so the GEMMs inside stay serial too).
template <typename F>
void parallel(bool serial, int64_t n, const F& f) {
  at::parallel_for(0, n, serial ? n : 1, f);
}

template <int M, typename T>
struct Plan {
  static constexpr int m = M, a = M + 2, A2 = a * a, L = kLanes<T>;
  using V = vec_t<T>;

  const Conv2dProblem& p;
  const WinogradKernels<T>& kern;
  int64_t G, Cg, Kg;
  int64_t TH, TW, tiles;  // tile grid per image; tiles in all images
  int64_t NB, nblocks;    // tiles per block, number of blocks
  int64_t ld;             // row length of the V and M workspaces (NB + room for a lane group)
  int64_t in_w, out_w;    // row lengths of the per-thread row buffers
  bool serial;            // too small to be worth a parallel region
  bool flipped;           // the weight is grad-input's (see winograd_cpu.h)

  // nb: tiles per block, or 0 for the default (block_size()).
  Plan(const Conv2dProblem& prob, bool flipped_weight, int64_t nb = 0)
      : p(prob), kern(winograd_kernels<M, T>()), flipped(flipped_weight) {
    G = p.groups;
    Cg = p.C_per_group();
    Kg = p.K_per_group();
    TH = (p.P + m - 1) / m;
    TW = (p.Q + m - 1) / m;
    tiles = p.N * TH * TW;
    NB = std::max<int64_t>(1, std::min(nb > 0 ? nb : block_size(), tiles));
    nblocks = (tiles + NB - 1) / NB;
    ld = NB + kWinogradRowGroup;
    const int64_t run = round_up(std::min(TW, NB), kWinogradRowGroup);  // longest run of tiles
    in_w = run * m + kWinogradRowHalo;
    out_w = run * m;
    serial = p.flops() < kMinParallelFlops;
  }

  template <typename F>
  void parallel(int64_t n, const F& f) const {
    wino::parallel(serial, n, f);
  }

  // A function of the problem only (never of the thread count), so results are reproducible.
  // Whole tile rows when a row fits the budget (fewer, longer runs for the row kernels), and
  // blocks of equal size (threads running whole blocks stay balanced).
  int64_t block_size() const {
    const int64_t per_tile = int64_t(A2) * (p.C + p.K) * int64_t(sizeof(T));
    const int64_t target =
        std::max<int64_t>(kWinogradRowGroup, std::min(kMaxBlock, kBlockBytes / per_tile));
    if (TW <= target) {
      const int64_t rows = p.N * TH, max_rows = target / TW;
      const int64_t n = balanced_blocks((rows + max_rows - 1) / max_rows, rows);
      return (rows + n - 1) / n * TW;
    }
    const int64_t n = balanced_blocks((tiles + target - 1) / target, tiles);
    return round_up((tiles + n - 1) / n, kWinogradRowGroup);
  }

  // More than two blocks: a multiple of four (at most `units`), so that 2 or 4 threads taking
  // whole blocks get equal shares: 7 blocks of VGG16 conv3_2 (256 x 28x28 x 8) left one of two
  // threads idle for an eighth of the call.
  static int64_t balanced_blocks(int64_t n, int64_t units) {
    return n <= 2 ? n : std::min(round_up(n, 4), units);
  }

  // The transformed filters of every group, U[g][c][xi][k] with rows of u_width() filters:
  // lanes over filters make the transform's stores contiguous, and the GEMMs read
  // U[g][.][xi] transposed (A = U^T, K x C), which packing does at no extra cost.
  int64_t u_width() const { return round_up(Kg, kWinogradRowGroup); }
  int64_t u_elems() const { return G * A2 * Cg * u_width(); }
  // Filters k0 .., channels c0 .. of group g in the weight tensor (see FilterSource). For
  // grad-input (flipped), filter k, channel c is the forward's filter g*Cg + c, channel k,
  // turned by 180 degrees (Cg and Kg are this problem's).
  FilterSource<T> filter_source(const T* w, int64_t g, int64_t k0, int64_t c0) const {
    if (flipped) return {w + ((g * Cg + c0) * Kg + k0) * 9, 9, Kg * 9, true};
    return {w + ((g * Kg + k0) * Cg + c0) * 9, Cg * 9, 9, false};
  }

  // Parallel over (group, 16 channels): each call writes whole rows of U.
  void transform_filters(const T* w, T* U) const {
    constexpr int64_t kc = 16;
    const int64_t cchunks = (Cg + kc - 1) / kc, kw = u_width();
    parallel(G * cchunks, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / cchunks, c0 = (i % cchunks) * kc, nc = std::min(kc, Cg - c0);
        kern.filters(filter_source(w, g, 0, c0), nc, Kg, U + (g * Cg + c0) * A2 * kw, A2 * kw,
                     kw);
      }
    });
  }

  // Whether the filter-streaming schedule applies, with `channels` channels of tiles kept
  // in at most `budget` bytes.
  bool streamable(int64_t channels, int64_t budget = kStreamBytes) const {
    return tiles <= kStreamTiles && int64_t(A2) * channels * tiles * int64_t(sizeof(T)) <= budget;
  }

  // Filters per work item of the filter-streaming schedules: the GEMM's register tile width
  // (its products run N = chunk columns, computed in whole tiles of gemm_tile_cols: 16-wide
  // chunks wasted half of each 32-wide AVX-512 tile, 1.3-1.5x the GEMM time on ResNet-50's
  // 14x14 and 7x7 layers at batch 1), unless that leaves fewer than kMinChunks work items for
  // the threads. Changes no bit: the chunks only split the GEMMs' columns (cpu/gemm/gemm.h).
  // CNNKERN_WINOGRAD_CHUNK=<filters> forces a width (tests compare widths bit for bit; the
  // small-plane benchmark times the old 16 against the default in one process).
  int64_t filter_chunk() const {
    if (const char* env = std::getenv("CNNKERN_WINOGRAD_CHUNK"); env != nullptr && *env) {
      char* end = nullptr;
      const long long v = std::strtoll(env, &end, 10);
      TORCH_CHECK(*end == '\0' && v > 0 && v % kWinogradRowGroup == 0 && v <= 1024,
                  "CNNKERN_WINOGRAD_CHUNK must be a multiple of ", kWinogradRowGroup,
                  " filters from ", kWinogradRowGroup, " to 1024; got '", env, "'");
      return v;
    }
    const int64_t wide = round_up(std::max(kChunk, gemm_tile_cols<T>()), kWinogradRowGroup);
    return G * ((Kg + wide - 1) / wide) >= kMinChunks ? wide : kChunk;
  }
  // Row width of a chunk's buffers (whole lane groups).
  int64_t chunk_width() const { return round_up(filter_chunk(), kWinogradRowGroup); }

  int64_t v_elems() const { return int64_t(A2) * p.C * ld; }
  int64_t m_elems() const { return int64_t(A2) * p.K * ld; }

  // Calls f(row, tx0, n, t) for each run of tiles of block [t0, t0 + nt) in one tile row:
  // row = image * TH + ty, tiles tx0 .. tx0 + n - 1, the first at column t of the block.
  template <typename F>
  void for_each_run(int64_t t0, int64_t nt, F&& f) const {
    for (int64_t t = 0; t < nt;) {
      const int64_t g = t0 + t, row = g / TW, tx0 = g % TW;
      const int64_t n = std::min(TW - tx0, nt - t);
      f(row, tx0, n, t);
      t += n;
    }
  }

  // buf[r][x] = plane[y0 + r][x0 + x] for r < rows, x < width; zero outside the plane.
  static void copy_rows(const T* plane, int64_t H, int64_t W, int64_t y0, int64_t x0, int rows,
                        int64_t width, T* buf) {
    const int64_t lo = std::clamp<int64_t>(-x0, 0, width);
    const int64_t hi = std::clamp<int64_t>(W - x0, lo, width);
    for (int r = 0; r < rows; ++r) {
      T* dst = buf + r * width;
      const int64_t y = y0 + r;
      if (y < 0 || y >= H) {
        std::fill(dst, dst + width, T(0));
        continue;
      }
      std::fill(dst, dst + lo, T(0));
      std::copy(plane + y * W + x0 + lo, plane + y * W + x0 + hi, dst + lo);
      std::fill(dst + hi, dst + width, T(0));
    }
  }

  // An input-side row kernel (input_row or grad_output_row) on a run of n tiles whose
  // patches start at rows y0 .. y0 + rows - 1, column x0 of `plane` (H x W): whole groups
  // of 8 tiles whose reads (up to 8*m + halo columns) lie inside the plane read it in place;
  // the others (padding, edges) go through the zero-padded row buffer `buf`.
  template <typename Kernel>
  void run_input_kernel(Kernel kernel, const T* plane, int64_t H, int64_t W, int64_t y0,
                        int64_t x0, int rows, int64_t n, T* buf, T* dst) const {
    constexpr int64_t G8 = kWinogradRowGroup, span = G8 * m;
    int64_t d0 = 0, d1 = 0;  // tiles [d0, d1) read in place
    if (y0 >= 0 && y0 + rows <= H) {
      const int64_t first = x0 >= 0 ? 0 : (-x0 + span - 1) / span;  // x0 + g*span >= 0
      const int64_t room = W - kWinogradRowHalo - x0;                // x0 + (g+1)*span + halo <= W
      const int64_t end = std::min(room >= span ? room / span : 0, n / G8);
      if (end > first) {
        d0 = first * G8;
        d1 = end * G8;
      }
    }
    auto buffered = [&](int64_t b0, int64_t b1) {
      if (b1 <= b0) return;
      copy_rows(plane, H, W, y0, x0 + b0 * m, rows, in_w, buf);
      kernel(buf, in_w, b1 - b0, dst + b0, ld);
    };
    buffered(0, d0);
    if (d1 > d0) kernel(plane + y0 * W + x0 + d0 * m, W, d1 - d0, dst + d0, ld);
    buffered(d1, n);
  }

  // --- phases of one block of nt tiles starting at tile t0 ---------------------------------

  // Vw[c][xi][t] = (B^T d B)[xi] of the block's tiles, parallel over channels.
  void input_phase(const T* in, int64_t t0, int64_t nt, T* Vw) const {
    parallel(p.C, [&](int64_t c0, int64_t c1) {
      T* buf = thread_scratch<T>(ScratchSlot::WinogradRow, a * in_w);
      for (int64_t c = c0; c < c1; ++c) transform_input_channel(in, c, t0, nt, buf, Vw + c * A2 * ld);
    });
  }

  // dst[xi][t] = (B^T d B)[xi] of channel c's tiles t0 .. t0 + nt - 1 (buf: a row buffer).
  void transform_input_channel(const T* in, int64_t c, int64_t t0, int64_t nt, T* buf,
                               T* dst) const {
    const int64_t HW = p.H * p.W;
    for_each_run(t0, nt, [&](int64_t row, int64_t tx0, int64_t n, int64_t t) {
      const int64_t img = row / TH, ty = row % TH;
      run_input_kernel(kern.input_row, in + (img * p.C + c) * HW, p.H, p.W, ty * m - p.pad_h,
                       tx0 * m - p.pad_w, a, n, buf, dst + t);
    });
  }

  // The filter-streaming schedules' GEMM operand: the transformed tiles of every channel,
  // packed for each group g and xi as packed[g * A2 + xi] (a gemm_packed_a_view of the
  // caller's storage) -- with the tiles as its rows (the forward: tiles x channels) or as its
  // columns (grad-weight: channels x tiles). Chunks of channels are transformed into a small
  // per-thread buffer and packed straight away, so V itself is never kept whole beside its
  // packed copy (6-13 MB of transformed tiles on 256-512 channels at 14x14 x 8).
  void pack_transformed_input(const T* in, std::vector<GemmPackedA<T>>& packed,
                              bool tiles_as_rows) const {
    // Channels are packed as whole row panels when they are the rows.
    const int64_t unit = tiles_as_rows ? 1 : gemm_pack_a_row_unit<T>();
    const int64_t chunk = round_up(kPackChannels, unit);
    const int64_t nchunks = (Cg + chunk - 1) / chunk;
    parallel(G * nchunks, [&](int64_t i0, int64_t i1) {
      T* buf = thread_scratch<T>(ScratchSlot::WinogradRow, a * in_w);
      T* Vc = thread_scratch<T>(ScratchSlot::WinogradVChunk, chunk * A2 * ld);  // Vc[c - c0][xi][t]
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t g = i / nchunks, c0 = (i % nchunks) * chunk;
        const int64_t nc = std::min(chunk, Cg - c0);
        for (int64_t c = 0; c < nc; ++c)
          transform_input_channel(in, g * Cg + c0 + c, 0, tiles, buf, Vc + c * A2 * ld);
        for (int64_t xi = 0; xi < A2; ++xi) {
          const GemmPackedA<T>& pa = packed[g * A2 + xi];
          if (tiles_as_rows)
            gemm_pack_a_part<T>(pa, 0, tiles, c0, c0 + nc, Vc + xi * ld, 1, A2 * ld);
          else
            gemm_pack_a_part<T>(pa, c0, c0 + nc, 0, tiles, Vc + xi * ld, A2 * ld, 1);
        }
      }
    });
  }

  // out[k, tile] = A^T Mw[k][.][t] A + bias[k] (then ReLU when relu), cropped at the edges;
  // parallel over k.
  void output_phase(const T* Mw, int64_t t0, int64_t nt, const T* bias, T* out,
                    bool relu) const {
    const int64_t PQ = p.P * p.Q;
    parallel(p.K, [&](int64_t k0, int64_t k1) {
      T* buf = thread_scratch<T>(ScratchSlot::WinogradRow, m * out_w);
      for (int64_t k = k0; k < k1; ++k) {
        const T b = bias ? bias[k] : T(0);
        for_each_run(t0, nt, [&](int64_t row, int64_t tx0, int64_t n, int64_t t) {
          const int64_t img = row / TH, oy = (row % TH) * m, ox = tx0 * m;
          T* o = out + (img * p.K + k) * PQ + oy * p.Q + ox;
          // Whole groups of 8 tiles inside the output go straight to it; the rest (and the
          // bottom tile row, if P is not a multiple of m) through the buffer, cropped.
          int64_t direct = 0;
          if (oy + m <= p.P) {
            direct = std::min(n, (p.Q - ox) / m) / kWinogradRowGroup * kWinogradRowGroup;
            if (direct > 0)
              kern.output_row(Mw + k * A2 * ld + t, ld, direct, b, o, p.Q, relu);
          }
          if (direct == n) return;
          kern.output_row(Mw + k * A2 * ld + t + direct, ld, n - direct, b, buf, out_w, relu);
          const int64_t nrows = std::min<int64_t>(m, p.P - oy);
          const int64_t ncols = std::min((n - direct) * m, p.Q - ox - direct * m);
          o += direct * m;
          for (int64_t i = 0; i < nrows; ++i)
            std::copy(buf + i * out_w, buf + i * out_w + ncols, o + i * p.Q);
        });
      }
    });
  }

  // Mw[k][xi][t] = (A dy A^T)[xi] of the block's grad_output tiles, parallel over k.
  void grad_output_phase(const T* go, int64_t t0, int64_t nt, T* Mw) const {
    const int64_t PQ = p.P * p.Q;
    parallel(p.K, [&](int64_t k0, int64_t k1) {
      T* buf = thread_scratch<T>(ScratchSlot::WinogradRow, m * in_w);
      for (int64_t k = k0; k < k1; ++k)
        for_each_run(t0, nt, [&](int64_t row, int64_t tx0, int64_t n, int64_t t) {
          const int64_t img = row / TH, ty = row % TH;
          run_input_kernel(kern.grad_output_row, go + (img * p.K + k) * PQ, p.P, p.Q, ty * m,
                           tx0 * m, m, n, buf, Mw + k * A2 * ld + t);
        });
    });
  }

  // For the filter-streaming forward, where the products come as Mt[t][xi][kk] (row width
  // kw, all tiles in one block) for the nk filters k_first ..: out[k, tile t] = A^T x A + b,
  // L filters at a time (lanes over k). Runs on the calling thread.
  void output_filter_lanes(const T* Mt, int64_t kw, int64_t k_first, int64_t nk, const T* bias,
                           T* out, bool relu) const {
    const int64_t PQ = p.P * p.Q;
    alignas(32) T buf[m * m * L];
    for (int64_t kk = 0; kk < nk; kk += L) {
      const int nvalid = static_cast<int>(std::min<int64_t>(L, nk - kk));
      alignas(32) T lanes[L] = {};
      if (bias) std::copy(bias + k_first + kk, bias + k_first + kk + nvalid, lanes);
      V b;
      std::memcpy(&b, lanes, sizeof(V));
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t img = t / (TH * TW), oy = (t / TW % TH) * m, ox = t % TW * m;
        const int64_t nrows = std::min<int64_t>(m, p.P - oy);
        const int64_t ncols = std::min<int64_t>(m, p.Q - ox);
        V x[A2], y[m * m];
        for (int xi = 0; xi < A2; ++xi)
          std::memcpy(&x[xi], Mt + (t * A2 + xi) * kw + kk, sizeof(V));
        winograd::output_transform<M, T>(x, a, 1, y, m, 1);
        for (auto& v : y) v += b;
        std::memcpy(buf, y, sizeof(y));
        // The ReLU as a select in a loop of its own: a per-element `relu && y < 0` branch on
        // the sign of random data mispredicted half the time (+18% on 256 x 14x14 x 8).
        if (relu)
          for (T& v : buf) v = v < T(0) ? T(0) : v;  // NaN stays NaN, as torch.relu
        for (int l = 0; l < nvalid; ++l) {
          T* o = out + (img * p.K + k_first + kk + l) * PQ + oy * p.Q + ox;
          for (int64_t i = 0; i < nrows; ++i)
            for (int64_t j = 0; j < ncols; ++j) o[i * p.Q + j] = buf[(i * m + j) * L + l];
        }
      }
    }
  }
};

}  // namespace wino
}  // namespace cpu
}  // namespace cnnkern
