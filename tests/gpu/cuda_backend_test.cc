// The CUDA backend against the CPU backend (the numerical reference, f32 path) and against
// itself (batch invariance, bit for bit), and speculative decoding on the GPU equal to vanilla
// decoding on the GPU at T = 0. Every test skips when this build or machine has no CUDA device.
#include "common/cuda/cuda_backend.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/eagle/draft_model.h"
#include "common/eagle/eagle_head.h"
#include "common/eagle/speculative.h"
#include "common/generate.h"
#include "common/model/llama_model.h"
#include "common/prompt.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

#define SKIP_WITHOUT_GPU()                                                   \
  if (CudaDeviceCount() == 0) {                                              \
    GTEST_SKIP() << (CudaBuilt() ? "no CUDA device" : "built without CUDA"); \
  }

std::vector<int32_t> RandomTokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

double RelativeError(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct Pair {
  std::unique_ptr<LlamaModel> cpu, gpu;
};
Pair TinyPair(DType dtype, bool interleaved) {
  testing::TinyConfig c;
  c.layers = 3;
  c.dtype = dtype;
  c.interleaved_rope = interleaved;
  c.precision = cpu::Precision::kF32;
  auto cpu_model = testing::MakeTinyLlama(c);
  c.device = "cuda";
  auto gpu_model = testing::MakeTinyLlama(c);
  EXPECT_TRUE(cpu_model.ok()) << cpu_model.status();
  EXPECT_TRUE(gpu_model.ok()) << gpu_model.status();
  if (!cpu_model.ok() || !gpu_model.ok()) return {};
  return {std::move(*cpu_model), std::move(*gpu_model)};
}

TEST(CudaBackendTest, MatchesTheCpuF32PathOnPrefillTreeAndDecode) {
  SKIP_WITHOUT_GPU();
  for (DType dtype : {DType::kF32, DType::kQ8_0, DType::kQ4_0}) {
    for (bool interleaved : {false, true}) {
      Pair p = TinyPair(dtype, interleaved);
      ASSERT_NE(p.gpu, nullptr);
      EXPECT_EQ(p.gpu->backend().name(), "cuda:0");
      const auto prompt = RandomTokens(11, 96, 3);
      const std::vector<int32_t> tree = {5, 9, 17, 3, 40};
      const std::vector<int32_t> parents = {-1, 0, 0, 1, 3};
      const int capture[1] = {1};
      auto cc = p.cpu->NewCache(64), gc = p.gpu->NewCache(64);
      ForwardRequest pre;
      pre.tokens = prompt;
      pre.return_features = true;
      pre.capture_layers = capture;
      auto rc = p.cpu->Forward(*cc, pre), rg = p.gpu->Forward(*gc, pre);
      ASSERT_TRUE(rc.ok() && rg.ok()) << rg.status();
      EXPECT_LT(RelativeError(rg->logits, rc->logits), 1e-4);
      EXPECT_LT(RelativeError(rg->features, rc->features), 1e-4);
      EXPECT_LT(RelativeError(rg->layer_features, rc->layer_features), 1e-4);
      ForwardRequest t;
      t.tokens = tree;
      t.parents = parents;
      rc = p.cpu->Forward(*cc, t);
      rg = p.gpu->Forward(*gc, t);
      ASSERT_TRUE(rc.ok() && rg.ok()) << rg.status();
      EXPECT_LT(RelativeError(rg->logits, rc->logits), 1e-4);
      // Keep the path 0 -> 1 -> 3 on both, then decode one token.
      const std::vector<int32_t> path = {0, 1, 3};
      ASSERT_TRUE(cc->KeepPath(prompt.size(), path).ok());
      ASSERT_TRUE(gc->KeepPath(prompt.size(), path).ok());
      const std::vector<int32_t> next = {7};
      ForwardRequest d;
      d.tokens = next;
      rc = p.cpu->Forward(*cc, d);
      rg = p.gpu->Forward(*gc, d);
      ASSERT_TRUE(rc.ok() && rg.ok()) << rg.status();
      EXPECT_LT(RelativeError(rg->logits, rc->logits), 1e-4);
    }
  }
}

// Decode-by-decode, one prefill and a chain-shaped tree give the GPU the same bits.
TEST(CudaBackendTest, DecodeEqualsPrefillEqualsTreeBitForBit) {
  SKIP_WITHOUT_GPU();
  Pair p = TinyPair(DType::kQ8_0, false);
  ASSERT_NE(p.gpu, nullptr);
  const LlamaModel& m = *p.gpu;
  const auto toks = RandomTokens(9, 96, 4);
  auto a = m.NewCache(32);
  ForwardRequest all;
  all.tokens = toks;
  auto prefill = m.Forward(*a, all);
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  auto b = m.NewCache(32);
  std::vector<float> stepwise;
  for (int32_t tkn : toks) {
    ForwardRequest one;
    const int32_t x[1] = {tkn};
    one.tokens = x;
    auto r = m.Forward(*b, one);
    ASSERT_TRUE(r.ok()) << r.status();
    stepwise.insert(stepwise.end(), r->logits.begin(), r->logits.end());
  }
  EXPECT_EQ(stepwise, prefill->logits);
  auto c = m.NewCache(32);
  std::vector<int32_t> chain(toks.size());
  for (size_t i = 0; i < chain.size(); ++i) chain[i] = static_cast<int32_t>(i) - 1;
  ForwardRequest tree;
  tree.tokens = toks;
  tree.parents = chain;
  auto tr = m.Forward(*c, tree);
  ASSERT_TRUE(tr.ok()) << tr.status();
  EXPECT_EQ(tr->logits, prefill->logits);
}

// Several sequences in one pass give each what it gets alone, bit for bit.
TEST(CudaBackendTest, ForwardBatchEqualsSeparateForwardsBitForBit) {
  SKIP_WITHOUT_GPU();
  Pair p = TinyPair(DType::kQ4_0, true);
  ASSERT_NE(p.gpu, nullptr);
  const LlamaModel& m = *p.gpu;
  const auto prefix = RandomTokens(7, 96, 5), prompt = RandomTokens(13, 96, 6);
  const std::vector<int32_t> tree = {5, 9, 17, 3}, parents = {-1, 0, 0, 1}, decode = {21};
  auto prefilled = [&] {
    auto cache = m.NewCache(64);
    ForwardRequest r;
    r.tokens = prefix;
    EXPECT_TRUE(m.Forward(*cache, r).ok());
    return cache;
  };
  std::vector<ForwardRequest> reqs(3);
  reqs[0].tokens = tree;
  reqs[0].parents = parents;
  reqs[0].return_features = true;
  reqs[1].tokens = decode;
  reqs[2].tokens = prompt;
  reqs[2].logits = LogitsMode::kLast;
  std::vector<std::unique_ptr<KvCache>> solo, batch;
  for (int s = 0; s < 3; ++s) {
    solo.push_back(s < 2 ? prefilled() : m.NewCache(64));
    batch.push_back(s < 2 ? prefilled() : m.NewCache(64));
  }
  std::vector<ForwardResult> expected;
  for (int s = 0; s < 3; ++s) {
    auto r = m.Forward(*solo[s], reqs[s]);
    ASSERT_TRUE(r.ok()) << r.status();
    expected.push_back(std::move(*r));
  }
  std::vector<KvCache*> caches = {batch[0].get(), batch[1].get(), batch[2].get()};
  auto got = m.ForwardBatch(caches, reqs);
  ASSERT_TRUE(got.ok()) << got.status();
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ((*got)[s].logits, expected[s].logits) << "sequence " << s;
    EXPECT_EQ((*got)[s].features, expected[s].features) << "sequence " << s;
  }
}

// A cache from the CPU model is refused by the GPU model, with a precise error.
TEST(CudaBackendTest, ACacheOfAnotherBackendIsRefused) {
  SKIP_WITHOUT_GPU();
  Pair p = TinyPair(DType::kF32, false);
  ASSERT_NE(p.gpu, nullptr);
  auto cpu_cache = p.cpu->NewCache(8);
  const std::vector<int32_t> toks = {1, 2};
  ForwardRequest r;
  r.tokens = toks;
  EXPECT_EQ(p.gpu->Forward(*cpu_cache, r).status().code(), absl::StatusCode::kInvalidArgument);
}

// The default model on the GPU: speculative output (shipped head, chain and dynamic trees)
// equals vanilla output on the GPU at T = 0, token for token.
TEST(CudaBackendTest, SpeculativeEqualsVanillaOnTheDefaultModel) {
  SKIP_WITHOUT_GPU();
  ModelOptions mo;
  mo.device = "cuda";
  // EAGLE_MODEL / EAGLE_HEAD: where a copy of this build runs elsewhere (scripts/gpu_check.sh).
  const char* model_path = std::getenv("EAGLE_MODEL");
  const char* head_dir = std::getenv("EAGLE_HEAD");
  const std::string model_file = model_path != nullptr ? model_path : EAGLE_DEFAULT_MODEL;
  const std::string head_path = head_dir != nullptr ? head_dir : EAGLE_DEFAULT_HEAD;
  if (!std::filesystem::exists(model_file) || !std::filesystem::exists(head_path)) {
    GTEST_SKIP() << "no default model (scripts/fetch_model.sh) or head";
  }
  auto model = LlamaModel::Load(model_file, mo);
  ASSERT_TRUE(model.ok()) << model.status();
  auto head = EagleHead::Load(head_path, **model);
  ASSERT_TRUE(head.ok()) << head.status();
  const std::vector<std::string> prompts = {
      "Explain what a hash table is and how collisions are handled.",
      "Write a haiku about the sea.", "List three uses of a paper clip."};
  for (const std::string& text : prompts) {
    auto ids = EncodeChat(**model, {{"user", text}});
    ASSERT_TRUE(ids.ok());
    GenerateOptions o;
    o.max_tokens = 64;
    auto vanilla = GenerateVanilla(**model, *ids, o, nullptr);
    ASSERT_TRUE(vanilla.ok()) << vanilla.status();
    for (TreeMode mode : {TreeMode::kChain, TreeMode::kDynamic}) {
      TreeOptions t;
      t.mode = mode;
      EagleDraftModel draft(head->get(), static_cast<int64_t>(ids->size()) + 64 + 1024);
      auto spec = GenerateSpeculative(**model, draft, *ids, o, t, nullptr, nullptr);
      ASSERT_TRUE(spec.ok()) << spec.status();
      EXPECT_EQ(spec->token_ids, vanilla->token_ids) << text;
    }
  }
}

}  // namespace
}  // namespace eagle
