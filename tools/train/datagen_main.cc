// eagle-datagen: self-distilled training data for EAGLE heads. The target model writes its own
// responses to prompts (chat template applied; greedy, and sampled at --temperature for every
// --sampled-every-th prompt) and the target's final-norm hidden states at every position are
// kept from the generation's own forward passes. Records go to a checksummed shard
// (common/eagle/train_data.h); rerunning with the same arguments resumes after the last whole
// record. Held-out prompts (tests/data/heldout_prompts.jsonl) are never used.
//   eagle-datagen --out FILE [--model PATH] [--data-dir DIR] [--limit N] [--max-tokens N]
//                 [--sampled-every K] [--temperature T] [--seed S] [--threads N] [--batch B]
//                 [--eagle3 0|1]
// --batch: sequences generated together (continuous batching; default 16).
// --eagle3 1: also keep the inputs of target layers 2, L/2 and L-3 at every position (EAGLE-3's
// fused features, 3x the bytes of the final-norm feature), in a version-2 shard.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/chat_template.h"
#include "common/eagle/eagle_head.h"
#include "common/eagle/train_data.h"
#include "common/generate.h"
#include "tools/flag_map.h"
#include "tools/tool_model.h"

namespace eagle {
namespace {

namespace fs = std::filesystem;

int Main(int argc, char** argv) {
  FlagMap a("eagle-datagen", {{"--model", EAGLE_DEFAULT_MODEL},
                              {"--data-dir", EAGLE_DEFAULT_DATA},
                              {"--heldout", EAGLE_HELDOUT},
                              {"--limit", "2000"},
                              {"--max-tokens", "256"},
                              {"--sampled-every", "3"},
                              {"--temperature", "0.7"},
                              {"--seed", "1"},
                              {"--threads", "0"},
                              {"--batch", "16"},
                              {"--eagle3", "0"},
                              {"--out", ""}});
  a.Parse(argc, argv);
  // Every number is checked before any work (each read below exits 2 on a bad value, too).
  for (const char* f : {"--threads", "--limit", "--sampled-every", "--batch", "--max-tokens"})
    a.Int(f);
  a.Uint64("--seed");
  a.Double("--temperature");
  if (a["--out"].empty()) {
    std::fprintf(stderr, "usage: eagle-datagen --out FILE [options] (see the source header)\n");
    return 2;
  }
  const std::unique_ptr<LlamaModel> model = LoadToolModel(a);
  // Prompts: every source but the mixture file, minus the held-out ids, shuffled (fixed seed).
  std::set<std::string> heldout;
  {
    std::ifstream in(a["--heldout"]);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) heldout.insert(j["id"].get<std::string>());
    }
  }
  std::vector<std::pair<std::string, std::string>> prompts;  // id, text
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(a["--data-dir"])) {
    if (e.path().extension() == ".jsonl" && e.path().filename() != "mix_v1.jsonl") {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("id") || !j.contains("prompt")) continue;
      const std::string id = j["id"].get<std::string>();
      if (heldout.count(id)) continue;
      prompts.emplace_back(id, j["prompt"].get<std::string>());
    }
  }
  std::mt19937_64 rng(a.Uint64("--seed"));
  std::shuffle(prompts.begin(), prompts.end(), rng);
  const int64_t limit = std::min<int64_t>(a.Int("--limit"), prompts.size());
  int64_t done = 0;
  std::vector<int> layers;
  if (a["--eagle3"] == "1") {
    layers = Eagle3FeatureLayers(model->config().num_layers);
  } else if (a["--eagle3"] != "0") {
    std::fprintf(stderr, "--eagle3 takes 0 or 1\n");
    return 2;
  }
  auto writer = TrainDataWriter::Open(a["--out"], model->config().hidden_size, layers, &done);
  if (!writer.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(writer.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "%zu prompts available (%zu held out); generating %lld, %lld already done\n",
               prompts.size(), heldout.size(), static_cast<long long>(limit),
               static_cast<long long>(done));
  auto kind = ChatTemplateFromJinja(model->chat_template());
  const Tokenizer* tok = model->tokenizer();
  const int sampled_every = std::max(1, a.Int("--sampled-every"));
  const auto start = std::chrono::steady_clock::now();
  int64_t tokens_written = 0;
  // Continuous batching: up to --batch sequences decode together in one forward pass (each
  // token's result is the same as alone: the kernels are batch invariant). Features are taken
  // from the generation's own forward passes (prefill, then one row per decode step, plus one
  // last pass over the final token). Records are written in prompt order, so a rerun resumes
  // after the last whole record.
  struct Seq {
    int64_t index = 0;
    std::vector<int32_t> tokens;  // prompt, then generated tokens
    int prompt_tokens = 0;
    std::unique_ptr<KvCache> cache;
    std::unique_ptr<Sampler> sampler;
    std::vector<float> features;        // rows for tokens[0 .. fed)
    std::vector<float> layer_features;  // [fed, layers * hidden] with --eagle3 1
    int64_t fed = 0;                    // tokens already forwarded
    int generated = 0;
    bool finished = false;  // last token sampled; its feature still to compute
  };
  const int batch = std::max(1, a.Int("--batch"));
  const int max_tokens = a.Int("--max-tokens");
  const int hidden = model->config().hidden_size;
  std::vector<std::unique_ptr<Seq>> active;
  std::map<int64_t, std::unique_ptr<Seq>> ready;  // finished, waiting for earlier prompts
  int64_t next_prompt = done, next_write = done;
  while (next_write < limit) {
    while (static_cast<int>(active.size()) < batch && next_prompt < limit) {
      auto q = std::make_unique<Seq>();
      q->index = next_prompt;
      const std::string text =
          kind.ok() ? ApplyChatTemplate(*kind, {{"user", prompts[next_prompt].second}}, true)
                    : prompts[next_prompt].second;
      q->tokens = tok->Encode(text, true);
      if (q->tokens.size() > 768) q->tokens.resize(768);  // keep very long prompts bounded
      q->prompt_tokens = static_cast<int>(q->tokens.size());
      SamplingParams sp;
      if (next_prompt % sampled_every == sampled_every - 1) {
        sp.temperature = static_cast<float>(a.Double("--temperature"));
        sp.top_p = 0.95f;
        sp.seed = static_cast<uint64_t>(next_prompt);
      }
      q->sampler = std::make_unique<Sampler>(sp);
      q->cache = model->NewCache(q->prompt_tokens + max_tokens + 2);
      active.push_back(std::move(q));
      ++next_prompt;
    }
    std::vector<KvCache*> caches;
    std::vector<ForwardRequest> reqs;
    for (auto& q : active) {
      ForwardRequest r;
      r.tokens = std::span<const int32_t>(q->tokens).subspan(q->fed);
      r.logits = q->finished ? LogitsMode::kNone : LogitsMode::kLast;
      r.return_features = true;
      r.capture_layers = layers;
      caches.push_back(q->cache.get());
      reqs.push_back(r);
    }
    auto out = model->ForwardBatch(caches, reqs);
    if (!out.ok()) {
      std::fprintf(stderr, "\nerror: %s\n", std::string(out.status().message()).c_str());
      return 1;
    }
    // Sampling (a top-p selection over the vocabulary per sampled sequence) on the pool.
    std::vector<int32_t> next_token(active.size(), -1);
    const int64_t n_active = static_cast<int64_t>(active.size());
    model->pool()->ParallelFor(n_active, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        if (active[k]->finished) continue;
        next_token[k] =
            active[k]->sampler->Sample((*out)[k].logits.data(), model->config().vocab_size);
      }
    });
    for (size_t k = 0; k < active.size(); ++k) {
      Seq& q = *active[k];
      ForwardResult& fr = (*out)[k];
      q.features.insert(q.features.end(), fr.features.begin(), fr.features.end());
      q.layer_features.insert(q.layer_features.end(), fr.layer_features.begin(),
                              fr.layer_features.end());
      q.fed = static_cast<int64_t>(q.tokens.size());
      if (q.finished) continue;
      const int32_t next = next_token[k];
      q.tokens.push_back(next);
      ++q.generated;
      if (tok->IsEndOfGeneration(next) || q.generated >= max_tokens) q.finished = true;
    }
    // Sequences whose final token has been forwarded are done.
    for (size_t k = 0; k < active.size();) {
      Seq& q = *active[k];
      if (q.finished && q.fed == static_cast<int64_t>(q.tokens.size())) {
        ready[q.index] = std::move(active[k]);
        active.erase(active.begin() + static_cast<int64_t>(k));
      } else {
        ++k;
      }
    }
    while (!ready.empty() && ready.begin()->first == next_write) {
      Seq& q = *ready.begin()->second;
      if (static_cast<int64_t>(q.features.size()) != q.fed * hidden ||
          static_cast<int64_t>(q.layer_features.size()) !=
              q.fed * hidden * static_cast<int64_t>(layers.size())) {
        std::fprintf(stderr, "\nerror: feature rows do not match tokens\n");
        return 1;
      }
      if (auto st = (*writer)->Append(q.tokens, q.prompt_tokens, q.features, q.layer_features);
          !st.ok()) {
        std::fprintf(stderr, "\nerror: %s\n", std::string(st.message()).c_str());
        return 1;
      }
      tokens_written += static_cast<int64_t>(q.tokens.size());
      ready.erase(ready.begin());
      ++next_write;
      const double el =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const int64_t n = next_write - done;
      const double eta = el / n * (limit - next_write);
      std::fprintf(stderr, "\r[%lld/%lld] %.1f prompts/s, %.0f tok/s, ETA %.0f min   ",
                   static_cast<long long>(next_write), static_cast<long long>(limit), n / el,
                   tokens_written / el, eta / 60);
    }
  }
  std::fprintf(stderr, "\ndone: %lld records in %s\n", static_cast<long long>(limit),
               a["--out"].c_str());
  return 0;
}

}  // namespace
}  // namespace eagle

int main(int argc, char** argv) { return eagle::Main(argc, argv); }
