#include "common/model/kv_cache.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace eagle {

CpuKvCache::CpuKvCache(const void* owner, int num_layers, int num_kv_heads, int head_dim,
                       int64_t capacity)
    : KvCache(owner, num_layers, num_kv_heads, head_dim, capacity),
      k_(new float[static_cast<size_t>(num_layers) * capacity * num_kv_heads * head_dim]),
      v_(new float[static_cast<size_t>(num_layers) * capacity * num_kv_heads * head_dim]) {}

void CpuKvCache::StoreKeys(int layer, int64_t slot, const float* k) {
  for (int h = 0; h < num_kv_heads(); ++h) {
    float* base = kt(layer, h) + slot;
    for (int d = 0; d < head_dim(); ++d) base[d * capacity()] = k[h * head_dim() + d];
  }
}

KvCache::~KvCache() {
  if (on_destroy_) on_destroy_(replica_id_);
}

absl::Status KvCache::KeepPath(int64_t base, std::span<const int32_t> path) {
  if (base < 0 || base > length_) {
    return absl::InvalidArgumentError(
        absl::StrCat("KeepPath: base ", base, " outside [0, ", length_, "]"));
  }
  int32_t prev = -1;
  for (int32_t p : path) {
    if (p <= prev || base + p >= length_) {
      return absl::InvalidArgumentError(absl::StrCat("KeepPath: path index ", p,
                                                     " is not increasing or "
                                                     "beyond the ",
                                                     length_ - base, " tree slots"));
    }
    prev = p;
  }
  if (absl::Status s = MovePath(base, path); !s.ok()) return s;
  if (replica_id_ != 0) moves_.push_back({length_, base, {path.begin(), path.end()}});
  length_ = base + static_cast<int64_t>(path.size());
  return absl::OkStatus();
}

absl::Status CpuKvCache::MovePath(int64_t base, std::span<const int32_t> path) {
  const int64_t cap = capacity();
  for (int l = 0; l < num_layers(); ++l) {
    for (size_t j = 0; j < path.size(); ++j) {
      if (path[j] == static_cast<int32_t>(j)) continue;
      const int64_t dst = base + static_cast<int64_t>(j), src = base + path[j];
      for (int h = 0; h < num_kv_heads(); ++h) {
        float* col = kt(l, h);
        for (int d = 0; d < head_dim(); ++d) col[d * cap + dst] = col[d * cap + src];
      }
      std::memcpy(v(l, dst), v(l, src), kv_dim() * sizeof(float));
    }
  }
  return absl::OkStatus();
}

absl::Status KvCache::Truncate(int64_t n) {
  if (n < 0 || n > length_) {
    return absl::InvalidArgumentError(absl::StrCat("Truncate: ", n, " outside [0, ", length_, "]"));
  }
  length_ = n;
  return absl::OkStatus();
}

}  // namespace eagle
