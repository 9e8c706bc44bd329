// Element types of weight tensors (GGML's numbering, so GGUF type ids map 1:1), their block
// layouts, and scalar dequantization. The scalar routines are the numerical reference that the
// vectorised kernels are tested against.
#ifndef EAGLE_COMMON_DTYPE_H_
#define EAGLE_COMMON_DTYPE_H_

#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/status.h"

namespace eagle {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kI8 = 24,  // also used for safetensors BOOL
  kI32 = 26,
  kI64 = 27,
  kBF16 = 30,
};

struct DTypeInfo {
  const char* name;
  int block_size;  // elements per block
  int type_size;   // bytes per block
};

// Returns false for type ids we do not support.
bool IsSupportedDType(uint32_t id);
DTypeInfo GetDTypeInfo(DType t);
const char* DTypeName(DType t);
// Bytes needed for `n` elements of `t` (n must be a multiple of the block size).
inline int64_t RowBytes(DType t, int64_t n) {
  const DTypeInfo i = GetDTypeInfo(t);
  return n / i.block_size * i.type_size;
}

// IEEE half <-> float, exact (no flush to zero).
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
inline float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even; NaN stays NaN.
uint16_t FloatToBf16(float f);

// Quantizes n floats (n a multiple of 32) to Q8_0 blocks (scale max|x| / 127, round to nearest).
void QuantizeRowQ8_0(const float* x, int64_t n, void* out);

// Dequantizes `n` consecutive elements (n a multiple of the block size) starting at `src`.
void DequantizeRowScalar(DType t, const void* src, float* dst, int64_t n);

// Block structs, exactly as GGML lays them out.
constexpr int kQK = 32;    // elements per block of the legacy quants
constexpr int kQKK = 256;  // elements per super-block of the K quants

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 &&
              sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
              sizeof(BlockQ6_K) == 210);

}  // namespace eagle

#endif  // EAGLE_COMMON_DTYPE_H_
