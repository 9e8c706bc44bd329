// Scalar dequantization of every supported type against the `gguf` Python package
// (tests/data/dequant_golden.json, made by tools/make_dequant_golden.py), and half/bf16
// conversions.
#include "common/dtype.h"

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "gtest/gtest.h"

namespace eagle {
namespace {

std::vector<uint8_t> FromHex(const std::string& h) {
  std::vector<uint8_t> out(h.size() / 2);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<uint8_t>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return out;
}

TEST(DTypeTest, DequantizeMatchesGgufPython) {
  std::ifstream f(std::string(EAGLE_TEST_DATA_DIR) + "/dequant_golden.json");
  ASSERT_TRUE(f) << "missing dequant_golden.json";
  nlohmann::json j;
  f >> j;
  const std::map<std::string, DType> types = {
      {"Q4_0", DType::kQ4_0}, {"Q4_1", DType::kQ4_1}, {"Q5_0", DType::kQ5_0},
      {"Q5_1", DType::kQ5_1}, {"Q8_0", DType::kQ8_0}, {"Q2_K", DType::kQ2_K},
      {"Q3_K", DType::kQ3_K}, {"Q4_K", DType::kQ4_K}, {"Q5_K", DType::kQ5_K},
      {"Q6_K", DType::kQ6_K}, {"F16", DType::kF16},   {"BF16", DType::kBF16}};
  ASSERT_EQ(j.size(), types.size());
  for (const auto& [name, t] : types) {
    SCOPED_TRACE(name);
    const auto bytes = FromHex(j[name]["hex"].get<std::string>());
    const auto want = j[name]["values"].get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(bytes.size()), RowBytes(t, static_cast<int64_t>(want.size())));
    std::vector<float> got(want.size());
    DequantizeRowScalar(t, bytes.data(), got.data(), static_cast<int64_t>(want.size()));
    for (size_t i = 0; i < want.size(); ++i) {
      // Bit-exact but for one float rounding where the reference multiplies and adds separately.
      ASSERT_NEAR(got[i], want[i], 2e-7 * (1 + std::fabs(want[i]))) << "element " << i;
    }
  }
}

TEST(DTypeTest, HalfRoundTripsAllValues) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), h) << h;
  }
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);                // overflow -> inf
  EXPECT_EQ(FloatToHalf(1.0f + 1.0f / 2048), 0x3c00);  // tie rounds to even
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(FloatToBf16(1.00390625f), 0x3f80);  // exactly halfway: even
  EXPECT_EQ(FloatToBf16(1.01171875f), 0x3f82);  // halfway up to even
}

TEST(DTypeTest, UnsupportedIdsAreRejected) {
  EXPECT_TRUE(IsSupportedDType(3));
  EXPECT_FALSE(IsSupportedDType(9));   // Q8_1 is not a storage type
  EXPECT_FALSE(IsSupportedDType(16));  // IQ2_XXS
  EXPECT_FALSE(IsSupportedDType(1000));
}

}  // namespace
}  // namespace eagle
