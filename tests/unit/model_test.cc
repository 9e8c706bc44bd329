// The CPU forward pass on seeded random tiny models: against an independent double-precision
// reference, and batch invariance (decode-by-decode == prefill == tree, bit for bit), KV
// compaction, features, and input validation.
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/cuda/cuda_backend.h"
#include "common/model/llama_model.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

using testing::TinyConfig;
using Weights = std::map<std::string, std::vector<float>>;

// Straightforward LLaMA forward in double precision over a causal sequence; returns logits.
std::vector<double> Reference(const TinyConfig& c, const Weights& w,
                              const std::vector<int32_t>& toks) {
  const int h = c.hidden, hd = c.hidden / c.heads, qd = c.heads * hd, kvd = c.kv_heads * hd,
            t_len = toks.size();
  auto W = [&](const std::string& n) -> const std::vector<float>& { return w.at(n); };
  auto matvec = [&](const std::vector<float>& m, const std::vector<double>& x, int rows) {
    std::vector<double> y(rows);
    const int cols = x.size();
    for (int r = 0; r < rows; ++r) {
      double s = 0;
      for (int k = 0; k < cols; ++k) s += m[r * cols + k] * x[k];
      y[r] = s;
    }
    return y;
  };
  auto norm = [&](const std::vector<double>& x, const std::vector<float>& g) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double inv = 1 / std::sqrt(ss / x.size() + 1e-5);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * g[i];
    return y;
  };
  auto rope = [&](std::vector<double>& v, int heads, int pos) {
    for (int hh = 0; hh < heads; ++hh) {
      for (int i = 0; i < hd / 2; ++i) {
        const double f = std::pow(10000.0, -2.0 * i / hd), a = pos * f;
        const int i0 = c.interleaved_rope ? 2 * i : i,
                  i1 = c.interleaved_rope ? 2 * i + 1 : i + hd / 2;
        const double x0 = v[hh * hd + i0], x1 = v[hh * hd + i1];
        v[hh * hd + i0] = x0 * std::cos(a) - x1 * std::sin(a);
        v[hh * hd + i1] = x1 * std::cos(a) + x0 * std::sin(a);
      }
    }
  };
  std::vector<std::vector<double>> x(t_len, std::vector<double>(h));
  for (int t = 0; t < t_len; ++t)
    for (int i = 0; i < h; ++i) x[t][i] = W("model.embed_tokens.weight")[toks[t] * h + i];
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    std::vector<std::vector<double>> q(t_len), k(t_len), v(t_len);
    for (int t = 0; t < t_len; ++t) {
      auto xn = norm(x[t], W(p + "input_layernorm.weight"));
      q[t] = matvec(W(p + "self_attn.q_proj.weight"), xn, qd);
      k[t] = matvec(W(p + "self_attn.k_proj.weight"), xn, kvd);
      v[t] = matvec(W(p + "self_attn.v_proj.weight"), xn, kvd);
      rope(q[t], c.heads, t);
      rope(k[t], c.kv_heads, t);
    }
    for (int t = 0; t < t_len; ++t) {
      std::vector<double> att(qd, 0);
      for (int hh = 0; hh < c.heads; ++hh) {
        const int kvh = hh / (c.heads / c.kv_heads);
        std::vector<double> s(t + 1);
        double mx = -1e300;
        for (int j = 0; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[t][hh * hd + i] * k[j][kvh * hd + i];
          s[j] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int j = 0; j <= t; ++j)
          for (int i = 0; i < hd; ++i) att[hh * hd + i] += s[j] / sum * v[j][kvh * hd + i];
      }
      auto o = matvec(W(p + "self_attn.o_proj.weight"), att, h);
      for (int i = 0; i < h; ++i) x[t][i] += o[i];
      auto xn = norm(x[t], W(p + "post_attention_layernorm.weight"));
      auto g = matvec(W(p + "mlp.gate_proj.weight"), xn, c.ffn);
      auto u = matvec(W(p + "mlp.up_proj.weight"), xn, c.ffn);
      for (int i = 0; i < c.ffn; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      auto d = matvec(W(p + "mlp.down_proj.weight"), g, h);
      for (int i = 0; i < h; ++i) x[t][i] += d[i];
    }
  }
  std::vector<double> logits;
  const auto& head = c.tied ? W("model.embed_tokens.weight") : W("lm_head.weight");
  for (int t = 0; t < t_len; ++t) {
    auto y = matvec(head, norm(x[t], W("model.norm.weight")), c.vocab);
    logits.insert(logits.end(), y.begin(), y.end());
  }
  return logits;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

struct Case {
  DType dtype;
  bool interleaved;
  bool tied;
  int heads, kv_heads;
  cpu::Precision precision = cpu::Precision::kF32;
};

class TinyModelTest : public ::testing::TestWithParam<Case> {
 protected:
  TinyConfig Config() const {
    TinyConfig c;
    c.dtype = GetParam().dtype;
    c.interleaved_rope = GetParam().interleaved;
    c.tied = GetParam().tied;
    c.heads = GetParam().heads;
    c.kv_heads = GetParam().kv_heads;
    c.precision = GetParam().precision;
    return c;
  }
};

TEST_P(TinyModelTest, MatchesDoublePrecisionReference) {
  const TinyConfig c = Config();
  Weights w;
  auto m = testing::MakeTinyLlama(c, &w);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto toks = RandomTokens(24, c.vocab, 5);
  auto cache = (*m)->NewCache(64);
  ForwardRequest req;
  req.tokens = toks;
  auto r = (*m)->Forward(*cache, req);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto ref = Reference(c, w, toks);
  ASSERT_EQ(r->logits.size(), ref.size());
  double max_err = 0, max_ref = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_err = std::max(max_err, std::fabs(r->logits[i] - ref[i]));
    max_ref = std::max(max_ref, std::fabs(ref[i]));
  }
  // f32: summation order only. int8: activations carry up to 0.4% rounding error per block,
  // compounded over the layers: allow 2% of the logit range.
  const double tol = c.precision == cpu::Precision::kF32 ? 2e-4 : 0.02 * max_ref;
  EXPECT_LT(max_err, tol) << "max abs logit error (max |logit| " << max_ref << ")";
  if (c.precision != cpu::Precision::kF32) {
    EXPECT_TRUE((*m)->int8());
  }
}

TEST_P(TinyModelTest, DecodeEqualsPrefillEqualsTreeBitForBit) {
  const TinyConfig c = Config();
  auto m = testing::MakeTinyLlama(c);
  ASSERT_TRUE(m.ok()) << m.status();
  const LlamaModel& model = **m;
  const int v = c.vocab;
  const auto toks = RandomTokens(20, v, 9);
  // Prefill all 20.
  auto c1 = model.NewCache(64);
  ForwardRequest req;
  req.tokens = toks;
  auto pre = model.Forward(*c1, req);
  ASSERT_TRUE(pre.ok());
  // Decode one at a time.
  auto c2 = model.NewCache(64);
  std::vector<float> seq;
  for (int i = 0; i < 20; ++i) {
    ForwardRequest r1;
    r1.tokens = std::span<const int32_t>(&toks[i], 1);
    auto d = model.Forward(*c2, r1);
    ASSERT_TRUE(d.ok());
    seq.insert(seq.end(), d->logits.begin(), d->logits.end());
  }
  ASSERT_EQ(seq, pre->logits) << "decode-by-decode differs from prefill";
  // Prefix of 12 by prefill, then a tree holding tokens 12..19 as one branch among others.
  auto c3 = model.NewCache(64);
  ForwardRequest r3;
  r3.tokens = std::span<const int32_t>(toks.data(), 12);
  ASSERT_TRUE(model.Forward(*c3, r3).ok());
  // Tree: node 0 = toks[12] (root), then interleave a distractor sibling at each level.
  std::vector<int32_t> tree_tokens, parents, path;
  int32_t last = -1;
  for (int d = 0; d < 8; ++d) {
    tree_tokens.push_back((toks[12 + d] + 1) % v);  // distractor, child of the same parent
    parents.push_back(last);
    tree_tokens.push_back(toks[12 + d]);
    parents.push_back(last);
    last = static_cast<int32_t>(tree_tokens.size()) - 1;
    path.push_back(last);
  }
  ForwardRequest rt;
  rt.tokens = tree_tokens;
  rt.parents = parents;
  auto tr = model.Forward(*c3, rt);
  ASSERT_TRUE(tr.ok()) << tr.status();
  for (int d = 0; d < 8; ++d) {
    const float* a = tr->logits.data() + path[d] * v;
    const float* b = pre->logits.data() + (12 + d) * v;
    ASSERT_TRUE(std::equal(a, a + v, b)) << "tree node at depth " << d << " differs from prefill";
  }
  // Keep the path, then one more decode step equals the sequential one.
  ASSERT_TRUE(c3->KeepPath(12, path).ok());
  EXPECT_EQ(c3->length(), 20);
  const int32_t extra = 3;
  ForwardRequest re;
  re.tokens = std::span<const int32_t>(&extra, 1);
  auto after_tree = model.Forward(*c3, re);
  auto after_seq = model.Forward(*c2, re);
  ASSERT_TRUE(after_tree.ok() && after_seq.ok());
  EXPECT_EQ(after_tree->logits, after_seq->logits) << "compacted cache differs";
}

INSTANTIATE_TEST_SUITE_P(
    Variants, TinyModelTest,
    ::testing::Values(Case{DType::kF32, false, false, 4, 2}, Case{DType::kF32, true, true, 4, 4},
                      Case{DType::kQ4_1, true, true, 4, 1}, Case{DType::kQ8_0, false, false, 2, 2},
                      Case{DType::kBF16, false, true, 4, 2}, Case{DType::kF16, true, false, 4, 2},
                      Case{DType::kQ4_0, false, false, 4, 2},
                      Case{DType::kQ4_1, true, true, 4, 1, cpu::Precision::kInt8},
                      Case{DType::kQ8_0, false, false, 2, 2, cpu::Precision::kInt8},
                      Case{DType::kQ4_0, false, true, 4, 2, cpu::Precision::kInt8}));

// The AVX2 kernels (CPUs without AVX-512) keep the forward batch invariant and accurate.
TEST(ModelTest, Avx2KernelsAreBatchInvariantAndAccurate) {
  if (!cpu::avx2::Supported()) GTEST_SKIP() << "no AVX2";
  const cpu::Isa saved = cpu::ActiveIsa();
  cpu::SetIsaForTesting(cpu::Isa::kAvx2);
  for (DType dt : {DType::kF32, DType::kQ4_1, DType::kQ8_0}) {
    TinyConfig c;
    c.dtype = dt;
    Weights w;
    auto m = testing::MakeTinyLlama(c, &w);
    ASSERT_TRUE(m.ok());
    const auto toks = RandomTokens(12, c.vocab, 3);
    auto c1 = (*m)->NewCache(32), c2 = (*m)->NewCache(32);
    ForwardRequest req;
    req.tokens = toks;
    auto pre = (*m)->Forward(*c1, req);
    ASSERT_TRUE(pre.ok());
    for (size_t i = 0; i < toks.size(); ++i) {
      ForwardRequest r1;
      r1.tokens = std::span<const int32_t>(&toks[i], 1);
      auto d = (*m)->Forward(*c2, r1);
      ASSERT_TRUE(d.ok());
      ASSERT_TRUE(
          std::equal(d->logits.begin(), d->logits.end(), pre->logits.begin() + i * c.vocab));
    }
    const auto ref = Reference(c, w, toks);
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(pre->logits[i], ref[i], 2e-4);
  }
  cpu::SetIsaForTesting(saved);
}

TEST(ModelTest, FeaturesAndCapturedLayers) {
  TinyConfig c;
  c.layers = 3;
  auto m = testing::MakeTinyLlama(c);
  ASSERT_TRUE(m.ok());
  const auto toks = RandomTokens(5, c.vocab, 1);
  auto cache = (*m)->NewCache(8);
  const int layers[2] = {0, 2};
  ForwardRequest req;
  req.tokens = toks;
  req.return_features = true;
  req.capture_layers = layers;
  auto r = (*m)->Forward(*cache, req);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->features.size(), 5u * c.hidden);
  ASSERT_EQ(r->layer_features.size(), 5u * 2 * c.hidden);
  // Layer 0's input is the embedding.
  std::vector<float> e(c.hidden);
  (*m)->Embed(toks[3], e.data());
  for (int i = 0; i < c.hidden; ++i) EXPECT_EQ(r->layer_features[(3 * 2 + 0) * c.hidden + i], e[i]);
  // The LM head applied to the features gives the logits.
  std::vector<float> lg(5 * c.vocab);
  (*m)->lm_head().Apply(r->features.data(), 5, lg.data());
  EXPECT_EQ(lg, r->logits);
}

// Several sequences in one ForwardBatch (a prefill, a tree, a decode step, with different
// prefixes and precisions) give each sequence exactly what Forward gives it alone.
TEST(ModelTest, ForwardBatchEqualsSeparateForwardsBitForBit) {
  for (auto precision : {cpu::Precision::kF32, cpu::Precision::kAuto, cpu::Precision::kInt8}) {
    TinyConfig c;
    c.layers = 3;
    c.dtype = DType::kQ8_0;
    c.precision = precision;
    auto m = testing::MakeTinyLlama(c);
    ASSERT_TRUE(m.ok());
    const auto prefix_a = RandomTokens(7, c.vocab, 11);
    const auto prefix_b = RandomTokens(3, c.vocab, 12);
    const auto prompt_c = RandomTokens(9, c.vocab, 13);
    const std::vector<int32_t> tree_tokens = {5, 9, 17, 3, 40};
    const std::vector<int32_t> tree_parents = {-1, 0, 0, 1, 3};
    const std::vector<int32_t> decode = {21};
    const int layers[1] = {1};
    // Requests: a tree after prefix_a, a decode step after prefix_b, a fresh prefill.
    auto make = [&](const std::vector<int32_t>& t, const std::vector<int32_t>* parents) {
      ForwardRequest r;
      r.tokens = t;
      if (parents != nullptr) r.parents = *parents;
      r.return_features = true;
      r.capture_layers = layers;
      r.logits = parents != nullptr ? LogitsMode::kAll : LogitsMode::kLast;
      return r;
    };
    std::vector<ForwardRequest> reqs = {make(tree_tokens, &tree_parents), make(decode, nullptr),
                                        make(prompt_c, nullptr)};
    auto prefilled = [&](const std::vector<int32_t>& p) {
      auto cache = (*m)->NewCache(32);
      if (!p.empty()) {
        ForwardRequest r;
        r.tokens = p;
        r.logits = LogitsMode::kNone;
        EXPECT_TRUE((*m)->Forward(*cache, r).ok());
      }
      return cache;
    };
    std::vector<std::unique_ptr<KvCache>> solo, batch;
    for (const auto* p : {&prefix_a, &prefix_b}) {
      solo.push_back(prefilled(*p));
      batch.push_back(prefilled(*p));
    }
    solo.push_back(prefilled({}));
    batch.push_back(prefilled({}));
    std::vector<ForwardResult> expected;
    for (int s = 0; s < 3; ++s) {
      auto r = (*m)->Forward(*solo[s], reqs[s]);
      ASSERT_TRUE(r.ok()) << r.status();
      expected.push_back(std::move(*r));
    }
    std::vector<KvCache*> caches = {batch[0].get(), batch[1].get(), batch[2].get()};
    auto got = (*m)->ForwardBatch(caches, reqs);
    ASSERT_TRUE(got.ok()) << got.status();
    for (int s = 0; s < 3; ++s) {
      EXPECT_EQ((*got)[s].logits, expected[s].logits) << "sequence " << s;
      EXPECT_EQ((*got)[s].features, expected[s].features) << "sequence " << s;
      EXPECT_EQ((*got)[s].layer_features, expected[s].layer_features) << "sequence " << s;
      EXPECT_EQ(batch[s]->length(), solo[s]->length());
    }
    // A cache twice in one batch, or one bad request, fails the batch before any work.
    std::vector<KvCache*> twice = {batch[0].get(), batch[0].get()};
    EXPECT_FALSE((*m)->ForwardBatch(twice, std::span(reqs).first(2)).ok());
    const std::vector<int32_t> bad = {c.vocab};
    std::vector<ForwardRequest> with_bad = {make(decode, nullptr), make(bad, nullptr)};
    std::vector<KvCache*> two = {batch[1].get(), batch[2].get()};
    const int64_t len1 = batch[1]->length();
    EXPECT_EQ((*m)->ForwardBatch(two, with_bad).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(batch[1]->length(), len1);
  }
}

// The backend's workspaces: one per concurrent pass, reused (and grown) across passes, with the
// same bits from a reused, grown workspace as from a fresh one.
TEST(ModelTest, WorkspacesAreReusedAndGiveTheSameBitsAsFreshOnes) {
  TinyConfig c;
  c.layers = 2;
  auto m = testing::MakeTinyLlama(c);
  auto fresh = testing::MakeTinyLlama(c);
  ASSERT_TRUE(m.ok() && fresh.ok());
  EXPECT_EQ((*m)->backend().name(), "cpu");
  const auto big = RandomTokens(24, c.vocab, 5);
  const auto small = RandomTokens(3, c.vocab, 6);
  auto run = [&](const LlamaModel& model, const std::vector<int32_t>& toks) {
    auto cache = model.NewCache(32);
    ForwardRequest r;
    r.tokens = toks;
    r.return_features = true;
    auto out = model.Forward(*cache, r);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : ForwardResult{};
  };
  run(**m, big);  // grows the workspace to 24 rows, leaving its contents behind
  for (int i = 0; i < 5; ++i) run(**m, small);
  EXPECT_EQ((*m)->cpu().workspaces_made(), 1);
  const ForwardResult reused = run(**m, small), first = run(**fresh, small);
  EXPECT_EQ(reused.logits, first.logits);
  EXPECT_EQ(reused.features, first.features);
  // Concurrent passes each get their own workspace (at most one per caller).
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) EXPECT_EQ(run(**m, small).logits, first.logits);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE((*m)->cpu().workspaces_made(), 5);
}

TEST(ModelTest, DeviceIsParsedAndAMissingGpuIsAPreciseError) {
  EXPECT_EQ(*ParseDevice("cpu"), -1);
  EXPECT_EQ(*ParseDevice("cuda"), 0);
  EXPECT_EQ(*ParseDevice("cuda:3"), 3);
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:x", "CPU", ""}) {
    EXPECT_EQ(ParseDevice(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  TinyConfig c;
  c.device = "cuda:" + std::to_string(CudaDeviceCount());  // one past the last device
  auto m = testing::MakeTinyLlama(c);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(),
            CudaBuilt() ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kUnimplemented)
      << m.status();
}

TEST(ModelTest, FingerprintDependsOnWeightsNotPrecision) {
  TinyConfig c;
  c.dtype = DType::kQ8_0;
  auto a = testing::MakeTinyLlama(c);
  c.precision = cpu::Precision::kInt8;
  auto b = testing::MakeTinyLlama(c);
  c.seed = 2;
  auto d = testing::MakeTinyLlama(c);
  ASSERT_TRUE(a.ok() && b.ok() && d.ok());
  EXPECT_EQ((*a)->Fingerprint(), (*b)->Fingerprint());
  EXPECT_NE((*a)->Fingerprint(), (*d)->Fingerprint());
  EXPECT_EQ((*a)->Fingerprint().size(), 16u);
}

TEST(ModelTest, WarmUpPassesOnGoodWeightsAndRefusesANan) {
  TinyConfig c;
  auto good = testing::MakeTinyLlama(c);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(WarmUp(**good).ok());
  c.dtype = DType::kQ4_1;
  c.precision = cpu::Precision::kAuto;
  auto quant = testing::MakeTinyLlama(c);
  ASSERT_TRUE(quant.ok());
  EXPECT_TRUE(WarmUp(**quant).ok());
  c = TinyConfig();
  c.nan_weight = true;
  auto bad = testing::MakeTinyLlama(c);
  ASSERT_TRUE(bad.ok()) << bad.status();
  absl::Status s = WarmUp(**bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("prefill logit element 0 is nan"), std::string::npos) << s;
}

TEST(ModelTest, BadInputsAreRejected) {
  TinyConfig c;
  auto m = testing::MakeTinyLlama(c);
  ASSERT_TRUE(m.ok());
  auto cache = (*m)->NewCache(8);
  const int32_t bad_tok[1] = {c.vocab};
  ForwardRequest req;
  req.tokens = bad_tok;
  EXPECT_TRUE(absl::IsInvalidArgument((*m)->Forward(*cache, req).status()));
  const int32_t toks[3] = {1, 2, 3};
  const int32_t bad_parents[3] = {-1, 1, 0};
  req.tokens = toks;
  req.parents = bad_parents;
  EXPECT_TRUE(absl::IsInvalidArgument((*m)->Forward(*cache, req).status()));
  req.parents = {};
  const std::vector<int32_t> many(9, 1);
  req.tokens = many;
  EXPECT_TRUE(absl::IsResourceExhausted((*m)->Forward(*cache, req).status()));
  EXPECT_EQ(cache->length(), 0);
  req.tokens = {};
  EXPECT_FALSE((*m)->Forward(*cache, req).ok());
  const int32_t path[2] = {1, 0};
  EXPECT_FALSE(cache->KeepPath(0, path).ok());
}

}  // namespace
}  // namespace eagle
