// On-disk format of EAGLE training data (one shard file):
//   header: magic "EAGLEDT1" (8 bytes), u32 version, u32 hidden, u32 feature_dtype (1 = f16),
//           u32 num_layers (L); version 1 has L = 0, version 2 has L > 0 and is followed by
//           u32 layer_ids[L] (the target layers whose inputs are stored: EAGLE-3's low/mid/high).
//   records, each: u32 magic 0x52454344 ("RECD"), u32 num_tokens, u32 prompt_tokens,
//           u32 crc32 of the payload, payload = i32 tokens[num_tokens] then
//           f16 features[num_tokens, hidden] (the target's final-norm hidden state at each
//           position: the EAGLE-1/2 feature, and through the LM head the target distribution)
//           then, for L > 0, f16 layer_features[num_tokens, L * hidden] (the input residual
//           stream of each layer in layer_ids, concatenated in that order per position).
//           The loss mask is implicit: positions >= prompt_tokens are response.
// A truncated tail (interrupted writer) is detected by the record header/CRC and dropped on
// resume; a record whose CRC fails is an error, and so is resuming with another hidden size or
// other layers.
#ifndef EAGLE_COMMON_EAGLE_TRAIN_DATA_H_
#define EAGLE_COMMON_EAGLE_TRAIN_DATA_H_

#include <cstdint>
#include <cstdio>
#include <memory>
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
  // `layers`: the target layers whose inputs each record also holds (empty: none).
  static absl::StatusOr<std::unique_ptr<TrainDataWriter>> Open(const std::string& path, int hidden,
                                                               std::span<const int> layers,
                                                               int64_t* existing);
  ~TrainDataWriter();
  // features: f32 [tokens, hidden]; layer_features: f32 [tokens, layers * hidden] (empty when the
  // file holds no layers).
  absl::Status Append(std::span<const int32_t> tokens, int prompt_tokens,
                      std::span<const float> features, std::span<const float> layer_features = {});

 private:
  FILE* f_ = nullptr;
  int hidden_ = 0;
  int num_layers_ = 0;
};

struct TrainRecord {
  std::vector<int32_t> tokens;
  int prompt_tokens = 0;
  std::vector<uint16_t> features;        // f16 [tokens, hidden]
  std::vector<uint16_t> layer_features;  // f16 [tokens, layers * hidden], or empty
};

struct TrainDataInfo {
  int hidden = 0;
  std::vector<int> layers;
};

// Reads and verifies every record (for tests and tools).
absl::StatusOr<std::vector<TrainRecord>> ReadTrainData(const std::string& path,
                                                       TrainDataInfo* info);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_TRAIN_DATA_H_
