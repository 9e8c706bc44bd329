#include "common/model/backend.h"

#include <algorithm>

namespace eagle {

BatchPlan PlanBatch(std::span<KvCache* const> caches, std::span<const ForwardRequest> requests) {
  BatchPlan plan;
  const int64_t n_seq = static_cast<int64_t>(requests.size());
  plan.first_row.assign(n_seq + 1, 0);
  for (int64_t s = 0; s < n_seq; ++s) {
    const ForwardRequest& req = requests[s];
    const int64_t base = caches[s]->length();
    const int64_t t_len = static_cast<int64_t>(req.tokens.size());
    const bool tree = !req.parents.empty();
    plan.first_row[s] = plan.num_rows();
    for (int64_t i = 0; i < t_len; ++i) {
      BatchRow r{req.tokens[i], static_cast<int32_t>(s), base + i, base + i, tree, {}};
      if (tree) {
        const int32_t p = req.parents[i];
        if (p >= 0) {
          const BatchRow& pr = plan.rows[plan.first_row[s] + p];
          r.pos = pr.pos + 1;
          r.slots = pr.slots;
        } else {
          r.pos = base;
        }
        r.slots.push_back(static_cast<int32_t>(base + i));
      }
      plan.rows.push_back(std::move(r));
    }
    plan.max_visible = std::max(plan.max_visible, base + t_len);
  }
  plan.first_row[n_seq] = plan.num_rows();
  return plan;
}

absl::Status ModelBackend::Argmax(Workspace&, std::span<const int64_t>, int32_t*) const {
  return absl::UnimplementedError("this backend has no argmax of its own (ReducesArgmax)");
}

}  // namespace eagle
