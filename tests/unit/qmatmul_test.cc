// The int8 path: packing keeps the stored weights exactly, the AVX-512 VNNI and AVX2 kernels equal
// the scalar reference bit for bit, results are batch invariant, and the error against an exact f32
// product is what int8 activation quantization predicts.
#include "common/cpu/qmatmul.h"

#include <cmath>
#include <cstring>
#include <random>

#include "common/cpu/linear.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle::cpu {
namespace {

using testing::RandomNormal;

class QMatMulTest : public ::testing::TestWithParam<DType> {};

// Every array of two quantizations equal (the vector quantizers against the scalar one).
::testing::AssertionResult SameActs(const QuantizedActs& a, const QuantizedActs& b) {
  if (a.bits != b.bits || a.tokens != b.tokens || a.cols != b.cols)
    return ::testing::AssertionFailure() << "shapes differ";
  if (a.qs != b.qs) return ::testing::AssertionFailure() << "qs differ";
  if (a.ql != b.ql) return ::testing::AssertionFailure() << "ql differ";
  if (a.q != b.q) return ::testing::AssertionFailure() << "q differ";
  if (a.d != b.d) return ::testing::AssertionFailure() << "d differ";
  if (a.s != b.s) return ::testing::AssertionFailure() << "s differ";
  return ::testing::AssertionSuccess();
}

TEST_P(QMatMulTest, PackedRowsDequantizeExactly) {
  const int64_t rows = 9, cols = 192;
  const auto wf = RandomNormal(rows * cols, 1, 0.05f);
  const auto bytes = testing::Quantize(GetParam(), wf.data(), rows * cols);
  Matrix m{GetParam(), rows, cols, bytes.data(), RowBytes(GetParam(), cols)};
  auto p = Pack(m);
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<float> a(cols), b(cols);
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRowScalar(m.dtype, m.row(r), a.data(), cols);
    p->DequantizeRow(r, b.data());
    ASSERT_EQ(a, b) << "row " << r;
  }
}

TEST_P(QMatMulTest, VectorKernelsEqualScalarAndAreBatchInvariant) {
  for (int bits : {8, 15})
    for (auto [rows, cols] :
         {std::pair<int64_t, int64_t>{37, 576}, {64, 1536}, {6, 64}, {21, 96}}) {
      const auto wf = RandomNormal(rows * cols, 2, 0.05f);
      const auto bytes = testing::Quantize(GetParam(), wf.data(), rows * cols);
      Matrix m{GetParam(), rows, cols, bytes.data(), RowBytes(GetParam(), cols)};
      auto p = Pack(m);
      ASSERT_TRUE(p.ok());
      const int64_t t = 11;
      auto x = RandomNormal(t * cols, 3);
      x[5] = 40.0f;  // an outlier, as real activations have
      QuantizedActs qs, qv;
      scalar::QuantizeActs(x.data(), t, cols, bits, &qs);
      std::vector<float> ys(t * rows), yv(t * rows);
      scalar::QMatMul(*p, qs, ys.data());
      if (avx512::Supported() && avx512::VnniSupported()) {
        avx512::QuantizeActs(x.data(), t, cols, bits, &qv);
        ASSERT_TRUE(SameActs(qs, qv));
        avx512::QMatMul(*p, qv, yv.data());
        ASSERT_EQ(ys, yv) << "VNNI kernel differs from the scalar reference";
        // The same bits on a thread pool of any size (chunks claimed in any order).
        for (int threads : {2, 3}) {
          ThreadPoolOptions options;
          options.num_threads = threads;
          ThreadPool pool(options);
          QuantizedActs qp;
          avx512::QuantizeActs(x.data(), t, cols, bits, &qp, &pool);
          ASSERT_TRUE(SameActs(qp, qv));
          std::vector<float> yp(t * rows);
          avx512::QMatMul(*p, qp, yp.data(), &pool);
          ASSERT_EQ(yp, yv) << threads << " threads";
        }
        // One token at a time gives the same bits.
        for (int64_t i = 0; i < t; ++i) {
          QuantizedActs q1;
          avx512::QuantizeActs(x.data() + i * cols, 1, cols, bits, &q1);
          std::vector<float> y1(rows);
          avx512::QMatMul(*p, q1, y1.data());
          for (int64_t n = 0; n < rows; ++n) ASSERT_EQ(y1[n], yv[i * rows + n]) << i << " " << n;
        }
      }
      if (avx2::Supported()) {
        // The AVX2 quantizer and kernel give the scalar bits, on any pool and one token at a
        // time.
        QuantizedActs qa;
        avx2::QuantizeActs(x.data(), t, cols, bits, &qa);
        ASSERT_TRUE(SameActs(qs, qa));
        std::vector<float> ya(t * rows);
        avx2::QMatMul(*p, qa, ya.data());
        ASSERT_EQ(ys, ya) << "AVX2 kernel differs from the scalar reference";
        ThreadPoolOptions options;
        options.num_threads = 3;
        ThreadPool pool(options);
        QuantizedActs qp;
        avx2::QuantizeActs(x.data(), t, cols, bits, &qp, &pool);
        ASSERT_TRUE(SameActs(qs, qp));
        std::vector<float> yp(t * rows);
        avx2::QMatMul(*p, qp, yp.data(), &pool);
        ASSERT_EQ(yp, ys);
        for (int64_t i = 0; i < t; ++i) {
          QuantizedActs q1;
          avx2::QuantizeActs(x.data() + i * cols, 1, cols, bits, &q1);
          std::vector<float> y1(rows);
          avx2::QMatMul(*p, q1, y1.data());
          for (int64_t n = 0; n < rows; ++n) ASSERT_EQ(y1[n], ys[i * rows + n]) << i << " " << n;
        }
      }
      // Against the exact product of the stored weights with f32 activations: the error is bounded
      // by the activation rounding (half a step of max|x|/127 per element of each block).
      std::vector<float> wrow(cols);
      for (int64_t n = 0; n < rows; ++n) {
        DequantizeRowScalar(m.dtype, m.row(n), wrow.data(), cols);
        for (int64_t i = 0; i < t; ++i) {
          double exact = 0, bound = 0;
          for (int64_t k = 0; k < cols; ++k) exact += double(wrow[k]) * x[i * cols + k];
          for (int64_t b = 0; b < cols / 32; ++b) {
            double amax = 0, wsum = 0;
            for (int j = 0; j < 32; ++j) {
              amax = std::max(amax, double(std::fabs(x[i * cols + b * 32 + j])));
              wsum += std::fabs(wrow[b * 32 + j]);
            }
            bound += amax / (bits == 15 ? 16383 : 127) / 2 * wsum;
          }
          ASSERT_LE(std::fabs(ys[i * rows + n] - exact), bound * 1.01 + 1e-4) << n << " " << i;
        }
      }
    }
}

// The extremes of the AVX2 kernel's int16 partial sums: every weight byte at its largest
// (nibble 15; Q8_0 byte 255) or smallest, against activations all at +-qmax (15 bits: high byte
// -128). A saturating sum would change the result; the scalar reference has no int16 step.
TEST_P(QMatMulTest, Avx2SumsAtTheExtremesEqualScalar) {
  if (!avx2::Supported()) GTEST_SKIP() << "no AVX2 here";
  const int64_t rows = 16, cols = 64;
  const DType dt = GetParam();
  const int64_t rb = RowBytes(dt, cols);
  std::vector<uint8_t> bytes(rows * rb);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < cols / 32; ++b) {
      uint8_t* blk = bytes.data() + r * rb + b * (rb / (cols / 32));
      const bool high = r % 2 == 0;
      const uint16_t one = 0x3C00;  // f16 1.0 (d; Q4_1's m too)
      std::memcpy(blk, &one, 2);
      if (dt == DType::kQ8_0) {
        std::memset(blk + 2, high ? 0x7F : 0x80, 32);  // q = 127 (u = 255) or -128 (u = 0)
      } else {
        const int off = dt == DType::kQ4_1 ? 4 : 2;
        if (dt == DType::kQ4_1) std::memcpy(blk + 2, &one, 2);
        std::memset(blk + off, high ? 0xFF : 0x00, 16);  // nibbles 15 or 0
      }
    }
  }
  Matrix m{dt, rows, cols, bytes.data(), rb};
  auto p = Pack(m);
  ASSERT_TRUE(p.ok()) << p.status();
  for (int bits : {8, 15}) {
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> x(2 * cols, sign);
      x[cols + 3] = -sign;  // one element of the other sign in the second token
      QuantizedActs q;
      scalar::QuantizeActs(x.data(), 2, cols, bits, &q);
      std::vector<float> ys(2 * rows), ya(2 * rows);
      scalar::QMatMul(*p, q, ys.data());
      avx2::QMatMul(*p, q, ya.data());
      EXPECT_EQ(ys, ya) << bits << " bits, sign " << sign;
    }
  }
}

// The AMX kernel gives the scalar reference's bits for every tile height (1..16 tokens, a full
// tile plus a partial one), both activation widths, ragged output groups and any pool size.
TEST_P(QMatMulTest, AmxEqualsScalarBitForBit) {
  if (!amx::Supported()) GTEST_SKIP() << "no AMX-INT8 here (or the kernel refused the tiles)";
  for (int bits : {8, 15})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 576}, {64, 1536}, {6, 64}}) {
      const auto wf = RandomNormal(rows * cols, 5, 0.05f);
      const auto bytes = testing::Quantize(GetParam(), wf.data(), rows * cols);
      Matrix m{GetParam(), rows, cols, bytes.data(), RowBytes(GetParam(), cols)};
      auto p = Pack(m);
      ASSERT_TRUE(p.ok());
      for (int64_t t : {1, 2, 5, 16, 21, 40}) {
        auto x = RandomNormal(t * cols, 6 + t);
        x[3] = -35.0f;
        QuantizedActs q;
        scalar::QuantizeActs(x.data(), t, cols, bits, &q);
        std::vector<float> ys(t * rows), ya(t * rows, -1.0f);
        scalar::QMatMul(*p, q, ys.data());
        amx::QMatMul(*p, q, ya.data());
        ASSERT_EQ(ys, ya) << "AMX differs from the scalar reference: bits " << bits << " rows "
                          << rows << " cols " << cols << " tokens " << t;
        ThreadPoolOptions options;
        options.num_threads = 3;
        ThreadPool pool(options);
        std::vector<float> yp(t * rows);
        amx::QMatMul(*p, q, yp.data(), &pool);
        ASSERT_EQ(ys, yp) << "on 3 threads, tokens " << t;
      }
    }
}

// Negative control: a weight byte changed after packing is seen by the comparison above.
TEST(QMatMulAmxTest, DetectsAChangedWeight) {
  if (!amx::Supported()) GTEST_SKIP() << "no AMX-INT8 here";
  const int64_t rows = 16, cols = 64;
  const auto wf = RandomNormal(rows * cols, 7, 0.05f);
  const auto bytes = testing::Quantize(DType::kQ8_0, wf.data(), rows * cols);
  Matrix m{DType::kQ8_0, rows, cols, bytes.data(), RowBytes(DType::kQ8_0, cols)};
  auto p = Pack(m);
  ASSERT_TRUE(p.ok());
  auto x = RandomNormal(4 * cols, 8);
  QuantizedActs q;
  scalar::QuantizeActs(x.data(), 4, cols, 8, &q);
  std::vector<float> ys(4 * rows), ya(4 * rows);
  scalar::QMatMul(*p, q, ys.data());
  p->storage[5] ^= 0x40;  // row 5, column 1 of block 0
  amx::QMatMul(*p, q, ya.data());
  EXPECT_NE(ys, ya);
}

INSTANTIATE_TEST_SUITE_P(Types, QMatMulTest,
                         ::testing::Values(DType::kQ4_0, DType::kQ4_1, DType::kQ8_0),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(LinearTest, ChoosesPathByTypeAndPrecision) {
  const auto wf = RandomNormal(8 * 64, 4);
  const auto q41 = testing::Quantize(DType::kQ4_1, wf.data(), 8 * 64);
  const auto f16 = testing::Quantize(DType::kF16, wf.data(), 8 * 64);
  Matrix a{DType::kQ4_1, 8, 64, q41.data(), RowBytes(DType::kQ4_1, 64)};
  Matrix b{DType::kF16, 8, 64, f16.data(), RowBytes(DType::kF16, 64)};
  EXPECT_TRUE(Linear::Create(a, Precision::kInt8)->packed());
  EXPECT_FALSE(Linear::Create(a, Precision::kF32)->packed());
  EXPECT_FALSE(Linear::Create(b, Precision::kInt8)->packed());
  Matrix odd{DType::kQ4_1, 16, 48, q41.data(), RowBytes(DType::kQ4_1, 48)};
  EXPECT_FALSE(Linear::Create(odd, Precision::kInt8)->packed());
}

}  // namespace
}  // namespace eagle::cpu
