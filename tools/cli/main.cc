// eagle-cli: command-line client.
//   eagle-cli generate --model M --prompt TEXT [--chat] [--max-tokens N] [--temperature T]
//                      [--top-k K] [--top-p P] [--seed S] [--stop STR]... [--threads N] [--json]
//   eagle-cli score --model M (--prompt TEXT | --tokens 1,2,3) [--chat] --top-k K [--json]
//   either with --tp N (tensor parallel over N local CPU ranks) or --rank/--world-size/--rendezvous

#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/chat_template.h"
#include "common/cpu/kernels.h"
#include "common/dist/group.h"
#include "common/eagle/draft_model.h"
#include "common/eagle/speculative.h"
#include "common/generate.h"
#include "common/model/llama_model.h"
#include "common/prompt.h"
#include "common/status_macros.h"
#include "tools/cli/client.h"

namespace eagle {
namespace {

constexpr char kUsage[] = R"(usage:
  eagle-cli generate [--model PATH] --prompt TEXT [options]
  eagle-cli score [--model PATH] (--prompt TEXT | --tokens ID,ID,...) [--top-k K] [--json]
  eagle-cli generate --server HOST:PORT [--verifier HOST:PORT] --prompt TEXT [options]
  eagle-cli generate --verifier HOST:PORT --prompt TEXT [options]
  eagle-cli health --server HOST:PORT [--wait SECONDS]

PATH is a GGUF file or a Hugging Face directory (config.json + *.safetensors + tokenizer).
Default model: the SmolLM2-135M-Instruct GGUF fetched by scripts/fetch_model.sh.

generate options:
  --chat               wrap the prompt in the model's chat template as a user message
  --system TEXT        system message (with --chat)
  --template NAME      chatml | llama2 | llama3 | vicuna (default: the model's own template)
  --max-tokens N       tokens to generate (default 128)
  --temperature T      0 = greedy (default 0)
  --top-k K            keep the K most likely tokens (0 = all)
  --top-p P            nucleus sampling mass (1 = off)
  --seed S             random seed (default 0)
  --stop STR           stop string (repeatable)
  --ignore-eos         keep generating after end-of-sequence
  --threads N          CPU threads (default 0: every CPU the process may use, capped by a
                       cgroup CPU quota)
  --precision P        auto | int16 | int8 | f32. Activations of matmuls with Q4_0/Q4_1/Q8_0
                       weights: int16 (15-bit, near-f32 accuracy) or int8 (fastest, as
                       llama.cpp) on AVX-512 VNNI or AVX2; f32 is the reference path.
                       auto: int16 where the CPU has either, else f32
  --device D           cpu | cuda | cuda:N: where the target's forward pass runs (default
                       cpu; cuda needs a build with -DEAGLE_WITH_CUDA=ON and a GPU)
  --json               one JSON object per token, then a summary object

tensor parallelism (the target split across CPU processes over Gloo; generate and score):
  --tp N               start N ranks on this host, this process rank 0 (default 1). The
                       degree must divide the model's KV heads and FFN width (SmolLM2-135M:
                       1 or 3). Output is printed by rank 0
  --rank R             this process is rank R of a group spread over hosts, with
  --world-size N       the group's size and
  --rendezvous H:P     rank 0's rendezvous address (rank 0 listens there)
  --tp-timeout S       bound on joining and on every collective: a rank that dies or hangs
                       fails the others within it (default 30)

speculative decoding (EAGLE):
  --draft DIR          EAGLE head (config.json + model.safetensors) for this model; "default"
                       is the head shipped for SmolLM2-135M-Instruct (heads/)
  --tree MODE          auto | chain | static | dynamic (EAGLE-2) (default auto: each step's
                       tree sized from this machine's measured costs and the acceptance seen
                       so far, from none at all up to 48 nodes)
  --depth N            draft depth (chain length; dynamic expansion levels; default 3)
  --draft-top-k K      dynamic tree branching (default 4)
  --total-tokens N     dynamic tree size including the root (default 12)
  --tree-choices JSON  static tree paths, e.g. [[0],[1],[0,0]] (default mc_sim_7b_63)
  --compare-vanilla    also run plain decoding first; report the speedup and whether the
                       outputs are identical

services (eagle-drafter / eagle-verifier):
  --server ADDR        generate through an eagle-drafter (speculative by default); --tree off
                       turns speculation off for this request, --tree/--depth/... override
                       the server's tree
  --verifier ADDR      plain generation on an eagle-verifier; with --server and
                       --compare-vanilla, the vanilla reference for the speedup
  --timeout S          deadline for the call, seconds
  --request-id ID      carried to both services' logs
  --tls-ca FILE        TLS: the CA (PEM) that signed the servers' certificates
  --tls-cert FILE      with --tls-key: client certificate for mutual TLS
  --tls-server-name N  the name the server certificate must carry (default: the host)
  --token-file FILE    send its first token (first line that is not blank or a #
                       comment) as 'authorization: Bearer <token>'
  (these apply to health as well, and to both servers of --server/--verifier alike)
)";

struct Args {
  std::string cmd;
  std::map<std::string, std::string> kv;
  std::vector<std::string> stops;
  bool Has(const std::string& k) const { return kv.count(k) > 0; }
  std::string Get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
};

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  if (argc < 2) return absl::InvalidArgumentError("missing command");
  Args a;
  a.cmd = argv[1];
  static const std::vector<std::string> kBool = {"--chat", "--json", "--ignore-eos", "--help",
                                                 "--compare-vanilla"};
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0)
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", k, "'"));
    if (std::find(kBool.begin(), kBool.end(), k) != kBool.end()) {
      a.kv[k] = "1";
      continue;
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(k, " needs a value"));
    if (k == "--stop") {
      a.stops.push_back(argv[++i]);
    } else {
      a.kv[k] = argv[++i];
    }
  }
  return a;
}

rpc::ClientSecurity Security(const Args& a) {
  return {a.Get("--tls-ca"), a.Get("--tls-cert"), a.Get("--tls-key"), a.Get("--tls-server-name"),
          a.Get("--token-file")};
}

template <typename T>
absl::Status GetNum(const Args& a, const std::string& k, T* out) {
  if (!a.Has(k)) return absl::OkStatus();
  const std::string v = a.Get(k);
  bool ok;
  if constexpr (std::is_same_v<T, float>) {
    ok = absl::SimpleAtof(v, out);
  } else if constexpr (std::is_same_v<T, double>) {
    ok = absl::SimpleAtod(v, out);
  } else {
    ok = absl::SimpleAtoi(v, out);
  }
  if (!ok) return absl::InvalidArgumentError(absl::StrCat(k, ": '", v, "' is not a number"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> BuildPrompt(const LlamaModel& model, const Args& a) {
  if (a.Has("--tokens")) {
    std::vector<int32_t> ids;
    for (absl::string_view p : absl::StrSplit(a.Get("--tokens"), ',', absl::SkipEmpty())) {
      int32_t id;
      if (!absl::SimpleAtoi(p, &id))
        return absl::InvalidArgumentError(absl::StrCat("--tokens: bad id '", p, "'"));
      ids.push_back(id);
    }
    return ids;
  }
  if (!a.Has("--prompt")) return absl::InvalidArgumentError("--prompt (or --tokens) is required");
  if (!a.Has("--chat")) return EncodeText(model, a.Get("--prompt"));
  std::optional<ChatTemplateKind> kind;
  if (a.Has("--template")) {
    ASSIGN_OR_RETURN(kind, ChatTemplateFromName(a.Get("--template")));
  }
  std::vector<ChatMessage> msgs;
  if (a.Has("--system")) msgs.push_back({"system", a.Get("--system")});
  msgs.push_back({"user", a.Get("--prompt")});
  return EncodeChat(model, msgs, kind);
}

absl::StatusOr<TreeOptions> ParseTreeOptions(const Args& a) {
  TreeOptions t;
  ASSIGN_OR_RETURN(t.mode, ParseTreeMode(a.Get("--tree", "auto")));
  RETURN_IF_ERROR(GetNum(a, "--depth", &t.depth));
  RETURN_IF_ERROR(GetNum(a, "--draft-top-k", &t.top_k));
  RETURN_IF_ERROR(GetNum(a, "--total-tokens", &t.total_tokens));
  if (a.Has("--tree-choices")) {
    ASSIGN_OR_RETURN(t.choices, ParseTreeChoices(a.Get("--tree-choices")));
  }
  RETURN_IF_ERROR(ValidateTreeOptions(t));
  return t;
}

// False on tensor-parallel ranks other than 0, which compute beside rank 0 and print nothing
// but their errors.
bool g_reporting_rank = true;

absl::Status RunGenerate(const LlamaModel& model, const Args& a) {
  GenerateOptions o;
  RETURN_IF_ERROR(GetNum(a, "--max-tokens", &o.max_tokens));
  RETURN_IF_ERROR(GetNum(a, "--temperature", &o.sampling.temperature));
  RETURN_IF_ERROR(GetNum(a, "--top-k", &o.sampling.top_k));
  RETURN_IF_ERROR(GetNum(a, "--top-p", &o.sampling.top_p));
  RETURN_IF_ERROR(GetNum(a, "--seed", &o.sampling.seed));
  o.stop = a.stops;
  o.ignore_eos = a.Has("--ignore-eos");
  const bool json = a.Has("--json");
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, BuildPrompt(model, a));
  auto on_token = [&](int32_t id, const std::string& text) {
    if (json) {
      nlohmann::json j = {{"token_id", id}, {"text", text}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n"
                << std::flush;
    } else {
      std::cout << text << std::flush;
    }
    return true;
  };
  const bool speculative = a.Has("--draft");
  std::unique_ptr<EagleHead> head;
  TreeOptions tree;
  if (speculative) {
    ASSIGN_OR_RETURN(tree, ParseTreeOptions(a));
    const std::string dir = a.Get("--draft") == "default" ? EAGLE_DEFAULT_HEAD : a.Get("--draft");
    ASSIGN_OR_RETURN(head, EagleHead::Load(dir, model));
    if (tree.mode == TreeMode::kAuto) {
      ASSIGN_OR_RETURN(tree.costs, MeasureSpeculationCosts(&model, *head));
    }
  }
  // Vanilla reference run (silent) for --compare-vanilla.
  std::optional<GenerateResult> vanilla;
  if (speculative && a.Has("--compare-vanilla")) {
    ASSIGN_OR_RETURN(vanilla, GenerateVanilla(model, prompt, o, nullptr));
  }
  GenerateResult r;
  SpeculativeStats stats;
  if (speculative) {
    EagleDraftModel drafter(head.get(), static_cast<int64_t>(prompt.size()) + o.max_tokens + 1024);
    ASSIGN_OR_RETURN(r, GenerateSpeculative(model, drafter, prompt, o, tree, on_token, &stats));
  } else {
    ASSIGN_OR_RETURN(r, GenerateVanilla(model, prompt, o, on_token));
  }
  const int n = static_cast<int>(r.token_ids.size());
  const double decode_tps = r.decode_seconds > 0 ? n / r.decode_seconds : 0;
  const double prefill_tps = r.prefill_seconds > 0 ? r.prompt_tokens / r.prefill_seconds : 0;
  const double total_s = r.prefill_seconds + r.decode_seconds;
  nlohmann::json spec;
  std::string spec_line;
  if (speculative) {
    std::vector<double> by_depth;
    for (int64_t c : stats.accepted_at_depth)
      by_depth.push_back(static_cast<double>(c) / stats.steps);
    const double draft_share = r.decode_seconds > 0 ? stats.draft_seconds / r.decode_seconds : 0;
    spec = {{"steps", stats.steps},
            {"tau", stats.tau()},
            {"acceptance_by_depth", by_depth},
            {"draft_time_share", draft_share},
            {"draft_s", stats.draft_seconds},
            {"verify_s", stats.verify_seconds},
            {"mean_tree_nodes", stats.steps > 0 ? double(stats.tree_nodes) / stats.steps : 0},
            {"plain_steps", stats.plain_steps},
            {"tree", TreeModeName(tree.mode)}};
    spec_line = absl::StrFormat(
        " | %s trees, steps %d, tau %.2f, %.1f nodes per step, draft share %.0f%%",
        TreeModeName(tree.mode), stats.steps, stats.tau(),
        stats.steps > 0 ? double(stats.tree_nodes) / stats.steps : 0, 100 * draft_share);
    if (vanilla.has_value()) {
      const int vn = static_cast<int>(vanilla->token_ids.size());
      const double vtps = vanilla->decode_seconds > 0 ? vn / vanilla->decode_seconds : 0;
      const bool same = vanilla->token_ids == r.token_ids;
      spec["vanilla_decode_tokens_per_s"] = vtps;
      spec["speedup"] = vtps > 0 ? decode_tps / vtps : 0;
      spec["identical_to_vanilla"] = same;
      absl::StrAppend(&spec_line, absl::StrFormat(", vanilla %.1f tok/s, speedup %.2fx, %s", vtps,
                                                  vtps > 0 ? decode_tps / vtps : 0,
                                                  same ? "identical output" : "output differs"));
    }
  }
  if (json) {
    nlohmann::json j = {{"token_ids", r.token_ids},
                        {"text", r.text},
                        {"finish_reason", FinishReasonName(r.finish)},
                        {"prompt_tokens", r.prompt_tokens},
                        {"completion_tokens", n},
                        {"timings",
                         {{"prefill_s", r.prefill_seconds},
                          {"decode_s", r.decode_seconds},
                          {"prefill_tokens_per_s", prefill_tps},
                          {"decode_tokens_per_s", decode_tps},
                          {"tokens_per_s", total_s > 0 ? n / total_s : 0}}}};
    if (speculative) j["speculative"] = spec;
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else if (g_reporting_rank) {
    std::cout << std::endl;
    std::fprintf(stderr,
                 "[%d prompt + %d generated tokens, finish=%s | prefill %.1f tok/s, decode %.1f "
                 "tok/s, total %.2f s%s]\n",
                 r.prompt_tokens, n, FinishReasonName(r.finish), prefill_tps, decode_tps, total_s,
                 spec_line.c_str());
  }
  return absl::OkStatus();
}

absl::Status RunScore(const LlamaModel& model, const Args& a) {
  int top_k = 5;
  RETURN_IF_ERROR(GetNum(a, "--top-k", &top_k));
  if (top_k <= 0 || top_k > model.config().vocab_size)
    return absl::InvalidArgumentError("--top-k out of range");
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, BuildPrompt(model, a));
  if (ids.empty()) return absl::InvalidArgumentError("empty prompt");
  auto cache = model.NewCache(static_cast<int64_t>(ids.size()));
  ForwardRequest req;
  req.tokens = ids;
  req.logits = LogitsMode::kAll;
  ASSIGN_OR_RETURN(ForwardResult r, model.Forward(*cache, req));
  const int v = model.config().vocab_size;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* lg = r.logits.data() + i * v;
    std::vector<int32_t> idx(v);
    for (int j = 0; j < v; ++j) idx[j] = j;
    std::partial_sort(idx.begin(), idx.begin() + top_k, idx.end(), [&](int32_t x, int32_t y) {
      return lg[x] > lg[y] || (lg[x] == lg[y] && x < y);
    });
    nlohmann::json top = nlohmann::json::array();
    for (int j = 0; j < top_k; ++j) top.push_back({idx[j], lg[idx[j]]});
    if (a.Has("--json")) {
      std::cout << nlohmann::json({{"position", i}, {"token", ids[i]}, {"top", top}}).dump()
                << "\n";
    } else {
      std::cout << i << "\t" << ids[i] << "\t" << top.dump() << "\n";
    }
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  if (args.ok() && args->cmd == "health") {
    double wait = 0;
    if (args->Has("--wait") && !absl::SimpleAtod(args->Get("--wait"), &wait)) wait = -1;
    if (!args->Has("--server") || wait < 0) {
      std::fprintf(stderr,
                   "usage: eagle-cli health --server HOST:PORT [--wait SECONDS] [--tls-ca FILE "
                   "...]\n");
      return 2;
    }
    absl::Status s = cli::RunHealth(args->Get("--server"), wait, Security(*args));
    std::fprintf(stderr, "%s\n", s.ok() ? "SERVING" : std::string(s.message()).c_str());
    return s.ok() ? 0 : 1;
  }
  if (args.ok() && args->cmd == "generate" && (args->Has("--server") || args->Has("--verifier"))) {
    cli::ClientArgs ra;
    ra.drafter = args->Get("--server");
    ra.verifier = args->Get("--verifier");
    ra.kv = args->kv;
    ra.stops = args->stops;
    ra.security = Security(*args);
    absl::Status s = cli::RunClientGenerate(ra);
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s (%s)\n", std::string(s.message()).c_str(),
                   absl::StatusCodeToString(s.code()).c_str());
      return 1;
    }
    return 0;
  }
  if (!args.ok() || args->Has("--help") || (args->cmd != "generate" && args->cmd != "score")) {
    if (!args.ok())
      std::fprintf(stderr, "error: %s\n", std::string(args.status().message()).c_str());
    std::fputs(kUsage, stderr);
    return args.ok() && args->Has("--help") ? 0 : 2;
  }
  TensorParallelFlags tpf;
  for (auto [flag, value] : {std::pair{"--tp", &tpf.tp}, std::pair{"--rank", &tpf.rank},
                             std::pair{"--world-size", &tpf.world_size}}) {
    if (absl::Status s = GetNum(*args, flag, value); !s.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  if (absl::Status s = GetNum(*args, "--tp-timeout", &tpf.timeout_s); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  tpf.rendezvous = args->Get("--rendezvous");
  if ((tpf.tp > 1 || tpf.world_size > 1) && args->Get("--tree", "auto") == "auto" &&
      args->Has("--draft")) {
    // Auto trees are sized from each rank's own timings, so ranks could pick different trees
    // and their collectives part ways.
    std::fprintf(stderr,
                 "error: --tree auto sizes trees from each rank's timings; with tensor "
                 "parallelism give --tree chain, static or dynamic\n");
    return 2;
  }
  std::vector<std::string> argv_copy(argv, argv + argc);
  absl::StatusOr<TensorParallelGroup> group = StartTensorParallel(tpf, argv_copy);
  if (!group.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(group.status().message()).c_str());
    return absl::IsInvalidArgument(group.status()) ? 2 : 1;
  }
  const int rank = group->comm != nullptr ? group->comm->rank() : 0;
  if (rank != 0) {
    g_reporting_rank = false;  // rank 0 answers
    if (std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
  }
  int threads = 0;
  absl::StatusOr<std::shared_ptr<cpu::ThreadPool>> pool =
      absl::InvalidArgumentError("not a number");
  if (absl::Status s = GetNum(*args, "--threads", &threads); s.ok()) {
    pool = cpu::ThreadPool::ForThreads(threads);
  }
  if (!pool.ok()) {
    std::fprintf(stderr, "error: --threads: %s\n", std::string(pool.status().message()).c_str());
    return 2;
  }
  const std::string path = args->Get("--model", EAGLE_DEFAULT_MODEL);
  ModelOptions options;
  options.pool = *pool;
  auto precision = cpu::ParsePrecision(args->Get("--precision", "auto"));
  if (!precision.ok()) {
    std::fprintf(stderr, "error: --%s\n", std::string(precision.status().message()).c_str());
    return 2;
  }
  options.precision = *precision;
  options.device = args->Get("--device", "cpu");
  options.comm = group->comm;
  auto model = LlamaModel::Load(path, options);
  if (!model.ok()) {
    if (rank != 0) return 1;  // rank 0 reports the same error
    std::fprintf(stderr, "error: %s\n", std::string(model.status().message()).c_str());
    if (!args->Has("--model") && absl::IsNotFound(model.status()))
      std::fprintf(stderr, "hint: run scripts/fetch_model.sh to get the default model\n");
    return 1;
  }
  absl::Status s;
  if (group->comm != nullptr) {
    s = CheckSameModel(
        *group->comm, absl::StrCat((*model)->Fingerprint(), "/", args->Get("--precision", "auto")));
  }
  if (s.ok()) {
    s = args->cmd == "generate" ? RunGenerate(**model, *args) : RunScore(**model, *args);
  }
  if (s.ok() && !group->ranks.pids().empty()) s = group->ranks.Wait(std::chrono::seconds(60));
  if (!s.ok()) {
    if (group->comm != nullptr) {
      std::fprintf(stderr, "error (rank %d): %s\n", rank, std::string(s.message()).c_str());
    } else {
      std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    }
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace eagle

int main(int argc, char** argv) { return eagle::Main(argc, argv); }
