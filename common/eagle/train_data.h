// On-disk format of EAGLE training data (one shard file):
//   header: magic "EAGLEDT1" (8 bytes), u32 version = 1, u32 hidden, u32 feature_dtype (1 = f16),
//           u32 reserved
//   records, each: u32 magic 0x52454344 ("RECD"), u32 num_tokens, u32 prompt_tokens,
//           u32 crc32 of the payload, payload = i32 tokens[num_tokens] then
//           f16 features[num_tokens, hidden] (the target's final-norm hidden state at each
//           position). The loss mask is implicit: positions >= prompt_tokens are response.
// A truncated tail (interrupted writer) is detected by the record header/CRC and dropped on
// resume; a record whose CRC fails is an error.
#ifndef EAGLE_COMMON_EAGLE_TRAIN_DATA_H_
#define EAGLE_COMMON_EAGLE_TRAIN_DATA_H_

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle {

uint32_t Crc32(const void* data, size_t n, uint32_t crc = 0);

class TrainDataWriter {
 public:
  // Opens (or creates) `path`; with an existing valid file, appends after its last whole record
  // (a torn tail is cut off). Returns the number of records already present via *existing.
  static absl::StatusOr<std::unique_ptr<TrainDataWriter>> Open(const std::string& path, int hidden,
                                                               int64_t* existing);
  ~TrainDataWriter();
  absl::Status Append(std::span<const int32_t> tokens, int prompt_tokens,
                      std::span<const float> features);

 private:
  FILE* f_ = nullptr;
  int hidden_ = 0;
};

struct TrainRecord {
  std::vector<int32_t> tokens;
  int prompt_tokens = 0;
  std::vector<uint16_t> features;  // f16 [tokens, hidden]
};

// Reads and verifies every record (for tests and tools).
absl::StatusOr<std::vector<TrainRecord>> ReadTrainData(const std::string& path, int* hidden);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_TRAIN_DATA_H_
