// Rotary position embedding tables (LLaMA RoPE with optional linear or llama3 scaling), computed
// as Hugging Face does: inverse frequencies and angles in float32, cos/sin of those angles in
// double precision.
//
// Thread contract: immutable after Create; Apply is const and thread-safe.
#ifndef EAGLE_COMMON_MODEL_ROPE_H_
#define EAGLE_COMMON_MODEL_ROPE_H_

#include <cstdint>
#include <vector>

#include "common/model/llama_config.h"

namespace eagle {

class Rope {
 public:
  Rope() = default;
  // `interleaved`: rotate adjacent pairs (GGUF's permuted q/k); else rotate halves (HF layout).
  Rope(int head_dim, double theta, const RopeScaling& scaling, int max_position, bool interleaved);

  // Rotates `num_heads` heads of head_dim values at x, for position pos (< max_position).
  void Apply(float* x, int num_heads, int64_t pos) const;
  int max_position() const { return max_position_; }
  int head_dim() const { return head_dim_; }
  bool interleaved() const { return interleaved_; }
  // The tables Apply uses: [max_position, head_dim / 2] each (a device backend uploads them).
  const std::vector<float>& cos_table() const { return cos_; }
  const std::vector<float>& sin_table() const { return sin_; }

 private:
  int head_dim_ = 0;
  int max_position_ = 0;
  bool interleaved_ = false;
  std::vector<float> cos_, sin_;  // [max_position, head_dim / 2]
};

}  // namespace eagle

#endif  // EAGLE_COMMON_MODEL_ROPE_H_
