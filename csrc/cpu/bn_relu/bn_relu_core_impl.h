// The BN+ReLU backward plane kernels (bn_relu_core.h), written once with GCC vector
// extensions and compiled per instruction set: the including translation unit defines
// CNNKERN_ISA_NS (and opens the ISA's target region first). No include guard, by design.
//
// A step takes kLanes = 8 values as two halves of 4 (a half of double is one AVX2 register,
// two SSE2 ones; wider generic vectors make GCC spill them through the stack), the sums 8
// double lanes: position i of a plane goes to lane i % 8, and the lanes are folded in one
// fixed order, so a plane's sums depend on its length alone. float32 sums go through float
// first, in blocks (sums_float_blocks says how), the blocks again a function of the length.
//
// The ReLU mask is `z * sa > -sb`, not `z * sa + sb > 0`: with round-to-nearest the sign of
// fl(fl(z*sa) + sb) is the sign of the exact sum fl(z*sa) + sb (a sum that small is exact,
// and rounding never crosses zero), so the two agree for every z, inf and NaN included. The
// forward (bn_relu_cpu.cpp's apply, baseline code: a product then a sum) rounds z * sa the
// same way; and a comparison leaves the compiler no sum to contract into an FMA here, which
// the AVX2 target would otherwise be free to do, flipping the mask of values next to zero.

#if !defined(CNNKERN_ISA_NS)
#error "define CNNKERN_ISA_NS before including cpu/bn_relu/bn_relu_core_impl.h"
#endif

namespace cnnkern {
namespace cpu {
namespace CNNKERN_ISA_NS {
namespace {

constexpr int kLanes = 8, kHalf = 4;
typedef float f4 __attribute__((vector_size(kHalf * sizeof(float))));
typedef double d4 __attribute__((vector_size(kHalf * sizeof(double))));

template <typename T>
struct V4;
template <>
struct V4<float> {
  using type = f4;
};
template <>
struct V4<double> {
  using type = d4;
};

// Vectors go by reference or stay in one function: passed by value, their calling
// convention would depend on the target (GCC's -Wpsabi).
template <typename VT, typename T>
inline void load4(VT& v, const T* p) {
  std::memcpy(&v, p, sizeof(v));
}
template <typename T, typename VT>
inline void store4(T* p, const VT& v) {
  std::memcpy(p, &v, sizeof(v));
}

// The activations (core/bn_activation.h) as a template argument: the plain kernels keep no
// test in their loops.
enum : int { kNone = 0, kRelu = 1, kReluMax = 2 };

template <typename F>
inline void with_act(const BnActivation& act, const F& f) {
  if (!act.relu) f(std::integral_constant<int, kNone>{});
  else if (act.has_max) f(std::integral_constant<int, kReluMax>{});
  else f(std::integral_constant<int, kRelu>{});
}

// Whether the activation passes the gradient at z: the ReLU side as `z * sa > -sb` (above),
// the upper clamp as `z * sa < hi`, hi = max - sb: the same comparison on the same rounded
// product that bn_relu_cpu.cpp's forward uses to pick its clamp branch (a sum compared with
// max could be contracted into an FMA here and disagree with the forward next to max).
template <int kAct, typename T>
inline bool act_passes(T z, T sa, T neg_sb, T hi) {
  if constexpr (kAct == kNone) {
    return true;
  } else {
    const T p = z * sa;
    if constexpr (kAct == kRelu) return p > neg_sb;
    else return p > neg_sb && p < hi;
  }
}

// The same on a vector: g zeroed where the activation does not pass.
template <int kAct, typename VT>
inline void act_mask(VT& g, const VT& x, const VT& va, const VT& vnb, const VT& vhi) {
  if constexpr (kAct == kRelu) {
    g = (x * va > vnb) ? g : VT{};
  } else if constexpr (kAct == kReluMax) {
    const VT p = x * va;
    g = ((p > vnb) & (p < vhi)) ? g : VT{};
  }
}

inline double fold(const double* acc) {
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

// One half step of the sums: g masked, then s1 += g, s2 += g * (z - m), in double.
template <typename T, int kAct>
inline void sums_half(const T* dy, const T* z, const typename V4<T>::type& va,
                      const typename V4<T>::type& vnb, const typename V4<T>::type& vhi,
                      const d4& vm, d4& s1, d4& s2) {
  using VT = typename V4<T>::type;
  VT g, x;
  load4(g, dy);
  load4(x, z);
  act_mask<kAct>(g, x, va, vnb, vhi);
  const d4 gd = __builtin_convertvector(g, d4);
  s1 += gd;
  s2 += gd * (__builtin_convertvector(x, d4) - vm);
}

// One half step of grad_z.
template <typename T, int kAct>
inline void grad_z_half(const T* dy, const T* z, const typename V4<T>::type& va,
                        const typename V4<T>::type& vnb, const typename V4<T>::type& vhi,
                        const typename V4<T>::type& vm,
                        const typename V4<T>::type& vA, const typename V4<T>::type& vB,
                        const typename V4<T>::type& vC, T* gz) {
  using VT = typename V4<T>::type;
  VT g, x;
  load4(g, dy);
  load4(x, z);
  act_mask<kAct>(g, x, va, vnb, vhi);
  store4(gz, VT(g * vA + (x - vm) * vB + vC));
}

// float32 planes: blocks of kFloatBlock steps of the 8 lanes are summed in float, one vector
// of 8 (no conversion in the loop: converting every value to double was most of the pass's
// instructions), and each block's lane sums are then added to the double lanes. A float sum
// of kFloatBlock terms is within ~kFloatBlock ulps of its largest term, and the blocks add up
// in double, so the plane's sums stay near double accuracy, unlike one float sum of the
// whole plane. The products take the mean rounded to float, mf: a block's
// sum g * (z - m) = sum g * (z - mf) + (mf - m) * sum g, the correction added in double
// (zero when m comes from the op's float32 statistics, as today; it keeps the kernel exact
// for any m).
// The blocks are a function of n alone, so the result still is.
constexpr int64_t kFloatBlock = 32;
typedef float f8 __attribute__((vector_size(kLanes * sizeof(float))));

template <int kAct>
inline void sums_float_blocks(int64_t& i, int64_t n, const float* dy, const float* z, float sa,
                              float sb, float hi, double m, d4& s1lo, d4& s1hi, d4& s2lo,
                              d4& s2hi) {
  const float mf = static_cast<float>(m);
  const d4 vdm = d4{} + (static_cast<double>(mf) - m);
  const f8 va = f8{} + sa, vnb = f8{} - sb, vhi = f8{} + hi, vm = f8{} + mf;
  while (i + kLanes <= n) {
    const int64_t steps = std::min<int64_t>(kFloatBlock, (n - i) / kLanes);
    f8 a1{}, a2{};
    for (int64_t s = 0; s < steps; ++s, i += kLanes) {
      f8 g, x;
      load4(g, dy + i);  // load4/store4 copy a whole vector, whatever its width
      load4(x, z + i);
      act_mask<kAct>(g, x, va, vnb, vhi);
      a1 += g;
      a2 += g * (x - vm);
    }
    f4 h1[2], h2[2];
    std::memcpy(h1, &a1, sizeof(a1));
    std::memcpy(h2, &a2, sizeof(a2));
    const d4 b1lo = __builtin_convertvector(h1[0], d4), b1hi = __builtin_convertvector(h1[1], d4);
    s1lo += b1lo;
    s1hi += b1hi;
    s2lo += __builtin_convertvector(h2[0], d4) + vdm * b1lo;
    s2hi += __builtin_convertvector(h2[1], d4) + vdm * b1hi;
  }
}

template <typename T, int kAct>
void grad_sums_plane(int64_t n, const T* dy, const T* z, T sa, T sb, T mx, double m,
                     double* out) {
  d4 s1lo{}, s1hi{}, s2lo{}, s2hi{};
  int64_t i = 0;
  const T hi = mx - sb;
  if constexpr (std::is_same<T, float>::value) {
    sums_float_blocks<kAct>(i, n, dy, z, sa, sb, hi, m, s1lo, s1hi, s2lo, s2hi);
  } else {
    using VT = typename V4<T>::type;
    const VT va = VT{} + sa, vnb = VT{} - sb, vhi = VT{} + hi;
    const d4 vm = d4{} + m;
    for (; i + kLanes <= n; i += kLanes) {
      sums_half<T, kAct>(dy + i, z + i, va, vnb, vhi, vm, s1lo, s2lo);
      sums_half<T, kAct>(dy + i + kHalf, z + i + kHalf, va, vnb, vhi, vm, s1hi, s2hi);
    }
  }
  double t1[kLanes], t2[kLanes];
  std::memcpy(t1, &s1lo, sizeof(s1lo));
  std::memcpy(t1 + kHalf, &s1hi, sizeof(s1hi));
  std::memcpy(t2, &s2lo, sizeof(s2lo));
  std::memcpy(t2 + kHalf, &s2hi, sizeof(s2hi));
  for (int l = 0; i < n; ++i, ++l) {
    if (!act_passes<kAct>(z[i], sa, T(-sb), hi)) continue;
    const double g = static_cast<double>(dy[i]);
    t1[l] += g;
    t2[l] += g * (static_cast<double>(z[i]) - m);
  }
  out[0] = fold(t1);
  out[1] = fold(t2);
}

template <typename T, int kAct>
void grad_z_plane(int64_t n, const T* dy, const T* z, T sa, T sb, T mx, T m, T a, T b, T c,
                  T* gz) {
  using VT = typename V4<T>::type;
  const T hi = mx - sb;
  const VT va = VT{} + sa, vnb = VT{} - sb, vhi = VT{} + hi, vm = VT{} + m, vA = VT{} + a,
           vB = VT{} + b, vC = VT{} + c;
  int64_t i = 0;
  for (; i + kHalf <= n; i += kHalf)
    grad_z_half<T, kAct>(dy + i, z + i, va, vnb, vhi, vm, vA, vB, vC, gz + i);
  for (; i < n; ++i) {
    const T g = act_passes<kAct>(z[i], sa, T(-sb), hi) ? dy[i] : T(0);
    gz[i] = g * a + (z[i] - m) * b + c;
  }
}

// channels_last: the vectors run along the channels of a row (4 channels per step, the rest
// one by one), each channel's sums in its own double. The rows go in blocks of kRowBlock
// (a few KB of each tensor, in L1), channel group by channel group within a block, so a
// group's per-channel values and sums stay in registers across the block's rows, and a
// channel's additions still follow the rows in order.
constexpr int64_t kRowBlock = 16;

// Both passes walk the rows the same way: block by block, and within a block a channel group
// (kHalf channels, vector body) or a tail channel at a time over the block's rows.
template <typename GroupBody, typename TailBody>
inline void for_row_blocks_by_channel(int64_t rows, int64_t K, const GroupBody& group,
                                      const TailBody& tail) {
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, rows - r0);
    int64_t k = 0;
    for (; k + kHalf <= K; k += kHalf) group(r0, nr, k);
    for (; k < K; ++k) tail(r0, nr, k);
  }
}

template <typename T, int kAct>
void grad_sums_rows_t(int64_t rows, int64_t K, const T* dy, const T* z, const T* sa,
                      const T* sb, T mx, const double* m, double* s1, double* s2) {
  using VT = typename V4<T>::type;
  for_row_blocks_by_channel(
      rows, K,
      [&](int64_t r0, int64_t nr, int64_t k) {
        const T* gb = dy + r0 * K;
        const T* zb = z + r0 * K;
        VT va, vb;
        d4 vm, a1, a2;
        load4(va, sa + k);
        load4(vb, sb + k);
        load4(vm, m + k);
        load4(a1, s1 + k);
        load4(a2, s2 + k);
        const VT vnb = -vb, vhi = (VT{} + mx) - vb;
        if constexpr (std::is_same<T, float>::value) {
          // As sums_float_blocks: the block's rows summed in float about the mean rounded
          // to float, then added to the double sums with the (mf - m) * sum g correction.
          const f4 vmf = __builtin_convertvector(vm, f4);
          const d4 vdm = __builtin_convertvector(vmf, d4) - vm;
          f4 b1{}, b2{};
          for (int64_t r = 0; r < nr; ++r) {
            f4 g, x;
            load4(g, gb + r * K + k);
            load4(x, zb + r * K + k);
            act_mask<kAct>(g, x, va, vnb, vhi);
            b1 += g;
            b2 += g * (x - vmf);
          }
          const d4 d1 = __builtin_convertvector(b1, d4);
          a1 += d1;
          a2 += __builtin_convertvector(b2, d4) + vdm * d1;
        } else {
          for (int64_t r = 0; r < nr; ++r)
            sums_half<T, kAct>(gb + r * K + k, zb + r * K + k, va, vnb, vhi, vm, a1, a2);
        }
        store4(s1 + k, a1);
        store4(s2 + k, a2);
      },
      [&](int64_t r0, int64_t nr, int64_t k) {
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t i = (r0 + r) * K + k;
          const T x = z[i];
          if (!act_passes<kAct>(x, sa[k], T(-sb[k]), T(mx - sb[k]))) continue;
          const double g = static_cast<double>(dy[i]);
          s1[k] += g;
          s2[k] += g * (static_cast<double>(x) - m[k]);
        }
      });
}

template <typename T, int kAct>
void grad_z_rows_t(int64_t rows, int64_t K, const T* dy, const T* z, const T* sa, const T* sb,
                   T mx, const T* m, const T* a, const T* b, const T* c, T* gz) {
  using VT = typename V4<T>::type;
  for_row_blocks_by_channel(
      rows, K,
      [&](int64_t r0, int64_t nr, int64_t k) {
        VT va, vb, vm, vA, vB, vC;
        load4(va, sa + k);
        load4(vb, sb + k);
        load4(vm, m + k);
        load4(vA, a + k);
        load4(vB, b + k);
        load4(vC, c + k);
        const VT vnb = -vb, vhi = (VT{} + mx) - vb;
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t i = (r0 + r) * K + k;
          grad_z_half<T, kAct>(dy + i, z + i, va, vnb, vhi, vm, vA, vB, vC, gz + i);
        }
      },
      [&](int64_t r0, int64_t nr, int64_t k) {
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t i = (r0 + r) * K + k;
          const T g = act_passes<kAct>(z[i], sa[k], T(-sb[k]), T(mx - sb[k])) ? dy[i] : T(0);
          gz[i] = g * a[k] + (z[i] - m[k]) * b[k] + c[k];
        }
      });
}

template <typename T>
void grad_sums_rows(int64_t rows, int64_t K, const T* dy, const T* z, const T* sa, const T* sb,
                    const double* m, const BnActivation& act, double* s1, double* s2) {
  with_act(act, [&](auto a) {
    grad_sums_rows_t<T, decltype(a)::value>(rows, K, dy, z, sa, sb, T(act.max), m, s1, s2);
  });
}

template <typename T>
void grad_z_rows(int64_t rows, int64_t K, const T* dy, const T* z, const T* sa, const T* sb,
                 const T* m, const T* a, const T* b, const T* c, const BnActivation& act,
                 T* gz) {
  with_act(act, [&](auto t) {
    grad_z_rows_t<T, decltype(t)::value>(rows, K, dy, z, sa, sb, T(act.max), m, a, b, c, gz);
  });
}

template <typename T>
void grad_sums(int64_t n, const T* dy, const T* z, T sa, T sb, double m, const BnActivation& act,
               double* out) {
  with_act(act, [&](auto a) {
    grad_sums_plane<T, decltype(a)::value>(n, dy, z, sa, sb, T(act.max), m, out);
  });
}

template <typename T>
void grad_z(int64_t n, const T* dy, const T* z, T sa, T sb, T m, T a, T b, T c,
            const BnActivation& act, T* gz) {
  with_act(act, [&](auto t) {
    grad_z_plane<T, decltype(t)::value>(n, dy, z, sa, sb, T(act.max), m, a, b, c, gz);
  });
}

}  // namespace

const BnReluCore<float>& bn_relu_core_f32() {
  static const BnReluCore<float> k{grad_sums<float>, grad_z<float>, grad_sums_rows<float>,
                                   grad_z_rows<float>};
  return k;
}
const BnReluCore<double>& bn_relu_core_f64() {
  static const BnReluCore<double> k{grad_sums<double>, grad_z<double>, grad_sums_rows<double>,
                                    grad_z_rows<double>};
  return k;
}

}  // namespace CNNKERN_ISA_NS
}  // namespace cpu
}  // namespace cnnkern
