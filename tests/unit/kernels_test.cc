// Each CPU kernel against its scalar reference, for every weight type, and the batch-invariance
// contract of MatMul (a row's result does not depend on the other rows computed beside it).
#include "common/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle::cpu {
namespace {

using testing::RandomNormal;

// Plain double-precision reference: y = W x with W dequantized by the scalar routine.
std::vector<double> RefMatMul(const Matrix& w, const std::vector<float>& x, int64_t t) {
  std::vector<double> y(t * w.rows);
  std::vector<float> row(w.cols);
  for (int64_t n = 0; n < w.rows; ++n) {
    DequantizeRowScalar(w.dtype, w.row(n), row.data(), w.cols);
    for (int64_t i = 0; i < t; ++i) {
      double s = 0;
      for (int64_t k = 0; k < w.cols; ++k) s += static_cast<double>(row[k]) * x[i * w.cols + k];
      y[i * w.rows + n] = s;
    }
  }
  return y;
}

class MatMulTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatMulTest, MatchesReferenceAndIsBatchInvariant) {
  const DType dt = GetParam();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 256}, {64, 512}, {5, 768}}) {
    const auto wf = RandomNormal(rows * cols, 7, 0.05f);
    const auto bytes = testing::Quantize(dt, wf.data(), rows * cols);
    Matrix w{dt, rows, cols, bytes.data(), RowBytes(dt, cols)};
    const int64_t t = 13;
    const auto x = RandomNormal(t * cols, 11);
    const auto ref = RefMatMul(w, x, t);
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (isa == Isa::kAvx512 && !avx512::Supported()) continue;
      if (isa == Isa::kAvx2 && !avx2::Supported()) continue;
      SetIsaForTesting(isa);
      std::vector<float> y(t * rows);
      MatMul(w, x.data(), t, y.data());
      for (int64_t i = 0; i < t * rows; ++i) {
        ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::fabs(ref[i])))
            << "isa " << int(isa) << " at " << i;
      }
      // Each token alone, and in every split, gives bit-identical results.
      for (int64_t i = 0; i < t; ++i) {
        std::vector<float> y1(rows);
        MatMul(w, x.data() + i * cols, 1, y1.data());
        for (int64_t n = 0; n < rows; ++n)
          ASSERT_EQ(y1[n], y[i * rows + n]) << "token " << i << " row " << n;
      }
      for (int64_t split : {2, 5, 7}) {
        std::vector<float> y2(split * rows);
        MatMul(w, x.data(), split, y2.data());
        for (int64_t e = 0; e < split * rows; ++e) ASSERT_EQ(y2[e], y[e]);
      }
      // Weights read in their stored type give the bits of the same weights widened to f32
      // first (the loaders dequantize exactly), one token (the fused decode tile) and many.
      std::vector<float> wide(rows * cols);
      for (int64_t n = 0; n < rows; ++n) DequantizeRowScalar(dt, w.row(n), &wide[n * cols], cols);
      const Matrix wf32{DType::kF32, rows, cols, reinterpret_cast<const uint8_t*>(wide.data()),
                        cols * 4};
      for (int64_t tokens : {int64_t{1}, t}) {
        std::vector<float> yw(tokens * rows);
        MatMul(wf32, x.data(), tokens, yw.data());
        for (int64_t e = 0; e < tokens * rows; ++e)
          ASSERT_EQ(yw[e], y[e]) << "isa " << int(isa) << " tokens " << tokens << " at " << e;
      }
    }
  }
  SetIsaForTesting(avx512::Supported() ? Isa::kAvx512
                   : avx2::Supported() ? Isa::kAvx2
                                       : Isa::kScalar);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatMulTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                           DType::kQ4_0, DType::kQ4_1),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(KernelsTest, ThreadCountDoesNotChangeResults) {
  const int64_t rows = 96, cols = 320, t = 9;
  const auto wf = RandomNormal(rows * cols, 3, 0.05f);
  const auto bytes = testing::Quantize(DType::kQ4_1, wf.data(), rows * cols);
  Matrix w{DType::kQ4_1, rows, cols, bytes.data(), RowBytes(DType::kQ4_1, cols)};
  const auto x = RandomNormal(t * cols, 5);
  std::vector<float> a(t * rows);
  MatMul(w, x.data(), t, a.data());  // no pool: the calling thread alone
  for (int threads : {1, 2, 3, 8}) {
    ThreadPoolOptions options;
    options.num_threads = threads;
    ThreadPool pool(options);
    std::vector<float> b(t * rows);
    MatMul(w, x.data(), t, b.data(), &pool);
    EXPECT_EQ(a, b) << threads << " threads";
  }
}

// Argmax: the first index of the maximum, NaNs skipped (0 when x[0] is NaN), on every ISA, against
// the textbook loop `if (x[i] > x[best]) best = i`.
// The compute-roof probes eagle-bench quotes: positive and finite where the ISA exists, and the
// same order of magnitude whatever the iteration count (the timing is of the loop, not noise).
TEST(KernelsTest, FmaProbesMeasureAPositiveRoof) {
  std::vector<double (*)(int64_t)> probes;
  if (avx2::Supported()) probes.push_back(&avx2::FmaProbeGflops);
  if (avx512::Supported()) probes.push_back(&avx512::FmaProbeGflops);
  if (probes.empty()) GTEST_SKIP() << "neither AVX2 nor AVX-512 on this CPU";
  for (auto probe : probes) {
    const double small = probe(1 << 18), large = probe(1 << 22);
    EXPECT_GT(small, 1.0);
    EXPECT_LT(large, 1e5);  // GFLOP/s of one thread: a few hundred at most today
    EXPECT_GT(large, small / 10);
  }
}

TEST(KernelsTest, ArgmaxMatchesTheTextbookLoop) {
  auto textbook = [](const std::vector<float>& x) {
    int32_t best = 0;
    for (size_t i = 1; i < x.size(); ++i) {
      if (x[i] > x[best]) best = static_cast<int32_t>(i);
    }
    return best;
  };
  std::vector<std::vector<float>> cases;
  for (int n : {1, 5, 16, 17, 31, 32, 33, 100, 49152}) {
    cases.push_back(RandomNormal(n, n));
    std::vector<float> ties(n, 1.5f);  // all equal: index 0
    cases.push_back(ties);
    if (n > 3) {
      ties[n - 1] = ties[n / 2] = 2.0f;  // a tie for the maximum: the first one
      cases.push_back(ties);
    }
    std::vector<float> neg_inf(n, -INFINITY);
    cases.push_back(neg_inf);
    if (n > 2) {
      std::vector<float> nan = RandomNormal(n, n + 1);
      nan[n / 2] = NAN;  // skipped
      nan[n - 1] = 9.0f;
      cases.push_back(nan);
      nan[0] = NAN;  // nothing compares greater than x[0]: index 0
      cases.push_back(nan);
      std::vector<float> zeros(n, -1.0f);
      zeros[1] = -0.0f;  // -0 and +0 do not compare greater than each other
      zeros[n - 1] = 0.0f;
      cases.push_back(zeros);
    }
  }
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (isa == Isa::kAvx512 && !avx512::Supported()) continue;
    if (isa == Isa::kAvx2 && !avx2::Supported()) continue;
    SetIsaForTesting(isa);
    for (size_t c = 0; c < cases.size(); ++c) {
      EXPECT_EQ(Argmax(cases[c].data(), static_cast<int>(cases[c].size())), textbook(cases[c]))
          << "case " << c << " (" << cases[c].size() << " values), isa " << static_cast<int>(isa);
    }
  }
  SetIsaForTesting(avx512::Supported() ? Isa::kAvx512
                   : avx2::Supported() ? Isa::kAvx2
                                       : Isa::kScalar);
}

TEST(KernelsTest, VectorOpsMatchScalar) {
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (isa == Isa::kAvx512 && !avx512::Supported()) continue;
    if (isa == Isa::kAvx2 && !avx2::Supported()) continue;
    SetIsaForTesting(isa);
    for (int n : {1, 7, 8, 15, 16, 17, 64, 576, 1000}) {
      const auto a = RandomNormal(n, 1), b = RandomNormal(n, 2), g = RandomNormal(n, 3, 4.0f);
      std::vector<float> o1(n), o2(n);
      scalar::RmsNorm(a.data(), b.data(), 1e-5f, n, o1.data());
      RmsNorm(a.data(), b.data(), 1e-5f, n, o2.data());
      for (int i = 0; i < n; ++i) ASSERT_NEAR(o1[i], o2[i], 1e-5 * (1 + std::fabs(o1[i])));
      scalar::SwiGlu(g.data(), b.data(), n, o1.data());
      SwiGlu(g.data(), b.data(), n, o2.data());
      for (int i = 0; i < n; ++i) ASSERT_NEAR(o1[i], o2[i], 1e-5 * (1 + std::fabs(o1[i])));
      EXPECT_NEAR(scalar::Dot(a.data(), b.data(), n), Dot(a.data(), b.data(), n), 1e-4 * n);
      o1 = b;
      o2 = b;
      scalar::Axpy(0.3f, a.data(), o1.data(), n);
      Axpy(0.3f, a.data(), o2.data(), n);
      for (int i = 0; i < n; ++i) ASSERT_FLOAT_EQ(o1[i], o2[i]);
      std::vector<float> e1 = g, e2 = g;
      float mx = *std::max_element(g.begin(), g.end());
      const float s1 = scalar::ExpShiftSum(e1.data(), n, mx), s2 = ExpShiftSum(e2.data(), n, mx);
      EXPECT_NEAR(s1, s2, 1e-5 * s1);
      for (int i = 0; i < n; ++i) ASSERT_NEAR(e1[i], e2[i], 2e-7 + 1e-6 * e1[i]);
    }
  }
  SetIsaForTesting(avx512::Supported() ? Isa::kAvx512 : Isa::kAvx2);
}

TEST(KernelsTest, AttendGroupMatchesScalarAndDoubleReference) {
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (isa == Isa::kAvx512 && !avx512::Supported()) continue;
    if (isa == Isa::kAvx2 && !avx2::Supported()) continue;
    SetIsaForTesting(isa);
    for (int hd : {64, 80, 128}) {
      for (int num_q : {1, 3, 4, 6}) {
        for (int64_t n_prefix : {37, 150}) {  // one and several 64-slot score tiles, with tails
          const int64_t cap = n_prefix + 27;
          // Keys transposed: [hd, cap]; values [cap, 2 * hd] (this head at offset hd).
          const auto kt = RandomNormal(hd * cap, 4), v = RandomNormal(cap * 2 * hd, 5);
          const auto q = RandomNormal(num_q * hd, 6);
          const int32_t extra[3] = {static_cast<int32_t>(n_prefix + 3),
                                    static_cast<int32_t>(n_prefix + 8),
                                    static_cast<int32_t>(n_prefix + 22)};
          const int64_t n = n_prefix + 3;
          std::vector<float> s1(num_q * n), s2(num_q * n), o1(num_q * hd), o2(num_q * hd);
          const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
          scalar::AttendGroup(q.data(), num_q, kt.data(), cap, v.data() + hd, 2 * hd, hd, n_prefix,
                              extra, 3, scale, s1.data(), o1.data());
          AttendGroup(q.data(), num_q, kt.data(), cap, v.data() + hd, 2 * hd, hd, n_prefix, extra,
                      3, scale, s2.data(), o2.data());
          std::vector<int64_t> slots;
          for (int64_t s = 0; s < n_prefix; ++s) slots.push_back(s);
          for (int32_t e : extra) slots.push_back(e);
          for (int g = 0; g < num_q; ++g) {
            std::vector<double> sc;
            double mx = -1e300, sum = 0;
            for (int64_t s : slots) {
              double d = 0;
              for (int i = 0; i < hd; ++i) d += double(q[g * hd + i]) * kt[i * cap + s];
              sc.push_back(d * scale);
              mx = std::max(mx, sc.back());
            }
            for (double& x : sc) sum += (x = std::exp(x - mx));
            for (int i = 0; i < hd; ++i) {
              double ref = 0;
              for (size_t j = 0; j < slots.size(); ++j)
                ref += sc[j] / sum * v[slots[j] * 2 * hd + hd + i];
              ASSERT_NEAR(o1[g * hd + i], ref, 1e-5) << hd << " " << num_q;
              ASSERT_NEAR(o2[g * hd + i], ref, 1e-5) << hd << " " << num_q;
            }
          }
          // Bit for bit, the kernel is this ISA's primitives composed as the scalar reference
          // composes them: one fma chain over d per score, ExpShiftSum, then Axpy slot by slot
          // (so tiling scores and keeping values in registers changes no bit).
          {
            std::vector<float> sc(n), oc(num_q * hd);
            for (int g = 0; g < num_q; ++g) {
              float mx = -INFINITY;
              for (int64_t j = 0; j < n; ++j) {
                const int64_t s = slots[j];
                float acc = 0.0f;
                for (int i = 0; i < hd; ++i) acc = std::fma(q[g * hd + i], kt[i * cap + s], acc);
                sc[j] = acc * scale;
                mx = std::max(mx, sc[j]);
              }
              const float inv = 1.0f / ExpShiftSum(sc.data(), static_cast<int>(n), mx);
              for (int64_t j = 0; j < n; ++j)
                Axpy(sc[j] * inv, v.data() + slots[j] * 2 * hd + hd, oc.data() + g * hd, hd);
            }
            ASSERT_EQ(o2, oc) << "isa " << int(isa) << " hd " << hd << " num_q " << num_q;
          }
          // A slot's score does not depend on whether it is in the contiguous part or listed.
          int32_t listed[5];
          for (int i = 0; i < 5; ++i) listed[i] = static_cast<int32_t>(n_prefix - 5 + i);
          std::vector<float> s3(num_q * n), o3(num_q * hd);
          AttendGroup(q.data(), num_q, kt.data(), cap, v.data() + hd, 2 * hd, hd, n_prefix - 5,
                      listed, 5, scale, s3.data(), o3.data());
          std::vector<float> s4(num_q * n_prefix), o4(num_q * hd);
          AttendGroup(q.data(), num_q, kt.data(), cap, v.data() + hd, 2 * hd, hd, n_prefix, nullptr,
                      0, scale, s4.data(), o4.data());
          EXPECT_EQ(o3, o4);
        }
      }
    }
  }
  SetIsaForTesting(avx512::Supported() ? Isa::kAvx512 : Isa::kAvx2);
}

TEST(KernelsTest, ExpIsAccurateOverSoftmaxRange) {
  std::vector<float> x;
  for (float v = -100; v <= 0; v += 0.0137f) x.push_back(v);
  std::vector<float> y = x;
  ExpShiftSum(y.data(), static_cast<int>(y.size()), 0.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(static_cast<double>(x[i]));
    ASSERT_NEAR(y[i], ref, 4e-7 * ref + 1e-38) << x[i];
  }
}

}  // namespace
}  // namespace eagle::cpu
