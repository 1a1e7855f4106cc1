#pragma once
// The transform kernels of the CPU Winograd, where it spends its time outside the GEMMs:
// - row kernels: the transforms of a run of consecutive tiles along one tile row. The driver
//   (cpu/winograd/winograd_plan.h) copies the rows a run needs into a zero-padded buffer first, so the
//   kernels never test a border; they transform several tiles at once, one per vector lane;
// - the filter transform, several filters at once (one per lane).
//
// Two implementations: portable (GCC vectors; patches gathered lane by lane) and AVX2 + FMA
// for float (patches de-interleaved from whole rows, filters transposed 8 x 8, with
// shuffles), picked at run time from the CPU. CNNKERN_CPU_ISA=generic forces the
// portable one.

#include <cstdint>

namespace cnnkern {
namespace cpu {

// The kernels may read and write past the run, up to the next multiple of this many tiles:
// buffers are sized for it (see each kernel).
constexpr int64_t kWinogradRowGroup = 8;
// Extra columns the input-side kernels may read past group * m (the halo of the last tile).
constexpr int64_t kWinogradRowHalo = 8;

// Where a filter transform reads: tap i (row-major 3x3) of channel c of the call's j-th
// filter is w[j * filter_stride + c * channel_stride + (rotated ? 8 - i : i)]. A weight
// tensor K x Cg x 3 x 3 as it is: strides Cg*9 and 9. Grad-input reads the forward's weight
// turned by 180 degrees with K and C swapped: strides 9 and Kg*9, rotated.
template <typename T>
struct FilterSource {
  const T* w;
  int64_t filter_stride, channel_stride;
  bool rotated;
};

template <typename T>
struct WinogradKernels {
  const char* isa;
  // Input tiles: src holds a rows (row stride src_rs) starting at the first tile's left
  // edge; tile l's patch is columns [l*m, l*m + a). Writes dst[xi * xi_stride + l] =
  // (B^T d_l B)[xi] for l < ntiles only. Reads columns < round_up(ntiles, 8)*m + halo.
  void (*input_row)(const T* src, int64_t src_rs, int64_t ntiles, T* dst, int64_t xi_stride);
  // Output tiles: tile l's Winograd-domain values are src[xi * xi_stride + l]; writes
  // dst[i * dst_rs + l*m + j] = (A^T x_l A)[i][j] + bias for i, j < m, then max(., 0) when
  // relu (NaN stays NaN). Reads lanes
  // < round_up(ntiles, 8) and writes columns < round_up(ntiles, 8)*m (exactly ntiles*m when
  // ntiles is a multiple of 8, so it can write into the output; else the caller crops).
  void (*output_row)(const T* src, int64_t xi_stride, int64_t ntiles, T bias, T* dst,
                     int64_t dst_rs, bool relu);
  // Grad-output tiles (the adjoint of output_row): src holds m rows of grad_output
  // starting at the first tile's left edge; writes dst[xi * xi_stride + l] = (A dy_l A^T)[xi]
  // for l < ntiles only. Reads columns < round_up(ntiles, 8)*m + halo.
  void (*grad_output_row)(const T* src, int64_t src_rs, int64_t ntiles, T* dst,
                          int64_t xi_stride);
  // Filters: U[c * c_stride + xi * xi_stride + j] = (G g_{j,c} G^T)[xi] for c < Cg,
  // j < round_up(nk, 8) (zeros for j >= nk), g_{j,c} the 3x3 filter the source gives.
  void (*filters)(FilterSource<T> src, int64_t Cg, int64_t nk, T* U, int64_t c_stride,
                  int64_t xi_stride);
};

// The kernels this CPU runs for F(M x M, 3x3).
template <int M, typename T>
const WinogradKernels<T>& winograd_kernels();

// The individual sets (tests compare them through CNNKERN_CPU_ISA).
namespace winograd_generic {
template <int M, typename T>
const WinogradKernels<T>& kernels();
}  // namespace winograd_generic
namespace winograd_avx2 {
// Defined on x86 builds only (winograd_kernels_generic.cpp asks for them there alone).
template <int M>
const WinogradKernels<float>* kernels();
}  // namespace winograd_avx2

}  // namespace cpu
}  // namespace cnnkern
