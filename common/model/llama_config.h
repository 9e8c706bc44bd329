// LLaMA-family model configuration, read from GGUF metadata or a Hugging Face config.json.
#ifndef EAGLE_COMMON_MODEL_LLAMA_CONFIG_H_
#define EAGLE_COMMON_MODEL_LLAMA_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace eagle {

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;      // llama3
  double high_freq_factor = 4.0;     // llama3
  int original_max_position = 8192;  // llama3
};

struct LlamaConfig {
  std::string name;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float rms_norm_eps = 1e-5f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int max_position = 2048;
  bool tied_embeddings = false;
  // GGUF files store q/k rows permuted for adjacent-pair RoPE (GPT-J style); Hugging Face
  // checkpoints use rotate-half (NeoX style).
  bool rope_interleaved = false;
  int bos_id = -1;
  int eos_id = -1;

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  absl::Status Validate() const;
};

// Parses a Hugging Face config.json (LlamaForCausalLM and compatible).
absl::StatusOr<LlamaConfig> ParseHfConfig(const std::string& json_text, const std::string& path);

}  // namespace eagle

#endif  // EAGLE_COMMON_MODEL_LLAMA_CONFIG_H_
