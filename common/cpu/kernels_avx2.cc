// AVX2 + FMA kernels, for CPUs without AVX-512 (compiled with -mavx2 -mfma -mf16c; called only
// when the CPU has them). Same contracts as the AVX-512 kernels with 8-lane accumulators: per
// output the operation sequence depends on that output alone (batch invariance).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <vector>

#include "common/cpu/kernels.h"

namespace eagle::cpu::avx2 {
namespace {

inline float Half(uint16_t h) { return _cvtsh_ss(h); }

inline float Hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 0x55)));
}

// Lane mask for the first `remaining` (< 8 means partial) lanes.
inline __m256i TailMask(int remaining) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(std::min(remaining, 8)), idx);
}

// exp(x): x = n*ln2 + r, Taylor polynomial of degree 7, times 2^n (n built in the exponent).
inline __m256 Exp(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.7f)), _mm256_set1_ps(-104.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // p * 2^n as p * 2^(n - h) * 2^h with h = floor(n / 2): both factors are normal floats for
  // every n in [-150, 128], so results in the subnormal range underflow gradually (as AVX-512's
  // vscalefps does) instead of stopping at 2^-126; in the normal range both products are exact,
  // the same bits as one multiply by 2^n.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i h = _mm256_srai_epi32(ni, 1);
  auto pow2 = [](__m256i k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
  };
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2(_mm256_sub_epi32(ni, h))), pow2(h));
}

// Dequantizes block b of a row into 32 floats (4 vectors) exactly as the scalar reference.
template <DType T>
inline void LoadBlock(const uint8_t* row, int64_t b, __m256 w[4]) {
  if constexpr (T == DType::kF32) {
    const float* p = reinterpret_cast<const float*>(row) + b * 32;
    for (int i = 0; i < 4; ++i) w[i] = _mm256_loadu_ps(p + 8 * i);
  } else if constexpr (T == DType::kBF16) {  // the high half of an f32: exact
    const __m128i* p = reinterpret_cast<const __m128i*>(row) + b * 4;
    for (int i = 0; i < 4; ++i) {
      const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(p + i));
      w[i] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
  } else if constexpr (T == DType::kF16) {  // F16C widening: exact
    const __m128i* p = reinterpret_cast<const __m128i*>(row) + b * 4;
    for (int i = 0; i < 4; ++i) w[i] = _mm256_cvtph_ps(_mm_loadu_si128(p + i));
  } else if constexpr (T == DType::kQ8_0) {
    const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
    const __m256 d = _mm256_set1_ps(Half(blk->d));
    for (int i = 0; i < 4; ++i) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk->qs + 8 * i));
      w[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
    }
  } else {  // Q4_0, Q4_1: low nibbles = columns 0..15, high = 16..31
    const uint8_t* qs;
    __m256 d, m;
    if constexpr (T == DType::kQ4_0) {
      const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
      qs = blk->qs;
      d = _mm256_set1_ps(Half(blk->d));
      m = _mm256_setzero_ps();
    } else {
      const BlockQ4_1* blk = reinterpret_cast<const BlockQ4_1*>(row) + b;
      qs = blk->qs;
      d = _mm256_set1_ps(Half(blk->d));
      m = _mm256_set1_ps(Half(blk->m));
    }
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int i = 0; i < 4; ++i) {
      __m256i v = _mm256_cvtepu8_epi32(parts[i]);
      if constexpr (T == DType::kQ4_0) {
        v = _mm256_sub_epi32(v, _mm256_set1_epi32(8));
        w[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(v), d);
      } else {
        w[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), d, m);
      }
    }
  }
}

// R rows x TT tokens from f32 rows (acc = fma(w[k..k+8], x[k..k+8], acc) for k = 0, 8, ...).
template <int R, int TT>
inline void PanelTile(const float* const* w, const float* x, int64_t k_len, float* const* y) {
  __m256 acc[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t k = 0; k < k_len; k += 8) {
    __m256 xv[TT];
    for (int t = 0; t < TT; ++t) xv[t] = _mm256_loadu_ps(x + t * k_len + k);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_loadu_ps(w[r] + k);
      for (int t = 0; t < TT; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) y[t][r] = Hsum(acc[r][t]);
}

template <int R>
void PanelRows(const float* const* w, const float* x, int64_t num_tokens, int64_t k_len, float* y,
               int64_t y_stride) {
  for (int64_t t0 = 0; t0 < num_tokens; t0 += 3) {
    const int tt = static_cast<int>(std::min<int64_t>(3, num_tokens - t0));
    float* ys[3];
    for (int t = 0; t < tt; ++t) ys[t] = y + (t0 + t) * y_stride;
    const float* xt = x + t0 * k_len;
    switch (tt) {
      case 1:
        PanelTile<R, 1>(w, xt, k_len, ys);
        break;
      case 2:
        PanelTile<R, 2>(w, xt, k_len, ys);
        break;
      default:
        PanelTile<R, 3>(w, xt, k_len, ys);
        break;
    }
  }
}

// One token, R rows dequantized in registers straight from their blocks: per output the same
// sequence as PanelTile's (acc = fma(w[k..k+8], x[k..k+8], acc) for k = 0, 8, ...), without
// writing the expanded rows out and reading them back.
template <DType T, int R>
inline void FusedTile(const uint8_t* const* rows, const float* x, int64_t k_len, float* y) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < k_len / 32; ++b) {
    __m256 xv[4];
    for (int i = 0; i < 4; ++i) xv[i] = _mm256_loadu_ps(x + b * 32 + 8 * i);
    for (int r = 0; r < R; ++r) {
      __m256 wv[4];
      LoadBlock<T>(rows[r], b, wv);
      for (int i = 0; i < 4; ++i) acc[r] = _mm256_fmadd_ps(wv[i], xv[i], acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = Hsum(acc[r]);
}

// One token runs FusedTile on the stored blocks; more tokens go through f32 rows expanded by
// LoadBlock (or the scalar dequantizer for other types). Both apply the same weights in the same
// FMA sequence, so one token alone and one among many get identical results.
template <DType T>
void MatMulT(const Matrix& w, const float* x, int64_t num_tokens, float* y, bool native,
             ThreadPool* pool) {
  constexpr int kRows = 4;
  const int64_t k_len = w.cols;
  const int64_t num_tiles = (w.rows + kRows - 1) / kRows;
  ParallelFor(pool, num_tiles, GrainFor(pool, num_tiles), [&](int64_t tile0, int64_t tile1) {
    thread_local std::vector<float> buf;
    buf.resize(kRows * k_len);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t n0 = tile * kRows;
      const int nr = static_cast<int>(std::min<int64_t>(kRows, w.rows - n0));
      if (tile + 2 < num_tiles) {
        const uint8_t* ahead = w.row(n0 + 2 * kRows);
        for (int64_t off = 0; off < kRows * w.row_bytes; off += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(ahead + off), _MM_HINT_T0);
        }
      }
      if (native && num_tokens == 1) {
        const uint8_t* rows[kRows];
        for (int r = 0; r < nr; ++r) rows[r] = w.row(n0 + r);
        if (nr == kRows) {
          FusedTile<T, kRows>(rows, x, k_len, y + n0);
        } else {
          for (int r = 0; r < nr; ++r) FusedTile<T, 1>(rows + r, x, k_len, y + n0 + r);
        }
        continue;
      }
      const float* rows[kRows];
      for (int r = 0; r < nr; ++r) {
        float* dst = buf.data() + r * k_len;
        if (native) {
          for (int64_t b = 0; b < k_len / 32; ++b) {
            __m256 wv[4];
            LoadBlock<T>(w.row(n0 + r), b, wv);
            for (int i = 0; i < 4; ++i) _mm256_storeu_ps(dst + b * 32 + 8 * i, wv[i]);
          }
        } else {
          DequantizeRowScalar(w.dtype, w.row(n0 + r), dst, k_len);
        }
        rows[r] = dst;
      }
      if (nr == kRows) {
        PanelRows<kRows>(rows, x, num_tokens, k_len, y + n0, w.rows);
      } else {
        for (int r = 0; r < nr; ++r)
          PanelRows<1>(rows + r, x, num_tokens, k_len, y + n0 + r, w.rows);
      }
    }
  });
}

}  // namespace

bool Supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

void MatMul(const Matrix& w, const float* x, int64_t num_tokens, float* y, ThreadPool* pool) {
  switch (w.dtype) {
    case DType::kF32:
      return MatMulT<DType::kF32>(w, x, num_tokens, y, true, pool);
    case DType::kQ4_0:
      return MatMulT<DType::kQ4_0>(w, x, num_tokens, y, true, pool);
    case DType::kQ4_1:
      return MatMulT<DType::kQ4_1>(w, x, num_tokens, y, true, pool);
    case DType::kQ8_0:
      return MatMulT<DType::kQ8_0>(w, x, num_tokens, y, true, pool);
    case DType::kBF16:
      return MatMulT<DType::kBF16>(w, x, num_tokens, y, true, pool);
    case DType::kF16:
      return MatMulT<DType::kF16>(w, x, num_tokens, y, true, pool);
    default:
      return MatMulT<DType::kF32>(w, x, num_tokens, y, false, pool);
  }
}

void RmsNorm(const float* x, const float* weight, float eps, int n, float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    const __m256 v = _mm256_maskload_ps(x + i, TailMask(n - i));
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  const float inv = 1.0f / std::sqrt(Hsum(acc) / n + eps);
  const __m256 vinv = _mm256_set1_ps(inv);
  for (int i = 0; i < n; i += 8) {
    const __m256i m = TailMask(n - i);
    const __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), vinv);
    _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(v, _mm256_maskload_ps(weight + i, m)));
  }
}

void SwiGlu(const float* gate, const float* up, int n, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int i = 0; i < n; i += 8) {
    const __m256i m = TailMask(n - i);
    const __m256 g = _mm256_maskload_ps(gate + i, m);
    const __m256 s =
        _mm256_div_ps(g, _mm256_add_ps(one, Exp(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(s, _mm256_maskload_ps(up + i, m)));
  }
}

float Dot(const float* a, const float* b, int n) {
  __m256 acc = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    const __m256i m = TailMask(n - i);
    acc = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), acc);
  }
  return Hsum(acc);
}

void Axpy(float a, const float* x, float* y, int n) {
  const __m256 va = _mm256_set1_ps(a);
  for (int i = 0; i < n; i += 8) {
    const __m256i m = TailMask(n - i);
    _mm256_maskstore_ps(
        y + i, m, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
  }
}

int32_t Argmax(const float* x, int n) {
  if (n < 16 || std::isnan(x[0])) return scalar::Argmax(x, n);
  // As avx512::Argmax: the largest value (MAXPS keeps its second operand over a NaN first), then
  // its first index.
  __m256 acc = _mm256_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(_mm256_loadu_ps(x + i), acc);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float top = lanes[0];
  for (int l = 1; l < 8; ++l) top = lanes[l] > top ? lanes[l] : top;
  for (; i < n; ++i) {
    if (x[i] > top) top = x[i];
  }
  const __m256 t = _mm256_set1_ps(top);
  for (i = 0; i + 8 <= n; i += 8) {
    const int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), t, _CMP_EQ_OQ));
    if (m != 0) return i + __builtin_ctz(static_cast<unsigned>(m));
  }
  for (; i < n; ++i) {
    if (x[i] == top) return i;
  }
  return 0;
}

float ExpShiftSum(float* x, int n, float max) {
  const __m256 vmax = _mm256_set1_ps(max);
  __m256 acc = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    const __m256i m = TailMask(n - i);
    const __m256 e = Exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vmax));
    _mm256_maskstore_ps(x + i, m, e);
    acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
  }
  return Hsum(acc);
}

namespace {

// Scores of G query heads over the contiguous slots [0, n_prefix): per score one fma chain over
// d (acc = fma(q[d], k[d][s], acc)), B vectors of 8 slots at a time so that G * B independent
// chains are in flight and each key vector is loaded once for the G heads (one vector's chain
// alone waits on fma latency). Vectors past the end have an empty mask: they load and store
// nothing.
template <int G>
void PrefixScores(const float* q, const float* kt, int64_t kt_stride, int head_dim,
                  int64_t n_prefix, int64_t n, float scale, float* scores) {
  constexpr int B = 12 / G;
  for (int64_t s0 = 0; s0 < n_prefix; s0 += 8 * B) {
    __m256i m[B];
    for (int b = 0; b < B; ++b) {
      m[b] = TailMask(static_cast<int>(std::clamp<int64_t>(n_prefix - s0 - 8 * b, 0, 8)));
    }
    __m256 acc[G][B];
    for (int g = 0; g < G; ++g)
      for (int b = 0; b < B; ++b) acc[g][b] = _mm256_setzero_ps();
    for (int d = 0; d < head_dim; ++d) {
      const float* krow = kt + d * kt_stride + s0;
      for (int b = 0; b < B; ++b) {
        const __m256 kv = _mm256_maskload_ps(krow + 8 * b, m[b]);
        for (int g = 0; g < G; ++g) {
          acc[g][b] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + g * head_dim + d), kv, acc[g][b]);
        }
      }
    }
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int g = 0; g < G; ++g) {
      for (int b = 0; b < B; ++b) {
        _mm256_maskstore_ps(scores + g * n + s0 + 8 * b, m[b], _mm256_mul_ps(acc[g][b], vscale));
      }
    }
  }
}

// out[0, 8C) = sum_i p[i] * v[slot(i)][0, 8C), accumulated in registers in slot order: per
// element the same fma sequence as Axpy's (y = fma(p, x, y)).
template <int C>
void WeightedValues(const float* p, float inv, const float* v, int64_t v_stride, int64_t n_prefix,
                    const int32_t* extra, int64_t n, float* out) {
  __m256 o[C];
  for (int c = 0; c < C; ++c) o[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = i < n_prefix ? i : extra[i - n_prefix];
    const float* vs = v + slot * v_stride;
    const __m256 pv = _mm256_set1_ps(p[i] * inv);
    for (int c = 0; c < C; ++c) o[c] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vs + 8 * c), o[c]);
  }
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(out + 8 * c, o[c]);
}

}  // namespace

void AttendGroup(const float* q, int num_q, const float* kt, int64_t kt_stride, const float* v,
                 int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                 int n_extra, float scale, float* scores, float* out) {
  const int64_t n = n_prefix + n_extra;
  for (int g0 = 0; g0 < num_q; g0 += 4) {
    const float* qg = q + g0 * head_dim;
    float* sg = scores + g0 * n;
    switch (std::min(4, num_q - g0)) {
      case 1:
        PrefixScores<1>(qg, kt, kt_stride, head_dim, n_prefix, n, scale, sg);
        break;
      case 2:
        PrefixScores<2>(qg, kt, kt_stride, head_dim, n_prefix, n, scale, sg);
        break;
      case 3:
        PrefixScores<3>(qg, kt, kt_stride, head_dim, n_prefix, n, scale, sg);
        break;
      default:
        PrefixScores<4>(qg, kt, kt_stride, head_dim, n_prefix, n, scale, sg);
        break;
    }
  }
  for (int g = 0; g < num_q; ++g) {
    const float* qg = q + g * head_dim;
    float* sg = scores + g * n;
    // Listed slots one by one, with the same chain per score.
    for (int e = 0; e < n_extra; ++e) {
      float acc = 0.0f;
      for (int d = 0; d < head_dim; ++d) acc = std::fma(qg[d], kt[d * kt_stride + extra[e]], acc);
      sg[n_prefix + e] = acc * scale;
    }
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, sg[i]);
    const float inv = 1.0f / ExpShiftSum(sg, static_cast<int>(n), mx);
    float* og = out + g * head_dim;
    if (head_dim % 64 == 0) {
      for (int c0 = 0; c0 < head_dim; c0 += 64) {
        WeightedValues<8>(sg, inv, v + c0, v_stride, n_prefix, extra, n, og + c0);
      }
    } else {
      std::fill(og, og + head_dim, 0.0f);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t slot = i < n_prefix ? i : extra[i - n_prefix];
        Axpy(sg[i] * inv, v + slot * v_stride, og, head_dim);
      }
    }
  }
}

// Peak FMA throughput probe: 12 independent accumulator chains of 8 lanes, registers only (two
// FMA ports of latency 4 or 5 need at least 8-10 chains in flight).
double FmaProbeGflops(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  struct timespec s, e;
  clock_gettime(CLOCK_MONOTONIC, &s);
  for (int64_t it = 0; it < iters; ++it) {
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  clock_gettime(CLOCK_MONOTONIC, &e);
  __m256 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  const double sec = (e.tv_sec - s.tv_sec) + 1e-9 * (e.tv_nsec - s.tv_nsec);
  return static_cast<double>(iters) * 12 * 8 * 2 / sec / 1e9;
}

}  // namespace eagle::cpu::avx2
