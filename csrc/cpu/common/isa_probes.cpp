// The calibration's probes (cpu/common/isa_calibration.h): per family with an AVX-512
// variant, one representative block of its own kernel, run through the variant's table
// directly (never through the selector). Each probe is sized to take tens of microseconds and
// to stay in L1/L2, so that the whole calibration is a few milliseconds and times the
// kernels' arithmetic, not memory: the part whose speed differs between ISAs on one CPU.
// (Torch-free.)

#include <cstdint>
#include <ctime>
#include <vector>

#include "cpu/common/isa_calibration.h"
#include "core/pool2d_problem.h"
#include "cpu/direct/conv2d_direct_core.h"
#include "cpu/gemm/gemm_kernels.h"
#include "cpu/pool/pool2d_core.h"

namespace cnnkern {
namespace cpu {

bool has_avx512_variant(Family f) {
#if defined(__x86_64__) || defined(__i386__)  // the AVX-512 variants exist on x86 builds only
  return f == Family::gemm || f == Family::direct || f == Family::pool;
#else
  (void)f;
  return false;
#endif
}

namespace {

// The calling thread's CPU time of fn(): a probe is single-threaded, and on a machine shared
// with other jobs its wall time is mostly the time it waited for a core.
template <class Fn>
double seconds_of(Fn&& fn) {
  timespec t0{}, t1{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  fn();
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  return double(t1.tv_sec - t0.tv_sec) + 1e-9 * double(t1.tv_nsec - t0.tv_nsec);
}

#if defined(__x86_64__) || defined(__i386__)
// An im2col-like GEMM block: 96 x 128 outputs over a depth of 192 (within both variants'
// blocks, so one macro-kernel call), both operands packed as the driver does.
double gemm_probe(Isa isa) {
  using namespace gemm_detail;
  const GemmKernels<float>& k = isa == Isa::avx512 ? *gemm_kernels_avx512_f32()
                                                   : *gemm_kernels_avx2_f32();
  constexpr int64_t M = 96, N = 128, K = 192;
  static std::vector<float> a(M * K, 0.5f), b(K * N, 0.25f), c(M * N);
  std::vector<float> pa((M + k.mr) * K), pb((N + k.nr) * K);
  return seconds_of([&] {
    k.pack_a(M, K, a.data(), K, 1, pa.data());
    k.pack_b(K, N, b.data(), N, 1, pb.data());
    k.macro(M, N, K, pa.data(), pb.data(), c.data(), N, false, nullptr);
  });
}

// 3x3 convolution, 8 input channels -> 4 output channels (one register block) over a 28 x 28
// plane padded to rows of 30: one forward job as conv2d_direct.cpp builds them.
double direct_probe(Isa isa) {
  const DirectKernels<float>& k = direct_kernels<float>(isa);
  constexpr int64_t C = 8, R = 30, P = 28, plane = R * R + 128;
  static std::vector<float> x(C * plane + 256, 0.5f), w(4 * C * 9, 0.25f), out(4 * P * P);
  static const int64_t off[9] = {0, 1, 2, R, R + 1, R + 2, 2 * R, 2 * R + 1, 2 * R + 2};
  static const int64_t woff[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  FlatConvJob<float> j{x.data(), plane, C, off, 9, w.data(), C * 9, 9, woff, k.kb, 0, P * R, R,
                       0, P, 0, P, out.data(), 0, P * P, P, 1, nullptr, false};
  return seconds_of([&] { k.conv(j); });
}

// The pools of VGG and ResNet: 2x2 stride 2 on 56 x 56 and 3x3 stride 2 pad 1 on 112 x 112,
// max with indices (what training runs) and average, 2 planes each.
double pool_probe(Isa isa) {
  const PoolKernels<float>& k = pool_kernels<float>(isa);
  static std::vector<float> x(4 * 112 * 112, 0.5f), out(4 * 56 * 56);
  static std::vector<int64_t> idx(4 * 56 * 56);
  Pool2dProblem a;
  a.N = 1, a.C = 2, a.H = a.W = 56, a.P = a.Q = 28, a.kh = a.kw = 2, a.stride_h = a.stride_w = 2;
  Pool2dProblem b;
  b.N = 1, b.C = 2, b.H = b.W = 112, b.P = b.Q = 56, b.kh = b.kw = 3;
  b.stride_h = b.stride_w = 2, b.pad_h = b.pad_w = 1;
  const float* end = x.data() + x.size();
  return seconds_of([&] {
    for (const Pool2dProblem* p : {&a, &b}) {
      k.max(*p, 2, x.data(), end, out.data(), idx.data());
      k.avg(*p, 2, x.data(), end, out.data());
    }
  });
}
#endif

}  // namespace

double probe_seconds(Family f, Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  switch (f) {
    case Family::gemm: return gemm_probe(isa);
    case Family::direct: return direct_probe(isa);
    case Family::pool: return pool_probe(isa);
    default: break;
  }
#endif
  (void)f;
  (void)isa;
  return 0;
}

}  // namespace cpu
}  // namespace cnnkern
