// The EAGLE training-data shard format (common/eagle/train_data.h): round trips with and without
// EAGLE-3 layer features, resume after a torn tail, and refusal of corrupt or mismatched files.
#include "common/eagle/train_data.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"

namespace eagle {
namespace {

namespace fs = std::filesystem;

std::string TempPath(const std::string& name) {
  return (fs::temp_directory_path() / (name + "_" + std::to_string(getpid()) + ".bin")).string();
}

std::vector<float> Ramp(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * (static_cast<float>(i % 97) - 48.0f) / 7.0f;
  return v;
}

void ExpectHalves(const std::vector<uint16_t>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], FloatToHalf(want[i])) << i;
}

TEST(TrainDataTest, RoundTripFinalNormFeatures) {
  const std::string path = TempPath("td_v1");
  std::remove(path.c_str());
  const int hidden = 8;
  int64_t existing = -1;
  {
    auto w = TrainDataWriter::Open(path, hidden, {}, &existing);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(existing, 0);
    for (int r = 0; r < 3; ++r) {
      std::vector<int32_t> tokens(5 + r, 7 * r + 1);
      ASSERT_TRUE((*w)->Append(tokens, 2, Ramp(tokens.size() * hidden, r + 1.0f)).ok());
    }
  }
  TrainDataInfo info;
  auto recs = ReadTrainData(path, &info);
  ASSERT_TRUE(recs.ok()) << recs.status();
  EXPECT_EQ(info.hidden, hidden);
  EXPECT_TRUE(info.layers.empty());
  ASSERT_EQ(recs->size(), 3u);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ((*recs)[r].tokens, std::vector<int32_t>(5 + r, 7 * r + 1));
    EXPECT_EQ((*recs)[r].prompt_tokens, 2);
    ExpectHalves((*recs)[r].features, Ramp((5 + r) * hidden, r + 1.0f));
    EXPECT_TRUE((*recs)[r].layer_features.empty());
  }
  std::remove(path.c_str());
}

TEST(TrainDataTest, RoundTripEagle3LayerFeatures) {
  const std::string path = TempPath("td_v2");
  std::remove(path.c_str());
  const int hidden = 4;
  const std::vector<int> layers = {2, 15, 27};
  int64_t existing = -1;
  {
    auto w = TrainDataWriter::Open(path, hidden, layers, &existing);
    ASSERT_TRUE(w.ok()) << w.status();
    std::vector<int32_t> tokens = {1, 2, 3};
    // A record without its layer features is refused.
    EXPECT_EQ((*w)->Append(tokens, 1, Ramp(3 * hidden, 1)).code(),
              absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE((*w)->Append(tokens, 1, Ramp(3 * hidden, 1), Ramp(3 * 3 * hidden, -2)).ok());
  }
  TrainDataInfo info;
  auto recs = ReadTrainData(path, &info);
  ASSERT_TRUE(recs.ok()) << recs.status();
  EXPECT_EQ(info.hidden, hidden);
  EXPECT_EQ(info.layers, layers);
  ASSERT_EQ(recs->size(), 1u);
  ExpectHalves((*recs)[0].features, Ramp(3 * hidden, 1));
  ExpectHalves((*recs)[0].layer_features, Ramp(3 * 3 * hidden, -2));
  // Resuming with other layers or another hidden size is refused.
  EXPECT_EQ(TrainDataWriter::Open(path, hidden, std::vector<int>{2, 15}, &existing).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TrainDataWriter::Open(path, hidden, {}, &existing).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TrainDataWriter::Open(path, 8, layers, &existing).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::remove(path.c_str());
}

TEST(TrainDataTest, ResumeCutsTornTail) {
  const std::string path = TempPath("td_torn");
  std::remove(path.c_str());
  const int hidden = 4;
  int64_t existing = -1;
  {
    auto w = TrainDataWriter::Open(path, hidden, {}, &existing);
    ASSERT_TRUE(w.ok());
    for (int r = 0; r < 2; ++r) {
      ASSERT_TRUE((*w)->Append(std::vector<int32_t>{r, r + 1}, 1, Ramp(2 * hidden, 1)).ok());
    }
  }
  fs::resize_file(path, fs::file_size(path) - 3);  // an interrupted writer
  TrainDataInfo info;
  auto recs = ReadTrainData(path, &info);
  ASSERT_TRUE(recs.ok()) << recs.status();
  EXPECT_EQ(recs->size(), 1u);
  {
    auto w = TrainDataWriter::Open(path, hidden, {}, &existing);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(existing, 1);
    ASSERT_TRUE((*w)->Append(std::vector<int32_t>{9, 9, 9}, 0, Ramp(3 * hidden, 3)).ok());
  }
  recs = ReadTrainData(path, &info);
  ASSERT_TRUE(recs.ok()) << recs.status();
  ASSERT_EQ(recs->size(), 2u);
  EXPECT_EQ((*recs)[1].tokens, (std::vector<int32_t>{9, 9, 9}));
  std::remove(path.c_str());
}

TEST(TrainDataTest, RefusesCorruptFiles) {
  const std::string path = TempPath("td_bad");
  std::remove(path.c_str());
  int64_t existing = 0;
  {
    auto w = TrainDataWriter::Open(path, 4, {}, &existing);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(std::vector<int32_t>{1, 2}, 1, Ramp(8, 1)).ok());
  }
  {  // flip one feature byte: the checksum catches it
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.put('\x7f');
  }
  TrainDataInfo info;
  auto recs = ReadTrainData(path, &info);
  EXPECT_EQ(recs.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(recs.status().message().find("checksum"), std::string::npos) << recs.status();
  EXPECT_EQ(TrainDataWriter::Open(path, 4, {}, &existing).status().code(),
            absl::StatusCode::kDataLoss);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << "not a shard at all";
  }
  EXPECT_EQ(ReadTrainData(path, &info).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadTrainData(path + ".missing", &info).status().code(), absl::StatusCode::kNotFound);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace eagle
