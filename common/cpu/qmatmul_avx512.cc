// AVX-512 VNNI int8 kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mf16c;
// called only when the CPU has them). Operation for operation the same as scalar::QMatMul.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <ctime>

#include "common/cpu/qmatmul.h"

namespace eagle::cpu::avx512 {
namespace {

constexpr int kMaxTokens = 16;

template <bool kNibbles, bool kWide, int TT>
void GroupTile(const PackedMatrix& w, int64_t g, const QuantizedActs& x, int64_t t0, float* y) {
  const int64_t nb = w.num_blocks;
  const int64_t wbytes = w.block_bytes - 64;
  const uint8_t* blk = w.group(g);
  const bool prefetch = g + 2 < w.num_groups();
  __m512 acc[TT];
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b, blk += w.block_bytes) {
    if (prefetch) {
      for (int64_t off = 0; off < w.block_bytes; off += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * w.group_bytes + off), _MM_HINT_T0);
      }
    }
    __m512i wv[8];
    if constexpr (kNibbles) {
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const __m512i raw = _mm512_load_si512(blk + 64 * v);
        wv[v] = _mm512_and_si512(raw, low4);
        wv[v + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
      }
    } else {
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) wv[v] = _mm512_load_si512(blk + 64 * v);
    }
    const __m512i dc = _mm512_load_si512(blk + wbytes);
    const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(dc));
    const __m512 c = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dc, 1));
#pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) {
      const int64_t at = (t0 + t) * x.cols + b * 32;
      const int32_t* xq = reinterpret_cast<const int32_t*>(x.qs.data() + at);
      __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) isum = _mm512_dpbusd_epi32(isum, wv[v], _mm512_set1_epi32(xq[v]));
      if constexpr (kWide) {
        const int32_t* xl = reinterpret_cast<const int32_t*>(x.ql.data() + at);
        __m512i lo = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int v = 0; v < 8; ++v) lo = _mm512_dpbusd_epi32(lo, wv[v], _mm512_set1_epi32(xl[v]));
        isum = _mm512_add_epi32(_mm512_slli_epi32(isum, 7), lo);
      }
      const int64_t bi = (t0 + t) * nb + b;
      const __m512 scale = _mm512_mul_ps(d, _mm512_set1_ps(x.d[bi]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc[t]);
      acc[t] = _mm512_fmadd_ps(c, _mm512_set1_ps(x.s[bi]), acc[t]);
    }
  }
  const int64_t n0 = g * 16;
  const int valid = static_cast<int>(std::min<int64_t>(16, w.rows - n0));
  const __mmask16 mask = valid >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << valid) - 1);
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * w.rows + n0, mask, acc[t]);
}

template <bool kNibbles, bool kWide>
void Group(const PackedMatrix& w, int64_t g, const QuantizedActs& x, float* y) {
  for (int64_t t0 = 0; t0 < x.tokens; t0 += kMaxTokens) {
    switch (std::min<int64_t>(kMaxTokens, x.tokens - t0)) {
      case 1:
        GroupTile<kNibbles, kWide, 1>(w, g, x, t0, y);
        break;
      case 2:
        GroupTile<kNibbles, kWide, 2>(w, g, x, t0, y);
        break;
      case 3:
        GroupTile<kNibbles, kWide, 3>(w, g, x, t0, y);
        break;
      case 4:
        GroupTile<kNibbles, kWide, 4>(w, g, x, t0, y);
        break;
      case 5:
        GroupTile<kNibbles, kWide, 5>(w, g, x, t0, y);
        break;
      case 6:
        GroupTile<kNibbles, kWide, 6>(w, g, x, t0, y);
        break;
      case 7:
        GroupTile<kNibbles, kWide, 7>(w, g, x, t0, y);
        break;
      case 8:
        GroupTile<kNibbles, kWide, 8>(w, g, x, t0, y);
        break;
      case 9:
        GroupTile<kNibbles, kWide, 9>(w, g, x, t0, y);
        break;
      case 10:
        GroupTile<kNibbles, kWide, 10>(w, g, x, t0, y);
        break;
      case 11:
        GroupTile<kNibbles, kWide, 11>(w, g, x, t0, y);
        break;
      case 12:
        GroupTile<kNibbles, kWide, 12>(w, g, x, t0, y);
        break;
      case 13:
        GroupTile<kNibbles, kWide, 13>(w, g, x, t0, y);
        break;
      case 14:
        GroupTile<kNibbles, kWide, 14>(w, g, x, t0, y);
        break;
      case 15:
        GroupTile<kNibbles, kWide, 15>(w, g, x, t0, y);
        break;
      default:
        GroupTile<kNibbles, kWide, 16>(w, g, x, t0, y);
        break;
    }
  }
}

}  // namespace

bool VnniSupported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c");
}

void QuantizeActs(const float* x, int64_t tokens, int64_t cols, int bits, QuantizedActs* out,
                  ThreadPool* pool) {
  const int64_t nb = cols / 32;
  const bool wide = bits == 15;
  const int qmax = wide ? 16383 : 127;
  out->Resize(tokens, cols, bits);
  const __m512i lim = _mm512_set1_epi32(qmax), nlim = _mm512_set1_epi32(-qmax);
  const __m512i low7 = _mm512_set1_epi32(127);
  // Rows are cheap: spread them only when there are enough to pay for a hand-off.
  ThreadPool* rows_pool = tokens >= 4 ? pool : nullptr;
  ParallelFor(rows_pool, tokens, GrainFor(rows_pool, tokens, 2), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t b = 0; b < nb; ++b) {
        const float* v = x + t * cols + b * 32;
        const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
        // max(|x|, m) keeps m where |x| is NaN (MAXPS returns its second operand), as
        // std::max(amax, |x|) in the scalar reference does.
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(
            _mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps())));
        const float d = amax / static_cast<float>(qmax);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        // cvtps rounds to nearest even (default MXCSR), like nearbyint.
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
        q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        const int64_t at = t * cols + b * 32;
        if (wide) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out->q.data() + at),
                              _mm512_cvtepi32_epi16(q0));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out->q.data() + at + 16),
                              _mm512_cvtepi32_epi16(q1));
          const __m512i h0 = _mm512_srai_epi32(q0, 7), h1 = _mm512_srai_epi32(q1, 7);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out->qs.data() + at),
                           _mm512_cvtepi32_epi8(h0));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out->qs.data() + at + 16),
                           _mm512_cvtepi32_epi8(h1));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out->ql.data() + at),
                           _mm512_cvtepi32_epi8(_mm512_and_si512(q0, low7)));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out->ql.data() + at + 16),
                           _mm512_cvtepi32_epi8(_mm512_and_si512(q1, low7)));
        } else {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out->qs.data() + at),
                           _mm512_cvtepi32_epi8(q0));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out->qs.data() + at + 16),
                           _mm512_cvtepi32_epi8(q1));
        }
        out->d[t * nb + b] = d;
        out->s[t * nb + b] = d * static_cast<float>(sum);
      }
    }
  });
}

void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y, ThreadPool* pool) {
  const int64_t groups = w.num_groups();
  ParallelFor(pool, groups, GrainFor(pool, groups), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      if (w.nibbles) {
        x.bits == 15 ? Group<true, true>(w, g, x, y) : Group<true, false>(w, g, x, y);
      } else {
        x.bits == 15 ? Group<false, true>(w, g, x, y) : Group<false, false>(w, g, x, y);
      }
    }
  });
}

}  // namespace eagle::cpu::avx512

namespace eagle::cpu::avx512 {

// Peak int8 multiply-accumulate rate of one thread: 12 independent vpdpbusd chains.
double DpbusdProbeGmacs(int64_t iters) {
  __m512i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i);
  __m512i a = _mm512_set1_epi8(3);
  const __m512i b = _mm512_set1_epi8(5);
  struct timespec s, e;
  clock_gettime(CLOCK_MONOTONIC, &s);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    __asm__ volatile("" : "+v"(a));
  }
  clock_gettime(CLOCK_MONOTONIC, &e);
  __m512i x = acc[0];
  for (int i = 1; i < 12; ++i) x = _mm512_add_epi32(x, acc[i]);
  volatile int sink = _mm512_reduce_add_epi32(x);
  (void)sink;
  const double sec = (e.tv_sec - s.tv_sec) + 1e-9 * (e.tv_nsec - s.tv_nsec);
  return static_cast<double>(iters) * 12 * 64 / sec / 1e9;
}

}  // namespace eagle::cpu::avx512
