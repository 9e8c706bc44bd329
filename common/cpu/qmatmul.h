// Int8 matrix multiplication for 4- and 8-bit weights (Q4_0, Q4_1, Q8_0), the fast path of the
// CPU backend. Weights are repacked once at load into groups of 16 rows; activations are
// quantized per token to int8 in blocks of 32 (scale = max|x| / 127, round to nearest even).
// On AVX-512 VNNI one vpdpbusd multiplies 4 columns of 16 rows by 4 activation bytes broadcast
// to all lanes, so each output row lives in one lane: no horizontal reductions. On AVX2 the same
// layout is read as two 8-row halves with vpmaddubsw (qmatmul_avx2.cc).
//
// Per output y[t][n] the computation is, for each block b of 32 columns in order:
//   isum = sum_k q_w[n][k] * q_x[t][k]        (exact int32; q_w unsigned 0..255; with 15-bit
//                                              activations as 128 * sum(q_w * hi) + sum(q_w * lo))
//   acc  = fma(float(isum), d_w[n][b] * d_x[t][b], acc)
//   acc  = fma(c_w[n][b], s_x[t][b], acc)     (offset term; s_x = d_x * sum_k q_x)
// with acc starting at 0. The scalar reference does exactly this, so the AVX-512 kernel agrees
// with it bit for bit, and the sequence depends on (t, n) alone: results are batch invariant.
#ifndef EAGLE_COMMON_CPU_QMATMUL_H_
#define EAGLE_COMMON_CPU_QMATMUL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu/kernels.h"
#include "common/cpu/thread_pool.h"

namespace eagle::cpu {

// Weights as unsigned bytes u with w = d * u + c: Q4_1 (u = nibble, c = m), Q4_0 (u = nibble,
// c = -8 d), Q8_0 (u = q + 128, c = -128 d). d and c are stored as f16 (as in the source blocks).
//
// Layout, per group of 16 rows (zero rows pad the last group), per block b: the weight bytes
// [4 or 8 vectors of 64 bytes], then d[16] and c[16] as f16 (64 bytes). Lane j of a weight
// vector holds row 16g + j. Nibble types: vector v (0..3) holds in lane j the 4 source bytes
// 4v..4v+3 of the row's block (low nibbles = columns 4v.., high nibbles = columns 16 + 4v..).
// Q8_0: vector v (0..7) holds columns 4v..4v+3.
struct PackedMatrix {
  DType source = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;        // multiple of 32
  int64_t num_blocks = 0;  // cols / 32
  bool nibbles = false;
  int64_t block_bytes = 0;             // per group and block: weight vectors + 64 bytes of d/c
  int64_t group_bytes = 0;             // num_blocks * block_bytes
  std::shared_ptr<uint8_t[]> storage;  // [ceil(rows / 16), group_bytes], 64-byte aligned

  int64_t num_groups() const { return (rows + 15) / 16; }
  const uint8_t* group(int64_t g) const { return storage.get() + g * group_bytes; }
  int64_t bytes() const { return num_groups() * group_bytes; }
  // Dequantizes row r (exactly the values of the source blocks).
  void DequantizeRow(int64_t r, float* out) const;
};

// True if `w` can be packed (Q4_0, Q4_1, Q8_0; scales that fit f16 after the offset).
bool CanPack(const Matrix& w);
absl::StatusOr<PackedMatrix> Pack(const Matrix& w);
// Packs matrices with the same type and column count stacked by rows (e.g. q, k and v
// projections), so one QMatMul computes all of them.
absl::StatusOr<PackedMatrix> PackStacked(std::span<const Matrix> parts);

// Activations of `tokens` rows, quantized per block of 32 to `bits` = 8 (q in [-127, 127]) or
// 15 (q in [-16383, 16383], split as q = 128 * hi + lo with hi in [-128, 127] and lo in [0, 127],
// so that two int8 dot products give the exact integer sum).
struct QuantizedActs {
  int bits = 8;
  int64_t tokens = 0;
  int64_t cols = 0;
  std::vector<int8_t> qs;  // [tokens, cols] 8-bit: q; 15-bit: hi
  std::vector<int8_t> ql;  // [tokens, cols] 15-bit only: lo
  std::vector<int16_t> q;  // [tokens, cols] 15-bit only: q (for the scalar reference)
  std::vector<float> d;    // [tokens, cols / 32] scale
  std::vector<float> s;    // [tokens, cols / 32] d * sum(q) of the block

  // Sets the shape and sizes the arrays (their storage is kept between calls).
  void Resize(int64_t num_tokens, int64_t num_cols, int num_bits) {
    const bool wide = num_bits == 15;
    bits = wide ? 15 : 8;
    tokens = num_tokens;
    cols = num_cols;
    qs.resize(tokens * cols);
    ql.resize(wide ? tokens * cols : 0);
    q.resize(wide ? tokens * cols : 0);
    d.resize(tokens * (cols / 32));
    s.resize(tokens * (cols / 32));
  }
};
// Rows run on `pool` (null: the calling thread).
void QuantizeActs(const float* x, int64_t tokens, int64_t cols, int bits, QuantizedActs* out,
                  ThreadPool* pool = nullptr);

// y[t, n] = sum_k x[t, k] * w[n, k] with quantized activations. Groups of 16 rows run on `pool`
// (null: the calling thread).
void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y, ThreadPool* pool = nullptr);

// True where a vectorised integer kernel runs: AVX-512 VNNI, else AVX2 (else the scalar
// reference does).
bool QMatMulAccelerated();
// True where the AVX-512 VNNI kernel runs.
bool QMatMulVnni();
// True where products of at least kAmxMinTokens rows run on the AMX kernel (the CPU has AMX-INT8,
// the kernel granted the tile state, and SetAmxEnabled(false) was not called).
bool QMatMulAmx();
inline constexpr int64_t kAmxMinTokens = 8;
// Turns the AMX kernel off (or back on, where supported) for comparisons; results are identical.
void SetAmxEnabled(bool enabled);

namespace scalar {
void QuantizeActs(const float* x, int64_t tokens, int64_t cols, int bits, QuantizedActs* out);
void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y);
}  // namespace scalar
namespace avx512 {
bool VnniSupported();
// GMAC/s of one thread issuing independent vpdpbusd (registers only): the int8 compute roof.
double DpbusdProbeGmacs(int64_t iters);
void QuantizeActs(const float* x, int64_t tokens, int64_t cols, int bits, QuantizedActs* out,
                  ThreadPool* pool = nullptr);
void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y, ThreadPool* pool = nullptr);
}  // namespace avx512
namespace avx2 {
// Same results as scalar::QuantizeActs and scalar::QMatMul, bit for bit (the product's int16
// partial sums cannot saturate; see qmatmul_avx2.cc).
void QuantizeActs(const float* x, int64_t tokens, int64_t cols, int bits, QuantizedActs* out,
                  ThreadPool* pool = nullptr);
void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y, ThreadPool* pool = nullptr);
// GMAC/s of one thread issuing independent vpmaddubsw + vpaddw pairs (registers only): the int8
// compute roof of this kernel.
double MaddubsProbeGmacs(int64_t iters);
}  // namespace avx2
namespace amx {
// AMX-TILE and AMX-INT8 present and the tile state granted by the kernel (asked once).
bool Supported();
// Same results as avx512::QMatMul, bit for bit: only the exact int32 block sums come from
// TDPBSUD tiles (M <= 16 tokens x 16 outputs x 32 columns a block).
void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y, ThreadPool* pool = nullptr);
}  // namespace amx

}  // namespace eagle::cpu

#endif  // EAGLE_COMMON_CPU_QMATMUL_H_
