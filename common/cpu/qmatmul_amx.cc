// AMX int8 kernel for multi-row QMatMul (compiled with -mamx-tile -mamx-int8 and the AVX-512
// flags; called only where amx::Supported()). The integer block sums isum = sum_k q_w * q_x come
// from TDPBSUD (signed activations times unsigned weights, exact int32) instead of vpdpbusd;
// everything after them is the same float sequence as avx512::QMatMul and scalar::QMatMul:
//   acc = fma(float(isum), d_w * d_x, acc); acc = fma(c_w, s_x, acc)
// so the three agree bit for bit and a token's result does not depend on which kernel ran.
//
// Tiles, per token tile of M <= 16 rows and per block of 32 columns:
//   A (M x 32 bytes): the activations of the block, one token a row (hi and, 15-bit, lo);
//   B (8 x 64 bytes): the packed weight vectors of the block, which already are the VNNI layout
//                     AMX wants (row k, lane j = the 4 bytes of columns 4k..4k+3 of output j);
//   C (M x 16 int32): isum of the block for M tokens and the group's 16 outputs.
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "common/cpu/qmatmul.h"

namespace eagle::cpu::amx {
namespace {

constexpr int kTileTokens = 16;
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// C tiles 0, 1, 5, 6: M x 16 int32; A tiles 2, 3: M x 32 bytes; B tiles 4, 7: 8 x 64 bytes.
void Configure(int m) {
  TileConfig c;
  for (int t : {0, 1, 5, 6}) {
    c.rows[t] = static_cast<uint8_t>(m);
    c.colsb[t] = 64;
  }
  for (int t : {2, 3}) {
    c.rows[t] = static_cast<uint8_t>(m);
    c.colsb[t] = 32;
  }
  for (int t : {4, 7}) {
    c.rows[t] = 8;
    c.colsb[t] = 64;
  }
  // GCC 12 does not see that ldtilecfg reads the struct and drops the stores above without this.
  asm volatile("" : : "r"(&c) : "memory");
  _tile_loadconfig(&c);
}

// Starts the integer sums of one block in tile set kSet (0: C hi 0, C lo 1, B 4; 1: C hi 5,
// C lo 6, B 7; the A tiles 2 and 3 are shared). Two sets let block b + 1 run on the tiles while
// block b's sums are scaled.
template <bool kNibbles, bool kWide, int kSet>
inline void Issue(const uint8_t* blk, const int8_t* xh, const int8_t* xl, int64_t cols,
                  uint8_t* unpacked) {
  const uint8_t* bsrc = blk;
  if constexpr (kNibbles) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    for (int v = 0; v < 4; ++v) {
      const __m512i raw = _mm512_load_si512(blk + 64 * v);
      _mm512_store_si512(unpacked + 64 * v, _mm512_and_si512(raw, low4));
      _mm512_store_si512(unpacked + 64 * (v + 4),
                         _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4));
    }
    bsrc = unpacked;
  }
  if constexpr (kSet == 0) {
    _tile_loadd(4, bsrc, 64);
    _tile_zero(0);
    _tile_loadd(2, xh, cols);
    _tile_dpbsud(0, 2, 4);
    if constexpr (kWide) {
      _tile_zero(1);
      _tile_loadd(3, xl, cols);
      _tile_dpbsud(1, 3, 4);
    }
  } else {
    _tile_loadd(7, bsrc, 64);
    _tile_zero(5);
    _tile_loadd(2, xh, cols);
    _tile_dpbsud(5, 2, 7);
    if constexpr (kWide) {
      _tile_zero(6);
      _tile_loadd(3, xl, cols);
      _tile_dpbsud(6, 3, 7);
    }
  }
}

template <bool kWide, int kSet>
inline void Store(int32_t* hi, int32_t* lo) {
  if constexpr (kSet == 0) {
    _tile_stored(0, hi, 64);
    if constexpr (kWide) _tile_stored(1, lo, 64);
  } else {
    _tile_stored(5, hi, 64);
    if constexpr (kWide) _tile_stored(6, lo, 64);
  }
}

template <bool kNibbles, bool kWide>
void GroupTile(const PackedMatrix& w, int64_t g, const QuantizedActs& x, int64_t t0, int m,
               float* y) {
  const int64_t nb = w.num_blocks;
  const int64_t wbytes = w.block_bytes - 64;
  const uint8_t* base = w.group(g);
  alignas(64) uint8_t unpacked[2][8 * 64];
  alignas(64) int32_t hi[kTileTokens * 16];
  alignas(64) int32_t lo[kTileTokens * 16];
  __m512 acc[kTileTokens];
  for (int t = 0; t < kTileTokens; ++t) acc[t] = _mm512_setzero_ps();
  const int8_t* xh = x.qs.data() + t0 * x.cols;
  const int8_t* xl = kWide ? x.ql.data() + t0 * x.cols : nullptr;
  auto issue = [&](int64_t b) {
    const uint8_t* blk = base + b * w.block_bytes;
    const int8_t* l = kWide ? xl + b * 32 : nullptr;
    if (b & 1) {
      Issue<kNibbles, kWide, 1>(blk, xh + b * 32, l, x.cols, unpacked[1]);
    } else {
      Issue<kNibbles, kWide, 0>(blk, xh + b * 32, l, x.cols, unpacked[0]);
    }
  };
  issue(0);
  for (int64_t b = 0; b < nb; ++b) {
    if (b & 1) {
      Store<kWide, 1>(hi, lo);
    } else {
      Store<kWide, 0>(hi, lo);
    }
    if (b + 1 < nb) issue(b + 1);
    const __m512i dc = _mm512_load_si512(base + b * w.block_bytes + wbytes);
    const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(dc));
    const __m512 c = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dc, 1));
    for (int t = 0; t < m; ++t) {
      __m512i isum = _mm512_load_si512(hi + 16 * t);
      if constexpr (kWide) {
        isum = _mm512_add_epi32(_mm512_slli_epi32(isum, 7), _mm512_load_si512(lo + 16 * t));
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
  for (int t = 0; t < m; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * w.rows + n0, mask, acc[t]);
}

template <bool kNibbles, bool kWide>
void Groups(const PackedMatrix& w, int64_t g0, int64_t g1, const QuantizedActs& x, float* y) {
  // Token tiles outside, groups inside: the tile shape is configured once per token tile.
  for (int64_t t0 = 0; t0 < x.tokens; t0 += kTileTokens) {
    const int m = static_cast<int>(std::min<int64_t>(kTileTokens, x.tokens - t0));
    Configure(m);
    for (int64_t g = g0; g < g1; ++g) GroupTile<kNibbles, kWide>(w, g, x, t0, m, y);
  }
  _tile_release();
}

bool DetectAndRequest() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = (d >> 24) & 1, int8 = (d >> 25) & 1;
  if (!tile || !int8 || !avx512::VnniSupported()) return false;
  // Linux hands out the tile state only on request (once per process).
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

bool Supported() {
  static const bool supported = DetectAndRequest();
  return supported;
}

void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y, ThreadPool* pool) {
  const int64_t groups = w.num_groups();
  ParallelFor(pool, groups, GrainFor(pool, groups), [&](int64_t g0, int64_t g1) {
    if (w.nibbles) {
      x.bits == 15 ? Groups<true, true>(w, g0, g1, x, y) : Groups<true, false>(w, g0, g1, x, y);
    } else {
      x.bits == 15 ? Groups<false, true>(w, g0, g1, x, y) : Groups<false, false>(w, g0, g1, x, y);
    }
  });
}

}  // namespace eagle::cpu::amx
