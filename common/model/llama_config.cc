#include "common/model/llama_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace eagle {

absl::Status LlamaConfig::Validate() const {
  auto bad = [&](auto&&... p) {
    return absl::InvalidArgumentError(absl::StrCat("model config ", name, ": ", p...));
  };
  if (vocab_size <= 0 || hidden_size <= 0 || intermediate_size <= 0 || num_layers <= 0 ||
      num_heads <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
    return bad("sizes must be positive (vocab ", vocab_size, ", hidden ", hidden_size, ", ffn ",
               intermediate_size, ", layers ", num_layers, ", heads ", num_heads, "/", num_kv_heads,
               ", head_dim ", head_dim, ")");
  }
  if (num_heads % num_kv_heads != 0) {
    return bad("num_heads ", num_heads, " is not a multiple of num_kv_heads ", num_kv_heads);
  }
  if (head_dim % 2 != 0 || head_dim > 256)
    return bad("head_dim ", head_dim, " must be even and <= 256");
  if (hidden_size % 32 != 0 || intermediate_size % 32 != 0 || q_dim() % 32 != 0) {
    return bad("hidden, ffn and q sizes must be multiples of 32");
  }
  if (num_layers > 1024 || hidden_size > 65536 || vocab_size > (1 << 22)) {
    return bad("implausibly large dimensions");
  }
  if (!(rms_norm_eps > 0) || !(rope_theta > 0))
    return bad("rms_norm_eps and rope_theta must be > 0");
  if (max_position <= 0 || max_position > (1 << 22)) return bad("bad max_position ", max_position);
  return absl::OkStatus();
}

absl::StatusOr<LlamaConfig> ParseHfConfig(const std::string& text, const std::string& path) {
  LlamaConfig c;
  c.name = path;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    auto get_int = [&](const char* k, int def) {
      return j.contains(k) && j[k].is_number() ? j[k].get<int>() : def;
    };
    c.vocab_size = get_int("vocab_size", 0);
    c.hidden_size = get_int("hidden_size", 0);
    c.intermediate_size = get_int("intermediate_size", 0);
    c.num_layers = get_int("num_hidden_layers", 0);
    c.num_heads = get_int("num_attention_heads", 0);
    c.num_kv_heads = get_int("num_key_value_heads", c.num_heads);
    c.head_dim = get_int("head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
    c.max_position = get_int("max_position_embeddings", 2048);
    if (j.contains("rms_norm_eps") && j["rms_norm_eps"].is_number())
      c.rms_norm_eps = j["rms_norm_eps"].get<float>();
    if (j.contains("rope_theta") && j["rope_theta"].is_number())
      c.rope_theta = j["rope_theta"].get<double>();
    if (j.contains("tie_word_embeddings") && j["tie_word_embeddings"].is_boolean()) {
      c.tied_embeddings = j["tie_word_embeddings"].get<bool>();
    }
    if (j.contains("bos_token_id") && j["bos_token_id"].is_number())
      c.bos_id = j["bos_token_id"].get<int>();
    if (j.contains("eos_token_id")) {
      if (j["eos_token_id"].is_number()) c.eos_id = j["eos_token_id"].get<int>();
      if (j["eos_token_id"].is_array() && !j["eos_token_id"].empty())
        c.eos_id = j["eos_token_id"][0].get<int>();
    }
    if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
      const auto& rs = j["rope_scaling"];
      std::string type = rs.value("rope_type", rs.value("type", std::string("")));
      if (type == "llama3") {
        c.rope_scaling.type = RopeScaling::Type::kLlama3;
        c.rope_scaling.factor = rs.value("factor", 8.0);
        c.rope_scaling.low_freq_factor = rs.value("low_freq_factor", 1.0);
        c.rope_scaling.high_freq_factor = rs.value("high_freq_factor", 4.0);
        c.rope_scaling.original_max_position = rs.value("original_max_position_embeddings", 8192);
      } else if (type == "linear") {
        c.rope_scaling.type = RopeScaling::Type::kLinear;
        c.rope_scaling.factor = rs.value("factor", 1.0);
      } else if (!type.empty() && type != "default") {
        return absl::UnimplementedError(
            absl::StrCat(path, ": unsupported rope_scaling type '", type, "'"));
      }
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad config.json: ", e.what()));
  }
  return c;
}

}  // namespace eagle
