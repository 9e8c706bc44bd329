// Tests for common/tokenizer.{h,cc} and common/chat_template.{h,cc}.
//
// The SmolLM2 golden data (tests/data/tokenizer_golden.jsonl) was produced by Hugging Face
// `tokenizers` with tools/make_tokenizer_golden.py from a tokenizer.json reconstructed from the
// default model's GGUF vocabulary (tests/data/smollm2_tokenizer.json).
#include "common/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/chat_template.h"
#include "common/normalizer.h"
#include "common/piece_decoder.h"

#ifndef EAGLE_TEST_DATA_DIR
#define EAGLE_TEST_DATA_DIR "tests/data"
#endif

namespace eagle {
namespace {

namespace fs = std::filesystem;

std::string DataPath(const std::string& name) {
  return std::string(EAGLE_TEST_DATA_DIR) + "/" + name;
}

struct GoldenLine {
  std::string text;
  std::vector<int32_t> ids;
  bool roundtrip = true;  // false: the text has a byte the vocabulary cannot represent
};

std::vector<GoldenLine> ReadGolden(const std::string& path) {
  std::vector<GoldenLine> lines;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    lines.push_back({j.at("text").get<std::string>(), j.at("ids").get<std::vector<int32_t>>(),
                     j.value("roundtrip", true)});
  }
  return lines;
}

// A fresh temporary directory, removed at destruction.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "eagle_tokenizer_test";
    if (info != nullptr) name += std::string("_") + info->test_suite_name() + "_" + info->name();
    path_ = fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string Hex(const std::string& s) {
  std::string out;
  char buf[4];
  for (const unsigned char c : s) {
    std::snprintf(buf, sizeof(buf), "%02x", c);
    out += buf;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SmolLM2 (byte-level BPE, "smollm" pre-tokenizer) against Hugging Face.

class SmolLm2TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    TempDir dir;
    fs::copy_file(DataPath("smollm2_tokenizer.json"), dir.path() / "tokenizer.json");
    fs::copy_file(DataPath("smollm2_tokenizer_config.json"), dir.path() / "tokenizer_config.json");
    auto data = LoadHfTokenizerData(dir.path().string());
    ASSERT_TRUE(data.ok()) << data.status();
    data_ = new TokenizerData(*data);
    auto tokenizer = Tokenizer::Create(*data);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = tokenizer->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
    delete data_;
    data_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(tokenizer_, nullptr); }

  static TokenizerData* data_;
  static Tokenizer* tokenizer_;
};

TokenizerData* SmolLm2TokenizerTest::data_ = nullptr;
Tokenizer* SmolLm2TokenizerTest::tokenizer_ = nullptr;

TEST_F(SmolLm2TokenizerTest, LoadsHfFiles) {
  EXPECT_EQ(data_->model, "gpt2");
  EXPECT_EQ(data_->pre, "smollm");
  EXPECT_EQ(data_->tokens.size(), 49152u);
  EXPECT_EQ(data_->token_types.size(), 49152u);
  EXPECT_EQ(data_->merges.size(), 48900u);
  EXPECT_EQ(data_->merges[0], "\xC4\xA0 t");  // "Ġ t"
  for (int id = 0; id <= 16; ++id) EXPECT_EQ(data_->token_types[id], 3) << id;
  EXPECT_EQ(data_->token_types[17], 1);
  EXPECT_EQ(data_->bos_id, 1);
  EXPECT_EQ(data_->eos_id, 2);
  EXPECT_FALSE(data_->add_bos);
  EXPECT_NE(data_->chat_template.find("<|im_start|>"), std::string::npos);

  EXPECT_EQ(tokenizer_->vocab_size(), 49152);
  EXPECT_EQ(tokenizer_->bos_id(), 1);
  EXPECT_EQ(tokenizer_->eos_id(), 2);
  EXPECT_FALSE(tokenizer_->add_bos());
  EXPECT_EQ(tokenizer_->TokenId("<|im_end|>"), 2);
  EXPECT_EQ(tokenizer_->TokenId("<|im_start|>"), 1);
  EXPECT_EQ(tokenizer_->TokenId("no such token"), -1);
  EXPECT_TRUE(tokenizer_->IsEndOfGeneration(2));
  EXPECT_TRUE(tokenizer_->IsEndOfGeneration(0));  // <|endoftext|>
  EXPECT_FALSE(tokenizer_->IsEndOfGeneration(1));
  EXPECT_FALSE(tokenizer_->IsEndOfGeneration(100));
  EXPECT_FALSE(tokenizer_->IsEndOfGeneration(-1));
  EXPECT_FALSE(tokenizer_->IsEndOfGeneration(1 << 20));
}

TEST_F(SmolLm2TokenizerTest, MatchesHuggingFaceGolden) {
  const std::vector<GoldenLine> golden = ReadGolden(DataPath("tokenizer_golden.jsonl"));
  ASSERT_GE(golden.size(), 220u);
  int failures = 0;
  for (const GoldenLine& g : golden) {
    const std::vector<int32_t> ids = tokenizer_->Encode(g.text, /*parse_special=*/true);
    EXPECT_EQ(ids, g.ids) << "text (hex) " << Hex(g.text) << ": " << g.text;
    if (g.roundtrip) {
      EXPECT_EQ(tokenizer_->Decode(g.ids), g.text) << "hex " << Hex(g.text);
    }
    if (ids != g.ids && ++failures > 20) break;
  }
}

// The same vocabulary behind the LLaMA-3 ("llama-bpe", with ignore_merges) and Qwen2
// pre-tokenizers, against Hugging Face.
TEST_F(SmolLm2TokenizerTest, OtherPreTokenizersMatchHuggingFace) {
  for (const std::string pre : {"llama-bpe", "qwen2"}) {
    TokenizerData data = *data_;
    data.pre = pre;
    auto tokenizer = Tokenizer::Create(data);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    const std::vector<GoldenLine> golden =
        ReadGolden(DataPath("tokenizer_golden_" + pre + ".jsonl"));
    ASSERT_GE(golden.size(), 220u);
    int failures = 0;
    for (const GoldenLine& g : golden) {
      const std::vector<int32_t> ids = (*tokenizer)->Encode(g.text, /*parse_special=*/true);
      EXPECT_EQ(ids, g.ids) << pre << ": text (hex) " << Hex(g.text) << ": " << g.text;
      if (ids != g.ids && ++failures > 20) break;
    }
  }
}

// tokenizer.json normalizers (NFC for Qwen2, the empty Sequence transformers writes for a GGUF
// vocabulary, and the rest) read from disk as users' directories hold them, against Hugging Face
// `tokenizers` (tests/data/tokenizer_golden_normalizers.jsonl, tools/make_normalizer_golden.py).
TEST_F(SmolLm2TokenizerTest, NormalizersMatchHuggingFace) {
  nlohmann::json base;
  {
    std::ifstream in(DataPath("smollm2_tokenizer.json"));
    base = nlohmann::json::parse(in);
  }
  std::ifstream in(DataPath("tokenizer_golden_normalizers.jsonl"));
  std::string current;
  std::unique_ptr<Tokenizer> tokenizer;
  int lines = 0, normalizers = 0, changed = 0;
  TempDir dir;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json g = nlohmann::json::parse(line);
    if (g["normalizer"].dump() != current) {
      current = g["normalizer"].dump();
      nlohmann::json spec = base;
      spec["normalizer"] = g["normalizer"];
      std::ofstream(dir.path() / "tokenizer.json") << spec.dump();
      auto data = LoadHfTokenizerData(dir.path().string());
      ASSERT_TRUE(data.ok()) << data.status() << " for " << current;
      auto created = Tokenizer::Create(*std::move(data));
      ASSERT_TRUE(created.ok()) << created.status();
      tokenizer = *std::move(created);
      ++normalizers;
    }
    const std::string text = g["text"].get<std::string>();
    const std::vector<int32_t> want = g["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer->Encode(text, /*parse_special=*/true), want)
        << current << ": text (hex) " << Hex(text) << ": " << text;
    // Negative control: the normalizer matters for this text when the plain tokenizer differs.
    if (tokenizer_->Encode(text, /*parse_special=*/true) != want) ++changed;
    ++lines;
  }
  EXPECT_GE(normalizers, 14);
  EXPECT_GE(lines, 700);
  EXPECT_GE(changed, 150) << "the golden texts hardly exercise the normalizers";
}

TEST(HfLoadTest, RefusesUnsupportedNormalizersAndDecodersByName) {
  TempDir dir;
  const std::pair<const char*, const char*> cases[] = {
      {R"("normalizer": {"type": "BertNormalizer", "lowercase": true})",
       "normalizer BertNormalizer"},
      {R"("normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Precompiled"}]})",
       "normalizer Precompiled"},
      {R"("normalizer": {"type": "Replace", "pattern": {"Regex": "("}, "content": ""})",
       "normalizer Replace: regex"},
      {R"("decoder": {"type": "WordPiece", "prefix": "##"})", "decoder WordPiece"},
  };
  for (const auto& [field, message] : cases) {
    {
      std::ofstream out(dir.path() / "tokenizer.json");
      out << R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, )"
          << R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, )" << field
          << "}";
    }
    auto data = LoadHfTokenizerData(dir.path().string());
    ASSERT_FALSE(data.ok()) << field;
    EXPECT_NE(data.status().message().find(message), std::string::npos) << data.status();
    EXPECT_NE(data.status().message().find("tokenizer.json"), std::string::npos) << data.status();
  }
}

// Fields of the wrong JSON type are precise errors, not exceptions (the normalizer fuzz target
// found `"strip_right": "#"` aborting the process).
TEST(HfLoadTest, FieldsOfTheWrongTypeAreInvalidArgument) {
  auto n = Normalizer::FromJson(
      nlohmann::json::parse(R"({"type": "Strip", "strip_left": false, "strip_right": "#"})"), "t");
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find("strip_right"), std::string::npos) << n.status();
  auto d = PieceDecoder::FromJson(
      nlohmann::json::parse(R"({"type": "Metaspace", "replacement": "_", "add_prefix_space": 1})"),
      "t");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
}

// A directory as transformers >= 4.43 saves it: the template in chat_template.jinja, none in
// tokenizer_config.json, and an empty normalizer Sequence.
TEST(HfLoadTest, ReadsChatTemplateJinjaBesideTheTokenizer) {
  TempDir dir;
  nlohmann::json spec;
  {
    std::ifstream in(DataPath("smollm2_tokenizer.json"));
    spec = nlohmann::json::parse(in);
  }
  spec["normalizer"] = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}};
  std::ofstream(dir.path() / "tokenizer.json") << spec.dump();
  std::ofstream(dir.path() / "tokenizer_config.json")
      << R"({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"})";
  auto data = LoadHfTokenizerData(dir.path().string());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_TRUE(data->chat_template.empty());
  fs::copy_file(DataPath("chat_templates/smollm2.jinja"), dir.path() / "chat_template.jinja");
  data = LoadHfTokenizerData(dir.path().string());
  ASSERT_TRUE(data.ok()) << data.status();
  std::ifstream in(DataPath("chat_templates/smollm2.jinja"));
  const std::string want((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(data->chat_template, want);
  auto rendered = RenderJinjaChatTemplate(data->chat_template, {{"user", "Hi"}}, true, "", "");
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(*rendered,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_F(SmolLm2TokenizerTest, SpecialTokensAsTextWithoutParseSpecial) {
  const std::string text = "<|im_start|>user\nhi<|im_end|>";
  const std::vector<int32_t> with = tokenizer_->Encode(text, /*parse_special=*/true);
  ASSERT_FALSE(with.empty());
  EXPECT_EQ(with.front(), 1);
  EXPECT_EQ(with.back(), 2);
  const std::vector<int32_t> without = tokenizer_->Encode(text, /*parse_special=*/false);
  for (const int32_t id : without) EXPECT_GT(id, 16) << "special id " << id;
  EXPECT_EQ(tokenizer_->Decode(without), text);
}

TEST_F(SmolLm2TokenizerTest, InvalidUtf8RoundTrips) {
  const std::string text = "ok \x80\xbf bad \xe2\x82 trunc \xf0\x9f";
  const std::vector<int32_t> ids = tokenizer_->Encode(text, true);
  EXPECT_EQ(tokenizer_->Decode(ids), text);
  // SmolLM2's vocabulary has no token for the bytes 0xFE / 0xFF (never in UTF-8): like
  // tokenizers without an unk token, they are dropped.
  const std::string undecodable = std::string("a\xff\xfe") + "b";
  EXPECT_EQ(tokenizer_->Decode(tokenizer_->Encode(undecodable, true)), "ab");
}

TEST_F(SmolLm2TokenizerTest, EncodesTenKilobytesQuickly) {
  const std::vector<GoldenLine> golden = ReadGolden(DataPath("tokenizer_golden.jsonl"));
  std::string text;
  for (size_t i = 0; text.size() < 10 * 1024; ++i) {
    if (!golden[i % golden.size()].roundtrip) continue;
    text += golden[i % golden.size()].text;
    text += (i % 3 == 0) ? "\n" : " ";
  }
  // Prose-like text as well as the tricky strings.
  std::string prose;
  while (prose.size() < 10 * 1024) {
    prose += "The quick brown fox jumps over the lazy dog; it's 12:30 and we'll meet at 221B. ";
  }
  for (const std::string* t : {&text, &prose}) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tokenizer_->Encode(*t, true);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("Encode of %zu bytes -> %zu tokens took %.2f ms\n", t->size(), ids.size(), ms);
    EXPECT_LT(ms, 500.0);  // Generous for sanitizer/debug builds; ~a few ms optimized.
    EXPECT_EQ(tokenizer_->Decode(ids), *t);
  }
}

TEST_F(SmolLm2TokenizerTest, StreamDecoderReassemblesText) {
  const std::string text =
      "Emoji \U0001F468\u200D\U0001F469\u200D\U0001F467 and caf\u00e9 \u4f60\u597d!";
  const std::vector<int32_t> ids = tokenizer_->Encode(text, true);
  StreamDecoder decoder(tokenizer_);
  std::string out;
  for (const int32_t id : ids) {
    const std::string piece = decoder.Push(id);
    out += piece;
  }
  out += decoder.Flush();
  EXPECT_EQ(out, text);
}

// ---------------------------------------------------------------------------------------------
// A hand-built byte-level BPE vocabulary.

// The GPT-2 byte alphabet character of `b`.
std::string ByteChar(unsigned char b) {
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  uint32_t cp = b;
  if (!printable) {
    cp = 256;
    for (unsigned x = 0; x < b; ++x) {
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) ++cp;
    }
  }
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

// Tokens 0..255 are the byte alphabet (byte b has id b); `extra` follow from id 256.
TokenizerData TinyBpe(const std::vector<std::string>& extra, const std::vector<std::string>& merges,
                      const std::vector<int32_t>& extra_types = {}) {
  TokenizerData data;
  data.model = "gpt2";
  data.pre = "gpt2";
  for (int b = 0; b < 256; ++b) data.tokens.push_back(ByteChar(static_cast<unsigned char>(b)));
  data.token_types.assign(256, 1);
  for (size_t i = 0; i < extra.size(); ++i) {
    data.tokens.push_back(extra[i]);
    data.token_types.push_back(i < extra_types.size() ? extra_types[i] : 1);
  }
  data.merges = merges;
  return data;
}

std::unique_ptr<Tokenizer> MustCreate(TokenizerData data) {
  auto tokenizer = Tokenizer::Create(std::move(data));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

TEST(TinyBpeTest, ByteAlphabetMatchesGpt2) {
  EXPECT_EQ(ByteChar(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(ByteChar('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(ByteChar('a'), "a");
}

TEST(TinyBpeTest, MergesApplyInRankOrder) {
  // ids: 256 "ab", 257 "bc", 258 "abc"
  {
    auto tok = MustCreate(TinyBpe({"ab", "bc", "abc"}, {"b c", "a b", "a bc"}));
    ASSERT_NE(tok, nullptr);
    // "b c" has the best rank, then "a bc" forms "abc".
    EXPECT_EQ(tok->Encode("abc", false), (std::vector<int32_t>{258}));
    EXPECT_EQ(tok->Encode("abab", false), (std::vector<int32_t>{256, 256}));
  }
  {
    auto tok = MustCreate(TinyBpe({"ab", "bc", "abc"}, {"a b", "b c", "a bc"}));
    ASSERT_NE(tok, nullptr);
    // "a b" wins; there is no "ab c" merge, so "abc" is never formed.
    EXPECT_EQ(tok->Encode("abc", false), (std::vector<int32_t>{256, 'c'}));
    EXPECT_EQ(tok->Encode("bc", false), (std::vector<int32_t>{257}));
  }
  {
    // Equal pairs merge left to right: "aaa" -> "aa" "a".
    auto tok = MustCreate(TinyBpe({"aa"}, {"a a"}));
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->Encode("aaa", false), (std::vector<int32_t>{256, 'a'}));
    EXPECT_EQ(tok->Encode("aaaa", false), (std::vector<int32_t>{256, 256}));
  }
}

TEST(TinyBpeTest, PreTokenizerKeepsSpaceWithWord) {
  // 256 "Ġa", 257 "Ġab"; "a b" is not a merge, so " ab" needs "Ġa b".
  const std::string g = "\xC4\xA0";  // Ġ
  auto tok = MustCreate(TinyBpe({g + "a", g + "ab"}, {g + " a", g + "a b"}));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode(" ab", false), (std::vector<int32_t>{257}));
  EXPECT_EQ(tok->Encode("x ab", false), (std::vector<int32_t>{'x', 257}));
  // "  ab": the first space stays alone (\s+(?!\S)), the second joins the word.
  EXPECT_EQ(tok->Encode("  ab", false), (std::vector<int32_t>{' ', 257}));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{' ', 257}), "  ab");
}

TEST(TinyBpeTest, SpecialTokensSplitTheText) {
  // 256 "<|s|>" control, 257 "<u>" user-defined, 258 "<|s|><u>" control (longer match wins).
  auto tok = MustCreate(TinyBpe({"<|s|>", "<u>", "<|s|><u>"}, {}, {3, 4, 3}));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("x<|s|>y<u>z", true), (std::vector<int32_t>{'x', 256, 'y', 257, 'z'}));
  EXPECT_EQ(tok->Encode("<|s|><u>", true), (std::vector<int32_t>{258}));
  EXPECT_EQ(tok->Encode("<|s|<|s|>", true), (std::vector<int32_t>{'<', '|', 's', '|', 256}));
  // Without parse_special, control tokens are plain text; user-defined (non-special added)
  // tokens are still matched, as Hugging Face does.
  const std::vector<int32_t> plain = tok->Encode("x<|s|>y<u>z", false);
  EXPECT_EQ(plain, (std::vector<int32_t>{'x', '<', '|', 's', '|', '>', 'y', 257, 'z'}));
  EXPECT_EQ(tok->Decode(plain), "x<|s|>y<u>z");
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{'x', 256, 'y'}), "x<|s|>y");
  EXPECT_EQ(tok->TokenBytes(256), "<|s|>");
  EXPECT_EQ(tok->TokenBytes(' '), " ");
  EXPECT_EQ(tok->TokenBytes(-1), "");
  EXPECT_EQ(tok->TokenBytes(1000), "");
}

TEST(TinyBpeTest, AddedTokensDecodeThroughTheByteAlphabet) {
  // As tokenizers' ByteLevel decoder: "Ġ" in an added token decodes to a space, while a token
  // with a character outside the alphabet keeps its text.
  const std::string g = "\xC4\xA0";  // Ġ
  auto tok = MustCreate(TinyBpe({"<|a" + g + "b|>", "<\xEF\xBD\x9C" + g + ">"}, {}, {3, 3}));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("x<|a" + g + "b|>", true), (std::vector<int32_t>{'x', 256}));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{256, 257}), "<|a b|><\xEF\xBD\x9C\xC4\xA0>");
}

TEST(TinyBpeTest, StreamDecoderHoldsBackIncompleteUtf8) {
  auto tok = MustCreate(TinyBpe({}, {}));
  ASSERT_NE(tok, nullptr);
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600, four byte tokens
  const std::vector<int32_t> ids = tok->Encode("a" + emoji + "b", false);
  ASSERT_EQ(ids, (std::vector<int32_t>{'a', 0xF0, 0x9F, 0x98, 0x80, 'b'}));
  StreamDecoder decoder(tok.get());
  EXPECT_EQ(decoder.Push(ids[0]), "a");
  EXPECT_EQ(decoder.Push(ids[1]), "");
  EXPECT_EQ(decoder.Push(ids[2]), "");
  EXPECT_EQ(decoder.Push(ids[3]), "");
  EXPECT_EQ(decoder.Push(ids[4]), emoji);
  EXPECT_EQ(decoder.Push(ids[5]), "b");
  EXPECT_EQ(decoder.Flush(), "");
  // An unfinished sequence comes out at Flush; an invalid byte is not held back.
  EXPECT_EQ(decoder.Push(0xE4), "");
  EXPECT_EQ(decoder.Flush(), "\xE4");
  EXPECT_EQ(decoder.Push(0xFF), "\xFF");
  EXPECT_EQ(decoder.Push(0x80), "\x80");
}

TEST(TinyBpeTest, CreateValidates) {
  {
    TokenizerData data = TinyBpe({}, {});
    data.pre = "no-such-pre";
    const auto tok = Tokenizer::Create(data);
    ASSERT_FALSE(tok.ok());
    EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(tok.status().message().find("no-such-pre"), std::string::npos) << tok.status();
  }
  {
    TokenizerData data = TinyBpe({}, {});
    data.pre = "";  // gpt2
    EXPECT_TRUE(Tokenizer::Create(data).ok());
    data.pre = "llama-bpe";
    EXPECT_TRUE(Tokenizer::Create(data).ok());
    data.pre = "smollm";
    EXPECT_TRUE(Tokenizer::Create(data).ok());
  }
  {
    TokenizerData data = TinyBpe({}, {});
    data.model = "wordpiece";
    EXPECT_EQ(Tokenizer::Create(data).status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    TokenizerData data = TinyBpe({}, {});
    data.token_types.pop_back();
    EXPECT_FALSE(Tokenizer::Create(data).ok());
  }
  {
    TokenizerData data = TinyBpe({}, {});
    data.eos_id = 256;
    EXPECT_FALSE(Tokenizer::Create(data).ok());
  }
  {
    TokenizerData data = TinyBpe({}, {"nospace"});
    EXPECT_FALSE(Tokenizer::Create(data).ok());
  }
}

TEST(TinyBpeTest, Llama3PreTokenizer) {
  auto tok = MustCreate([] {
    TokenizerData data = TinyBpe({"12", "123"}, {"1 2", "12 3"});
    data.pre = "llama-bpe";
    return data;
  }());
  ASSERT_NE(tok, nullptr);
  // \p{N}{1,3}: "1234" -> "123" "4".
  EXPECT_EQ(tok->Encode("1234", false), (std::vector<int32_t>{257, '4'}));
}

TEST(HfLoadTest, ReportsMissingAndBrokenFiles) {
  TempDir dir;
  auto missing = LoadHfTokenizerData((dir.path() / "nope").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto empty = LoadHfTokenizerData(dir.path().string());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  {
    std::ofstream out(dir.path() / "tokenizer.json");
    out << "{\"model\": {\"type\": \"BPE\", \"vocab\": ";
  }
  auto broken = LoadHfTokenizerData(dir.path().string());
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("tokenizer.json"), std::string::npos) << broken.status();
  {
    std::ofstream out(dir.path() / "tokenizer.json");
    out << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
               "merges": [["a", "b"]]},
               "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
               "added_tokens": [{"id": 3, "content": "<eos>", "special": true},
                                {"id": 4, "content": "<x>", "special": false}]})";
  }
  {
    std::ofstream out(dir.path() / "tokenizer_config.json");
    out << R"({"eos_token": {"content": "<eos>"}, "bos_token": null, "add_bos_token": false,
               "chat_template": [{"name": "tool_use", "template": "x"},
                                 {"name": "default", "template": "{{ '<|im_start|>' }}"}]})";
  }
  auto ok = LoadHfTokenizerData(dir.path().string());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->pre, "gpt2");
  EXPECT_EQ(ok->tokens, (std::vector<std::string>{"a", "b", "ab", "<eos>", "<x>"}));
  EXPECT_EQ(ok->token_types, (std::vector<int32_t>{1, 1, 1, 3, 4}));
  EXPECT_EQ(ok->merges, (std::vector<std::string>{"a b"}));
  EXPECT_EQ(ok->eos_id, 3);
  EXPECT_EQ(ok->bos_id, -1);
  EXPECT_EQ(ok->chat_template, "{{ '<|im_start|>' }}");
  {
    std::ofstream out(dir.path() / "tokenizer_config.json");
    out << R"({"eos_token": "<missing>"})";
  }
  auto bad_eos = LoadHfTokenizerData(dir.path().string());
  ASSERT_FALSE(bad_eos.ok());
  EXPECT_NE(bad_eos.status().message().find("tokenizer_config.json"), std::string::npos);
  EXPECT_NE(bad_eos.status().message().find("<missing>"), std::string::npos);
}

TEST(HfLoadTest, DetectsPreTokenizers) {
  TempDir dir;
  const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|)"
      R"( ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)";
  const std::string cases[][2] = {
      {R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})", "gpt2"},
      {R"({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
          {"type": "ByteLevel", "add_prefix_space": false}]})",
       "smollm"},
      {R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": ")" +
           llama3 + R"("}, "behavior": "Isolated", "invert": false},
          {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})",
       "llama-bpe"},
      {R"({"type": "Whitespace"})", ""},
      {R"({"type": "ByteLevel", "add_prefix_space": true})", ""},
  };
  for (const auto& [pre_json, want] : cases) {
    {
      std::ofstream out(dir.path() / "tokenizer.json");
      out << R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": )"
          << pre_json << "}";
    }
    auto data = LoadHfTokenizerData(dir.path().string());
    if (want.empty()) {
      ASSERT_FALSE(data.ok()) << pre_json;
      EXPECT_NE(data.status().message().find("tokenizer.json"), std::string::npos) << data.status();
    } else {
      ASSERT_TRUE(data.ok()) << data.status() << " for " << pre_json;
      EXPECT_EQ(data->pre, want) << pre_json;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SentencePiece: libsentencepiece (from tokenizer.model) and the score-based fallback (tokens +
// scores only, as from a GGUF "llama" vocabulary) against the sentencepiece library's output.

class SpmTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TempDir dir;
    fs::copy_file(DataPath("tiny_spm.model"), dir.path() / "tokenizer.model");
    auto data = LoadHfTokenizerData(dir.path().string());
    ASSERT_TRUE(data.ok()) << data.status();
    data_ = *data;
    golden_ = ReadGolden(DataPath("tiny_spm_golden.jsonl"));
    ASSERT_FALSE(golden_.empty());
  }

  void CheckGolden(const Tokenizer& tok) {
    for (const GoldenLine& g : golden_) {
      EXPECT_EQ(tok.Encode(g.text, true), g.ids) << g.text;
      EXPECT_EQ(tok.Decode(g.ids), g.text) << g.text;
    }
  }

  TokenizerData data_;
  std::vector<GoldenLine> golden_;
};

TEST_F(SpmTokenizerTest, LoadsModel) {
  EXPECT_EQ(data_.model, "llama");
  EXPECT_FALSE(data_.sentencepiece_model.empty());
  EXPECT_EQ(data_.tokens.size(), 400u);
  EXPECT_EQ(data_.scores.size(), 400u);
  EXPECT_EQ(data_.tokens[1], "<s>");
  EXPECT_EQ(data_.token_types[1], 3);
  EXPECT_EQ(data_.bos_id, 1);
  EXPECT_EQ(data_.eos_id, 2);
  EXPECT_TRUE(data_.add_bos);
}

TEST_F(SpmTokenizerTest, LibraryMatchesGolden) {
  auto tok = MustCreate(data_);
  ASSERT_NE(tok, nullptr);
  CheckGolden(*tok);
  // Control tokens are parsed only with parse_special.
  const std::vector<int32_t> ids = tok->Encode("</s>hello", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 2);
  EXPECT_EQ(tok->Decode(ids), "</s>hello");
  EXPECT_TRUE(tok->IsEndOfGeneration(2));
}

TEST_F(SpmTokenizerTest, ScoresFallbackMatchesGolden) {
  TokenizerData data = data_;
  data.sentencepiece_model.clear();
  auto tok = MustCreate(data);
  ASSERT_NE(tok, nullptr);
  CheckGolden(*tok);
  // The byte fallback covers characters without a piece.
  const int32_t byte_f0 = tok->TokenId("<0xF0>");
  ASSERT_GE(byte_f0, 0);
  const std::vector<int32_t> ids = tok->Encode("\U0001F600", false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), byte_f0), ids.end());
  EXPECT_EQ(tok->TokenBytes(byte_f0), "\xF0");
  auto lib = MustCreate(data_);
  ASSERT_NE(lib, nullptr);
  for (const std::string text : {"</s>x<s>y", "<s>", "a <tool> b", "<tool>"}) {
    EXPECT_EQ(tok->Encode(text, true), lib->Encode(text, true)) << text;
    EXPECT_EQ(tok->Decode(tok->Encode(text, true)), text) << text;
  }
}

// SentencePiece vocabularies as Hugging Face writes them into tokenizer.json, read without a
// tokenizer.model: tiny_spm.model converted by transformers 4.56, behind the normalizer,
// pre-tokenizer and decoder shapes of real checkpoints (LLaMA-2's legacy Prepend/Replace, the
// non-legacy Metaspace "first", tokenizers' own Metaspace with split), against Hugging Face
// `tokenizers` (tests/data/tokenizer_golden_spm_json.jsonl, tools/make_spm_json_golden.py):
// the ids with special tokens parsed, and the text its decoder gives back.
TEST(SpmJsonTokenizerTest, MatchesHuggingFaceEncodeAndDecode) {
  nlohmann::json base;
  {
    std::ifstream in(DataPath("spm_json_tokenizer.json"));
    base = nlohmann::json::parse(in);
  }
  std::ifstream in(DataPath("tokenizer_golden_spm_json.jsonl"));
  ASSERT_TRUE(in.good());
  TempDir dir;
  std::string current;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Tokenizer> plain;  // the first variant, for the control below
  int lines = 0, variants = 0, differ = 0, byte_fallbacks = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json g = nlohmann::json::parse(line);
    const nlohmann::json& variant = g["variant"];
    if (variant.dump() != current) {
      current = variant.dump();
      nlohmann::json spec = base;
      for (const auto& [key, value] : variant.items()) spec[key] = value;
      std::ofstream(dir.path() / "tokenizer.json") << spec.dump();
      auto data = LoadHfTokenizerData(dir.path().string());
      ASSERT_TRUE(data.ok()) << data.status() << " for " << current;
      EXPECT_EQ(data->model, "spm-bpe");
      auto created = Tokenizer::Create(*std::move(data));
      ASSERT_TRUE(created.ok()) << created.status();
      if (plain == nullptr) {
        plain = *std::move(created);
        tokenizer.reset();
      } else {
        tokenizer = *std::move(created);
      }
      ++variants;
    }
    const Tokenizer& tok = tokenizer != nullptr ? *tokenizer : *plain;
    const std::string text = g["text"].get<std::string>();
    const std::vector<int32_t> want = g["ids"].get<std::vector<int32_t>>();
    const std::string decoded = g["decoded"].get<std::string>();
    const std::vector<int32_t> got = tok.Encode(text, /*parse_special=*/true);
    EXPECT_EQ(got, want) << current << ": text (hex) " << Hex(text) << ": " << text;
    EXPECT_EQ(tok.Decode(want), decoded) << current << ": " << text;
    // Streaming gives the same text, up to the one leading space that a Strip or Metaspace
    // decoder takes off the start of the whole sequence; byte tokens are completed by the
    // stream decoder.
    StreamDecoder stream(&tok);
    std::string streamed;
    for (const int32_t id : want) streamed += stream.Push(id);
    streamed += stream.Flush();
    if (current.find("ByteFallback") != std::string::npos) {
      EXPECT_TRUE(streamed == decoded || streamed == " " + decoded)
          << current << ": streamed '" << streamed << "', decoded '" << decoded << "'";
    }
    // Negative control: the variants must tokenize the texts differently from one another.
    if (tokenizer != nullptr && plain->Encode(text, true) != want) ++differ;
    if (decoded.find("<0x") == std::string::npos &&
        std::any_of(want.begin(), want.end(), [&](int32_t id) {
          return tok.TokenBytes(id).size() == 1 &&
                 static_cast<unsigned char>(tok.TokenBytes(id)[0]) >= 0x80;
        })) {
      ++byte_fallbacks;
    }
    ++lines;
  }
  EXPECT_EQ(variants, 4);
  EXPECT_GE(lines, 100);
  EXPECT_GE(differ, 30) << "the variants hardly differ on the golden texts";
  EXPECT_GE(byte_fallbacks, 8) << "the golden texts hardly exercise the byte fallback";
}

// The LLaMA-2 shape read from disk with its tokenizer_config.json: BOS added, EOS ends
// generation, the unknown token for a character without byte tokens, a directory with
// tokenizer.model beside a SentencePiece-style tokenizer.json still using the library.
TEST(SpmJsonTokenizerTest, ReadsLlama2StyleDirectory) {
  nlohmann::json spec;
  {
    std::ifstream in(DataPath("spm_json_tokenizer.json"));
    spec = nlohmann::json::parse(in);
  }
  spec["normalizer"] = nlohmann::json::parse(
      R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
          {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]})");
  spec["decoder"] = nlohmann::json::parse(
      R"({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"},
          "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
          {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})");
  TempDir dir;
  std::ofstream(dir.path() / "tokenizer.json") << spec.dump();
  std::ofstream(dir.path() / "tokenizer_config.json")
      << R"({"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>"})";
  auto data = LoadHfTokenizerData(dir.path().string());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->model, "spm-bpe");
  EXPECT_TRUE(data->byte_fallback);
  EXPECT_EQ(data->unk_id, 0);
  auto tok = MustCreate(*data);
  ASSERT_NE(tok, nullptr);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_TRUE(tok->IsEndOfGeneration(2));
  EXPECT_EQ(tok->Decode(tok->Encode("Hello world", true)), "Hello world");

  // Without byte tokens a character with no token becomes <unk>, fused with its neighbours.
  TokenizerData no_bytes = *data;
  no_bytes.byte_fallback = false;
  no_bytes.fuse_unk = true;
  auto unk = MustCreate(no_bytes);
  ASSERT_NE(unk, nullptr);
  const std::vector<int32_t> ids = unk->Encode("\u2603\u2603", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{tok->TokenId("\u2581"), 0})) << ids.size();
  no_bytes.fuse_unk = false;
  unk = MustCreate(no_bytes);
  EXPECT_EQ(unk->Encode("\u2603\u2603", false),
            (std::vector<int32_t>{tok->TokenId("\u2581"), 0, 0}));

  fs::copy_file(DataPath("tiny_spm.model"), dir.path() / "tokenizer.model");
  data = LoadHfTokenizerData(dir.path().string());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->model, "llama");
}

TEST(SpmJsonTokenizerTest, RefusesUnsupportedPartsByName) {
  nlohmann::json base;
  {
    std::ifstream in(DataPath("spm_json_tokenizer.json"));
    base = nlohmann::json::parse(in);
  }
  TempDir dir;
  const std::pair<const char*, const char*> cases[] = {
      {R"({"decoder": {"type": "CTC"}})", "decoder CTC is not supported"},
      {R"({"decoder": {"type": "Sequence", "decoders": [{"type": "Replace",
           "pattern": {"Regex": "\u2581"}, "content": " "}]}})",
       "decoder Replace with a Regex pattern"},
      {R"({"decoder": {"type": "Strip", "content": "ab", "start": 1, "stop": 0}})",
       "\"content\" must be one character"},
      {R"({"pre_tokenizer": {"type": "Whitespace"}})", "pre_tokenizer Whitespace"},
      {R"({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
           "prepend_scheme": "sometimes"}})",
       "prepend_scheme"},
      {R"({"model": {"dropout": 0.1}})", "BPE dropout"},
      {R"({"model": {"unk_token": "<nope>"}})", "unk_token '<nope>' is not in the vocabulary"},
  };
  for (const auto& [patch, message] : cases) {
    nlohmann::json spec = base;
    spec.merge_patch(nlohmann::json::parse(patch));
    std::ofstream(dir.path() / "tokenizer.json") << spec.dump();
    auto data = LoadHfTokenizerData(dir.path().string());
    ASSERT_FALSE(data.ok()) << patch;
    EXPECT_NE(data.status().message().find(message), std::string::npos) << data.status();
    EXPECT_NE(data.status().message().find("tokenizer.json"), std::string::npos) << data.status();
  }
}

// ---------------------------------------------------------------------------------------------
// Chat templates.

std::vector<ChatMessage> Conversation() {
  return {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};
}

TEST(ChatTemplateTest, ChatMl) {
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kChatML, Conversation(), true),
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
  const std::vector<ChatMessage> user_only = {{"user", "Hi"}};
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kChatML, user_only, false,
                              "You are a helpful AI assistant named SmolLM, trained by Hugging "
                              "Face"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kChatML, user_only, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // A conversation with its own system message keeps it.
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kChatML, {{"system", "S"}}, false, "Default"),
            "<|im_start|>system\nS<|im_end|>\n");
}

TEST(ChatTemplateTest, Llama2) {
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kLlama2, Conversation(), true),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]");
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kLlama2, {{"user", "Hi"}}, true),
            "[INST] Hi [/INST]");
}

TEST(ChatTemplateTest, Llama3) {
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kLlama3, Conversation(), true),
            "<|begin_of_text|>"
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kLlama3, {{"user", "Hi"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplateTest, Vicuna) {
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kVicuna, Conversation(), true),
            "Be brief. USER: Hi ASSISTANT: Hello!</s>USER: 2+2? ASSISTANT:");
  EXPECT_EQ(ApplyChatTemplate(ChatTemplateKind::kVicuna, {{"user", "Hi"}}, true),
            "USER: Hi ASSISTANT:");
}

TEST(ChatTemplateTest, KindFromNameAndJinja) {
  EXPECT_EQ(*ChatTemplateFromName("chatml"), ChatTemplateKind::kChatML);
  EXPECT_EQ(*ChatTemplateFromName("llama2"), ChatTemplateKind::kLlama2);
  EXPECT_EQ(*ChatTemplateFromName("llama3"), ChatTemplateKind::kLlama3);
  EXPECT_EQ(*ChatTemplateFromName("vicuna"), ChatTemplateKind::kVicuna);
  EXPECT_EQ(ChatTemplateFromName("alpaca").status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(ChatTemplateFromJinja("").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ChatTemplateFromJinja("{{ messages }}").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*ChatTemplateFromJinja("{{'<|im_start|>' + message['role']}}"),
            ChatTemplateKind::kChatML);
  EXPECT_EQ(*ChatTemplateFromJinja("{{ '<|start_header_id|>' + role }}"),
            ChatTemplateKind::kLlama3);
  EXPECT_EQ(*ChatTemplateFromJinja("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"),
            ChatTemplateKind::kLlama2);
  EXPECT_EQ(*ChatTemplateFromJinja("{{ 'USER: ' + content + ' ASSISTANT:' }}"),
            ChatTemplateKind::kVicuna);

  // The template shipped with SmolLM2 (from its GGUF).
  std::ifstream in(DataPath("smollm2_tokenizer_config.json"));
  const nlohmann::json config = nlohmann::json::parse(in);
  EXPECT_EQ(*ChatTemplateFromJinja(config.at("chat_template").get<std::string>()),
            ChatTemplateKind::kChatML);
}

}  // namespace
}  // namespace eagle
