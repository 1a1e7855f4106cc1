// The body of one half_convert_<isa>.cpp: float16 / bfloat16 <-> float32 over runs of n
// values, kStep at a time in vectors, the last n % kStep through a kStep-long buffer (the same
// vector code, so a tail rounds as a full step does). Included after the ISA's begin header
// (CNNKERN_ISA_NS, CNNKERN_SIMD_*); no include guard, by design.
//
// The vector forms: float16 by F16C (vcvtph2ps, vcvtps2ph with round-to-nearest-even);
// bfloat16 -> float32 by a 16-bit left shift of the zero-extended pattern, float32 -> bfloat16
// by adding 0x7FFF plus the kept part's lowest bit and shifting right 16 (ties to even), NaN
// replaced by 0x7FC0 -- float_to_bf16 in half_convert.h, lane by lane.

#if defined(CNNKERN_SIMD_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
// GCC 12's own intrinsic headers trip -Wmaybe-uninitialized (their `__Y = __Y` placeholder
// for the unmasked forms) once inlined here; nothing of ours is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#elif defined(CNNKERN_SIMD_AVX2)
#pragma GCC target("avx2,fma,f16c")
#endif

namespace cnnkern {
namespace cpu {
namespace CNNKERN_ISA_NS {
namespace {

#if defined(CNNKERN_SIMD_AVX512) || defined(CNNKERN_SIMD_AVX2)
// One vector's worth of each operation the conversions need; the steps below are written once.
#if defined(CNNKERN_SIMD_AVX512)
struct V {
  static constexpr int64_t W = 16;
  using f = __m512;
  using i = __m512i;
  using h = __m256i;  // W 16-bit patterns
  static h load_h(const uint16_t* s) { return _mm256_loadu_si256(reinterpret_cast<const h*>(s)); }
  static void store_h(uint16_t* d, h v) { _mm256_storeu_si256(reinterpret_cast<h*>(d), v); }
  static f load_f(const float* s) { return _mm512_loadu_ps(s); }
  static void store_f(float* d, f v) { _mm512_storeu_ps(d, v); }
  static f cvtph(h v) { return _mm512_cvtph_ps(v); }
  static h cvtps(f v) { return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT); }
  static i widen(h v) { return _mm512_cvtepu16_epi32(v); }
  static h narrow(i v) { return _mm512_cvtepi32_epi16(v); }  // lanes < 2^16
  static i as_i(f v) { return _mm512_castps_si512(v); }
  static f as_f(i v) { return _mm512_castsi512_ps(v); }
  static i shl16(i v) { return _mm512_slli_epi32(v, 16); }
  static i shr16(i v) { return _mm512_srli_epi32(v, 16); }
  static i add(i a, i b) { return _mm512_add_epi32(a, b); }
  static i band(i a, i b) { return _mm512_and_si512(a, b); }
  static i set1(int32_t x) { return _mm512_set1_epi32(x); }
  // x where v is a NaN, else r.
  static i where_nan(f v, i x, i r) {
    return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), x);
  }
};
#else
struct V {
  static constexpr int64_t W = 8;
  using f = __m256;
  using i = __m256i;
  using h = __m128i;
  static h load_h(const uint16_t* s) { return _mm_loadu_si128(reinterpret_cast<const h*>(s)); }
  static void store_h(uint16_t* d, h v) { _mm_storeu_si128(reinterpret_cast<h*>(d), v); }
  static f load_f(const float* s) { return _mm256_loadu_ps(s); }
  static void store_f(float* d, f v) { _mm256_storeu_ps(d, v); }
  static f cvtph(h v) { return _mm256_cvtph_ps(v); }
  static h cvtps(f v) { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT); }
  static i widen(h v) { return _mm256_cvtepu16_epi32(v); }
  static h narrow(i v) {  // lanes < 2^16; packus works per 128-bit half, hence the permute
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0xD8));
  }
  static i as_i(f v) { return _mm256_castps_si256(v); }
  static f as_f(i v) { return _mm256_castsi256_ps(v); }
  static i shl16(i v) { return _mm256_slli_epi32(v, 16); }
  static i shr16(i v) { return _mm256_srli_epi32(v, 16); }
  static i add(i a, i b) { return _mm256_add_epi32(a, b); }
  static i band(i a, i b) { return _mm256_and_si256(a, b); }
  static i set1(int32_t x) { return _mm256_set1_epi32(x); }
  static i where_nan(f v, i x, i r) {
    return _mm256_blendv_epi8(r, x, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  }
};
#endif
// avx512_emulated: the AVX-512 variant's step of 16 values, as two AVX2 vectors.
#if defined(CNNKERN_SIMD_AVX512_EMULATED)
constexpr int64_t kStep = 16;
#else
constexpr int64_t kStep = V::W;
#endif

inline void f16_to_f32(const uint16_t* s, float* d) {
  for (int64_t o = 0; o < kStep; o += V::W) V::store_f(d + o, V::cvtph(V::load_h(s + o)));
}
inline void f32_to_f16(const float* s, uint16_t* d) {
  for (int64_t o = 0; o < kStep; o += V::W) V::store_h(d + o, V::cvtps(V::load_f(s + o)));
}
inline void bf16_to_f32(const uint16_t* s, float* d) {
  for (int64_t o = 0; o < kStep; o += V::W)
    V::store_f(d + o, V::as_f(V::shl16(V::widen(V::load_h(s + o)))));
}
inline void f32_to_bf16(const float* s, uint16_t* d) {
  for (int64_t o = 0; o < kStep; o += V::W) {
    const V::f v = V::load_f(s + o);
    const V::i u = V::as_i(v);
    const V::i bias = V::add(V::band(V::shr16(u), V::set1(1)), V::set1(0x7FFF));
    const V::i r = V::where_nan(v, V::set1(0x7FC0), V::shr16(V::add(u, bias)));
    V::store_h(d + o, V::narrow(r));
  }
}

#else  // portable: one value per step
constexpr int64_t kStep = 1;
inline void f16_to_f32(const uint16_t* s, float* d) {
  _Float16 h;
  std::memcpy(&h, s, sizeof h);
  *d = static_cast<float>(h);
}
inline void f32_to_f16(const float* s, uint16_t* d) {
  const _Float16 h = static_cast<_Float16>(*s);  // round to nearest even
  std::memcpy(d, &h, sizeof h);
}
inline void bf16_to_f32(const uint16_t* s, float* d) { *d = bf16_to_float(*s); }
inline void f32_to_bf16(const float* s, uint16_t* d) { *d = float_to_bf16(*s); }
#endif

// n values by `step` (kStep at a time; the tail through buffers of kStep).
template <class From, class To, void (*step)(const From*, To*)>
void run(const From* src, To* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) step(src + i, dst + i);
  if (i == n) return;
  From in[kStep] = {};
  To out[kStep];
  std::memcpy(in, src + i, sizeof(From) * (n - i));
  step(in, out);
  std::memcpy(dst + i, out, sizeof(To) * (n - i));
}

constexpr HalfConvert kFloat16 = {run<uint16_t, float, f16_to_f32>,
                                  run<float, uint16_t, f32_to_f16>};
constexpr HalfConvert kBFloat16 = {run<uint16_t, float, bf16_to_f32>,
                                   run<float, uint16_t, f32_to_bf16>};

}  // namespace

const HalfConvert& half_convert(HalfKind kind) {
  return kind == HalfKind::float16 ? kFloat16 : kBFloat16;
}

}  // namespace CNNKERN_ISA_NS
}  // namespace cpu
}  // namespace cnnkern
