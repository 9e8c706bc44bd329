// GGUF and safetensors loading: a tiny model written by our GGUF writer loads and runs; truncated,
// bit-flipped and unsupported files give errors that name the file and the problem.
#include "common/io/gguf.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/match.h"
#include "common/io/safetensors.h"
#include "common/model/llama_model.h"
#include "common/prompt.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

ModelOptions F32Options() {
  ModelOptions mo;
  mo.precision = cpu::Precision::kF32;
  return mo;
}

std::vector<uint8_t> ReadAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
void WriteAll(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir();
    path_ = dir_ + "/tiny.gguf";
    testing::TinyConfig c;
    c.dtype = DType::kQ4_1;
    ASSERT_TRUE(testing::WriteTinyGguf(c, path_).ok());
  }
  std::string dir_, path_;
};

TEST_F(GgufTest, LoadsMetadataTensorsAndRuns) {
  auto g = GgufFile::Open(path_);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->version(), 3u);
  EXPECT_EQ(*(*g)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*g)->GetInt("llama.block_count"), 2);
  const TensorRef* q = (*g)->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::kQ4_1);
  EXPECT_EQ(q->dims, (std::vector<int64_t>{64, 64}));
  EXPECT_FALSE((*g)->GetInt("general.architecture").ok());
  EXPECT_TRUE(absl::IsNotFound((*g)->GetInt("no.such.key").status()));

  auto m = LlamaModel::Load(path_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->config().rope_interleaved);
  EXPECT_EQ((*m)->config().vocab_size, 257);
  ASSERT_NE((*m)->tokenizer(), nullptr);
  auto ids = (*m)->tokenizer()->Encode("hi!", false);
  EXPECT_EQ(ids.size(), 3u);
  auto cache = (*m)->NewCache(16);
  ForwardRequest req;
  req.tokens = ids;
  auto r = (*m)->Forward(*cache, req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->logits.size(), 3u * 257);
}

TEST_F(GgufTest, TruncatedFilesAreRefusedWithTheFileName) {
  const auto bytes = ReadAll(path_);
  for (size_t cut : {size_t{3}, size_t{20}, size_t{200}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string p = dir_ + "/cut.gguf";
    WriteAll(p, std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut));
    auto m = LlamaModel::Load(p);
    ASSERT_FALSE(m.ok()) << "cut at " << cut;
    EXPECT_TRUE(absl::StrContains(m.status().message(), "cut.gguf")) << m.status();
  }
}

TEST_F(GgufTest, BitFlipsNeverCrash) {
  const auto bytes = ReadAll(path_);
  std::mt19937_64 rng(42);
  int refused = 0;
  // Flip bits across the header region (metadata and tensor table) and the data.
  for (int trial = 0; trial < 300; ++trial) {
    auto b = bytes;
    const size_t limit = trial % 3 == 0 ? b.size() : std::min<size_t>(b.size(), 12000);
    const size_t at = rng() % limit;
    b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
    const std::string p = dir_ + "/flip.gguf";
    WriteAll(p, b);
    auto m = LlamaModel::Load(p);
    if (!m.ok()) {
      ++refused;
      EXPECT_TRUE(absl::StrContains(m.status().message(), "flip.gguf")) << m.status();
      continue;
    }
    // A flip that still parses must still run or fail cleanly.
    auto cache = (*m)->NewCache(8);
    const int32_t toks[2] = {1, 2};
    ForwardRequest req;
    req.tokens = toks;
    (void)(*m)->Forward(*cache, req);
  }
  EXPECT_GT(refused, 10);
}

TEST_F(GgufTest, UnsupportedTypeAndVersionAreNamed) {
  auto bytes = ReadAll(path_);
  auto v = bytes;
  v[4] = 7;  // version
  WriteAll(dir_ + "/v.gguf", v);
  auto g = GgufFile::Open(dir_ + "/v.gguf");
  ASSERT_FALSE(g.ok());
  EXPECT_TRUE(absl::StrContains(g.status().message(), "unsupported GGUF version 7")) << g.status();

  testing::GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddTensor("x", static_cast<DType>(9), {32}, std::vector<uint8_t>(36));
  ASSERT_TRUE(w.Write(dir_ + "/t.gguf").ok());
  g = GgufFile::Open(dir_ + "/t.gguf");
  ASSERT_FALSE(g.ok());
  EXPECT_TRUE(absl::StrContains(g.status().message(), "unsupported GGML type 9")) << g.status();

  testing::GgufWriter w2;
  w2.AddString("general.architecture", "gemma");
  ASSERT_TRUE(w2.Write(dir_ + "/a.gguf").ok());
  auto m = LlamaModel::Load(dir_ + "/a.gguf");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::StrContains(m.status().message(), "'gemma' is not supported")) << m.status();

  auto missing = LlamaModel::Load(dir_ + "/none.gguf");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
}

// Writes a safetensors file from (name, dtype string, shape, bytes).
struct StEntry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void WriteSafetensors(const std::string& path, const std::vector<StEntry>& entries) {
  nlohmann::json h;
  size_t off = 0;
  for (const auto& e : entries) {
    h[e.name] = {
        {"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
    off += e.bytes.size();
  }
  h["__metadata__"] = {{"format", "pt"}};
  std::string hs = h.dump();
  std::vector<uint8_t> out(8);
  uint64_t n = hs.size();
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), hs.begin(), hs.end());
  for (const auto& e : entries) out.insert(out.end(), e.bytes.begin(), e.bytes.end());
  WriteAll(path, out);
}

TEST(SafetensorsTest, ReadsShardsAndRejectsCorruption) {
  const std::string dir = testing::TempDir();
  std::vector<float> a(64 * 32, 0.5f);
  std::vector<uint8_t> ab(a.size() * 4);
  std::memcpy(ab.data(), a.data(), ab.size());
  WriteSafetensors(dir + "/model-00001-of-00002.safetensors", {{"w.a", "F32", {64, 32}, ab}});
  WriteSafetensors(dir + "/model-00002-of-00002.safetensors",
                   {{"w.b", "BF16", {32}, std::vector<uint8_t>(64, 0)},
                    {"w.c", "I64", {4}, std::vector<uint8_t>(32, 0)}});
  auto s = SafetensorsSet::Open(dir);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_NE((*s)->FindTensor("w.a"), nullptr);
  EXPECT_EQ((*s)->FindTensor("w.a")->dims, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ((*s)->FindTensor("w.b")->dtype, DType::kBF16);
  EXPECT_EQ((*s)->FindTensor("w.c")->dtype, DType::kI64);

  // Data shorter than the header claims.
  auto bytes = ReadAll(dir + "/model-00001-of-00002.safetensors");
  bytes.resize(bytes.size() - 10);
  const std::string bad = testing::TempDir();
  WriteAll(bad + "/x.safetensors", bytes);
  auto r = SafetensorsSet::Open(bad + "/x.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "x.safetensors")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "truncated")) << r.status();
  // Garbage header length.
  bytes[7] = 0x7f;
  WriteAll(bad + "/y.safetensors", bytes);
  EXPECT_FALSE(SafetensorsSet::Open(bad + "/y.safetensors").ok());
  // Unsupported dtype.
  WriteSafetensors(bad + "/z.safetensors", {{"w", "F8_E4M3", {4}, std::vector<uint8_t>(4)}});
  r = SafetensorsSet::Open(bad + "/z.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "F8_E4M3")) << r.status();
}

}  // namespace
}  // namespace eagle

namespace eagle {
namespace {

// The same weights as a Hugging Face directory (rotate-half RoPE) and as a GGUF file with q/k
// rows permuted like llama.cpp's converter (interleaved RoPE) give the same logits.
TEST(CheckpointTest, HuggingFaceDirAndGgufAgree) {
  for (bool tied : {false, true}) {
    testing::TinyConfig c;
    c.tied = tied;
    c.kv_heads = 2;
    const std::string dir = testing::TempDir();
    ASSERT_TRUE(testing::WriteTinyHfDir(c, dir).ok());
    ASSERT_TRUE(testing::WriteTinyGguf(c, dir + "/m.gguf", /*permute_qk=*/true).ok());
    auto hf = LlamaModel::Load(dir, F32Options());
    ASSERT_TRUE(hf.ok()) << hf.status();
    auto gg = LlamaModel::Load(dir + "/m.gguf", F32Options());
    ASSERT_TRUE(gg.ok()) << gg.status();
    EXPECT_FALSE((*hf)->config().rope_interleaved);
    EXPECT_TRUE((*gg)->config().rope_interleaved);
    EXPECT_EQ((*hf)->config().tied_embeddings, tied);
    const int32_t toks[6] = {5, 77, 3, 200, 9, 41};
    auto c1 = (*hf)->NewCache(8), c2 = (*gg)->NewCache(8);
    ForwardRequest req;
    req.tokens = toks;
    auto a = (*hf)->Forward(*c1, req), b = (*gg)->Forward(*c2, req);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->logits.size(), b->logits.size());
    for (size_t i = 0; i < a->logits.size(); ++i)
      ASSERT_NEAR(a->logits[i], b->logits[i], 1e-4) << i;
  }
}

// A Hugging Face directory as transformers >= 4.43 saves it: tokenizer.json with an empty
// normalizer Sequence, tokenizer_config.json without a template, and chat_template.jinja. Chat
// requests render the model's own template; a built-in one is the explicit fallback; a template
// outside the renderer's subset fails with its construct named, and no template with NOT_FOUND.
TEST(CheckpointTest, HuggingFaceDirectoryRendersItsOwnChatTemplate) {
  testing::TinyConfig c;
  c.vocab = 49152;  // SmolLM2's tokenizer
  const std::string dir = testing::TempDir();
  ASSERT_TRUE(testing::WriteTinyHfDir(c, dir).ok());
  const std::string data = std::string(EAGLE_TEST_DATA_DIR);
  nlohmann::json tokenizer;
  {
    std::ifstream in(data + "/smollm2_tokenizer.json");
    tokenizer = nlohmann::json::parse(in);
  }
  tokenizer["normalizer"] = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}};
  std::ofstream(dir + "/tokenizer.json") << tokenizer.dump();
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": false})";

  {  // No template anywhere: chat requests are refused, a named built-in one still works.
    auto model = LlamaModel::Load(dir, F32Options());
    ASSERT_TRUE(model.ok()) << model.status();
    auto ids = EncodeChat(**model, {{"user", "Hi"}});
    EXPECT_TRUE(absl::IsNotFound(ids.status())) << ids.status();
    EXPECT_TRUE(EncodeChat(**model, {{"user", "Hi"}}, ChatTemplateKind::kChatML).ok());
  }
  std::filesystem::copy_file(data + "/chat_templates/smollm2.jinja", dir + "/chat_template.jinja");
  auto model = LlamaModel::Load(dir, F32Options());
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<ChatMessage> chat = {{"user", "What is 2+2?"}};
  auto ids = EncodeChat(**model, chat);
  ASSERT_TRUE(ids.ok()) << ids.status();
  const std::string want =
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(*ids, (*model)->tokenizer()->Encode(want, /*parse_special=*/true));
  EXPECT_TRUE(CheckChatTemplate(**model).ok());
  (*model)->set_builtin_chat_template("chatml");  // the same format by the built-in renderer
  EXPECT_EQ(*EncodeChat(**model, chat), *ids);

  std::ofstream(dir + "/chat_template.jinja")
      << "{% macro turn(m) %}{{ m.content }}{% endmacro %}{% for m in messages %}{{ turn(m) }}"
         "{% endfor %}";
  model = LlamaModel::Load(dir, F32Options());
  ASSERT_TRUE(model.ok()) << model.status();
  auto refused = EncodeChat(**model, chat);
  EXPECT_TRUE(absl::IsUnimplemented(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "statement 'macro'"))
      << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "name a built-in template"));
  EXPECT_FALSE(CheckChatTemplate(**model).ok());
  (*model)->set_builtin_chat_template("chatml");
  EXPECT_TRUE(EncodeChat(**model, chat).ok());
}

TEST(CheckpointTest, MismatchedShapesAreNamed) {
  testing::TinyConfig c;
  const std::string dir = testing::TempDir();
  ASSERT_TRUE(testing::WriteTinyHfDir(c, dir).ok());
  // Claim a larger hidden size than the tensors have.
  std::ofstream(dir + "/config.json")
      << "{\"vocab_size\":257,\"hidden_size\":128,\"intermediate_size\":128,"
         "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2}";
  auto m = LlamaModel::Load(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::StrContains(m.status().message(), "model.embed_tokens.weight")) << m.status();
}

}  // namespace
}  // namespace eagle
