#pragma once
// Winograd minimal-filtering transforms F(m x m, 3 x 3) for m = 2 and m = 4, shared by the
// CPU and CUDA backends (host + device, no torch, no std containers, no exceptions).
//
// One output tile of m x m needs an input tile of a x a, a = m + 2:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
// with the filter g (3 x 3), the input tile d (a x a) and (.) the element-wise product.
// Summed over input channels, the element-wise stage becomes a*a independent GEMMs
// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//
//   F(2x2,3x3)  points 0, 1, -1, inf           16 multiplies per tile vs 36 direct (2.25x)
//   F(4x4,3x3)  points 0, 1, -1, 2, -2, inf    36 multiplies per tile vs 144 direct (4x)
//
// The matrices (B^T a x a, G a x 3, A^T m x a) are written out as the 1-D transforms below,
// as explicit expressions with the common subexpressions shared; each 2-D transform is the
// 1-D one applied to every column, then to every row.
//
// Every function is templated on two types: S, the scalar type the constants are written in
// (float, double), and V, the value type transformed, which is S itself or anything with
// +, -, and * by an S -- e.g. a GCC vector of S, so the CPU transforms several tiles (one per
// lane) with the same code. Arrays are passed with explicit strides (in elements of V) so a
// caller can read and write its own layouts without copies.
//
// The adjoints (transposes) of the output and filter transforms are here too: they give the
// Winograd-domain weight gradient (dM = A dY A^T, dg = G^T dU G).

#include "core/conv2d_dgrad.h"
#include "core/conv2d_problem.h"
#include "core/macros.h"

namespace cnnkern {
namespace winograd {

// The one shape every Winograd F(m x m, 3x3) here runs, on either backend and in the CPU's
// auto rule: a 3x3 kernel, stride 1, dilation 1 (ops/conv2d_algo.h words the refusal).
CNNKERN_HD bool supports_shape(const Conv2dProblem& p) {
  return p.R == 3 && p.S == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 &&
         p.dil_w == 1;
}

// Grad-input of a 3x3, stride-1, dilation-1 convolution with padding `pad` is the forward of
// this "turned" problem: grad_output as the input, C and K swapped, the filters rotated 180
// degrees, padding 2 - pad (negative for pad > 2: the output is a crop). Both backends run
// their Winograd grad-input as this forward.
// (core/conv2d_dgrad.h's dgrad_problem, at R = S = 3 and dilation 1.)
CNNKERN_HD Conv2dProblem turned_problem(const Conv2dProblem& p) { return dgrad_problem(p); }

template <int M>
struct Tile;

// ---------------------------------------------------------------------------------------------
// F(2x2, 3x3)
//
//   B^T = [ 1  0 -1  0 ]     G = [ 1    0    0   ]     A^T = [ 1  1  1  0 ]
//         [ 0  1  1  0 ]         [ 1/2  1/2  1/2 ]           [ 0  1 -1 -1 ]
//         [ 0 -1  1  0 ]         [ 1/2 -1/2  1/2 ]
//         [ 0  1  0 -1 ]         [ 0    0    1   ]
// ---------------------------------------------------------------------------------------------
template <>
struct Tile<2> {
  static constexpr int m = 2;  // output tile side
  static constexpr int r = 3;  // filter side
  static constexpr int a = 4;  // input tile side, m + r - 1

  // y = B^T x  (a -> a)
  template <typename S, typename V>
  CNNKERN_HD static void input_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs];
    y[0] = x0 - x2;
    y[ys] = x1 + x2;
    y[2 * ys] = x2 - x1;
    y[3 * ys] = x1 - x3;
  }

  // y = G x  (r -> a)
  template <typename S, typename V>
  CNNKERN_HD static void filter_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs];
    const V e = (x0 + x2) * S(0.5), o = x1 * S(0.5);
    y[0] = x0;
    y[ys] = e + o;
    y[2 * ys] = e - o;
    y[3 * ys] = x2;
  }

  // y = A^T x  (a -> m)
  template <typename S, typename V>
  CNNKERN_HD static void output_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs];
    y[0] = x0 + x1 + x2;
    y[ys] = x1 - x2 - x3;
  }

  // y = A x  (m -> a), the adjoint of output_1d
  template <typename S, typename V>
  CNNKERN_HD static void output_adjoint_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs];
    y[0] = x0;
    y[ys] = x0 + x1;
    y[2 * ys] = x0 - x1;
    y[3 * ys] = -x1;
  }

  // y = G^T x  (a -> r), the adjoint of filter_1d
  template <typename S, typename V>
  CNNKERN_HD static void filter_adjoint_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs];
    const V s = (x1 + x2) * S(0.5);
    y[0] = x0 + s;
    y[ys] = (x1 - x2) * S(0.5);
    y[2 * ys] = s + x3;
  }
};

// ---------------------------------------------------------------------------------------------
// F(4x4, 3x3), Lavin & Gray's points 0, 1, -1, 2, -2, inf
//
//   B^T = [ 4  0 -5  0  1  0 ]   G = [  1/4     0     0   ]   A^T = [ 1  1  1  1  1  0 ]
//         [ 0 -4 -4  1  1  0 ]       [ -1/6  -1/6  -1/6  ]         [ 0  1 -1  2 -2  0 ]
//         [ 0  4 -4 -1  1  0 ]       [ -1/6   1/6  -1/6  ]         [ 0  1  1  4  4  0 ]
//         [ 0 -2 -1  2  1  0 ]       [ 1/24  1/12   1/6  ]         [ 0  1 -1  8 -8  1 ]
//         [ 0  2 -1 -2  1  0 ]       [ 1/24 -1/12   1/6  ]
//         [ 0  4  0 -5  0  1 ]       [  0     0     1    ]
// ---------------------------------------------------------------------------------------------
template <>
struct Tile<4> {
  static constexpr int m = 4;
  static constexpr int r = 3;
  static constexpr int a = 6;

  template <typename S, typename V>
  CNNKERN_HD static void input_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs], x4 = x[4 * xs],
            x5 = x[5 * xs];
    const V t0 = x4 - x2 * S(4), t1 = x3 - x1 * S(4);  // rows 1, 2
    const V t2 = x4 - x2, t3 = (x3 - x1) * S(2);       // rows 3, 4
    y[0] = x0 * S(4) - x2 * S(5) + x4;
    y[ys] = t0 + t1;
    y[2 * ys] = t0 - t1;
    y[3 * ys] = t2 + t3;
    y[4 * ys] = t2 - t3;
    y[5 * ys] = x1 * S(4) - x3 * S(5) + x5;
  }

  template <typename S, typename V>
  CNNKERN_HD static void filter_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs];
    const V e6 = (x0 + x2) * S(-1.0 / 6), o6 = x1 * S(-1.0 / 6);
    const V e24 = x0 * S(1.0 / 24) + x2 * S(1.0 / 6), o12 = x1 * S(1.0 / 12);
    y[0] = x0 * S(0.25);
    y[ys] = e6 + o6;
    y[2 * ys] = e6 - o6;
    y[3 * ys] = e24 + o12;
    y[4 * ys] = e24 - o12;
    y[5 * ys] = x2;
  }

  template <typename S, typename V>
  CNNKERN_HD static void output_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs], x4 = x[4 * xs],
            x5 = x[5 * xs];
    const V s12 = x1 + x2, d12 = x1 - x2, s34 = x3 + x4, d34 = x3 - x4;
    y[0] = x0 + s12 + s34;
    y[ys] = d12 + d34 * S(2);
    y[2 * ys] = s12 + s34 * S(4);
    y[3 * ys] = d12 + d34 * S(8) + x5;
  }

  // A = transpose of A^T above: 4 -> 6
  template <typename S, typename V>
  CNNKERN_HD static void output_adjoint_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs];
    const V e1 = x0 + x2, o1 = x1 + x3;                        // point  1 / -1
    const V e2 = x0 + x2 * S(4), o2 = (x1 + x3 * S(4)) * S(2);  // point  2 / -2
    y[0] = x0;
    y[ys] = e1 + o1;
    y[2 * ys] = e1 - o1;
    y[3 * ys] = e2 + o2;
    y[4 * ys] = e2 - o2;
    y[5 * ys] = x3;
  }

  // G^T: 6 -> 3
  template <typename S, typename V>
  CNNKERN_HD static void filter_adjoint_1d(const V* x, int xs, V* y, int ys) {
    const V x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs], x4 = x[4 * xs],
            x5 = x[5 * xs];
    const V s12 = x1 + x2, d12 = x1 - x2, s34 = x3 + x4, d34 = x3 - x4;
    y[0] = x0 * S(0.25) - s12 * S(1.0 / 6) + s34 * S(1.0 / 24);
    y[ys] = d12 * S(-1.0 / 6) + d34 * S(1.0 / 12);
    y[2 * ys] = s34 * S(1.0 / 6) - s12 * S(1.0 / 6) + x5;
  }
};

// ---------------------------------------------------------------------------------------------
// 2-D transforms: 1-D along columns (down each column), then along rows.
// `*_rs` / `*_cs` are the row and column strides of each array, in elements of V.
// ---------------------------------------------------------------------------------------------

// u = G g G^T: 3 x 3 filter -> a x a.
template <int M, typename S, typename V>
CNNKERN_HD void filter_transform(const V* g, int g_rs, int g_cs, V* u, int u_rs, int u_cs) {
  using T = Tile<M>;
  V t[T::a][T::r];  // G g
  CNNKERN_UNROLL
  for (int j = 0; j < T::r; ++j) T::template filter_1d<S>(g + j * g_cs, g_rs, &t[0][j], T::r);
  CNNKERN_UNROLL
  for (int i = 0; i < T::a; ++i) T::template filter_1d<S>(&t[i][0], 1, u + i * u_rs, u_cs);
}

// v = B^T d B: a x a input tile -> a x a.
template <int M, typename S, typename V>
CNNKERN_HD void input_transform(const V* d, int d_rs, int d_cs, V* v, int v_rs, int v_cs) {
  using T = Tile<M>;
  V t[T::a][T::a];  // B^T d
  CNNKERN_UNROLL
  for (int j = 0; j < T::a; ++j) T::template input_1d<S>(d + j * d_cs, d_rs, &t[0][j], T::a);
  CNNKERN_UNROLL
  for (int i = 0; i < T::a; ++i) T::template input_1d<S>(&t[i][0], 1, v + i * v_rs, v_cs);
}

// y = A^T x A: a x a Winograd-domain tile -> m x m output tile.
template <int M, typename S, typename V>
CNNKERN_HD void output_transform(const V* x, int x_rs, int x_cs, V* y, int y_rs, int y_cs) {
  using T = Tile<M>;
  V t[T::m][T::a];  // A^T x
  CNNKERN_UNROLL
  for (int j = 0; j < T::a; ++j) T::template output_1d<S>(x + j * x_cs, x_rs, &t[0][j], T::a);
  CNNKERN_UNROLL
  for (int i = 0; i < T::m; ++i) T::template output_1d<S>(&t[i][0], 1, y + i * y_rs, y_cs);
}

// x = A y A^T: m x m output-gradient tile -> a x a (adjoint of output_transform).
template <int M, typename S, typename V>
CNNKERN_HD void output_adjoint(const V* y, int y_rs, int y_cs, V* x, int x_rs, int x_cs) {
  using T = Tile<M>;
  V t[T::a][T::m];  // A y
  CNNKERN_UNROLL
  for (int j = 0; j < T::m; ++j)
    T::template output_adjoint_1d<S>(y + j * y_cs, y_rs, &t[0][j], T::m);
  CNNKERN_UNROLL
  for (int i = 0; i < T::a; ++i)
    T::template output_adjoint_1d<S>(&t[i][0], 1, x + i * x_rs, x_cs);
}

// g = G^T u G: a x a Winograd-domain filter gradient -> 3 x 3 (adjoint of filter_transform).
template <int M, typename S, typename V>
CNNKERN_HD void filter_adjoint(const V* u, int u_rs, int u_cs, V* g, int g_rs, int g_cs) {
  using T = Tile<M>;
  V t[T::r][T::a];  // G^T u
  CNNKERN_UNROLL
  for (int j = 0; j < T::a; ++j)
    T::template filter_adjoint_1d<S>(u + j * u_cs, u_rs, &t[0][j], T::a);
  CNNKERN_UNROLL
  for (int i = 0; i < T::r; ++i)
    T::template filter_adjoint_1d<S>(&t[i][0], 1, g + i * g_rs, g_cs);
}

}  // namespace winograd
}  // namespace cnnkern
