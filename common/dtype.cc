#include "common/dtype.h"

#include <algorithm>
#include <cmath>

namespace eagle {

bool IsSupportedDType(uint32_t id) {
  switch (id) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 6:
    case 7:
    case 8:
    case 10:
    case 11:
    case 12:
    case 13:
    case 14:
    case 24:
    case 26:
    case 27:
    case 30:
      return true;
    default:
      return false;
  }
}

DTypeInfo GetDTypeInfo(DType t) {
  switch (t) {
    case DType::kF32:
      return {"F32", 1, 4};
    case DType::kF16:
      return {"F16", 1, 2};
    case DType::kBF16:
      return {"BF16", 1, 2};
    case DType::kQ4_0:
      return {"Q4_0", kQK, sizeof(BlockQ4_0)};
    case DType::kQ4_1:
      return {"Q4_1", kQK, sizeof(BlockQ4_1)};
    case DType::kQ5_0:
      return {"Q5_0", kQK, sizeof(BlockQ5_0)};
    case DType::kQ5_1:
      return {"Q5_1", kQK, sizeof(BlockQ5_1)};
    case DType::kQ8_0:
      return {"Q8_0", kQK, sizeof(BlockQ8_0)};
    case DType::kQ2_K:
      return {"Q2_K", kQKK, sizeof(BlockQ2_K)};
    case DType::kQ3_K:
      return {"Q3_K", kQKK, sizeof(BlockQ3_K)};
    case DType::kQ4_K:
      return {"Q4_K", kQKK, sizeof(BlockQ4_K)};
    case DType::kQ5_K:
      return {"Q5_K", kQKK, sizeof(BlockQ5_K)};
    case DType::kQ6_K:
      return {"Q6_K", kQKK, sizeof(BlockQ6_K)};
    case DType::kI8:
      return {"I8", 1, 1};
    case DType::kI32:
      return {"I32", 1, 4};
    case DType::kI64:
      return {"I64", 1, 8};
  }
  return {"?", 1, 1};
}

const char* DTypeName(DType t) { return GetDTypeInfo(t).name; }

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = (x >> 16) & 0x8000;
  const uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) return sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0);
  if (absx >= 0x477ff000) return sign | 0x7c00;  // overflow after rounding
  if (absx < 0x38800000) {                       // subnormal or zero in half
    const float a = std::fabs(f);
    const int m = static_cast<int>(std::nearbyint(a * 16777216.0f));  // a / 2^-24
    return sign | static_cast<uint16_t>(m);
  }
  const uint32_t exp = (absx >> 23) - 127 + 15;
  uint32_t mant = absx & 0x7fffff;
  uint32_t h = (exp << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return sign | static_cast<uint16_t>(h);
}

uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

namespace {

// Scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block (6-bit packed).
inline void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

}  // namespace

void QuantizeRowQ8_0(const float* x, int64_t n, void* out) {
  auto* blocks = static_cast<BlockQ8_0*>(out);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* v = x + b * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
    blocks[b].d = FloatToHalf(d);
    for (int j = 0; j < kQK; ++j) blocks[b].qs[j] = static_cast<int8_t>(std::nearbyint(v[j] * id));
  }
}

void DequantizeRowScalar(DType t, const void* src, float* y, int64_t n) {
  switch (t) {
    case DType::kF32:
      std::memcpy(y, src, n * 4);
      return;
    case DType::kI8: {
      auto* s = static_cast<const int8_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = s[i];
      return;
    }
    case DType::kI32: {
      auto* s = static_cast<const int32_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(s[i]);
      return;
    }
    case DType::kI64: {
      auto* s = static_cast<const int64_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(s[i]);
      return;
    }
    case DType::kF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = HalfToFloat(s[i]);
      return;
    }
    case DType::kBF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = Bf16ToFloat(s[i]);
      return;
    }
    case DType::kQ4_0: {
      auto* b = static_cast<const BlockQ4_0*>(src);
      for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = HalfToFloat(b[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
          y[j] = ((b[i].qs[j] & 0xF) - 8) * d;
          y[j + kQK / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
      }
      return;
    }
    case DType::kQ4_1: {
      auto* b = static_cast<const BlockQ4_1*>(src);
      for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = HalfToFloat(b[i].d), m = HalfToFloat(b[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
          y[j] = std::fma(static_cast<float>(b[i].qs[j] & 0xF), d, m);
          y[j + kQK / 2] = std::fma(static_cast<float>(b[i].qs[j] >> 4), d, m);
        }
      }
      return;
    }
    case DType::kQ5_0: {
      auto* b = static_cast<const BlockQ5_0*>(src);
      for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = HalfToFloat(b[i].d);
        uint32_t qh;
        std::memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < kQK / 2; ++j) {
          const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
          const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
          y[j] = (((b[i].qs[j] & 0xF) | xh0) - 16) * d;
          y[j + kQK / 2] = (((b[i].qs[j] >> 4) | xh1) - 16) * d;
        }
      }
      return;
    }
    case DType::kQ5_1: {
      auto* b = static_cast<const BlockQ5_1*>(src);
      for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = HalfToFloat(b[i].d), m = HalfToFloat(b[i].m);
        uint32_t qh;
        std::memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < kQK / 2; ++j) {
          const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
          const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
          y[j] = std::fma(static_cast<float>((b[i].qs[j] & 0xF) | xh0), d, m);
          y[j + kQK / 2] = std::fma(static_cast<float>((b[i].qs[j] >> 4) | xh1), d, m);
        }
      }
      return;
    }
    case DType::kQ8_0: {
      auto* b = static_cast<const BlockQ8_0*>(src);
      for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = HalfToFloat(b[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = b[i].qs[j] * d;
      }
      return;
    }
    case DType::kQ2_K: {
      auto* b = static_cast<const BlockQ2_K*>(src);
      for (int64_t i = 0; i < n / kQKK; ++i) {
        const float d = HalfToFloat(b[i].d), dmin = HalfToFloat(b[i].dmin);
        const uint8_t* q = b[i].qs;
        int is = 0;
        for (int nn = 0; nn < kQKK; nn += 128) {
          int shift = 0;
          for (int j = 0; j < 4; ++j) {
            uint8_t sc = b[i].scales[is++];
            float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l] >> shift) & 3) - ml;
            sc = b[i].scales[is++];
            dl = d * (sc & 0xF);
            ml = dmin * (sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16] >> shift) & 3) - ml;
            shift += 2;
          }
          q += 32;
        }
      }
      return;
    }
    case DType::kQ3_K: {
      auto* b = static_cast<const BlockQ3_K*>(src);
      constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
      for (int64_t i = 0; i < n / kQKK; ++i) {
        const float d_all = HalfToFloat(b[i].d);
        const uint8_t* q = b[i].qs;
        const uint8_t* hm = b[i].hmask;
        uint8_t m = 1;
        uint32_t aux[4];
        std::memcpy(aux, b[i].scales, 12);
        const uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        int8_t scales[16];
        std::memcpy(scales, aux, 16);
        int is = 0;
        for (int nn = 0; nn < kQKK; nn += 128) {
          int shift = 0;
          for (int j = 0; j < 4; ++j) {
            float dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; ++l)
              *y++ =
                  dl * (static_cast<int8_t>((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
            dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; ++l)
              *y++ =
                  dl * (static_cast<int8_t>((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2;
            m <<= 1;
          }
          q += 32;
        }
      }
      return;
    }
    case DType::kQ4_K: {
      auto* b = static_cast<const BlockQ4_K*>(src);
      for (int64_t i = 0; i < n / kQKK; ++i) {
        const float d = HalfToFloat(b[i].d), dmin = HalfToFloat(b[i].dmin);
        const uint8_t* q = b[i].qs;
        int is = 0;
        for (int j = 0; j < kQKK; j += 64) {
          uint8_t sc, m;
          ScaleMinK4(is + 0, b[i].scales, &sc, &m);
          const float d1 = d * sc, m1 = dmin * m;
          ScaleMinK4(is + 1, b[i].scales, &sc, &m);
          const float d2 = d * sc, m2 = dmin * m;
          for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
          q += 32;
          is += 2;
        }
      }
      return;
    }
    case DType::kQ5_K: {
      auto* b = static_cast<const BlockQ5_K*>(src);
      for (int64_t i = 0; i < n / kQKK; ++i) {
        const float d = HalfToFloat(b[i].d), dmin = HalfToFloat(b[i].dmin);
        const uint8_t* ql = b[i].qs;
        const uint8_t* qh = b[i].qh;
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < kQKK; j += 64) {
          uint8_t sc, m;
          ScaleMinK4(is + 0, b[i].scales, &sc, &m);
          const float d1 = d * sc, m1 = dmin * m;
          ScaleMinK4(is + 1, b[i].scales, &sc, &m);
          const float d2 = d * sc, m2 = dmin * m;
          for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
          ql += 32;
          is += 2;
          u1 <<= 2;
          u2 <<= 2;
        }
      }
      return;
    }
    case DType::kQ6_K: {
      auto* b = static_cast<const BlockQ6_K*>(src);
      for (int64_t i = 0; i < n / kQKK; ++i) {
        const float d = HalfToFloat(b[i].d);
        const uint8_t* ql = b[i].ql;
        const uint8_t* qh = b[i].qh;
        const int8_t* sc = b[i].scales;
        for (int nn = 0; nn < kQKK; nn += 128) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int8_t q1 =
                static_cast<int8_t>((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 =
                static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 =
                static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 =
                static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
          }
          y += 128;
          ql += 64;
          qh += 32;
          sc += 8;
        }
      }
      return;
    }
  }
}

}  // namespace eagle
