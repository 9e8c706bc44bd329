// What the bench and datagen tools start from: a CPU pool of --threads workers (0 = every CPU the
// process may use, capped by a cgroup quota), the target model from --model on --device (where the
// tool has that flag), and for the speculative tools the EAGLE head from --draft. Each failure is
// one line on stderr and an exit status: 2 for a bad flag value, 1 for a file that cannot be
// loaded.
#ifndef EAGLE_TOOLS_TOOL_MODEL_H_
#define EAGLE_TOOLS_TOOL_MODEL_H_

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/cpu/thread_pool.h"
#include "common/eagle/eagle_head.h"
#include "common/model/llama_model.h"
#include "tools/flag_map.h"

namespace eagle {

inline std::unique_ptr<LlamaModel> LoadToolModel(FlagMap& a) {
  auto pool = cpu::ThreadPool::ForThreads(a.Int("--threads"));
  if (!pool.ok()) {
    std::fprintf(stderr, "%s: error: --threads: %s\n", a.tool().c_str(),
                 std::string(pool.status().message()).c_str());
    std::exit(2);
  }
  ModelOptions options;
  options.pool = *pool;
  if (a.Has("--device")) options.device = a["--device"];
  auto model = LlamaModel::Load(a["--model"], options);
  if (!model.ok()) {
    std::fprintf(stderr, "%s: error: %s\n", a.tool().c_str(),
                 std::string(model.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(model);
}

inline std::unique_ptr<EagleHead> LoadToolHead(FlagMap& a, const LlamaModel& model) {
  auto head = EagleHead::Load(a["--draft"], model);
  if (!head.ok()) {
    std::fprintf(stderr, "%s: error: %s\n", a.tool().c_str(),
                 std::string(head.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(head);
}

}  // namespace eagle

#endif  // EAGLE_TOOLS_TOOL_MODEL_H_
