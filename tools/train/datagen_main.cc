// eagle-datagen: self-distilled training data for EAGLE heads. The target model writes its own
// responses to prompts (chat template applied; greedy, and sampled at --temperature for every
// --sampled-every-th prompt), then one prefill over prompt + response extracts the target's
// final-norm hidden states. Records go to a checksummed shard (common/eagle/train_data.h);
// rerunning with the same arguments resumes after the last whole record. Held-out prompts
// (tests/data/heldout_prompts.jsonl) are never used.
//   eagle-datagen --out FILE [--model PATH] [--data-dir DIR] [--limit N] [--max-tokens N]
//                 [--sampled-every K] [--temperature T] [--seed S] [--threads N]
#include <omp.h>

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
#include "common/eagle/train_data.h"
#include "common/generate.h"

namespace eagle {
namespace {

namespace fs = std::filesystem;

int Main(int argc, char** argv) {
  std::map<std::string, std::string> a = {{"--model", EAGLE_DEFAULT_MODEL},
                                          {"--data-dir", EAGLE_DEFAULT_DATA},
                                          {"--heldout", EAGLE_HELDOUT},
                                          {"--limit", "2000"},
                                          {"--max-tokens", "256"},
                                          {"--sampled-every", "3"},
                                          {"--temperature", "0.7"},
                                          {"--seed", "1"},
                                          {"--threads", "0"},
                                          {"--out", ""}};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!a.count(argv[i])) {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
    a[argv[i]] = argv[i + 1];
  }
  if (a["--out"].empty()) {
    std::fprintf(stderr, "usage: eagle-datagen --out FILE [options] (see the source header)\n");
    return 2;
  }
  if (std::stoi(a["--threads"]) > 0) omp_set_num_threads(std::stoi(a["--threads"]));
  auto model = LlamaModel::Load(a["--model"]);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
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
  std::mt19937_64 rng(std::stoull(a["--seed"]));
  std::shuffle(prompts.begin(), prompts.end(), rng);
  const int64_t limit = std::min<int64_t>(std::stoll(a["--limit"]), prompts.size());
  int64_t done = 0;
  auto writer = TrainDataWriter::Open(a["--out"], (*model)->config().hidden_size, &done);
  if (!writer.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(writer.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "%zu prompts available (%zu held out); generating %lld, %lld already done\n",
               prompts.size(), heldout.size(), static_cast<long long>(limit),
               static_cast<long long>(done));
  auto kind = ChatTemplateFromJinja((*model)->chat_template());
  const Tokenizer* tok = (*model)->tokenizer();
  const int sampled_every = std::max(1, std::stoi(a["--sampled-every"]));
  const auto start = std::chrono::steady_clock::now();
  int64_t tokens_written = 0;
  for (int64_t i = done; i < limit; ++i) {
    const std::string text = kind.ok()
                                 ? ApplyChatTemplate(*kind, {{"user", prompts[i].second}}, true)
                                 : prompts[i].second;
    std::vector<int32_t> ids = tok->Encode(text, true);
    if (ids.size() > 768) ids.resize(768);  // keep very long prompts bounded
    GenerateOptions o;
    o.max_tokens = std::stoi(a["--max-tokens"]);
    if (i % sampled_every == sampled_every - 1) {
      o.sampling.temperature = std::stof(a["--temperature"]);
      o.sampling.top_p = 0.95f;
      o.sampling.seed = static_cast<uint64_t>(i);
    }
    auto g = GenerateVanilla(**model, ids, o, nullptr);
    if (!g.ok()) {
      std::fprintf(stderr, "\nerror on prompt %s: %s\n", prompts[i].first.c_str(),
                   std::string(g.status().message()).c_str());
      return 1;
    }
    std::vector<int32_t> all = ids;
    all.insert(all.end(), g->token_ids.begin(), g->token_ids.end());
    if (g->finish == FinishReason::kEos)
      all.push_back(tok->eos_id() >= 0 ? (*model)->config().eos_id : 0);
    // Feature extraction: one prefill over prompt + response.
    auto cache = (*model)->NewCache(static_cast<int64_t>(all.size()));
    ForwardRequest req;
    req.tokens = all;
    req.logits = LogitsMode::kNone;
    req.return_features = true;
    auto fr = (*model)->Forward(*cache, req);
    if (!fr.ok()) {
      std::fprintf(stderr, "\nerror: %s\n", std::string(fr.status().message()).c_str());
      return 1;
    }
    if (auto s = (*writer)->Append(all, static_cast<int>(ids.size()), fr->features); !s.ok()) {
      std::fprintf(stderr, "\nerror: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    tokens_written += static_cast<int64_t>(all.size());
    const double el =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int64_t n = i + 1 - done;
    const double eta = el / n * (limit - i - 1);
    std::fprintf(stderr, "\r[%lld/%lld] %.1f prompts/s, %.0f tok/s, ETA %.0f min   ",
                 static_cast<long long>(i + 1), static_cast<long long>(limit), n / el,
                 tokens_written / el, eta / 60);
  }
  std::fprintf(stderr, "\ndone: %lld records in %s\n", static_cast<long long>(limit),
               a["--out"].c_str());
  return 0;
}

}  // namespace
}  // namespace eagle

int main(int argc, char** argv) { return eagle::Main(argc, argv); }
