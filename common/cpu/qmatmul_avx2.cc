// AVX2 int8 kernel (compiled with -mavx2 -mfma -mf16c; called only when the CPU has them), for
// CPUs without AVX-512 VNNI. Operation for operation the same as scalar::QMatMul: only the exact
// int32 block sums are formed differently.
//
// AVX2 has no vpdpbusd; vpmaddubsw multiplies unsigned by signed bytes and adds adjacent pairs
// into int16 with saturation, which would corrupt sums of full bytes. So every weight byte is
// used as 4-bit halves (nibble types are 4-bit already; a Q8_0 byte u = 16 * hi + lo) and the
// activation bytes are at most 128 in magnitude: a pair is at most 2 * 15 * 128 = 3840 and the
// 8 pairs summed per lane for one half of a block at most 30720 < 32767, so no int16 result ever
// saturates and the int32 block sum is exact:
//   nibbles:  isum = sum_v madd(sum_v' maddubs(u, x))
//   Q8_0:     isum = 16 * S(hi nibbles) + S(lo nibbles)
//   15 bits:  isum = 128 * S(x hi bytes) + S(x lo bytes), each S formed as above.
// The float epilogue is the scalar one: acc = fma(float(isum), d_w * d_x, acc); acc = fma(c_w,
// s_x, acc). A 16-row group is two 8-lane halves (rows 0-7 and 8-15 of the packed vectors).
#include <immintrin.h>

#include <algorithm>
#include <ctime>

#include "common/cpu/qmatmul.h"

namespace eagle::cpu::avx2 {
namespace {

constexpr int kMaxTokens = 4;

inline __m256i TailMask(int remaining) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(std::clamp(remaining, 0, 8)), idx);
}

template <bool kNibbles, bool kWide, int TT>
void GroupTile(const PackedMatrix& w, int64_t g, const QuantizedActs& x, int64_t t0, float* y) {
  // Unpacked 4-bit weights of one block, per half: nibble types [8] (v = column group), Q8_0
  // [16] (high nibbles of column group v at v, low nibbles at 8 + v).
  constexpr int kW = kNibbles ? 1 : 2;
  constexpr int kX = kWide ? 2 : 1;
  constexpr int kVecs = 8 * kW;
  const int64_t nb = w.num_blocks;
  const int64_t wbytes = w.block_bytes - 64;
  const uint8_t* blk = w.group(g);
  const bool prefetch = g + 2 < w.num_groups();
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc[TT][2];
  for (int t = 0; t < TT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, blk += w.block_bytes) {
    if (prefetch) {
      for (int64_t off = 0; off < w.block_bytes; off += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * w.group_bytes + off), _MM_HINT_T0);
      }
    }
    __m256i wu[2][kVecs];
    for (int h = 0; h < 2; ++h) {
      if constexpr (kNibbles) {
        for (int v = 0; v < 4; ++v) {
          const __m256i raw = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + 64 * v) + h);
          wu[h][v] = _mm256_and_si256(raw, low4);
          wu[h][v + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
        }
      } else {
        for (int v = 0; v < 8; ++v) {
          const __m256i raw = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + 64 * v) + h);
          wu[h][v] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
          wu[h][8 + v] = _mm256_and_si256(raw, low4);
        }
      }
    }
    const uint8_t* dc = blk + wbytes;  // d[16] then c[16], f16
    const __m256 d[2] = {
        _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dc))),
        _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dc + 16)))};
    const __m256 c[2] = {
        _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dc + 32))),
        _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dc + 48)))};
    for (int t = 0; t < TT; ++t) {
      const int64_t at = (t0 + t) * x.cols + b * 32;
      const int64_t bi = (t0 + t) * nb + b;
      // Activation byte sets: 8-bit q, or the 15-bit high and low bytes.
      const int32_t* xs[kX] = {reinterpret_cast<const int32_t*>(x.qs.data() + at)};
      if constexpr (kWide) xs[kX - 1] = reinterpret_cast<const int32_t*>(x.ql.data() + at);
      // int16 partial sums per activation set, weight nibble set (Q8_0: high, low) and half,
      // over the 8 four-column groups v (exact: at most 8 * 3840 in magnitude).
      __m256i s16[kX][kW][2];
      for (int ix = 0; ix < kX; ++ix)
        for (int iw = 0; iw < kW; ++iw) s16[ix][iw][0] = s16[ix][iw][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) {
        __m256i xb[kX];
        for (int ix = 0; ix < kX; ++ix) xb[ix] = _mm256_set1_epi32(xs[ix][v]);
        for (int iw = 0; iw < kW; ++iw) {
          for (int h = 0; h < 2; ++h) {
            const __m256i wv = wu[h][iw * 8 + v];
            for (int ix = 0; ix < kX; ++ix) {
              s16[ix][iw][h] = _mm256_add_epi16(s16[ix][iw][h], _mm256_maddubs_epi16(wv, xb[ix]));
            }
          }
        }
      }
      const __m256i ones = _mm256_set1_epi16(1);
      const __m256 xd = _mm256_set1_ps(x.d[bi]), xsum = _mm256_set1_ps(x.s[bi]);
      for (int h = 0; h < 2; ++h) {
        __m256i part[kX];
        for (int ix = 0; ix < kX; ++ix) {
          part[ix] = _mm256_madd_epi16(s16[ix][0][h], ones);
          if constexpr (kW == 2) {  // Q8_0: u = 16 * high nibble + low nibble
            part[ix] = _mm256_add_epi32(_mm256_slli_epi32(part[ix], 4),
                                        _mm256_madd_epi16(s16[ix][1][h], ones));
          }
        }
        __m256i isum = part[0];
        if constexpr (kWide) isum = _mm256_add_epi32(_mm256_slli_epi32(part[0], 7), part[1]);
        acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d[h], xd), acc[t][h]);
        acc[t][h] = _mm256_fmadd_ps(c[h], xsum, acc[t][h]);
      }
    }
  }
  const int64_t n0 = g * 16;
  const int valid = static_cast<int>(std::min<int64_t>(16, w.rows - n0));
  for (int t = 0; t < TT; ++t) {
    float* yt = y + (t0 + t) * w.rows + n0;
    _mm256_maskstore_ps(yt, TailMask(valid), acc[t][0]);
    _mm256_maskstore_ps(yt + 8, TailMask(valid - 8), acc[t][1]);
  }
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
      default:
        GroupTile<kNibbles, kWide, 4>(w, g, x, t0, y);
        break;
    }
  }
}

}  // namespace

void QuantizeActs(const float* x, int64_t tokens, int64_t cols, int bits, QuantizedActs* out,
                  ThreadPool* pool) {
  const int64_t nb = cols / 32;
  const bool wide = bits == 15;
  const int qmax = wide ? 16383 : 127;
  out->Resize(tokens, cols, bits);
  const __m256i lim = _mm256_set1_epi32(qmax), nlim = _mm256_set1_epi32(-qmax);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  ThreadPool* rows_pool = tokens >= 4 ? pool : nullptr;
  ParallelFor(rows_pool, tokens, GrainFor(rows_pool, tokens, 2), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t b = 0; b < nb; ++b) {
        const float* v = x + t * cols + b * 32;
        __m256 vv[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; ++i) {
          vv[i] = _mm256_loadu_ps(v + 8 * i);
          // MAXPS returns its second operand when either is NaN: a NaN |x| leaves m as it
          // was, as std::max(amax, |x|) in the scalar reference does.
          m = _mm256_max_ps(_mm256_andnot_ps(sign, vv[i]), m);
        }
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, m);
        float amax = 0;
        for (float l : lanes) amax = std::max(amax, l);
        const float d = amax / static_cast<float>(qmax);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        alignas(32) int32_t q[32];
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < 4; ++i) {
          // cvtps rounds to nearest even (default MXCSR), like nearbyint.
          __m256i qi = _mm256_cvtps_epi32(_mm256_mul_ps(vv[i], vid));
          qi = _mm256_max_epi32(_mm256_min_epi32(qi, lim), nlim);
          sum = _mm256_add_epi32(sum, qi);
          _mm256_store_si256(reinterpret_cast<__m256i*>(q + 8 * i), qi);
        }
        alignas(32) int32_t sums[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(sums), sum);
        int total = 0;
        for (int32_t part : sums) total += part;
        const int64_t at = t * cols + b * 32;
        for (int j = 0; j < 32; ++j) {
          if (wide) {
            out->q[at + j] = static_cast<int16_t>(q[j]);
            out->qs[at + j] = static_cast<int8_t>(q[j] >> 7);
            out->ql[at + j] = static_cast<int8_t>(q[j] & 127);
          } else {
            out->qs[at + j] = static_cast<int8_t>(q[j]);
          }
        }
        out->d[t * nb + b] = d;
        out->s[t * nb + b] = d * static_cast<float>(total);
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

}  // namespace eagle::cpu::avx2

namespace eagle::cpu::avx2 {

// Peak int8 multiply-accumulate rate of one thread as the kernel issues them: 12 independent
// chains of vpmaddubsw (32 byte products) into vpaddw.
double MaddubsProbeGmacs(int64_t iters) {
  __m256i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_epi16(static_cast<int16_t>(i));
  const __m256i b = _mm256_set1_epi8(5);
  struct timespec s, e;
  clock_gettime(CLOCK_MONOTONIC, &s);
  for (int64_t it = 0; it < iters; ++it) {
    // Each chain multiplies its own accumulator, so no two multiplies are the same expression.
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_add_epi16(acc[i], _mm256_maddubs_epi16(acc[i], b));
  }
  clock_gettime(CLOCK_MONOTONIC, &e);
  __m256i x = acc[0];
  for (int i = 1; i < 12; ++i) x = _mm256_add_epi16(x, acc[i]);
  alignas(32) int16_t lanes[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), x);
  volatile int sink = lanes[0];
  (void)sink;
  const double sec = (e.tv_sec - s.tv_sec) + 1e-9 * (e.tv_nsec - s.tv_nsec);
  return static_cast<double>(iters) * 12 * 32 / sec / 1e9;
}

}  // namespace eagle::cpu::avx2
