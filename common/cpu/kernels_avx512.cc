// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mfma -mf16c; called only when
// the CPU reports those features).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <vector>

#include "common/cpu/kernels.h"

namespace eagle::cpu::avx512 {
namespace {

inline float Half(uint16_t h) { return _cvtsh_ss(h); }

// exp(x) to ~1 ulp: x = n*ln2 + r, |r| <= ln2/2, Taylor polynomial of degree 7, times 2^n.
inline __m512 Exp(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 TailMask(int remaining) {
  return remaining >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << remaining) - 1);
}

// Loaders: produce the 32 dequantized weights of block `b` of a row as two vectors.
struct LoadF32 {
  static inline void Load(const uint8_t* row, int64_t b, __m512& w0, __m512& w1) {
    const float* p = reinterpret_cast<const float*>(row) + b * 32;
    w0 = _mm512_loadu_ps(p);
    w1 = _mm512_loadu_ps(p + 16);
  }
};
struct LoadQ4_0 {
  static inline void Load(const uint8_t* row, int64_t b, __m512& w0, __m512& w1) {
    const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
    const __m512 d = _mm512_set1_ps(Half(blk->d));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m512i eight = _mm512_set1_epi32(8);
    const __m512i lo = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(q, mask)), eight);
    const __m512i hi =
        _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), mask)), eight);
    w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d);
    w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d);
  }
};
struct LoadQ4_1 {
  static inline void Load(const uint8_t* row, int64_t b, __m512& w0, __m512& w1) {
    const BlockQ4_1* blk = reinterpret_cast<const BlockQ4_1*>(row) + b;
    const __m512 d = _mm512_set1_ps(Half(blk->d));
    const __m512 m = _mm512_set1_ps(Half(blk->m));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m512i lo = _mm512_cvtepu8_epi32(_mm_and_si128(q, mask));
    const __m512i hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), mask));
    w0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), d, m);
    w1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), d, m);
  }
};
struct LoadQ8_0 {
  static inline void Load(const uint8_t* row, int64_t b, __m512& w0, __m512& w1) {
    const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
    const __m512 d = _mm512_set1_ps(Half(blk->d));
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs + 16));
    w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d);
    w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d);
  }
};

// 16-bit floats: exact widening to f32 (bf16 is the high half of an f32; f16 by F16C).
struct LoadBF16 {
  static inline __m512 Widen(const uint16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static inline void Load(const uint8_t* row, int64_t b, __m512& w0, __m512& w1) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + b * 32;
    w0 = Widen(p);
    w1 = Widen(p + 16);
  }
};
struct LoadF16 {
  static inline void Load(const uint8_t* row, int64_t b, __m512& w0, __m512& w1) {
    const __m256i* p = reinterpret_cast<const __m256i*>(row) + b * 2;
    w0 = _mm512_cvtph_ps(_mm256_loadu_si256(p));
    w1 = _mm512_cvtph_ps(_mm256_loadu_si256(p + 1));
  }
};

// Decode tile (one token): R weight rows dequantized in registers straight from their blocks.
template <class L, int R>
inline void FusedTile(const uint8_t* const* rows, const float* x, int64_t k_len, float* y) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const int64_t nb = k_len / 32;
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 x0 = _mm512_loadu_ps(x + b * 32), x1 = _mm512_loadu_ps(x + b * 32 + 16);
    for (int r = 0; r < R; ++r) {
      __m512 w0, w1;
      L::Load(rows[r], b, w0, w1);
      acc[r] = _mm512_fmadd_ps(w0, x0, acc[r]);
      acc[r] = _mm512_fmadd_ps(w1, x1, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = _mm512_reduce_add_ps(acc[r]);
}

// Many-token tile: R f32 weight rows x TT tokens, register-blocked so each weight vector and
// each activation vector is loaded once per 16-column step. Per (row, token) the FMA sequence is
// the same as FusedTile's: acc = fma(w[k..k+16], x[k..k+16], acc) for k = 0, 16, 32, ...
template <int R, int TT>
inline void PanelTile(const float* const* w, const float* x, int64_t k_len, float* const* y) {
  __m512 acc[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < k_len; k += 16) {
    __m512 xv[TT];
    for (int t = 0; t < TT; ++t) xv[t] = _mm512_loadu_ps(x + t * k_len + k);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_loadu_ps(w[r] + k);
      for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) y[t][r] = _mm512_reduce_add_ps(acc[r][t]);
}

constexpr int kRows = 4;
constexpr int kTokens = 4;

template <int R>
void PanelRows(const float* const* w, const float* x, int64_t num_tokens, int64_t k_len, float* y,
               int64_t y_stride) {
  for (int64_t t0 = 0; t0 < num_tokens; t0 += kTokens) {
    const int tt = static_cast<int>(std::min<int64_t>(kTokens, num_tokens - t0));
    float* ys[kTokens];
    for (int t = 0; t < tt; ++t) ys[t] = y + (t0 + t) * y_stride;
    const float* xt = x + t0 * k_len;
    switch (tt) {
      case 1:
        PanelTile<R, 1>(w, xt, k_len, ys);
        break;
      case 2:
        PanelTile<R, 2>(w, xt, k_len, ys);
        break;
      case 3:
        PanelTile<R, 3>(w, xt, k_len, ys);
        break;
      default:
        PanelTile<R, 4>(w, xt, k_len, ys);
        break;
    }
  }
}

// Expands one row to f32 with the same loader FusedTile uses (so both paths see identical
// weights).
template <class L>
void ExpandRow(const uint8_t* row, int64_t k_len, float* out) {
  for (int64_t b = 0; b < k_len / 32; ++b) {
    __m512 w0, w1;
    L::Load(row, b, w0, w1);
    _mm512_storeu_ps(out + b * 32, w0);
    _mm512_storeu_ps(out + b * 32 + 16, w1);
  }
}

// `fused`: L can read the stored blocks directly (one-token path in registers); otherwise rows
// are expanded to f32 by the scalar dequantizer first.
template <class L>
void MatMulT(const Matrix& w, const float* x, int64_t num_tokens, float* y, bool fused,
             ThreadPool* pool) {
  const int64_t k_len = w.cols;
  const int64_t num_tiles = (w.rows + kRows - 1) / kRows;
  const bool is_f32 = w.dtype == DType::kF32;
  const bool use_fused = fused && num_tokens == 1;
  ParallelFor(pool, num_tiles, GrainFor(pool, num_tiles), [&](int64_t tile0, int64_t tile1) {
    thread_local std::vector<float> buf;
    if (!use_fused && !is_f32) buf.resize(kRows * k_len);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t n0 = tile * kRows;
      const int nr = static_cast<int>(std::min<int64_t>(kRows, w.rows - n0));
      if (use_fused) {
        // Prefetch the tile after next: the rows of a tile are contiguous.
        if (tile + 2 < num_tiles) {
          const uint8_t* ahead = w.row(n0 + 2 * kRows);
          for (int64_t off = 0; off < kRows * w.row_bytes; off += 64)
            _mm_prefetch(reinterpret_cast<const char*>(ahead + off), _MM_HINT_T0);
        }
        const uint8_t* rows[kRows];
        for (int r = 0; r < nr; ++r) rows[r] = w.row(n0 + r);
        if (nr == kRows) {
          FusedTile<L, kRows>(rows, x, k_len, y + n0);
        } else {
          for (int r = 0; r < nr; ++r) FusedTile<L, 1>(rows + r, x, k_len, y + n0 + r);
        }
        continue;
      }
      const float* rows[kRows];
      for (int r = 0; r < nr; ++r) {
        if (is_f32) {
          rows[r] = reinterpret_cast<const float*>(w.row(n0 + r));
        } else {
          float* dst = buf.data() + r * k_len;
          if (fused) {
            ExpandRow<L>(w.row(n0 + r), k_len, dst);
          } else {
            DequantizeRowScalar(w.dtype, w.row(n0 + r), dst, k_len);
          }
          rows[r] = dst;
        }
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
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

void MatMul(const Matrix& w, const float* x, int64_t num_tokens, float* y, ThreadPool* pool) {
  switch (w.dtype) {
    case DType::kF32:
      return MatMulT<LoadF32>(w, x, num_tokens, y, true, pool);
    case DType::kQ4_0:
      return MatMulT<LoadQ4_0>(w, x, num_tokens, y, true, pool);
    case DType::kQ4_1:
      return MatMulT<LoadQ4_1>(w, x, num_tokens, y, true, pool);
    case DType::kQ8_0:
      return MatMulT<LoadQ8_0>(w, x, num_tokens, y, true, pool);
    case DType::kBF16:
      return MatMulT<LoadBF16>(w, x, num_tokens, y, true, pool);
    case DType::kF16:
      return MatMulT<LoadF16>(w, x, num_tokens, y, true, pool);
    default:
      return MatMulT<LoadF32>(w, x, num_tokens, y, false, pool);
  }
}

void RmsNorm(const float* x, const float* weight, float eps, int n, float* out) {
  __m512 acc = _mm512_setzero_ps();
  for (int i = 0; i < n; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(TailMask(n - i), x + i);
    acc = _mm512_fmadd_ps(v, v, acc);
  }
  const float ss = _mm512_reduce_add_ps(acc);
  const float inv = 1.0f / std::sqrt(ss / n + eps);
  const __m512 vinv = _mm512_set1_ps(inv);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vinv);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, weight + i)));
  }
}

void SwiGlu(const float* gate, const float* up, int n, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 s =
        _mm512_div_ps(g, _mm512_add_ps(one, Exp(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

float Dot(const float* a, const float* b, int n) {
  __m512 acc = _mm512_setzero_ps();
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

void Axpy(float a, const float* x, float* y, int n) {
  const __m512 va = _mm512_set1_ps(a);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(
        y + i, m,
        _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

namespace {

// Query heads [0, G) of one group: scores, softmax and weighted values. C = head_dim / 16 when
// that is 4 or 8 (values kept in registers), else 0 (any head_dim).
template <int G, int C>
void AttendGroupT(const float* q, const float* kt, int64_t kt_stride, const float* v,
                  int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                  int n_extra, float scale, float* scores, float* out) {
  const int64_t n = n_prefix + n_extra;
  // Scores of the contiguous slots, one fma chain over d per lane, 64 slots (4 vectors) at a
  // time so that 4 * G chains are in flight (a single vector's G chains wait on fma latency).
  // Vectors past the end have an empty mask: they load nothing and store nothing.
  for (int64_t s0 = 0; s0 < n_prefix; s0 += 64) {
    __mmask16 m[4];
    for (int b = 0; b < 4; ++b) {
      m[b] = TailMask(static_cast<int>(std::clamp<int64_t>(n_prefix - s0 - 16 * b, 0, 16)));
    }
    __m512 acc[4][G];
    for (int b = 0; b < 4; ++b)
      for (int g = 0; g < G; ++g) acc[b][g] = _mm512_setzero_ps();
    for (int d = 0; d < head_dim; ++d) {
      const float* krow = kt + d * kt_stride + s0;
      for (int b = 0; b < 4; ++b) {
        const __m512 kv = _mm512_maskz_loadu_ps(m[b], krow + 16 * b);
        for (int g = 0; g < G; ++g) {
          acc[b][g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * head_dim + d]), kv, acc[b][g]);
        }
      }
    }
    for (int b = 0; b < 4; ++b) {
      for (int g = 0; g < G; ++g) {
        _mm512_mask_storeu_ps(scores + g * n + s0 + 16 * b, m[b],
                              _mm512_mul_ps(acc[b][g], _mm512_set1_ps(scale)));
      }
    }
  }
  // The listed slots, with the same chain per score. Listed slots are usually a tree's nodes,
  // close together: compute the whole window they span with vertical FMAs and pick from it.
  if (n_extra > 0 && extra[n_extra - 1] - extra[0] < 64) {
    const int64_t lo = extra[0];
    const int width = static_cast<int>(extra[n_extra - 1] - lo + 1);
    alignas(64) float win[G][64];
    for (int w0 = 0; w0 < width; w0 += 16) {
      const __mmask16 m = TailMask(std::min(16, width - w0));
      __m512 acc[G];
      for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
      for (int d = 0; d < head_dim; ++d) {
        const __m512 kv = _mm512_maskz_loadu_ps(m, kt + d * kt_stride + lo + w0);
        for (int g = 0; g < G; ++g) {
          acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * head_dim + d]), kv, acc[g]);
        }
      }
      for (int g = 0; g < G; ++g) {
        _mm512_store_ps(win[g] + w0, _mm512_mul_ps(acc[g], _mm512_set1_ps(scale)));
      }
    }
    for (int e = 0; e < n_extra; ++e)
      for (int g = 0; g < G; ++g) scores[g * n + n_prefix + e] = win[g][extra[e] - lo];
  } else {
    for (int e0 = 0; e0 < n_extra; e0 += 16) {
      const int ne = std::min(16, n_extra - e0);
      float acc[16][G] = {};
      for (int d = 0; d < head_dim; ++d) {
        const float* row = kt + d * kt_stride;
        for (int e = 0; e < ne; ++e) {
          const float kv = row[extra[e0 + e]];
          for (int g = 0; g < G; ++g) acc[e][g] = std::fma(q[g * head_dim + d], kv, acc[e][g]);
        }
      }
      for (int e = 0; e < ne; ++e)
        for (int g = 0; g < G; ++g) scores[g * n + n_prefix + e0 + e] = acc[e][g] * scale;
    }
  }
  float inv[G];
  for (int g = 0; g < G; ++g) {
    float* sg = scores + g * n;
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, sg[i]);
    inv[g] = 1.0f / ExpShiftSum(sg, static_cast<int>(n), mx);
  }
  // Weighted values, slot by slot.
  if constexpr (C > 0) {
    __m512 o[G][C];
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < C; ++c) o[g][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t slot = i < n_prefix ? i : extra[i - n_prefix];
      const float* vs = v + slot * v_stride;
      __m512 p[G];
      for (int g = 0; g < G; ++g) p[g] = _mm512_set1_ps(scores[g * n + i] * inv[g]);
      for (int c = 0; c < C; ++c) {
        const __m512 vv = _mm512_loadu_ps(vs + c * 16);
        for (int g = 0; g < G; ++g) o[g][c] = _mm512_fmadd_ps(p[g], vv, o[g][c]);
      }
    }
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + g * head_dim + c * 16, o[g][c]);
  } else {
    for (int g = 0; g < G; ++g) {
      float* og = out + g * head_dim;
      std::fill(og, og + head_dim, 0.0f);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t slot = i < n_prefix ? i : extra[i - n_prefix];
        Axpy(scores[g * n + i] * inv[g], v + slot * v_stride, og, head_dim);
      }
    }
  }
}

template <int G>
void AttendGroupC(const float* q, const float* kt, int64_t kt_stride, const float* v,
                  int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                  int n_extra, float scale, float* scores, float* out) {
  switch (head_dim) {
    case 64:
      return AttendGroupT<G, 4>(q, kt, kt_stride, v, v_stride, head_dim, n_prefix, extra, n_extra,
                                scale, scores, out);
    case 128:
      return AttendGroupT<G, 8>(q, kt, kt_stride, v, v_stride, head_dim, n_prefix, extra, n_extra,
                                scale, scores, out);
    default:
      return AttendGroupT<G, 0>(q, kt, kt_stride, v, v_stride, head_dim, n_prefix, extra, n_extra,
                                scale, scores, out);
  }
}

}  // namespace

void AttendGroup(const float* q, int num_q, const float* kt, int64_t kt_stride, const float* v,
                 int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                 int n_extra, float scale, float* scores, float* out) {
  const int64_t n = n_prefix + n_extra;
  for (int g0 = 0; g0 < num_q; g0 += 4) {
    const float* qg = q + g0 * head_dim;
    float* sg = scores + g0 * n;
    float* og = out + g0 * head_dim;
    switch (std::min(4, num_q - g0)) {
      case 1:
        AttendGroupC<1>(qg, kt, kt_stride, v, v_stride, head_dim, n_prefix, extra, n_extra, scale,
                        sg, og);
        break;
      case 2:
        AttendGroupC<2>(qg, kt, kt_stride, v, v_stride, head_dim, n_prefix, extra, n_extra, scale,
                        sg, og);
        break;
      case 3:
        AttendGroupC<3>(qg, kt, kt_stride, v, v_stride, head_dim, n_prefix, extra, n_extra, scale,
                        sg, og);
        break;
      default:
        AttendGroupC<4>(qg, kt, kt_stride, v, v_stride, head_dim, n_prefix, extra, n_extra, scale,
                        sg, og);
        break;
    }
  }
}

int32_t Argmax(const float* x, int n) {
  if (n < 32 || std::isnan(x[0])) return scalar::Argmax(x, n);
  // Pass 1: the largest value; MAXPS returns its second operand when the first is NaN, so NaNs
  // never enter the accumulator (which starts at -inf, not NaN).
  __m512 acc = _mm512_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_max_ps(_mm512_loadu_ps(x + i), acc);
  float top = _mm512_reduce_max_ps(acc);
  for (; i < n; ++i) {
    if (x[i] > top) top = x[i];
  }
  // Pass 2: its first index (== holds for -0 and +0 alike, which > never separates either).
  const __m512 t = _mm512_set1_ps(top);
  for (i = 0; i + 16 <= n; i += 16) {
    const __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), t, _CMP_EQ_OQ);
    if (m != 0) return i + __builtin_ctz(m);
  }
  for (; i < n; ++i) {
    if (x[i] == top) return i;
  }
  return 0;
}

float ExpShiftSum(float* x, int n, float max) {
  const __m512 vmax = _mm512_set1_ps(max);
  __m512 acc = _mm512_setzero_ps();
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
    _mm512_mask_storeu_ps(x + i, m, e);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace eagle::cpu::avx512

namespace eagle::cpu::avx512 {

// Peak FMA throughput probe: 16 independent accumulator chains, registers only.
double FmaProbeGflops(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  const auto t0 = __builtin_ia32_rdtsc();
  (void)t0;
  struct timespec s, e;
  clock_gettime(CLOCK_MONOTONIC, &s);
  for (int64_t it = 0; it < iters; ++it) {
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  clock_gettime(CLOCK_MONOTONIC, &e);
  __m512 sum = acc[0];
  for (int i = 1; i < 16; ++i) sum = _mm512_add_ps(sum, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(sum);
  (void)sink;
  const double sec = (e.tv_sec - s.tv_sec) + 1e-9 * (e.tv_nsec - s.tv_nsec);
  return static_cast<double>(iters) * 16 * 16 * 2 / sec / 1e9;
}

}  // namespace eagle::cpu::avx512
