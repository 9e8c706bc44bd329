#include "common/cpu/qmatmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace eagle::cpu {
namespace {

constexpr int kGroup = 16;

// Weight bytes (u), scale and offset of block b of row r of a source matrix.
struct SourceBlock {
  uint8_t u[32];
  float d, c;
};

SourceBlock ReadBlock(const Matrix& w, int64_t r, int64_t b) {
  SourceBlock s;
  switch (w.dtype) {
    case DType::kQ4_0: {
      const auto* blk = reinterpret_cast<const BlockQ4_0*>(w.row(r)) + b;
      s.d = HalfToFloat(blk->d);
      s.c = -8.0f * s.d;
      for (int j = 0; j < 16; ++j) {
        s.u[j] = blk->qs[j] & 0xF;
        s.u[j + 16] = blk->qs[j] >> 4;
      }
      break;
    }
    case DType::kQ4_1: {
      const auto* blk = reinterpret_cast<const BlockQ4_1*>(w.row(r)) + b;
      s.d = HalfToFloat(blk->d);
      s.c = HalfToFloat(blk->m);
      for (int j = 0; j < 16; ++j) {
        s.u[j] = blk->qs[j] & 0xF;
        s.u[j + 16] = blk->qs[j] >> 4;
      }
      break;
    }
    default: {  // Q8_0
      const auto* blk = reinterpret_cast<const BlockQ8_0*>(w.row(r)) + b;
      s.d = HalfToFloat(blk->d);
      s.c = -128.0f * s.d;
      for (int j = 0; j < 32; ++j) s.u[j] = static_cast<uint8_t>(blk->qs[j] + 128);
      break;
    }
  }
  return s;
}

// Where column k of lane j sits inside a block's weight vectors.
inline int64_t WeightByte(bool nibbles, int j, int k) {
  if (nibbles) {
    const int kk = k & 15;  // source byte index; k >= 16 is its high nibble
    return (kk / 4) * 64 + j * 4 + (kk % 4);
  }
  return (k / 4) * 64 + j * 4 + (k % 4);
}

}  // namespace

bool CanPack(const Matrix& w) {
  if (w.dtype != DType::kQ4_0 && w.dtype != DType::kQ4_1 && w.dtype != DType::kQ8_0) return false;
  if (w.cols % 32 != 0) return false;
  // The offsets -8 d and -128 d are stored as f16: they must not overflow.
  if (w.dtype != DType::kQ4_1) {
    const float limit = w.dtype == DType::kQ4_0 ? 8000.0f : 500.0f;
    for (int64_t r = 0; r < w.rows; ++r) {
      for (int64_t b = 0; b < w.cols / 32; ++b) {
        if (std::fabs(ReadBlock(w, r, b).d) > limit) return false;
      }
    }
  }
  return true;
}

absl::StatusOr<PackedMatrix> Pack(const Matrix& w) { return PackStacked({&w, 1}); }

absl::StatusOr<PackedMatrix> PackStacked(std::span<const Matrix> parts) {
  if (parts.empty()) return absl::InvalidArgumentError("nothing to pack");
  int64_t rows = 0;
  for (const Matrix& w : parts) {
    if (!CanPack(w) || w.dtype != parts[0].dtype || w.cols != parts[0].cols) {
      return absl::InvalidArgumentError(absl::StrCat("cannot pack a ", DTypeName(w.dtype),
                                                     " matrix with ", w.cols,
                                                     " columns for int8 matmul"));
    }
    rows += w.rows;
  }
  const Matrix& w0 = parts[0];
  PackedMatrix p;
  p.source = w0.dtype;
  p.rows = rows;
  p.cols = w0.cols;
  p.num_blocks = w0.cols / 32;
  p.nibbles = w0.dtype != DType::kQ8_0;
  p.block_bytes = (p.nibbles ? 4 : 8) * 64 + 64;
  p.group_bytes = p.num_blocks * p.block_bytes;
  const size_t total = static_cast<size_t>(p.num_groups() * p.group_bytes);
  p.storage =
      std::shared_ptr<uint8_t[]>(static_cast<uint8_t*>(std::aligned_alloc(64, total)), std::free);
  if (p.storage == nullptr) return absl::ResourceExhaustedError("out of memory packing weights");
  std::memset(p.storage.get(), 0, total);
  int64_t r = 0;
  for (const Matrix& w : parts) {
    for (int64_t lr = 0; lr < w.rows; ++lr, ++r) {
      const int64_t g = r / kGroup;
      const int j = static_cast<int>(r % kGroup);
      for (int64_t b = 0; b < p.num_blocks; ++b) {
        const SourceBlock s = ReadBlock(w, lr, b);
        uint8_t* blk = p.storage.get() + g * p.group_bytes + b * p.block_bytes;
        const int64_t wbytes = p.block_bytes - 64;
        for (int k = 0; k < 32; ++k) {
          uint8_t& dst = blk[WeightByte(p.nibbles, j, k)];
          if (p.nibbles) {
            dst |= k < 16 ? s.u[k] : static_cast<uint8_t>(s.u[k] << 4);
          } else {
            dst = s.u[k];
          }
        }
        uint16_t* dc = reinterpret_cast<uint16_t*>(blk + wbytes);
        dc[j] = FloatToHalf(s.d);
        dc[16 + j] = FloatToHalf(s.c);
      }
    }
  }
  return p;
}

void PackedMatrix::DequantizeRow(int64_t r, float* out) const {
  const int64_t g = r / kGroup;
  const int j = static_cast<int>(r % kGroup);
  for (int64_t b = 0; b < num_blocks; ++b) {
    const uint8_t* blk = group(g) + b * block_bytes;
    const uint16_t* dc = reinterpret_cast<const uint16_t*>(blk + block_bytes - 64);
    const float d = HalfToFloat(dc[j]), c = HalfToFloat(dc[16 + j]);
    for (int k = 0; k < 32; ++k) {
      const uint8_t byte = blk[WeightByte(nibbles, j, k)];
      const uint8_t u = nibbles ? (k < 16 ? byte & 0xF : byte >> 4) : byte;
      out[b * 32 + k] = std::fma(static_cast<float>(u), d, c);
    }
  }
}

bool QMatMulVnni() { return ActiveIsa() == Isa::kAvx512 && avx512::VnniSupported(); }

bool QMatMulAccelerated() {
  return QMatMulVnni() || (ActiveIsa() != Isa::kScalar && avx2::Supported());
}

namespace {
std::atomic<bool> g_amx_enabled{true};
}  // namespace

bool QMatMulAmx() {
  return g_amx_enabled.load(std::memory_order_relaxed) && QMatMulVnni() && amx::Supported();
}

void SetAmxEnabled(bool enabled) { g_amx_enabled.store(enabled, std::memory_order_relaxed); }

void QuantizeActs(const float* x, int64_t tokens, int64_t cols, int bits, QuantizedActs* out,
                  ThreadPool* pool) {
  if (QMatMulVnni()) return avx512::QuantizeActs(x, tokens, cols, bits, out, pool);
  if (QMatMulAccelerated()) return avx2::QuantizeActs(x, tokens, cols, bits, out, pool);
  scalar::QuantizeActs(x, tokens, cols, bits, out);
}

void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y, ThreadPool* pool) {
  if (x.tokens >= kAmxMinTokens && QMatMulAmx()) return amx::QMatMul(w, x, y, pool);
  if (QMatMulVnni()) return avx512::QMatMul(w, x, y, pool);
  if (QMatMulAccelerated()) return avx2::QMatMul(w, x, y, pool);
  scalar::QMatMul(w, x, y);
}

namespace scalar {

void QuantizeActs(const float* x, int64_t tokens, int64_t cols, int bits, QuantizedActs* out) {
  const int64_t nb = cols / 32;
  const bool wide = bits == 15;
  const int qmax = wide ? 16383 : 127;
  out->Resize(tokens, cols, bits);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + t * cols + b * 32;
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
      const float d = amax / static_cast<float>(qmax);
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      int sum = 0;
      for (int j = 0; j < 32; ++j) {
        const int q = std::clamp(static_cast<int>(std::nearbyint(v[j] * id)), -qmax, qmax);
        const int64_t at = t * cols + b * 32 + j;
        if (wide) {
          out->q[at] = static_cast<int16_t>(q);
          out->qs[at] = static_cast<int8_t>(q >> 7);
          out->ql[at] = static_cast<int8_t>(q & 127);
        } else {
          out->qs[at] = static_cast<int8_t>(q);
        }
        sum += q;
      }
      out->d[t * nb + b] = d;
      out->s[t * nb + b] = d * static_cast<float>(sum);
    }
  }
}

void QMatMul(const PackedMatrix& w, const QuantizedActs& x, float* y) {
  const int64_t nb = w.num_blocks;
  std::vector<float> row(w.cols);
  for (int64_t n = 0; n < w.rows; ++n) {
    const int64_t g = n / kGroup;
    const int j = static_cast<int>(n % kGroup);
    for (int64_t t = 0; t < x.tokens; ++t) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = w.group(g) + b * w.block_bytes;
        const uint16_t* dc = reinterpret_cast<const uint16_t*>(blk + w.block_bytes - 64);
        int32_t isum = 0;
        for (int k = 0; k < 32; ++k) {
          const uint8_t byte = blk[WeightByte(w.nibbles, j, k)];
          const int32_t u = w.nibbles ? (k < 16 ? byte & 0xF : byte >> 4) : byte;
          const int64_t at = t * x.cols + b * 32 + k;
          isum += u * (x.bits == 15 ? static_cast<int32_t>(x.q[at]) : x.qs[at]);
        }
        const float scale = HalfToFloat(dc[j]) * x.d[t * nb + b];
        acc = std::fma(static_cast<float>(isum), scale, acc);
        acc = std::fma(HalfToFloat(dc[16 + j]), x.s[t * nb + b], acc);
      }
      y[t * w.rows + n] = acc;
    }
  }
}

}  // namespace scalar
}  // namespace eagle::cpu
