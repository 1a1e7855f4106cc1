// INTERNAL, tests-only ops that run core/implicit_gemm.h (the index math and tile loop of
// the CUDA implicit-GEMM convolution) on the CPU, so tests/internals/test_implicit_gemm_cpu.py can
// check them against torch before any GPU runs them. Float64 CPU tensors only.
//
//   igemm_matrix(pass, operand, input, weight, grad_output, stride, padding, dilation, groups)
//       the dense GEMM operand ("a": groups x M x K, "b": groups x K x N) gathered element by
//       element through the pass's map (compare "fprop"/"a" with F.unfold).
//   igemm_emulate(pass, input, weight, grad_output, bias, stride, padding, dilation, groups,
//                  splits, relu, mma, tf32)
//       the whole pass through block_mainloop / block_epilogue, block after block and thread
//       after thread, with the split-K workspace and its fixed-order reduction for wgrad
//       (splits = 0: the plan's own choice; mma: the tensor-core policy's warp tiling and
//       fragment layouts instead of the SIMT micro-tiles; tf32 with mma: the float32 TF32
//       path, m16n8k8 fragments and every operand rounded by igemm::tf32_round, the model of
//       cvt.rna.tf32.f32, products and sums in float64). Shared tiles start NaN-filled,
//       outputs too, and every gather offset is bounds-checked, so a hole in the schedule
//       shows as NaN or an error rather than a plausible number.
//   wino_emulate(m, pass, input, weight, grad_output, bias, padding, groups, chunk_images)
//       the CUDA Winograd F(m x m, 3x3) pipeline (core/winograd_gemm.h): "fprop" gives the
//       output, "dgrad" grad-input (the turned problem); chunk_images = 0: the launcher's chunk.
//   igemm_plan(pass, input_size, weight_size, stride, padding, dilation, groups, splits)
//       [M, N, K, tiles_m, tiles_n, splits, k_chunk, grid_z, workspace_elems]
//   tf32_round(x)          igemm::tf32_round on a float32 tensor
//   mma_fragments(shape, operand)
//       the (row, col) of every lane's fragment elements, as the kernels index them

#include <ATen/ATen.h>

#include <algorithm>
#include <torch/library.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "ops/checks.h"
#include "core/implicit_gemm.h"
#include "core/winograd_gemm.h"

namespace cnnkern {
namespace {

constexpr const char* kOp = "cnnkern_testing.igemm";
using igemm::Tile;

// All threads of a block, one after another (see block_mainloop).
struct CpuExec {
  int begin() const { return 0; }
  int end() const { return Tile::kThreads; }
  static int slot(int t) { return t; }
  void sync() const {}
};

// Bounds of the tensors a gather may read; a read outside sets `bad`.
struct Bounds {
  const double* base[2] = {nullptr, nullptr};
  int64_t numel[2] = {0, 0};
  bool bad = false;
};
thread_local Bounds g_bounds;

struct CpuCvt {
  static double load(const double* base, int64_t off) {
    for (int i = 0; i < 2; ++i) {
      if (base == g_bounds.base[i]) {
        if (off < 0 || off >= g_bounds.numel[i]) {
          g_bounds.bad = true;
          return 0.0;
        }
        return base[off];
      }
    }
    g_bounds.bad = true;
    return 0.0;
  }
};

// How an emulated mma step sees its operands: as they are (float16/bfloat16, already exact in
// T), or rounded to tf32 as cvt.rna.tf32.f32 does to the float32 value (the TF32 path).
struct AsIs {
  static double apply(double v) { return v; }
};
struct Tf32Rounded {
  static double apply(double v) { return igemm::tf32_round(static_cast<float>(v)); }
};

// The tensor-core policy's index math (igemm::MmaLayout and the instruction Shape's fragment
// layouts) without the hardware: per mma step of Shape::kK, each thread rebuilds its warp's
// 16 x kK A and kK x 8 B operands from every lane's fragment coordinates (NaN where no lane
// supplies an element, so a hole in the layout shows), rounded as Round says, then adds to each
// accumulator the float64 dot product at its (row, col) of the C fragment layout.
template <class Shape, class Round>
struct MmaEmuCompute {
  using L = igemm::MmaLayout;
  static constexpr int kK = Shape::kK;
  template <class State>
  static void compute(const igemm::SharedTiles<double>& sm, int buf, int t, State& st) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const int m0 = L::warp_m0(t), n0 = L::warp_n0(t);
    for (int ks = 0; ks < Tile::BK; ks += kK) {
      double A[2][16][kK], B[2][kK][8];
      std::fill_n(&A[0][0][0], 2 * 16 * kK, nan);
      std::fill_n(&B[0][0][0], 2 * kK * 8, nan);
      for (int l = 0; l < 32; ++l) {
        for (int mt = 0; mt < 2; ++mt) {
          for (int e = 0; e < Shape::kAElems; ++e) {
            int r, k;
            Shape::a_frag(l, e, r, k);
            A[mt][r][k] = Round::apply(sm.a[buf][ks + k][m0 + 16 * mt + r]);
          }
        }
        for (int nt = 0; nt < 2; ++nt) {
          for (int e = 0; e < Shape::kBElems; ++e) {
            int k, n;
            Shape::b_frag(l, e, k, n);
            B[nt][k][n] = Round::apply(sm.b[buf][ks + k][n0 + 8 * nt + n]);
          }
        }
      }
      for (int i = 0; i < 4; ++i) {
        const int mt = i / 2, nt = i % 2;
        for (int j = 0; j < 4; ++j) {
          const int r = L::row(t, i, j) - m0 - 16 * mt, c = L::col(t, i, j) - n0 - 8 * nt;
          double sum = 0.0;
          for (int k = 0; k < kK; ++k) sum += A[mt][r][k] * B[nt][k][c];
          st.acc[i][j] += sum;
        }
      }
    }
  }
  static int row(int t, int i, int j) { return L::row(t, i, j); }
  static int col(int t, int i, int j) { return L::col(t, i, j); }
};
using MmaF16Emu = MmaEmuCompute<igemm::MmaShapeK16, AsIs>;
using MmaTf32Emu = MmaEmuCompute<igemm::MmaShapeK8Tf32, Tf32Rounded>;

// Unchecked reads (the Winograd transforms' own bounds are tested through their results).
struct PlainCvt {
  static double load(const double* base, int64_t off) { return base[off]; }
};

struct Emu {
  double* out;
  int64_t out_numel;
  const double* bias;  // nullptr: none
  bool relu;
  bool* bad;
  void operator()(int64_t off, int64_t channel, double v) const {
    if (off < 0 || off >= out_numel) {
      *bad = true;
      return;
    }
    if (bias != nullptr) v += bias[channel];
    if (relu) v = v < 0.0 ? 0.0 : v;
    out[off] = v;
  }
};

igemm::Pass parse_pass(c10::string_view s) {
  if (s == "fprop") return igemm::Pass::Fprop;
  if (s == "dgrad") return igemm::Pass::Dgrad;
  if (s == "wgrad") return igemm::Pass::Wgrad;
  TORCH_CHECK(false, kOp, ": pass must be 'fprop', 'dgrad' or 'wgrad'; got '", std::string(s),
              "'");
}

void check_f64_cpu(const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kDouble && t.device().is_cpu(), kOp, ": ", name,
              " must be a float64 CPU tensor; got ", t.scalar_type(), " on ", t.device());
}

Conv2dProblem problem_of(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& grad_output, c10::IntArrayRef stride,
                         c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups) {
  check_f64_cpu("input", input);
  check_f64_cpu("weight", weight);
  check_f64_cpu("grad_output", grad_output);
  const Conv2dProblem p =
      make_conv2d_problem(kOp, input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({p.N, p.K, p.P, p.Q}), kOp,
              ": grad_output must have size [", p.N, ", ", p.K, ", ", p.P, ", ", p.Q, "]; got ",
              grad_output.sizes());
  return p;
}

template <class Map>
at::Tensor dense_operand(const Conv2dProblem& p, bool a, const at::Tensor& a_src,
                         const at::Tensor& b_src) {
  const Map m0(p, 0);
  at::Tensor out = a ? at::empty({p.groups, m0.M, m0.K}, a_src.options())
                     : at::empty({p.groups, m0.K, m0.N}, a_src.options());
  double* o = out.mutable_data_ptr<double>();
  const double* pa = a_src.const_data_ptr<double>();
  const double* pb = b_src.const_data_ptr<double>();
  for (int64_t g = 0; g < p.groups; ++g) {
    const Map map(p, g);
    const int64_t rows = a ? map.M : map.K, cols = a ? map.K : map.N;
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t off = a ? igemm::a_offset(map, i, j) : igemm::b_offset(map, i, j);
        const int64_t lim = a ? a_src.numel() : b_src.numel();
        TORCH_CHECK(off < lim, kOp, ": gather offset ", off, " >= ", lim);
        o[(g * rows + i) * cols + j] = off < 0 ? 0.0 : (a ? pa : pb)[off];
      }
    }
  }
  return out;
}

at::Tensor igemm_matrix(c10::string_view pass, c10::string_view operand, const at::Tensor& input,
                        const at::Tensor& weight, const at::Tensor& grad_output,
                        c10::IntArrayRef stride, c10::IntArrayRef padding,
                        c10::IntArrayRef dilation, int64_t groups) {
  const Conv2dProblem p = problem_of(input, weight, grad_output, stride, padding, dilation, groups);
  TORCH_CHECK(operand == "a" || operand == "b", kOp, ": operand must be 'a' or 'b'; got '",
              std::string(operand), "'");
  const bool a = operand == "a";
  const at::Tensor x = input.contiguous(), w = weight.contiguous(), go = grad_output.contiguous();
  switch (parse_pass(pass)) {
    case igemm::Pass::Fprop: return dense_operand<igemm::FpropMap>(p, a, x, w);
    case igemm::Pass::Dgrad: return dense_operand<igemm::DgradMap>(p, a, go, w);
    case igemm::Pass::Wgrad: return dense_operand<igemm::WgradMap>(p, a, go, x);
  }
  return at::Tensor();
}

template <class Map, class Compute = igemm::SimtCompute>
void emulate(const typename Map::Params& prm, const igemm::Plan& pl, const double* a_src,
             int64_t a_numel, const double* b_src, int64_t b_numel, const double* bias,
             bool relu, double* out, int64_t out_numel) {
  const bool split = Map::kPass == igemm::Pass::Wgrad && pl.splits > 1;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> ws(split ? static_cast<size_t>(pl.workspace_elems()) : 0, nan);
  g_bounds = Bounds{};
  g_bounds.base[0] = a_src;
  g_bounds.numel[0] = a_numel;
  g_bounds.base[1] = b_src;
  g_bounds.numel[1] = b_numel;
  bool bad = false;
  auto sm = std::make_unique<igemm::SharedTiles<double>>();
  std::vector<igemm::ThreadState<double, typename Map::ARow>> st(Tile::kThreads);
  const CpuExec ex;
  for (int64_t z = 0; z < pl.grid_z(); ++z) {
    const int64_t g = z / pl.splits, s = z % pl.splits;
    const Map map(prm, g);
    for (int64_t by = 0; by < pl.tiles_n; ++by) {
      for (int64_t bx = 0; bx < pl.tiles_m; ++bx) {
        std::fill_n(&sm->a[0][0][0], sizeof(sm->a) / sizeof(double), nan);
        std::fill_n(&sm->b[0][0][0], sizeof(sm->b) / sizeof(double), nan);
        const int64_t m0 = bx * Tile::BM, n0 = by * Tile::BN;
        igemm::block_mainloop<CpuCvt, Compute>(ex, map, a_src, b_src, m0, n0, pl.k_begin(s),
                                               pl.k_end(s), *sm, st.data());
        for (int t = 0; t < Tile::kThreads; ++t) {
          if (split) {
            Emu e{ws.data() + s * pl.groups * pl.M * pl.N, pl.groups * pl.M * pl.N, nullptr,
                  false, &bad};
            igemm::block_epilogue<Compute>(map, m0, n0, t, st[t], e);
          } else {
            Emu e{out, out_numel, bias, relu, &bad};
            igemm::block_epilogue<Compute>(map, m0, n0, t, st[t], e);
          }
        }
      }
    }
  }
  TORCH_CHECK(!g_bounds.bad, kOp, ": a gather read outside its tensor");
  TORCH_CHECK(!bad, kOp, ": an epilogue wrote outside its output");
  if (split) {  // the reduction kernel's order: split 0, 1, 2, ...
    for (int64_t e = 0; e < out_numel; ++e) {
      double acc = ws[e];
      for (int64_t s = 1; s < pl.splits; ++s) acc += ws[s * out_numel + e];
      out[e] = acc;
    }
  }
}

// The compute policies the emulation runs: the SIMT micro-tiles, the float16/bfloat16 mma
// path, the float32 TF32 mma path.
enum class EmuCompute { Simt, MmaF16, MmaTf32 };

template <class Map>
void emulate_conv(const Conv2dProblem& p, const igemm::Plan& pl, const at::Tensor& a,
                  const at::Tensor& b, const double* bias, bool relu, EmuCompute compute,
                  at::Tensor& out) {
  const double* pa = a.const_data_ptr<double>();
  const double* pb = b.const_data_ptr<double>();
  double* po = out.mutable_data_ptr<double>();
  switch (compute) {
    case EmuCompute::MmaF16:
      emulate<Map, MmaF16Emu>(p, pl, pa, a.numel(), pb, b.numel(), bias, relu, po, out.numel());
      return;
    case EmuCompute::MmaTf32:
      emulate<Map, MmaTf32Emu>(p, pl, pa, a.numel(), pb, b.numel(), bias, relu, po, out.numel());
      return;
    case EmuCompute::Simt:
      emulate<Map>(p, pl, pa, a.numel(), pb, b.numel(), bias, relu, po, out.numel());
      return;
  }
}

at::Tensor igemm_emulate(c10::string_view pass, const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& grad_output, const c10::optional<at::Tensor>& bias,
                         c10::IntArrayRef stride, c10::IntArrayRef padding,
                         c10::IntArrayRef dilation, int64_t groups, int64_t splits, bool relu,
                         bool mma, bool tf32) {
  const Conv2dProblem p = problem_of(input, weight, grad_output, stride, padding, dilation, groups);
  TORCH_CHECK(mma || !tf32, kOp, ": tf32=True is the TF32 tensor-core path; it needs mma=True");
  const EmuCompute compute =
      !mma ? EmuCompute::Simt : (tf32 ? EmuCompute::MmaTf32 : EmuCompute::MmaF16);
  const at::Tensor x = input.contiguous(), w = weight.contiguous(), go = grad_output.contiguous();
  at::Tensor b;
  if (bias.has_value()) {
    check_f64_cpu("bias", *bias);
    TORCH_CHECK(bias->numel() == p.K, kOp, ": bias must have ", p.K, " elements; got ",
                bias->numel());
    b = bias->contiguous();
  }
  const double* pb = b.defined() ? b.const_data_ptr<double>() : nullptr;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  at::Tensor out;
  switch (parse_pass(pass)) {
    case igemm::Pass::Fprop:
      out = at::full({p.N, p.K, p.P, p.Q}, nan, x.options());
      if (out.numel() > 0)
        emulate_conv<igemm::FpropMap>(p, igemm::make_plan<igemm::FpropMap>(p), x, w, pb, relu,
                                      compute, out);
      break;
    case igemm::Pass::Dgrad:
      out = at::full({p.N, p.C, p.H, p.W}, nan, x.options());
      if (out.numel() > 0)
        emulate_conv<igemm::DgradMap>(p, igemm::make_plan<igemm::DgradMap>(p), go, w, nullptr,
                                      false, compute, out);
      break;
    case igemm::Pass::Wgrad:
      out = at::full({p.K, p.C_per_group(), p.R, p.S}, nan, x.options());
      if (out.numel() > 0)
        emulate_conv<igemm::WgradMap>(p, igemm::make_plan<igemm::WgradMap>(p, splits), go, x,
                                      nullptr, false, compute, out);
      break;
  }
  return out;
}

// The CUDA Winograd pipeline (core/winograd_gemm.h) for one chunk size: filter items,
// then per chunk of images input items, the a*a*groups GEMMs through the tile loop, output
// items. Workspace buffers start NaN-filled.
template <int M>
void wino_run(const Conv2dProblem& q, bool flipped, const double* x, const double* w,
              const double* bias, double* y, int64_t chunk) {
  using wino_gemm::Geom;
  constexpr int aa = Geom<M>::aa;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> U(static_cast<size_t>(aa * q.K * q.C_per_group()), nan);
  for (int64_t i = 0; i < q.K * q.C_per_group(); ++i)
    wino_gemm::filter_item<M, double, PlainCvt>(q, w, flipped, U.data(), i);
  bool bad = false;
  for (int64_t n0 = 0; n0 < q.N; n0 += chunk) {
    Conv2dProblem qc = q;
    qc.N = std::min(chunk, q.N - n0);
    const Geom<M> gm(qc);
    std::vector<double> V(static_cast<size_t>(aa * qc.C * gm.T), nan);
    std::vector<double> Mo(static_cast<size_t>(aa * qc.K * gm.T), nan);
    for (int64_t i = 0; i < qc.C * gm.T; ++i)
      wino_gemm::input_item<M, double, PlainCvt>(qc, gm, x + n0 * q.C * q.H * q.W, V.data(), i);
    const wino_gemm::GemmParams wp = wino_gemm::gemm_params<M>(qc, gm);
    emulate<wino_gemm::GemmMap>(wp, igemm::make_plan<wino_gemm::GemmMap>(wp), V.data(),
                                static_cast<int64_t>(V.size()), U.data(),
                                static_cast<int64_t>(U.size()), nullptr, false, Mo.data(),
                                static_cast<int64_t>(Mo.size()));
    Emu oc{y + n0 * q.K * q.P * q.Q, qc.output_numel(), bias, false, &bad};
    for (int64_t i = 0; i < qc.N * qc.K * gm.TH * gm.TW; ++i)
      wino_gemm::output_item<M>(qc, gm, Mo.data(), i, oc);
  }
  TORCH_CHECK(!bad, kOp, ": a Winograd output item wrote outside its chunk");
}

at::Tensor wino_emulate(int64_t m, c10::string_view pass, const at::Tensor& input,
                        const at::Tensor& weight, const at::Tensor& grad_output,
                        const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding,
                        int64_t groups, int64_t chunk_images) {
  TORCH_CHECK(m == 2 || m == 4, kOp, ": m must be 2 or 4; got ", m);
  const Conv2dProblem p = problem_of(input, weight, grad_output, {1, 1}, padding, {1, 1}, groups);
  TORCH_CHECK(p.R == 3 && p.S == 3, kOp, ": Winograd needs 3x3 filters; got ", p.R, "x", p.S);
  const igemm::Pass ps = parse_pass(pass);
  TORCH_CHECK(ps != igemm::Pass::Wgrad, kOp, ": the CUDA Winograd has no wgrad pass");
  const bool dgrad = ps == igemm::Pass::Dgrad;
  const Conv2dProblem q = dgrad ? wino_gemm::turned_problem(p) : p;
  const at::Tensor x = (dgrad ? grad_output : input).contiguous(), w = weight.contiguous();
  at::Tensor b;
  if (bias.has_value() && !dgrad) b = bias->contiguous();
  at::Tensor out = at::full({q.N, q.K, q.P, q.Q}, std::numeric_limits<double>::quiet_NaN(),
                            x.options());
  if (out.numel() == 0) return out;
  const int64_t chunk =
      chunk_images > 0 ? chunk_images
                       : (m == 2 ? wino_gemm::images_per_chunk<2>(q, wino_gemm::kMaxChunkElems)
                                 : wino_gemm::images_per_chunk<4>(q, wino_gemm::kMaxChunkElems));
  const double* pb = b.defined() ? b.const_data_ptr<double>() : nullptr;
  if (m == 2)
    wino_run<2>(q, dgrad, x.const_data_ptr<double>(), w.const_data_ptr<double>(), pb,
                out.mutable_data_ptr<double>(), chunk);
  else
    wino_run<4>(q, dgrad, x.const_data_ptr<double>(), w.const_data_ptr<double>(), pb,
                out.mutable_data_ptr<double>(), chunk);
  return out;
}

// igemm::tf32_round (the model of cvt.rna.tf32.f32) element-wise on a float32 CPU tensor.
at::Tensor tf32_round_op(const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(), kOp,
              ": _tf32_round takes a float32 CPU tensor; got ", x.scalar_type(), " on ",
              x.device());
  const at::Tensor c = x.contiguous();
  at::Tensor out = at::empty_like(c);
  const float* src = c.const_data_ptr<float>();
  float* dst = out.mutable_data_ptr<float>();
  for (int64_t i = 0; i < c.numel(); ++i) dst[i] = igemm::tf32_round(src[i]);
  return out;
}

template <class Shape>
std::vector<int64_t> fragments_of(bool a) {
  std::vector<int64_t> out;
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < (a ? Shape::kAElems : Shape::kBElems); ++e) {
      int x, y;
      if (a) {
        Shape::a_frag(lane, e, x, y);
      } else {
        Shape::b_frag(lane, e, x, y);
      }
      out.push_back(x);
      out.push_back(y);
    }
  }
  return out;
}

}  // namespace

// Declared in cnnkern.cpp. The (row, column) each lane's fragment element e holds, flattened
// lane-major as [row, col, row, col, ...]: A (m, k), B (k, n), C (m, n) of one mma tile of
// instruction `shape` ("m16n8k16" or "m16n8k8_tf32"), as the kernels index them.
std::vector<int64_t> mma_fragments_op(const std::string& shape, const std::string& operand) {
  TORCH_CHECK(shape == "m16n8k16" || shape == "m16n8k8_tf32", kOp,
              ": shape must be 'm16n8k16' or 'm16n8k8_tf32'; got '", shape, "'");
  TORCH_CHECK(operand == "a" || operand == "b" || operand == "c", kOp,
              ": operand must be 'a', 'b' or 'c'; got '", operand, "'");
  if (operand == "c") {  // warp 0, mma tile 0: both shapes share igemm::MmaLayout
    std::vector<int64_t> out;
    for (int lane = 0; lane < 32; ++lane) {
      for (int j = 0; j < 4; ++j) {
        out.push_back(igemm::MmaLayout::row(lane, 0, j));
        out.push_back(igemm::MmaLayout::col(lane, 0, j));
      }
    }
    return out;
  }
  return shape == "m16n8k16" ? fragments_of<igemm::MmaShapeK16>(operand == "a")
                             : fragments_of<igemm::MmaShapeK8Tf32>(operand == "a");
}

// Declared in cnnkern.cpp (an op without tensor arguments is registered with its schema).
std::vector<int64_t> igemm_plan_op(const std::string& pass, c10::IntArrayRef input_size,
                                c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                int64_t groups, int64_t splits) {
  const Conv2dProblem p =
      make_conv2d_problem(kOp, input_size, weight_size, stride, padding, dilation, groups);
  igemm::Plan pl;
  switch (parse_pass(pass)) {
    case igemm::Pass::Fprop: pl = igemm::make_plan<igemm::FpropMap>(p, splits); break;
    case igemm::Pass::Dgrad: pl = igemm::make_plan<igemm::DgradMap>(p, splits); break;
    case igemm::Pass::Wgrad: pl = igemm::make_plan<igemm::WgradMap>(p, splits); break;
  }
  return {pl.M,      pl.N,         pl.K,         pl.tiles_m,        pl.tiles_n,
          pl.splits, pl.k_chunk, pl.grid_z(), pl.workspace_elems()};
}

}  // namespace cnnkern

TORCH_LIBRARY_IMPL(cnnkern_testing, CPU, m) {
  m.impl("igemm_matrix", TORCH_FN(cnnkern::igemm_matrix));
  m.impl("igemm_emulate", TORCH_FN(cnnkern::igemm_emulate));
  m.impl("wino_emulate", TORCH_FN(cnnkern::wino_emulate));
  m.impl("tf32_round", TORCH_FN(cnnkern::tf32_round_op));
}
