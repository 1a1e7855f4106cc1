// im2col + GEMM convolution on the CPU: forward, grad-input and grad-weight, float32 and
// float64, for every stride, padding, dilation and group count. float16/bfloat16: the forward
// computes in float32 converting in its packing stages and rounding as it stores
// (cpu/im2col/forward_io.h); the backward passes through float32 copies
// (cpu/common/half_via_float32.h).
//
// Per image n and group g, with the column matrix col (C/g*R*S rows, one per filter tap, and
// one column per output position; cpu/im2col/im2col.h):
//   forward      out[n, g]  (K/g x PQ)     = W[g] (K/g x C/g*R*S) * col + bias
//   grad-input   col                       = W[g]^T * grad_out[n, g], then col2im adds col
//                                            back into grad_in[n, g]
//   grad-weight  grad_W[g] (K/g x C/g*R*S) = sum over n of grad_out[n, g] * col^T
// W[g] and W[g]^T are strided views of the weights, packed once per call for the GEMM
// (cpu::gemm_pack_a); col^T is a stride swap. The forward never stores col: the GEMM's B
// panels are packed straight from the image (cpu/im2col/im2col_pack.h), and the bias starts each
// output's accumulation inside the GEMM (no extra pass over the output).
//
// Bounded workspace: grad-input and grad-weight build col for a tile of at most
// kColumnBudgetBytes / (C/g*R*S * sizeof(T)) output positions at a time (4 MiB per thread;
// at least kMinTile positions, so layers with C/g*R*S > 16384 take kMinTile * C/g*R*S
// elements); the forward needs no column buffer. On top of that: one packed copy of the
// weights per call, and the GEMM's packing buffers (at most kc x nc + mc x kc elements per
// thread, about 2.2 MiB for float32). The per-thread buffers are kept between calls
// (cpu/common/thread_scratch.h). Memory does not grow with N*P*Q. Strided layers with wide
// kernels (the 7x7 stride-2 stems; column_pack) read (and grad-input adds into) a group's input
// planes split into their column stride phases (cpu/im2col/stride_phases.h), one more
// per-thread buffer the size of those planes: a strided row is then a contiguous copy for
// every tap, not a scalar gather.
//
// A 1x1 convolution with stride 1 and no padding has the input plane as its column matrix:
// no copy is made, the GEMM reads (and for grad-input writes) the image directly.
//
// Threads: the forward runs one GEMM per (image, group) -- per (batch of images, group) on
// small planes, see images_per_gemm -- in parallel when there are enough, else one by one with
// the GEMM parallel inside. The backward passes split into tasks that
// own their outputs, (image, group, channel block) for grad-input and (group, channel block)
// for grad-weight, run in one parallel region with no synchronisation inside. Every output
// element is computed by one chain of operations in a fixed order whatever the split
// (grad-weight adds the images and tiles in order n, tile), so results do not depend on
// the thread count.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "ops/conv2d_algo.h"
#include "cpu/gemm/gemm.h"
#include "cpu/im2col/im2col.h"
#include "cpu/im2col/im2col_pack.h"
#include "cpu/im2col/stride_phases.h"
#include "cpu/im2col/forward_io.h"
#include "cpu/common/cpu_isa.h"
#include "cpu/half/half_convert.h"
#include "cpu/common/thread_scratch.h"
#include "cpu/common/half_via_float32.h"

namespace cnnkern {
namespace {

constexpr int64_t kColumnBudgetBytes = int64_t(4) << 20;
constexpr int64_t kMinTile = 64;

struct Plan {
  int64_t G, Cg, Kg, CRS, RS, PQ, HW;
  bool input_is_columns;  // 1x1, stride 1, no padding
  int64_t tile;           // output positions per tile
  int64_t tiles;          // tiles per image
};

Plan make_plan(const Conv2dProblem& p, int64_t elem_bytes) {
  Plan pl;
  pl.G = p.groups;
  pl.Cg = p.C_per_group();
  pl.Kg = p.K_per_group();
  pl.RS = p.R * p.S;
  pl.CRS = pl.Cg * pl.RS;
  pl.PQ = p.P * p.Q;
  pl.HW = p.H * p.W;
  pl.input_is_columns = p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 &&
                        p.pad_h == 0 && p.pad_w == 0;
  if (pl.input_is_columns) {
    pl.tile = pl.PQ;  // no buffer to bound
  } else {
    int64_t tile = kColumnBudgetBytes / (pl.CRS * elem_bytes);
    tile = tile / 16 * 16;  // whole GEMM micro-tiles (16 columns for AVX2 float32)
    if (tile < kMinTile) tile = kMinTile;
    pl.tile = tile < pl.PQ ? tile : pl.PQ;
  }
  pl.tiles = pl.PQ == 0 ? 0 : (pl.PQ + pl.tile - 1) / pl.tile;
  return pl;
}

// Below this many flops a pass runs on the calling thread: a parallel region costs several
// microseconds (far more on a loaded machine, where a sleeping worker must be scheduled).
constexpr int64_t kMinParallelFlops = 2000000;

// The threads a pass may use.
int64_t threads_for(const Conv2dProblem& p) {
  if (at::in_parallel_region() || p.flops() < kMinParallelFlops) return 1;
  return at::get_num_threads();
}

// Whether `tasks` independent tasks keep every one of nt threads busy when run in parallel
// (else they run one after another, each parallel inside).
bool parallel_over_tasks(int64_t tasks, int64_t nt) {
  return nt <= 1 || tasks >= 4 * nt || (tasks >= nt && tasks % nt == 0);
}

// How many blocks of input channels to cut each of `tasks` tasks into so that they spread
// evenly over the threads: nt / gcd(tasks, nt) (1 when the tasks already do), at most Cg.
// Channel blocks own disjoint grad_in planes / grad_W columns, so the blocks run in
// parallel with no synchronisation, one parallel region per pass.
int64_t channel_blocks(int64_t tasks, int64_t Cg, int64_t nt) {
  if (tasks >= 4 * nt) return 1;
  const int64_t cb = nt / std::gcd(tasks, nt);
  return cb < Cg ? cb : Cg;
}

// Runs f(task) for every task: in one parallel region when there are at least as many as
// the nt (> 1) threads, else one by one so that the GEMMs inside can use the threads.
template <typename F>
void run_tasks(int64_t tasks, int64_t nt, const F& f) {
  if (nt > 1 && tasks >= nt) {
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) f(t);
    });
  } else {
    for (int64_t t = 0; t < tasks; ++t) f(t);
  }
}

// Channels [c0, c1) of block b out of cb.
void block_range(int64_t Cg, int64_t cb, int64_t b, int64_t* c0, int64_t* c1) {
  *c0 = Cg * b / cb;
  *c1 = Cg * (b + 1) / cb;
}

// How a one-image forward GEMM packs its columns (cpu/im2col/im2col_pack.h): by runs, or by
// phases when the columns are strided and each input value feeds at least kPhasesMinTaps taps
// of a row (S >= kPhasesMinTaps * stride_w: the image is split into its stride phases once,
// and every tap copies contiguous runs instead of gathering one value at a time). The same
// choice makes the backward passes build and scatter their column tiles through the split.
// Measured (1 thread, thread CPU time, min of 15, Xeon AVX-512 loaded by other jobs): the 7x7
// stride-2 stem (3 -> 64, 224x224) 1.14x faster forward, 1.09x grad-input, 1.10x grad-weight;
// 3x3 stride 2 (1.5 taps per value) 0.85-1.0x, the split costing more than the gathers it
// saves, so those keep the runs; so do 1x1 layers (a value is read once at most).
// CNNKERN_IM2COL_PACK=runs|phases|gather forces one (tests run every shape through each; the
// small-plane benchmark times them in one process). All give the same bits; gather is no
// faster on ResNet-50's small and strided planes (0.65-0.72x torch against runs' 0.73-0.74x on
// 128 x 3x3 stride 2, equal within noise on 14x14 and 7x7), so it is used where only it
// applies: GEMMs over several images.
constexpr int64_t kPhasesMinTaps = 3;

cpu::ColumnPack column_pack(const Conv2dProblem& p) {
  const char* env = std::getenv("CNNKERN_IM2COL_PACK");
  if (env == nullptr || *env == '\0')
    return p.stride_w > 1 && p.S >= kPhasesMinTaps * p.stride_w ? cpu::ColumnPack::Phases
                                                                 : cpu::ColumnPack::Runs;
  const std::string v = env;
  TORCH_CHECK(v == "runs" || v == "phases" || v == "gather",
              "CNNKERN_IM2COL_PACK must be 'runs', 'phases' or 'gather'; got '", v, "'");
  return v == "gather" ? cpu::ColumnPack::Gather
                       : v == "phases" ? cpu::ColumnPack::Phases : cpu::ColumnPack::Runs;
}

// What pack_columns reads for one (image, group) by `method`: the group's planes `in_g`, or
// for Phases their split into this thread's buffer (split over the threads when called
// outside a parallel region: the GEMM that follows runs parallel inside then).
template <typename S>
const S* column_source(const S* in_g, const Conv2dProblem& p, int64_t Cg,
                       cpu::ColumnPack method) {
  if (method != cpu::ColumnPack::Phases) return in_g;
  const cpu::StridePhases sp = cpu::stride_phases_of(p);
  S* split = cpu::thread_scratch<S>(cpu::ScratchSlot::StridePhases, sp.elems(Cg));
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, p.H * p.W));
  at::parallel_for(0, Cg, grain, [&](int64_t c0, int64_t c1) {
    cpu::split_stride_phases(in_g, c0, c1, sp, split);
  });
  return split;
}

// Small planes: the forward runs the images of a batch as the columns of one GEMM per group
// (ceil(N*P*Q / kBatchColumns) GEMMs of equal image counts) when an image has at most
// kBatchedPlane output positions. A GEMM per image streams all the packed weights from
// memory for its few columns (9 MB for ResNet-50's 512 x 7x7 layers, 49 columns: memory-bound,
// half of oneDNN's speed at batch 8); batched, the weights are read once per 2048 columns
// (the GEMM's column block). Only for weights larger than kCachedWeightBytes: below, batching
// gained nothing or lost to the copy of the outputs (ResNet-50's 256 -> 512 1x1 stride 2,
// 0.5 MB of weights: 1.37x torch per image, 0.85x batched; 512 -> 1024, 2 MB: 1.05-1.12x
// against 0.95x; 256 x 3x3 stride 2, 2.4 MB: 0.70x either way; the 8-9 MB layers of layer4:
// 0.49-0.80x -> 0.67-0.90x; batch 8, busiest-thread CPU time, Xeon AVX-512, loaded machine).
// The GEMM's bits do not depend on how its columns are cut.
constexpr int64_t kBatchedPlane = 1024;
constexpr int64_t kBatchColumns = 4096;
constexpr int64_t kCachedWeightBytes = int64_t(4) << 20;

// Images per forward GEMM (1: a GEMM per image), with nt threads: at least nt GEMMs (when
// there are that many images), so that each thread runs whole GEMMs. One GEMM split inside
// over the filters had both threads pack all its columns (ResNet-50's 512 -> 1024 1x1 stride 2
// at batch 8: 0.69x torch against 1.01x per image). The bits do not depend on the count.
// CNNKERN_IM2COL_IMAGES=<n> forces n (at most N; tests compare the bits, the small-plane
// benchmark times 1 against the default).
int64_t images_per_gemm(const Conv2dProblem& p, int64_t elem_bytes, int64_t nt) {
  const int64_t PQ = p.P * p.Q;
  if (const char* env = std::getenv("CNNKERN_IM2COL_IMAGES"); env != nullptr && *env) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    TORCH_CHECK(*end == '\0' && v >= 1, "CNNKERN_IM2COL_IMAGES must be a whole number of "
                "images from 1; got '", env, "'");
    return std::max<int64_t>(1, std::min<int64_t>(v, p.N));
  }
  const int64_t weight_bytes = p.K_per_group() * p.C_per_group() * p.R * p.S * elem_bytes;
  if (p.N <= 1 || PQ == 0 || PQ > kBatchedPlane || weight_bytes <= kCachedWeightBytes) return 1;
  const int64_t gemms =
      std::max((p.N * PQ + kBatchColumns - 1) / kBatchColumns, std::min(p.N, nt));
  return (p.N + gemms - 1) / gemms;
}

// A half forward's output is computed in float32 blocks of at most kHalfOutColumns output
// positions per GEMM thread (the GEMM's column block nc, so the cut costs no extra packing),
// each rounded into the output as soon as it is done: a per-thread buffer of
// Kg x kHalfOutColumns floats (at most 4 MiB for 512 filters) instead of a float32 output.
constexpr int64_t kHalfOutColumns = 2048;

// W (M x K, row-major, stored as IO::S) packed for the GEMM in T. Half weights are converted
// a panel of rows at a time into a per-thread buffer and packed from there (the same packed
// bits as packing a float32 copy: gemm_pack_a_part's contract), the panels in parallel.
template <typename T, class IO>
cpu::GemmPackedA<T> pack_weights(int64_t M, int64_t K, const typename IO::S* w, const IO& io) {
  if constexpr (std::is_same_v<typename IO::S, T>) {
    return cpu::gemm_pack_a<T>(M, K, w, K, 1);
  } else {
    const int64_t elems = cpu::gemm_packed_a_elems<T>(M, K);
    T* storage = elems == 0 ? nullptr
                            : static_cast<T*>(std::aligned_alloc(
                                  64, (elems * int64_t(sizeof(T)) + 63) / 64 * 64));
    TORCH_CHECK(elems == 0 || storage != nullptr, "cnnkern im2col: out of memory packing a ", M,
                " x ", K, " weight matrix");
    cpu::GemmPackedA<T> pa = cpu::gemm_packed_a_view<T>(M, K, storage);
    pa.data.get_deleter().owned = true;  // storage is ours: freed with pa
    if (elems == 0) return pa;
    const int64_t unit = cpu::gemm_pack_a_row_unit<T>(), panels = (M + unit - 1) / unit;
    // Panels per task: about 64K weights, so that small layers pack on one thread.
    const int64_t grain = std::max<int64_t>(1, 65536 / (unit * K));
    at::parallel_for(0, panels, grain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t i0 = b * unit, i1 = std::min(M, i0 + unit);
        T* rows = cpu::thread_scratch<T>(cpu::ScratchSlot::HalfRows, (i1 - i0) * K);
        io.load(rows, w + i0 * K, (i1 - i0) * K);
        cpu::gemm_pack_a_part(pa, i0, i1, 0, K, rows, K, 1);
      }
    });
    return pa;
  }
}

// T: the compute type; IO: how tensors stored as IO::S are read and written (forward_io.h).
template <typename T, class IO>
void forward_kernel(const typename IO::S* in, const typename IO::S* w,
                    const typename IO::S* bias_in, typename IO::S* out, const Conv2dProblem& p,
                    bool relu, const IO& io) {
  constexpr bool kConverts = !std::is_same_v<typename IO::S, T>;
  const Plan pl = make_plan(p, sizeof(T));
  const int64_t nt = threads_for(p);
  const int64_t nb = images_per_gemm(p, sizeof(T), nt), batches = (p.N + nb - 1) / nb;
  // Several images in a GEMM: packed by gather, the only method that crosses images.
  const cpu::ColumnPack method = nb > 1                 ? cpu::ColumnPack::Gather
                                 : pl.input_is_columns ? cpu::ColumnPack::Runs
                                                       : column_pack(p);
  std::vector<cpu::GemmPackedA<T>> wp;  // W[g]: Kg x CRS, row-major
  for (int64_t g = 0; g < pl.G; ++g)
    wp.push_back(pack_weights<T>(pl.Kg, pl.CRS, w + g * pl.Kg * pl.CRS, io));
  std::vector<T> bias_converted;  // K values: the bias starts each output's sum in T
  const T* bias = nullptr;
  if constexpr (kConverts) {
    if (bias_in != nullptr) {
      bias_converted.resize(p.K);
      io.load(bias_converted.data(), bias_in, p.K);
      bias = bias_converted.data();
    }
  } else {
    bias = bias_in;
  }
  const int64_t tasks = batches * pl.G;
  const bool over_tasks = parallel_over_tasks(tasks, nt);
  // One GEMM per (image, group), with the bias starting each output's accumulation. Run in
  // parallel when there are enough of them, else one by one, each GEMM parallel inside.
  // Images n0 .. n0 + ni - 1 of group g: the GEMM writes a Kg x ni*PQ block (a per-thread
  // buffer, the im2col tile's: the forward has no column tile), copied out image by image.
  auto run_batch = [&](int64_t g, int64_t n0, int64_t ni) {
    const int64_t cols = ni * pl.PQ;
    T* Cb = cpu::thread_scratch<T>(cpu::ScratchSlot::ConvColumns, pl.Kg * cols);
    const cpu::GemmPackB<T> pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                       int64_t nr, T* dst) {
      cpu::pack_columns(in + (n0 * p.C + g * pl.Cg) * pl.HW, p, k0, kc, j0, nc, nr, dst, method,
                        io.read);
    };
    cpu::gemm_packed_custom_b(wp[g], cols, pack, T(0), Cb, cols, bias ? bias + g * pl.Kg : nullptr,
                              relu);
    for (int64_t i = 0; i < ni; ++i)
      for (int64_t k = 0; k < pl.Kg; ++k)
        io.store(out + ((n0 + i) * p.K + g * pl.Kg + k) * pl.PQ, Cb + k * cols + i * pl.PQ,
                 pl.PQ);
  };
  // One image of a converting IO: the output in column blocks of float32, each rounded into
  // `C` right after its GEMM (kHalfOutColumns per thread the GEMM runs on).
  auto run_converted = [&](const typename IO::S* in_g, int64_t g, typename IO::S* C) {
    const int64_t chunk = kHalfOutColumns * (over_tasks ? 1 : nt);
    T* Cb = cpu::thread_scratch<T>(cpu::ScratchSlot::ConvColumns,
                                   pl.Kg * std::min(chunk, pl.PQ));
    const auto* src = column_source(in_g, p, pl.Cg, method);
    for (int64_t c0 = 0; c0 < pl.PQ; c0 += chunk) {
      const int64_t nj = std::min(chunk, pl.PQ - c0);
      const cpu::GemmPackB<T> pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                         int64_t nr, T* dst) {
        cpu::pack_columns(src, p, k0, kc, c0 + j0, nc, nr, dst, method, io.read);
      };
      cpu::gemm_packed_custom_b(wp[g], nj, pack, T(0), Cb, nj,
                                bias ? bias + g * pl.Kg : nullptr, relu);
      for (int64_t k = 0; k < pl.Kg; ++k) io.store(C + k * pl.PQ + c0, Cb + k * nj, nj);
    }
  };
  // One image of a plain IO: the GEMM writes the output itself (and reads a 1x1 stride-1
  // unpadded input in place).
  auto run_same_type = [&](const T* in_g, int64_t g, T* C) {
    const T* bias_g = bias ? bias + g * pl.Kg : nullptr;
    if (pl.input_is_columns) {
      cpu::gemm_packed(wp[g], pl.PQ, in_g, pl.HW, 1, T(0), C, pl.PQ, bias_g, relu);
      return;
    }
    const T* src = column_source(in_g, p, pl.Cg, method);
    const cpu::GemmPackB<T> pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                       int64_t nr, T* dst) {
      cpu::pack_columns(src, p, k0, kc, j0, nc, nr, dst, method);
    };
    cpu::gemm_packed_custom_b(wp[g], pl.PQ, pack, T(0), C, pl.PQ, bias_g, relu);
  };
  auto run = [&](int64_t task) {
    const int64_t g = task % pl.G, n = task / pl.G;
    if (nb > 1) {
      run_batch(g, n * nb, std::min(nb, p.N - n * nb));
      return;
    }
    const auto* in_g = in + (n * p.C + g * pl.Cg) * pl.HW;
    auto* C = out + (n * p.K + g * pl.Kg) * pl.PQ;
    if constexpr (kConverts) {
      run_converted(in_g, g, C);
    } else {
      run_same_type(in_g, g, C);
    }
  };
  if (over_tasks) {
    run_tasks(tasks, nt, run);
  } else {
    for (int64_t t = 0; t < tasks; ++t) run(t);
  }
}

template <typename T>
void backward_input_kernel(const T* go, const T* w, T* gi, const Conv2dProblem& p) {
  const Plan pl = make_plan(p, sizeof(T));
  // Tasks: (image, group, block of input channels). A task owns its grad_in planes and runs
  // its tiles in order (their col2im footprints overlap).
  const int64_t nt = threads_for(p);
  const int64_t cb = channel_blocks(p.N * pl.G, pl.Cg, nt);
  const bool phased = !pl.input_is_columns && column_pack(p) == cpu::ColumnPack::Phases;
  const cpu::StridePhases sp = cpu::stride_phases_of(p);
  std::vector<cpu::GemmPackedA<T>> wt;  // W[g]^T rows of block b: a transposed view
  for (int64_t g = 0; g < pl.G; ++g) {
    for (int64_t b = 0; b < cb; ++b) {
      int64_t c0, c1;
      block_range(pl.Cg, cb, b, &c0, &c1);
      wt.push_back(cpu::gemm_pack_a<T>((c1 - c0) * pl.RS, pl.Kg,
                                       w + g * pl.Kg * pl.CRS + c0 * pl.RS, 1, pl.CRS));
    }
  }
  run_tasks(p.N * pl.G * cb, nt, [&](int64_t task) {
    const int64_t b = task % cb, ng = task / cb, g = ng % pl.G, n = ng / pl.G;
    int64_t c0, c1;
    block_range(pl.Cg, cb, b, &c0, &c1);
    const cpu::GemmPackedA<T>& a = wt[g * cb + b];
    const T* go_g = go + (n * p.K + g * pl.Kg) * pl.PQ;
    T* gi_b = gi + (n * p.C + g * pl.Cg + c0) * pl.HW;
    // Strided columns: col2im adds into the block's planes split into stride phases
    // (contiguous runs, not a scatter), merged into grad_in once all tiles are in.
    T* acc = gi_b;
    if (phased) {
      acc = cpu::thread_scratch<T>(cpu::ScratchSlot::StridePhases, sp.elems(c1 - c0));
      std::fill(acc, acc + sp.elems(c1 - c0), T(0));
    }
    for (int64_t t = 0; t < pl.tiles; ++t) {
      const int64_t j0 = t * pl.tile, j1 = j0 + pl.tile < pl.PQ ? j0 + pl.tile : pl.PQ;
      const int64_t nj = j1 - j0;
      if (pl.input_is_columns) {  // the GEMM writes grad_in itself
        cpu::gemm_packed(a, nj, go_g + j0, pl.PQ, 1, T(0), gi_b + j0, pl.HW);
        continue;
      }
      T* col = cpu::thread_scratch<T>(cpu::ScratchSlot::ConvColumns, a.M * nj);
      cpu::gemm_packed(a, nj, go_g + j0, pl.PQ, 1, T(0), col, nj);
      cpu::col2im_tile(col, c1 - c0, p, j0, j1, acc, phased);
    }
    if (phased) cpu::merge_stride_phases(acc, 0, c1 - c0, sp, gi_b);
  });
}

template <typename T>
void backward_weight_kernel(const T* go, const T* in, T* gw, const Conv2dProblem& p) {
  const Plan pl = make_plan(p, sizeof(T));
  // Tasks: (group, block of input channels), each owning its columns of grad_W[g] and
  // summing over images and tiles in order. The tile size (the GEMM's depth) depends on
  // the problem only, never on the blocks, so neither do the bits.
  const int64_t nt = threads_for(p);
  const int64_t cb = channel_blocks(pl.G, pl.Cg, nt);
  const bool phased = !pl.input_is_columns && column_pack(p) == cpu::ColumnPack::Phases;
  run_tasks(pl.G * cb, nt, [&](int64_t task) {
    const int64_t b = task % cb, g = task / cb;
    int64_t c0, c1;
    block_range(pl.Cg, cb, b, &c0, &c1);
    const int64_t rows = (c1 - c0) * pl.RS;  // columns of grad_W[g] owned
    T* gw_b = gw + g * pl.Kg * pl.CRS + c0 * pl.RS;
    bool first = true;
    for (int64_t n = 0; n < p.N; ++n) {
      const T* go_g = go + (n * p.K + g * pl.Kg) * pl.PQ;
      const T* in_b = in + (n * p.C + g * pl.Cg + c0) * pl.HW;
      // Strided columns: the block's channels split into stride phases once per image, so
      // that every tile's im2col copies contiguous runs (column_pack's rule and switch).
      const T* src = phased ? column_source(in_b, p, c1 - c0, cpu::ColumnPack::Phases) : in_b;
      for (int64_t t = 0; t < pl.tiles; ++t) {
        const int64_t j0 = t * pl.tile, j1 = j0 + pl.tile < pl.PQ ? j0 + pl.tile : pl.PQ;
        const int64_t nj = j1 - j0;
        // B = col^T (nj x rows): element (j, tap) at col[tap * nj + j].
        const T* B = in_b + j0;
        int64_t csb = pl.HW;
        if (!pl.input_is_columns) {
          T* col = cpu::thread_scratch<T>(cpu::ScratchSlot::ConvColumns, rows * nj);
          cpu::im2col_tile(src, c1 - c0, p, j0, j1, col, phased);
          B = col;
          csb = nj;
        }
        cpu::gemm<T>(pl.Kg, rows, nj, go_g + j0, pl.PQ, 1, B, 1, csb, first ? T(0) : T(1),
                     gw_b, pl.CRS);
        first = false;
      }
    }
  });
}

// Every shape; the dtype rule is with_cpu_dtypes' (cpu/common/half_via_float32.h).
std::string why_not_im2col(const Conv2dProblem&, at::ScalarType) { return ""; }

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   const c10::optional<at::Tensor>& bias, const Conv2dProblem& p,
                   const Conv2dEpilogue& epi, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor out = at::empty({p.N, p.K, p.P, p.Q}, input.options());
  if (cpu::is_half_type(input.scalar_type())) {
    // Converted in the packing stages (forward_io.h), with the packing's instruction set.
    const cpu::HalfKind kind =
        input.scalar_type() == at::kHalf ? cpu::HalfKind::float16 : cpu::HalfKind::bfloat16;
    const cpu::HalfIO io(cpu::half_convert(kind, cpu::active_isa(cpu::Family::gemm)));
    auto bits = [](const at::Tensor& t) {
      return static_cast<const uint16_t*>(t.const_data_ptr());
    };
    forward_kernel<float>(bits(input), bits(weight), bias ? bits(*bias) : nullptr,
                          static_cast<uint16_t*>(out.mutable_data_ptr()), p, epi.relu, io);
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnkern_conv2d_im2col_cpu", [&] {
    forward_kernel<scalar_t>(input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                             bias ? bias->const_data_ptr<scalar_t>() : nullptr,
                             out.mutable_data_ptr<scalar_t>(), p, epi.relu,
                             cpu::PlainIO<scalar_t>{});
  });
  return out;
}

at::Tensor backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                          const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  const bool overwrites = make_plan(p, 1).input_is_columns;  // else col2im accumulates
  at::Tensor gi = overwrites ? at::empty({p.N, p.C, p.H, p.W}, grad_output.options())
                             : at::zeros({p.N, p.C, p.H, p.W}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnkern_conv2d_im2col_bwd_input_cpu",
                             [&] {
                               backward_input_kernel<scalar_t>(
                                   grad_output.const_data_ptr<scalar_t>(),
                                   weight.const_data_ptr<scalar_t>(),
                                   gi.mutable_data_ptr<scalar_t>(), p);
                             });
  return gi;
}

at::Tensor backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                           const Conv2dProblem& p, const Conv2dMath& /*math: no TF32 path*/) {
  at::Tensor gw = at::empty({p.K, p.C_per_group(), p.R, p.S}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnkern_conv2d_im2col_bwd_weight_cpu",
                             [&] {
                               backward_weight_kernel<scalar_t>(
                                   grad_output.const_data_ptr<scalar_t>(),
                                   input.const_data_ptr<scalar_t>(),
                                   gw.mutable_data_ptr<scalar_t>(), p);
                             });
  return gw;
}

// The largest block of channel_blocks' split of Cg channels into cb.
int64_t max_block_channels(int64_t Cg, int64_t cb) {
  int64_t most = 0;
  for (int64_t b = 0; b < cb; ++b) {
    int64_t c0, c1;
    block_range(Cg, cb, b, &c0, &c1);
    most = std::max(most, c1 - c0);
  }
  return most;
}

// The kernels' own buffers, from the Plan and the channel blocks the passes above use (with
// this thread count). The GEMM's packing panels (a cache-blocking buffer of at most
// kc x nc + mc x kc elements per thread, kept between calls) are the GEMM's and not counted.
template <typename T>
Conv2dWorkspace workspace_of(const Conv2dProblem& p, ConvPass pass) {
  const Plan pl = make_plan(p, sizeof(T));
  const int64_t nt = threads_for(p), bytes = sizeof(T);
  Conv2dWorkspace ws;
  switch (pass) {
    case ConvPass::Forward: {
      ws.per_call = pl.G * cpu::gemm_packed_a_elems<T>(pl.Kg, pl.CRS) * bytes;
      ws.what = "the weights packed for the GEMM (per call); no column matrix: the GEMM packs "
                "its panels straight from the image";
      const int64_t nb = images_per_gemm(p, bytes, nt);
      if (nb > 1) {
        ws.per_thread = pl.Kg * nb * pl.PQ * bytes;
        ws.what += "; small planes: the outputs of " + std::to_string(nb) +
                   " images, one GEMM's (per thread, kept)";
      } else if (!pl.input_is_columns && column_pack(p) == cpu::ColumnPack::Phases) {
        // Counted at T's width: for a float16/bfloat16 input (split as stored) an upper bound.
        ws.per_thread = cpu::stride_phases_of(p).elems(pl.Cg) * bytes;
        ws.what += "; strided columns: the input channels of a group split into their " +
                   std::to_string(p.stride_w) + " column stride phases (per thread, kept)";
      }
      break;
    }
    case ConvPass::BackwardInput: {
      const int64_t cb = channel_blocks(p.N * pl.G, pl.Cg, nt);
      for (int64_t b = 0; b < cb; ++b) {
        int64_t c0, c1;
        block_range(pl.Cg, cb, b, &c0, &c1);
        ws.per_call += pl.G * cpu::gemm_packed_a_elems<T>((c1 - c0) * pl.RS, pl.Kg) * bytes;
      }
      ws.what = "the transposed weights packed for the GEMM (per call)";
      if (!pl.input_is_columns) {
        ws.per_thread = max_block_channels(pl.Cg, cb) * pl.RS * pl.tile * bytes;
        ws.what += "; a column tile of " + std::to_string(pl.tile) +
                   " output positions (per thread, kept)";
        if (column_pack(p) == cpu::ColumnPack::Phases) {
          ws.per_thread += cpu::stride_phases_of(p).elems(max_block_channels(pl.Cg, cb)) * bytes;
          ws.what += "; strided columns: the gradient of a block of input channels split into "
                     "their " + std::to_string(p.stride_w) + " column stride phases (per thread, "
                     "kept)";
        }
      }
      break;
    }
    case ConvPass::BackwardWeight:
      if (!pl.input_is_columns) {
        const int64_t cb = channel_blocks(pl.G, pl.Cg, nt);
        ws.per_thread = max_block_channels(pl.Cg, cb) * pl.RS * pl.tile * bytes;
        ws.what = "a column tile of " + std::to_string(pl.tile) +
                  " output positions (per thread, kept)";
        if (column_pack(p) == cpu::ColumnPack::Phases) {
          ws.per_thread += cpu::stride_phases_of(p).elems(max_block_channels(pl.Cg, cb)) * bytes;
          ws.what += "; strided columns: a block of input channels split into their " +
                     std::to_string(p.stride_w) + " column stride phases (per thread, kept)";
        }
      }
      break;
  }
  if (ws.what.empty()) ws.what = "none: a 1x1 stride-1 unpadded input is its own column matrix";
  ws.what += "; not counted: the GEMM's packing panels (per thread, kept)";
  return ws;
}

// A float16/bfloat16 forward: float32's (its weights packed in float32), plus a float32 block of
// the output per thread (forward_kernel's run_converted) and a panel of converted weight rows.
Conv2dWorkspace half_forward_workspace(const Conv2dProblem& p) {
  Conv2dWorkspace ws = workspace_of<float>(p, ConvPass::Forward);
  const Plan pl = make_plan(p, sizeof(float));
  const int64_t nt = threads_for(p);
  const int64_t rows = cpu::gemm_pack_a_row_unit<float>() * pl.CRS;
  int64_t out_block = 0;
  if (images_per_gemm(p, sizeof(float), nt) == 1) {  // else ws counts the batch's outputs
    const int64_t tasks = p.N * pl.G;
    const int64_t chunk = kHalfOutColumns * (parallel_over_tasks(tasks, nt) ? 1 : nt);
    out_block = pl.Kg * std::min(chunk, pl.PQ);
  }
  ws.per_thread += (rows + out_block) * int64_t(sizeof(float));
  ws.what += "; half: read and rounded in registers, no float32 copy of a tensor; per thread "
             "(kept) a float32 block of " + std::to_string(out_block) +
             " output values and one panel of weight rows converted for packing";
  return ws;
}

Conv2dWorkspace workspace(const Conv2dProblem& p, at::ScalarType dtype, ConvPass pass) {
  if (cpu::is_half_type(dtype) && pass == ConvPass::Forward) return half_forward_workspace(p);
  return dtype == at::kDouble ? workspace_of<double>(p, pass) : workspace_of<float>(p, pass);
}

}  // namespace

// auto_priority 20 > direct's 10: on every layer measured (3x3 VGG, 1x1, strided) im2col is
// several times faster than the direct kernels.
CONV2D_REGISTER_ALGO(Backend::CPU,
                     cpu::with_cpu_dtypes(Conv2dAlgo{"im2col", /*auto_priority=*/20,
                                                     why_not_im2col, forward, backward_input,
                                                     backward_weight, workspace},
                                          cpu::HalfNative{/*forward=*/true}));

}  // namespace cnnkern
