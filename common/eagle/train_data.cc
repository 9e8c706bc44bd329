#include "common/eagle/train_data.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

constexpr char kMagic[8] = {'E', 'A', 'G', 'L', 'E', 'D', 'T', '1'};
constexpr uint32_t kRecordMagic = 0x52454344;
constexpr size_t kHeaderBytes = 24;
constexpr uint32_t kMaxLayers = 64;

struct RecordHeader {
  uint32_t magic, num_tokens, prompt_tokens, crc;
};

// Scans `f` from the start; returns the offset after the last whole, valid record.
absl::StatusOr<long> ScanRecords(FILE* f, const std::string& path, TrainDataInfo* info,
                                 int64_t* count, std::vector<TrainRecord>* out) {
  char magic[8];
  uint32_t meta[4];
  if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, kMagic, 8) != 0 ||
      std::fread(meta, 4, 4, f) != 4) {
    return absl::DataLossError(absl::StrCat(path, ": not an EAGLE training data file"));
  }
  const bool v1 = meta[0] == 1 && meta[3] == 0, v2 = meta[0] == 2 && meta[3] > 0;
  if (!(v1 || v2) || meta[2] != 1 || meta[1] == 0 || meta[1] > 65536 || meta[3] > kMaxLayers) {
    return absl::DataLossError(absl::StrCat(path, ": unsupported version/dtype/hidden/layers"));
  }
  info->hidden = static_cast<int>(meta[1]);
  info->layers.assign(meta[3], 0);
  if (meta[3] > 0 && std::fread(info->layers.data(), 4, meta[3], f) != meta[3]) {
    return absl::DataLossError(absl::StrCat(path, ": truncated header"));
  }
  const size_t hidden = static_cast<size_t>(info->hidden);
  const size_t row = hidden * (1 + info->layers.size());  // f16 values per token
  long good = static_cast<long>(kHeaderBytes + 4 * meta[3]);
  *count = 0;
  std::vector<uint8_t> payload;
  while (true) {
    RecordHeader h;
    if (std::fread(&h, sizeof h, 1, f) != 1) break;  // clean end or torn header
    if (h.magic != kRecordMagic || h.num_tokens == 0 || h.num_tokens > (1u << 20) ||
        h.prompt_tokens > h.num_tokens) {
      return absl::DataLossError(absl::StrCat(path, ": bad record header at byte ", good));
    }
    const size_t tokens = h.num_tokens, n = tokens * 4 + tokens * row * 2;
    payload.resize(n);
    if (std::fread(payload.data(), 1, n, f) != n) break;  // torn payload: drop it
    if (Crc32(payload.data(), n) != h.crc) {
      return absl::DataLossError(absl::StrCat(path, ": checksum mismatch in record ", *count));
    }
    if (out != nullptr) {
      TrainRecord r;
      r.tokens.resize(tokens);
      std::memcpy(r.tokens.data(), payload.data(), tokens * 4);
      r.prompt_tokens = static_cast<int>(h.prompt_tokens);
      r.features.resize(tokens * hidden);
      std::memcpy(r.features.data(), payload.data() + tokens * 4, r.features.size() * 2);
      r.layer_features.resize(tokens * (row - hidden));
      if (!r.layer_features.empty()) {  // memcpy from/to null is undefined even for 0 bytes
        std::memcpy(r.layer_features.data(), payload.data() + tokens * 4 + r.features.size() * 2,
                    r.layer_features.size() * 2);
      }
      out->push_back(std::move(r));
    }
    good = std::ftell(f);
    ++*count;
  }
  return good;
}

}  // namespace

uint32_t Crc32(const void* data, size_t n, uint32_t crc) {
  static uint32_t table[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  crc = ~crc;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

absl::StatusOr<std::unique_ptr<TrainDataWriter>> TrainDataWriter::Open(const std::string& path,
                                                                       int hidden,
                                                                       std::span<const int> layers,
                                                                       int64_t* existing) {
  if (hidden <= 0 || layers.size() > kMaxLayers) {
    return absl::InvalidArgumentError("TrainDataWriter: bad hidden size or layer count");
  }
  auto w = std::unique_ptr<TrainDataWriter>(new TrainDataWriter());
  w->hidden_ = hidden;
  w->num_layers_ = static_cast<int>(layers.size());
  *existing = 0;
  FILE* f = std::fopen(path.c_str(), "r+b");
  if (f != nullptr) {
    TrainDataInfo info;
    auto good = ScanRecords(f, path, &info, existing, nullptr);
    if (!good.ok()) {
      std::fclose(f);
      return good.status();
    }
    if (info.hidden != hidden ||
        !std::equal(info.layers.begin(), info.layers.end(), layers.begin(), layers.end())) {
      std::fclose(f);
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": holds hidden size ", info.hidden, " and layers [",
                       absl::StrJoin(info.layers, ","), "], not ", hidden, " and [",
                       absl::StrJoin(layers, ","), "]"));
    }
    if (ftruncate(fileno(f), *good) != 0 || std::fseek(f, *good, SEEK_SET) != 0) {
      std::fclose(f);
      return absl::InternalError(absl::StrCat(path, ": cannot cut the torn tail"));
    }
    w->f_ = f;
    return w;
  }
  f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot create"));
  const uint32_t meta[4] = {layers.empty() ? 1u : 2u, static_cast<uint32_t>(hidden), 1,
                            static_cast<uint32_t>(layers.size())};
  std::vector<uint32_t> ids(layers.begin(), layers.end());
  std::fwrite(kMagic, 1, 8, f);
  std::fwrite(meta, 4, 4, f);
  if (!ids.empty()) std::fwrite(ids.data(), 4, ids.size(), f);
  if (std::fflush(f) != 0) {
    std::fclose(f);
    return absl::InternalError(absl::StrCat(path, ": cannot write the header"));
  }
  w->f_ = f;
  return w;
}

TrainDataWriter::~TrainDataWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

absl::Status TrainDataWriter::Append(std::span<const int32_t> tokens, int prompt_tokens,
                                     std::span<const float> features,
                                     std::span<const float> layer_features) {
  const size_t n = tokens.size(), hidden = static_cast<size_t>(hidden_);
  if (n == 0 || features.size() != n * hidden ||
      layer_features.size() != n * hidden * num_layers_ || prompt_tokens < 0 ||
      static_cast<size_t>(prompt_tokens) > n) {
    return absl::InvalidArgumentError("TrainDataWriter: inconsistent record");
  }
  std::vector<uint8_t> payload(n * 4 + (features.size() + layer_features.size()) * 2);
  std::memcpy(payload.data(), tokens.data(), n * 4);
  auto* f16 = reinterpret_cast<uint16_t*>(payload.data() + n * 4);
  for (size_t i = 0; i < features.size(); ++i) f16[i] = FloatToHalf(features[i]);
  f16 += features.size();
  for (size_t i = 0; i < layer_features.size(); ++i) f16[i] = FloatToHalf(layer_features[i]);
  RecordHeader h{kRecordMagic, static_cast<uint32_t>(n), static_cast<uint32_t>(prompt_tokens),
                 Crc32(payload.data(), payload.size())};
  if (std::fwrite(&h, sizeof h, 1, f_) != 1 ||
      std::fwrite(payload.data(), 1, payload.size(), f_) != payload.size() ||
      std::fflush(f_) != 0) {
    return absl::InternalError("TrainDataWriter: write failed");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TrainRecord>> ReadTrainData(const std::string& path,
                                                       TrainDataInfo* info) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<TrainRecord> out;
  int64_t count = 0;
  auto good = ScanRecords(f, path, info, &count, &out);
  std::fclose(f);
  if (!good.ok()) return good.status();
  return out;
}

}  // namespace eagle
