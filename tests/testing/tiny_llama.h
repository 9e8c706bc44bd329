// Test helpers: seeded random tiny LLaMA models, reference quantizers, and a GGUF writer (used to
// build model files for loader tests, including deliberately corrupted ones).
#ifndef EAGLE_TESTS_TESTING_TINY_LLAMA_H_
#define EAGLE_TESTS_TESTING_TINY_LLAMA_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu/linear.h"
#include "common/dtype.h"
#include "common/eagle/eagle_head.h"
#include "common/model/llama_model.h"

namespace eagle::testing {

// Quantizes n floats (n a multiple of the block size) with GGML's reference rounding.
// Supports F32, F16, BF16, Q8_0, Q4_0, Q4_1.
std::vector<uint8_t> Quantize(DType t, const float* x, int64_t n);

struct TinyConfig {
  int vocab = 96;
  int hidden = 64;
  int ffn = 128;
  int layers = 2;
  int heads = 4;
  int kv_heads = 2;
  DType dtype = DType::kF32;  // matrices; norms stay F32
  bool tied = false;
  bool interleaved_rope = false;
  uint64_t seed = 1;
  int max_position = 512;
  cpu::Precision precision = cpu::Precision::kF32;
  bool nan_weight = false;     // F32 only: a NaN in the LM head's first row (a corrupted file)
  std::string device = "cpu";  // ModelOptions::device
  std::shared_ptr<Communicator> comm;  // ModelOptions::comm (tensor parallel)
};

// A random model built in memory (no tokenizer). With `weights`, also returns every tensor
// dequantized to f32 under its Hugging Face name (for independent reference computations).
absl::StatusOr<std::unique_ptr<LlamaModel>> MakeTinyLlama(
    const TinyConfig& cfg, std::map<std::string, std::vector<float>>* weights = nullptr);

class GgufWriter {
 public:
  void AddString(const std::string& k, const std::string& v);
  void AddU32(const std::string& k, uint32_t v);
  void AddF32(const std::string& k, float v);
  void AddBool(const std::string& k, bool v);
  void AddStrings(const std::string& k, const std::vector<std::string>& v);
  void AddI32s(const std::string& k, const std::vector<int32_t>& v);
  // dims row-major (outermost first), data already in `t`'s block layout.
  void AddTensor(const std::string& name, DType t, std::vector<int64_t> dims,
                 std::vector<uint8_t> data);
  std::vector<uint8_t> Serialize() const;
  absl::Status Write(const std::string& path) const;

 private:
  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  struct T {
    std::string name;
    DType type;
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;
  };
  std::vector<T> tensors_;
};

// Writes the tiny model of `cfg` as a GGUF file with a byte-level tokenizer (256 byte tokens
// plus "<|endoftext|>"); cfg.vocab is raised to 257 if smaller. With `permute_qk`, the q/k rows
// are permuted the way llama.cpp's converter does for Hugging Face checkpoints, so the file holds
// the same model as WriteTinyHfDir's (which uses rotate-half RoPE).
absl::Status WriteTinyGguf(const TinyConfig& cfg, const std::string& path, bool permute_qk = false);
// Writes the tiny model as a Hugging Face directory: config.json + model.safetensors.
absl::Status WriteTinyHfDir(const TinyConfig& cfg, const std::string& dir);

// A random EAGLE-1/2 head for `target` (hidden and vocab from the target), built in memory.
absl::StatusOr<std::unique_ptr<EagleHead>> MakeRandomEagleHead(const LlamaModel& target,
                                                               uint64_t seed, bool fc_bias = true);

// Writes a random EAGLE-1/2 head directory in the published layout (config.json +
// model.safetensors with the official tensor names), F32 weights.
absl::Status WriteEagleHeadDir(const std::string& dir, int hidden, int intermediate, int heads,
                               int kv_heads, int vocab, bool fc_bias, uint64_t seed);

// Writes a random EAGLE-3 head directory in the published layout (d2t, t2d, fc, midlayer.*,
// norm, lm_head over `draft_vocab` ids: every `vocab / draft_vocab`-th id).
absl::Status WriteEagle3HeadDir(const std::string& dir, int hidden, int intermediate, int heads,
                                int kv_heads, int vocab, int draft_vocab, uint64_t seed);

// n samples of N(0, scale^2), seeded.
std::vector<float> RandomNormal(int64_t n, uint64_t seed, float scale = 1.0f);

// A fresh temporary directory for one test.
std::string TempDir();

// Runs `command` with the shell, stderr merged into stdout.
struct CommandResult {
  int code;  // exit status, or -1 if it did not exit normally
  std::string out;
};
CommandResult RunCommand(const std::string& command);

// The child processes of `pid` (from /proc).
std::vector<pid_t> ChildPids(pid_t pid);
// True when `pid` no longer runs (gone, or a zombie).
bool ProcessGone(pid_t pid);

}  // namespace eagle::testing

#endif  // EAGLE_TESTS_TESTING_TINY_LLAMA_H_
