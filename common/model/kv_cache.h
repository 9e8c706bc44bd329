// A sequence's key/value store on the CPU backend (the layout its attention kernels read).
#ifndef EAGLE_COMMON_MODEL_KV_CACHE_H_
#define EAGLE_COMMON_MODEL_KV_CACHE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace eagle {

// A sequence's key/value store, in the memory of the backend that made it. Slots [0, length) hold
// committed tokens; a tree forward writes its T tokens at [length, length + T) and KeepPath then
// keeps one root-to-leaf path (compaction runs where the cache lives: only the path's indices
// cross from the host).
class KvCache {
 public:
  // `owner`: the backend whose forward passes may use this cache (null: a draft head's own).
  KvCache(const void* owner, int num_layers, int num_kv_heads, int head_dim, int64_t capacity)
      : owner_(owner),
        num_layers_(num_layers),
        num_kv_heads_(num_kv_heads),
        head_dim_(head_dim),
        capacity_(capacity) {}
  virtual ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  const void* owner() const { return owner_; }
  // False when the backend could not allocate it (forward passes refuse such a cache).
  virtual bool allocated() const { return true; }
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t bytes() const { return 2 * static_cast<int64_t>(num_layers_) * capacity_ * kv_dim() * 4; }
  // Keeps the tree slots base + path[j] at base + j (path strictly increasing, within the tokens
  // written after base) and sets length = base + path.size().
  absl::Status KeepPath(int64_t base, std::span<const int32_t> path);
  // Drops everything at or after slot n.
  absl::Status Truncate(int64_t n);
  void set_length(int64_t n) { length_ = n; }

  // Tensor parallelism, leader and followers (llama_model.h, LlamaModel::LeadFollowers): rank
  // 0's cache of a sequence whose copies on the other ranks must repeat its KeepPath calls.
  // `on_destroy(id)` runs when this cache is destroyed.
  struct Move {
    int64_t length = 0;  // the cache's length when KeepPath was called
    int64_t base = 0;
    std::vector<int32_t> path;
  };
  void Replicate(uint64_t id, std::function<void(uint64_t)> on_destroy) {
    replica_id_ = id;
    on_destroy_ = std::move(on_destroy);
  }
  uint64_t replica_id() const { return replica_id_; }  // 0: not replicated
  // The KeepPath calls since the last TakeMoves.
  std::vector<Move> TakeMoves() { return std::move(moves_); }

  int num_layers() const { return num_layers_; }
  int num_kv_heads() const { return num_kv_heads_; }
  int head_dim() const { return head_dim_; }
  int64_t kv_dim() const { return static_cast<int64_t>(num_kv_heads_) * head_dim_; }

 protected:
  // Moves slot base + path[j] to base + j for every j with path[j] != j (path checked).
  virtual absl::Status MovePath(int64_t base, std::span<const int32_t> path) = 0;

 private:
  const void* owner_;
  int num_layers_;
  int num_kv_heads_;
  int head_dim_;
  int64_t capacity_;
  int64_t length_ = 0;
  uint64_t replica_id_ = 0;
  std::function<void(uint64_t)> on_destroy_;
  std::vector<Move> moves_;
};

// The CPU backend's layout (f32, host memory).
class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(const void* owner, int num_layers, int num_kv_heads, int head_dim, int64_t capacity);

  // Keys are stored transposed per head, [head_dim, capacity], so that attention scores for 16
  // consecutive slots are vertical FMAs: element d of slot s is kt(l, h)[d * capacity() + s].
  float* kt(int layer, int kv_head) { return k_.get() + KeyBase(layer, kv_head); }
  const float* kt(int layer, int kv_head) const { return k_.get() + KeyBase(layer, kv_head); }
  // Writes the keys of all heads of one slot (k: [num_kv_heads * head_dim]).
  void StoreKeys(int layer, int64_t slot, const float* k);
  // Values: [capacity, num_kv_heads * head_dim] per layer.
  float* v(int layer, int64_t slot) { return v_.get() + (layer * capacity() + slot) * kv_dim(); }
  const float* v(int layer, int64_t slot) const {
    return v_.get() + (layer * capacity() + slot) * kv_dim();
  }

 private:
  absl::Status MovePath(int64_t base, std::span<const int32_t> path) override;
  int64_t KeyBase(int layer, int kv_head) const {
    return (static_cast<int64_t>(layer) * num_kv_heads() + kv_head) * head_dim() * capacity();
  }
  std::unique_ptr<float[]> k_;  // [layers, kv_heads, head_dim, capacity] f32
  std::unique_ptr<float[]> v_;  // [layers, capacity, kv_heads * head_dim] f32
};

}  // namespace eagle

#endif  // EAGLE_COMMON_MODEL_KV_CACHE_H_
