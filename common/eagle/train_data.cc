#include "common/eagle/train_data.h"

#include <unistd.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

constexpr char kMagic[8] = {'E', 'A', 'G', 'L', 'E', 'D', 'T', '1'};
constexpr uint32_t kRecordMagic = 0x52454344;
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 24;

struct RecordHeader {
  uint32_t magic, num_tokens, prompt_tokens, crc;
};

// Scans `f` from the start; returns the offset after the last whole, valid record.
absl::StatusOr<long> ScanRecords(FILE* f, const std::string& path, int* hidden, int64_t* count,
                                 std::vector<TrainRecord>* out) {
  char magic[8];
  uint32_t meta[4];
  if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, kMagic, 8) != 0 ||
      std::fread(meta, 4, 4, f) != 4) {
    return absl::DataLossError(absl::StrCat(path, ": not an EAGLE training data file"));
  }
  if (meta[0] != kVersion || meta[2] != 1 || meta[1] == 0 || meta[1] > 65536) {
    return absl::DataLossError(absl::StrCat(path, ": unsupported version/dtype/hidden"));
  }
  *hidden = static_cast<int>(meta[1]);
  long good = static_cast<long>(kHeaderBytes);
  *count = 0;
  std::vector<uint8_t> payload;
  while (true) {
    RecordHeader h;
    if (std::fread(&h, sizeof h, 1, f) != 1) break;  // clean end or torn header
    if (h.magic != kRecordMagic || h.num_tokens == 0 || h.num_tokens > (1u << 20) ||
        h.prompt_tokens > h.num_tokens) {
      return absl::DataLossError(absl::StrCat(path, ": bad record header at byte ", good));
    }
    const size_t n = h.num_tokens * 4 + static_cast<size_t>(h.num_tokens) * *hidden * 2;
    payload.resize(n);
    if (std::fread(payload.data(), 1, n, f) != n) break;  // torn payload: drop it
    if (Crc32(payload.data(), n) != h.crc) {
      return absl::DataLossError(absl::StrCat(path, ": checksum mismatch in record ", *count));
    }
    if (out != nullptr) {
      TrainRecord r;
      r.tokens.resize(h.num_tokens);
      std::memcpy(r.tokens.data(), payload.data(), h.num_tokens * 4);
      r.prompt_tokens = static_cast<int>(h.prompt_tokens);
      r.features.resize(static_cast<size_t>(h.num_tokens) * *hidden);
      std::memcpy(r.features.data(), payload.data() + h.num_tokens * 4, r.features.size() * 2);
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
                                                                       int64_t* existing) {
  auto w = std::unique_ptr<TrainDataWriter>(new TrainDataWriter());
  w->hidden_ = hidden;
  *existing = 0;
  FILE* f = std::fopen(path.c_str(), "r+b");
  if (f != nullptr) {
    int file_hidden = 0;
    auto good = ScanRecords(f, path, &file_hidden, existing, nullptr);
    if (!good.ok()) {
      std::fclose(f);
      return good.status();
    }
    if (file_hidden != hidden) {
      std::fclose(f);
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": holds hidden size ", file_hidden, ", not ", hidden));
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
  const uint32_t meta[4] = {kVersion, static_cast<uint32_t>(hidden), 1, 0};
  std::fwrite(kMagic, 1, 8, f);
  std::fwrite(meta, 4, 4, f);
  w->f_ = f;
  return w;
}

TrainDataWriter::~TrainDataWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

absl::Status TrainDataWriter::Append(std::span<const int32_t> tokens, int prompt_tokens,
                                     std::span<const float> features) {
  const size_t n = tokens.size();
  if (features.size() != n * hidden_ || prompt_tokens < 0 ||
      static_cast<size_t>(prompt_tokens) > n) {
    return absl::InvalidArgumentError("TrainDataWriter: inconsistent record");
  }
  std::vector<uint8_t> payload(n * 4 + n * hidden_ * 2);
  std::memcpy(payload.data(), tokens.data(), n * 4);
  auto* f16 = reinterpret_cast<uint16_t*>(payload.data() + n * 4);
  for (size_t i = 0; i < features.size(); ++i) f16[i] = FloatToHalf(features[i]);
  RecordHeader h{kRecordMagic, static_cast<uint32_t>(n), static_cast<uint32_t>(prompt_tokens),
                 Crc32(payload.data(), payload.size())};
  if (std::fwrite(&h, sizeof h, 1, f_) != 1 ||
      std::fwrite(payload.data(), 1, payload.size(), f_) != payload.size() ||
      std::fflush(f_) != 0) {
    return absl::InternalError("TrainDataWriter: write failed");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TrainRecord>> ReadTrainData(const std::string& path, int* hidden) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<TrainRecord> out;
  int64_t count = 0;
  auto good = ScanRecords(f, path, hidden, &count, &out);
  std::fclose(f);
  if (!good.ok()) return good.status();
  return out;
}

}  // namespace eagle
