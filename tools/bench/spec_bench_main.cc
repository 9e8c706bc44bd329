// eagle-spec-bench: Spec-Bench-style speculative decoding benchmark in one process.
// For each prompt (chat template applied) it runs vanilla decoding and each speculative mode
// (greedy, batch 1, after a warm-up), and prints per-category tokens/s, speedup over vanilla,
// tau (tokens per verification step, bonus included) and acceptance by depth, and checks that
// every speculative output equals the vanilla one. Writes a JSON report (--report), which
// tools/plot_spec_bench.py turns into a PNG chart.
//   eagle-spec-bench --draft DIR [--model PATH] [--prompts FILE] [--limit N] [--max-tokens N]
//                    [--modes auto,chain,static,dynamic] [--depth N] [--draft-top-k K]
//                    [--total-tokens N] [--threads N] [--device cpu|cuda|cuda:N]
//                    [--report FILE]
// Modes: auto (trees sized each step from the costs measured at start and the acceptance seen;
// the table gives the mean nodes per step and the steps without a draft), chain, static
// (mc_sim_7b_63), dynamic (EAGLE-2 with --depth/--draft-top-k/
// --total-tokens), eagle2 (EAGLE-2 at its published evaluation defaults: top-k 10, depth 5,
// 60 tokens; the tree the tau target refers to).
// FILE: JSONL with "prompt" (and "category"), or Spec-Bench's question.jsonl ("turns",
// "category"); default tests/data/heldout_prompts.jsonl.

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/chat_template.h"
#include "common/eagle/speculative.h"
#include "common/generate.h"
#include "tools/flag_map.h"
#include "tools/tool_model.h"

namespace eagle {
namespace {

struct Prompt {
  std::string category, text;
};

struct Totals {
  double tokens = 0, seconds = 0, steps = 0, accepted = 0, nodes = 0, plain_steps = 0;
  double draft_seconds = 0, verify_seconds = 0;  // speculative modes: time in each half
  std::vector<double> by_depth;
  int runs = 0, identical = 0;
};

int Main(int argc, char** argv) {
  FlagMap a("eagle-spec-bench",
            {{"--model", EAGLE_DEFAULT_MODEL},
             {"--prompts", EAGLE_DEFAULT_PROMPTS},
             {"--limit", "20"},
             {"--max-tokens", "128"},
             {"--modes", "auto,chain,static,dynamic"},
             {"--depth", "3"},
             {"--draft-top-k", "4"},
             {"--total-tokens", "12"},
             {"--threads", "0"},
             {"--device", "cpu"},
             {"--report", ""}},
            {"--draft"});
  a.Parse(argc, argv);
  // Every number is checked before any work (each read below exits 2 on a bad value, too).
  for (const char* f :
       {"--threads", "--limit", "--max-tokens", "--depth", "--draft-top-k", "--total-tokens"})
    a.Int(f);
  if (!a.Has("--draft")) {
    std::fprintf(stderr,
                 "usage: eagle-spec-bench --draft HEAD_DIR [options] (see the source header)\n");
    return 2;
  }
  const std::unique_ptr<LlamaModel> model = LoadToolModel(a);
  const std::unique_ptr<EagleHead> head = LoadToolHead(a, *model);
  std::vector<Prompt> prompts;
  {
    std::ifstream in(a["--prompts"]);
    std::string line;
    while (std::getline(in, line) && static_cast<int>(prompts.size()) < a.Int("--limit")) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;
      Prompt p;
      p.category = j.value("category", j.value("source", std::string("all")));
      if (j.contains("prompt")) p.text = j["prompt"].get<std::string>();
      if (j.contains("turns") && j["turns"].is_array() && !j["turns"].empty())
        p.text = j["turns"][0];
      if (!p.text.empty()) prompts.push_back(p);
    }
  }
  if (prompts.empty()) {
    std::fprintf(stderr, "error: no prompts in %s\n", a["--prompts"].c_str());
    return 1;
  }
  auto kind = ChatTemplateFromJinja(model->chat_template());
  const Tokenizer* tok = model->tokenizer();
  GenerateOptions o;
  o.max_tokens = a.Int("--max-tokens");
  std::vector<std::string> modes = absl::StrSplit(a["--modes"], ',');
  std::map<std::string, std::map<std::string, Totals>> results;  // mode -> category -> totals
  std::shared_ptr<const SpeculationCosts> costs;
  auto run_one = [&](const std::vector<int32_t>& ids, const std::string& mode, GenerateResult* r,
                     SpeculativeStats* st) -> absl::Status {
    if (mode == "vanilla") {
      auto g = GenerateVanilla(*model, ids, o, nullptr);
      if (!g.ok()) return g.status();
      *r = *g;
      return absl::OkStatus();
    }
    TreeOptions t;
    auto parsed = ParseTreeMode(mode == "eagle2" ? "dynamic" : mode);
    if (!parsed.ok()) return parsed.status();
    t.mode = *parsed;
    t.costs = costs;
    t.depth = a.Int("--depth");
    t.top_k = a.Int("--draft-top-k");
    t.total_tokens = a.Int("--total-tokens");
    if (mode == "eagle2") {  // EAGLE-2's published evaluation tree (../shared/docs/eagle.md 3.6)
      t.depth = 5;
      t.top_k = 10;
      t.total_tokens = 60;
    }
    EagleDraftModel d(head.get(), static_cast<int64_t>(ids.size()) + o.max_tokens + 1024);
    auto g = GenerateSpeculative(*model, d, ids, o, t, nullptr, st);
    if (!g.ok()) return g.status();
    *r = *g;
    return absl::OkStatus();
  };
  // Auto trees plan with this machine's costs, measured once.
  auto measured = MeasureSpeculationCosts(model.get(), *head);
  if (!measured.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(measured.status().message()).c_str());
    return 1;
  }
  costs = *measured;
  std::vector<std::string> all_modes = {"vanilla"};
  all_modes.insert(all_modes.end(), modes.begin(), modes.end());
  for (size_t pi = 0; pi < prompts.size(); ++pi) {
    const Prompt& p = prompts[pi];
    std::string text = kind.ok() ? ApplyChatTemplate(*kind, {{"user", p.text}}, true) : p.text;
    std::vector<int32_t> ids = tok->Encode(text, true);
    std::vector<int32_t> reference;
    for (const std::string& mode : all_modes) {
      GenerateResult r;
      SpeculativeStats st;
      if (pi == 0) {  // warm-up
        if (auto s = run_one(ids, mode, &r, &st); !s.ok()) {
          std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
          return 1;
        }
      }
      if (auto s = run_one(ids, mode, &r, &st); !s.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
        return 1;
      }
      if (mode == "vanilla") reference = r.token_ids;
      for (const std::string& cat : {p.category, std::string("all")}) {
        Totals& t = results[mode][cat];
        t.tokens += r.token_ids.size();
        t.seconds += r.decode_seconds;
        t.steps += mode == "vanilla" ? r.token_ids.size() : st.steps;
        t.accepted += st.accepted_drafts;
        t.nodes += st.tree_nodes;
        t.plain_steps += st.plain_steps;
        t.draft_seconds += st.draft_seconds;
        t.verify_seconds += st.verify_seconds;
        if (t.by_depth.size() < st.accepted_at_depth.size())
          t.by_depth.resize(st.accepted_at_depth.size());
        for (size_t d = 0; d < st.accepted_at_depth.size(); ++d)
          t.by_depth[d] += st.accepted_at_depth[d];
        ++t.runs;
        t.identical += r.token_ids == reference;
      }
    }
    std::fprintf(stderr, "\r[%zu/%zu prompts]", pi + 1, prompts.size());
  }
  std::fprintf(stderr, "\n");
  nlohmann::json report = {{"model", a["--model"]},
                           {"draft", a["--draft"]},
                           {"max_tokens", o.max_tokens},
                           {"prompts", prompts.size()},
                           {"threads", model->pool()->num_threads()}};
  std::printf("%-10s %-26s %9s %8s %6s %6s %6s %10s %17s  %s\n", "mode", "category", "tok/s",
              "speedup", "tau", "nodes", "plain", "identical", "draft/verify ms",
              "acceptance by depth");
  for (const std::string& mode : all_modes) {
    for (const auto& [cat, t] : results[mode]) {
      const double tps = t.seconds > 0 ? t.tokens / t.seconds : 0;
      const Totals& v = results["vanilla"][cat];
      const double vtps = v.seconds > 0 ? v.tokens / v.seconds : 0;
      const double tau = mode == "vanilla" ? 1.0 : (t.steps > 0 ? 1 + t.accepted / t.steps : 0);
      std::vector<double> by_depth;
      for (double c : t.by_depth) by_depth.push_back(t.steps > 0 ? c / t.steps : 0);
      std::string depth_str;
      for (double x : by_depth) depth_str += std::to_string(x).substr(0, 4) + " ";
      // Per verification step (vanilla: per token, all of it "verify").
      const double draft_ms = t.steps > 0 ? 1e3 * t.draft_seconds / t.steps : 0;
      const double verify_ms =
          t.steps > 0 ? 1e3 * (mode == "vanilla" ? t.seconds : t.verify_seconds) / t.steps : 0;
      // Mean draft nodes per step, and the share of steps that drafted nothing (auto).
      const double nodes = t.steps > 0 && mode != "vanilla" ? t.nodes / t.steps : 0;
      const double plain = t.steps > 0 && mode != "vanilla" ? t.plain_steps / t.steps : 0;
      std::printf("%-10s %-26s %9.1f %7.2fx %6.2f %6.1f %5.0f%% %6d/%-3d %8.2f/%-8.2f  %s\n",
                  mode.c_str(), cat.c_str(), tps, vtps > 0 ? tps / vtps : 0, tau, nodes,
                  100 * plain, t.identical, t.runs, draft_ms, verify_ms, depth_str.c_str());
      report["results"][mode][cat] = {{"tokens_per_s", tps},
                                      {"speedup", vtps > 0 ? tps / vtps : 0},
                                      {"tau", tau},
                                      {"acceptance_by_depth", by_depth},
                                      {"identical", t.identical},
                                      {"draft_ms_per_step", draft_ms},
                                      {"verify_ms_per_step", verify_ms},
                                      {"nodes_per_step", nodes},
                                      {"plain_step_share", plain},
                                      {"runs", t.runs}};
    }
  }
  if (!a["--report"].empty()) {
    std::ofstream(a["--report"]) << report.dump(2) << "\n";
    std::printf("report: %s\n", a["--report"].c_str());
  }
  return 0;
}

}  // namespace
}  // namespace eagle

int main(int argc, char** argv) { return eagle::Main(argc, argv); }
