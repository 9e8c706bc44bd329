#include "common/model/cpu_backend.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/cpu/kernels.h"
#include "common/model/tensor_utils.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

// Runs fn(i) for every row; on the pool when there are enough rows to pay for it.
template <typename Fn>
void ForRows(cpu::ThreadPool* pool, int64_t num_rows, const Fn& fn) {
  cpu::ThreadPool* p = num_rows >= 4 ? pool : nullptr;
  cpu::ParallelFor(p, num_rows, cpu::GrainFor(p, num_rows, 2), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) fn(i);
  });
}

}  // namespace

// Activations of a pass of up to `rows` rows. Every buffer a pass reads it has first written
// for all of its rows, so a reused workspace gives the same bits as a fresh one.
struct CpuBackend::CpuWorkspace final : Workspace {
  int64_t rows = 0;
  std::vector<float> x;         // [rows, H] the residual stream
  std::vector<float> xn;        // [rows, H] normed (a block's input, or h after FinalNorm)
  std::vector<float> qkv;       // [rows, q_dim + 2 kv_dim]
  std::vector<float> att;       // [rows, q_dim]
  std::vector<float> tmp;       // [rows, H] a block's output before the residual add
  std::vector<float> gate_up;   // [rows, 2 I]
  std::vector<float> act;       // [rows, I]
  std::vector<float> gathered;  // [rows, H] the rows the LM head reads
  // Tensor parallel: this rank's logits [rows, vocab_chunk] and every rank's [world, rows,
  // vocab_chunk].
  std::vector<float> local_logits, all_logits;

  void Reserve(const LlamaConfig& c, int64_t n, int64_t vocab_chunk, int world) {
    if (n <= rows) return;
    rows = n;
    const int64_t h = c.hidden_size, ffn = c.intermediate_size;
    x.resize(n * h);
    xn.resize(n * h);
    qkv.resize(n * (c.q_dim() + 2 * c.kv_dim()));
    att.resize(n * c.q_dim());
    tmp.resize(n * h);
    gate_up.resize(n * 2 * ffn);
    act.resize(n * ffn);
    gathered.resize(n * h);
    if (world > 1) {
      local_logits.resize(n * vocab_chunk);
      all_logits.resize(world * n * vocab_chunk);
    }
  }
};

CpuBackend::CpuBackend(const LlamaConfig& config, Weights weights,
                       std::shared_ptr<cpu::ThreadPool> pool, TensorParallelShare tp)
    : config_(config),
      w_(std::move(weights)),
      rope_(config.head_dim, config.rope_theta, config.rope_scaling, config.max_position,
            config.rope_interleaved),
      pool_(std::move(pool)),
      tp_(std::move(tp)) {}

std::unique_ptr<KvCache> CpuBackend::NewCache(int64_t capacity) const {
  return std::make_unique<CpuKvCache>(static_cast<const ModelBackend*>(this), config_.num_layers,
                                      config_.num_kv_heads, config_.head_dim, capacity);
}

absl::StatusOr<std::unique_ptr<Workspace>> CpuBackend::Acquire(int64_t rows) const {
  std::unique_ptr<Workspace> ws;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      ws = std::move(free_.back());
      free_.pop_back();
    } else {
      ++made_;
    }
  }
  if (ws == nullptr) ws = std::make_unique<CpuWorkspace>();
  static_cast<CpuWorkspace&>(*ws).Reserve(config_, rows, tp_.vocab_chunk,
                                          tp_.comm != nullptr ? tp_.comm->world_size() : 1);
  return ws;
}

void CpuBackend::Release(std::unique_ptr<Workspace> workspace) const {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(std::move(workspace));
}

int64_t CpuBackend::weight_bytes() const {
  int64_t bytes = w_.lm_head.bytes() + w_.embed.row_bytes;
  for (const Layer& L : w_.layers) {
    for (const cpu::Linear* w : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) bytes += w->bytes();
  }
  return bytes;
}

int CpuBackend::workspaces_made() const {
  std::lock_guard<std::mutex> lock(mu_);
  return made_;
}

void CpuBackend::EmbedToken(int32_t token, float* out) const {
  DequantizeRowScalar(w_.embed.dtype, w_.embed.row(token), out, w_.embed.cols);
}

absl::Status CpuBackend::Embed(const BatchPlan& plan, Workspace& wsb) const {
  auto& ws = static_cast<CpuWorkspace&>(wsb);
  const int64_t h = config_.hidden_size;
  for (int64_t i = 0; i < plan.num_rows(); ++i) EmbedToken(plan.rows[i].token, &ws.x[i * h]);
  return absl::OkStatus();
}

absl::Status CpuBackend::Attention(int l, const BatchPlan& plan, std::span<KvCache* const> caches,
                                   Workspace& wsb) const {
  auto& ws = static_cast<CpuWorkspace&>(wsb);
  const LlamaConfig& c = config_;
  const Layer& L = w_.layers[l];
  const int64_t t_len = plan.num_rows();
  const int64_t h = c.hidden_size, qd = c.q_dim(), kvd = c.kv_dim(), qkv_dim = qd + 2 * kvd;
  const int hd = c.head_dim, nh = c.num_heads, group = c.num_heads / c.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float* x = ws.x.data();
  float* xn = ws.xn.data();
  float* qkv = ws.qkv.data();
  // norm -> q, k, v -> RoPE -> cache -> attention -> out-proj -> residual.
  ForRows(pool_.get(), t_len, [&](int64_t i) {
    cpu::RmsNorm(x + i * h, L.attn_norm.data(), c.rms_norm_eps, h, xn + i * h);
  });
  L.wqkv.Apply(xn, t_len, qkv, pool_.get());  // per row: [q | k | v]
  ForRows(pool_.get(), t_len, [&](int64_t i) {
    float* row = qkv + i * qkv_dim;
    const BatchRow& r = plan.rows[i];
    // Every cache of a pass was made by this backend (LlamaModel::CheckRequest).
    auto& cache = static_cast<CpuKvCache&>(*caches[r.seq]);
    rope_.Apply(row, nh, r.pos);
    rope_.Apply(row + qd, c.num_kv_heads, r.pos);
    cache.StoreKeys(l, r.slot, row + qd);
    std::memcpy(cache.v(l, r.slot), row + qd + kvd, kvd * sizeof(float));
  });
  // Each (row, kv head) pair attends for the query heads that share the kv head. Visible slots
  // in increasing order: the cached prefix, then (tree) the ancestors and the node itself, or
  // (chain) the earlier tokens of this request and itself. One item per (row, kv head), claimed
  // one at a time: rows differ in visible length (prefill rows beside long decode rows).
  const int64_t items = t_len * c.num_kv_heads;
  cpu::ParallelFor(pool_.get(), items, 1, [&](int64_t item0, int64_t item1) {
    thread_local std::vector<float> scores;
    scores.resize(static_cast<size_t>(group) * plan.max_visible);
    for (int64_t item = item0; item < item1; ++item) {
      const int64_t i = item / c.num_kv_heads;
      const int kvh = static_cast<int>(item % c.num_kv_heads);
      const BatchRow& r = plan.rows[i];
      const auto& cache = static_cast<const CpuKvCache&>(*caches[r.seq]);
      const int64_t base = cache.length();
      const float* qi = qkv + i * qkv_dim + kvh * group * hd;
      float* o = ws.att.data() + i * qd + kvh * group * hd;
      const float* kt = cache.kt(l, kvh);
      const float* vb = cache.v(l, 0) + kvh * hd;
      if (r.tree) {
        cpu::AttendGroup(qi, group, kt, cache.capacity(), vb, kvd, hd, base, r.slots.data(),
                         static_cast<int>(r.slots.size()), scale, scores.data(), o);
      } else {
        cpu::AttendGroup(qi, group, kt, cache.capacity(), vb, kvd, hd, r.slot + 1, nullptr, 0,
                         scale, scores.data(), o);
      }
    }
  });
  L.wo.Apply(ws.att.data(), t_len, ws.tmp.data(), pool_.get());
  if (tp_.comm != nullptr) RETURN_IF_ERROR(tp_.comm->AllReduceSum(ws.tmp.data(), t_len * h));
  for (int64_t e = 0; e < t_len * h; ++e) x[e] += ws.tmp[e];
  return absl::OkStatus();
}

absl::Status CpuBackend::Mlp(int l, const BatchPlan& plan, Workspace& wsb) const {
  auto& ws = static_cast<CpuWorkspace&>(wsb);
  const LlamaConfig& c = config_;
  const Layer& L = w_.layers[l];
  const int64_t t_len = plan.num_rows();
  const int64_t h = c.hidden_size, ffn = c.intermediate_size;
  float* x = ws.x.data();
  // norm -> gate, up -> SwiGLU -> down -> residual.
  ForRows(pool_.get(), t_len, [&](int64_t i) {
    cpu::RmsNorm(x + i * h, L.ffn_norm.data(), c.rms_norm_eps, h, ws.xn.data() + i * h);
  });
  L.w_gate_up.Apply(ws.xn.data(), t_len, ws.gate_up.data(), pool_.get());  // [gate | up]
  ForRows(pool_.get(), t_len, [&](int64_t i) {
    const float* gu = ws.gate_up.data() + i * 2 * ffn;
    cpu::SwiGlu(gu, gu + ffn, ffn, ws.act.data() + i * ffn);
  });
  L.w_down.Apply(ws.act.data(), t_len, ws.tmp.data(), pool_.get());
  if (tp_.comm != nullptr) RETURN_IF_ERROR(tp_.comm->AllReduceSum(ws.tmp.data(), t_len * h));
  for (int64_t e = 0; e < t_len * h; ++e) x[e] += ws.tmp[e];
  return absl::OkStatus();
}

absl::Status CpuBackend::FinalNorm(const BatchPlan& plan, Workspace& wsb) const {
  auto& ws = static_cast<CpuWorkspace&>(wsb);
  const int64_t h = config_.hidden_size;
  ForRows(pool_.get(), plan.num_rows(), [&](int64_t i) {
    cpu::RmsNorm(ws.x.data() + i * h, w_.final_norm.data(), config_.rms_norm_eps, h,
                 ws.xn.data() + i * h);
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::ReadResidual(const Workspace& wsb, int64_t row, int64_t n,
                                      float* out) const {
  const int64_t h = config_.hidden_size;
  std::memcpy(out, static_cast<const CpuWorkspace&>(wsb).x.data() + row * h, n * h * 4);
  return absl::OkStatus();
}

absl::Status CpuBackend::ReadNormed(const Workspace& wsb, int64_t row, int64_t n,
                                    float* out) const {
  const int64_t h = config_.hidden_size;
  std::memcpy(out, static_cast<const CpuWorkspace&>(wsb).xn.data() + row * h, n * h * 4);
  return absl::OkStatus();
}

void CpuBackend::ApplyLmHead(Workspace& wsb, std::span<const int64_t> rows, float* out) const {
  auto& ws = static_cast<CpuWorkspace&>(wsb);
  const int64_t h = config_.hidden_size, n = static_cast<int64_t>(rows.size());
  for (int64_t j = 0; j < n; ++j) {
    std::memcpy(ws.gathered.data() + j * h, ws.xn.data() + rows[j] * h, h * sizeof(float));
  }
  w_.lm_head.Apply(ws.gathered.data(), n, out, pool_.get());
}

absl::Status CpuBackend::Logits(Workspace& wsb, std::span<const int64_t> rows, float* out) const {
  if (tp_.comm == nullptr) {
    ApplyLmHead(wsb, rows, out);
    return absl::OkStatus();
  }
  auto& ws = static_cast<CpuWorkspace&>(wsb);
  const int64_t n = static_cast<int64_t>(rows.size());
  // Vocabulary parallel: each rank's rows of the LM head, gathered in rank order. The last
  // rank's share may be short; its padding is never read.
  const int64_t chunk = tp_.vocab_chunk, v = config_.vocab_size, mine = w_.lm_head.rows();
  const int world = tp_.comm->world_size();
  float* local = ws.local_logits.data();
  ApplyLmHead(ws, rows, ws.all_logits.data());  // [n, mine]
  for (int64_t j = 0; j < n; ++j) {
    std::memcpy(local + j * chunk, ws.all_logits.data() + j * mine, mine * sizeof(float));
    std::fill(local + j * chunk + mine, local + (j + 1) * chunk, 0.0f);
  }
  RETURN_IF_ERROR(tp_.comm->AllGather(local, n * chunk * static_cast<int64_t>(sizeof(float)),
                                      ws.all_logits.data()));
  for (int r = 0; r < world; ++r) {
    const int64_t v0 = r * chunk, len = std::min(chunk, v - v0);
    if (len <= 0) continue;
    for (int64_t j = 0; j < n; ++j) {
      std::memcpy(out + j * v + v0, ws.all_logits.data() + (r * n + j) * chunk,
                  len * sizeof(float));
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Argmax(Workspace& wsb, std::span<const int64_t> rows, int32_t* out) const {
  if (tp_.comm == nullptr) return ModelBackend::Argmax(wsb, rows, out);
  auto& ws = static_cast<CpuWorkspace&>(wsb);
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t chunk = tp_.vocab_chunk, mine = w_.lm_head.rows();
  const int world = tp_.comm->world_size();
  const int64_t v0 = static_cast<int64_t>(tp_.comm->rank()) * chunk;
  ApplyLmHead(ws, rows, ws.all_logits.data());  // [n, mine]
  // One (maximum, index) pair per row: the index's bits travel in a float slot.
  float* pairs = ws.local_logits.data();
  for (int64_t j = 0; j < n; ++j) {
    const float* row = ws.all_logits.data() + j * mine;
    const int32_t best = mine > 0 ? cpu::Argmax(row, static_cast<int>(mine)) : 0;
    pairs[2 * j] = mine > 0 ? row[best] : -std::numeric_limits<float>::infinity();
    pairs[2 * j + 1] = std::bit_cast<float>(static_cast<int32_t>(v0 + best));
  }
  RETURN_IF_ERROR(tp_.comm->AllGather(pairs, n * 2 * static_cast<int64_t>(sizeof(float)),
                                      ws.all_logits.data()));
  // Ranks in order, a later one winning only with a strictly larger maximum: the first index of
  // the maximum over the whole vocabulary, as Argmax over the gathered logits.
  for (int64_t j = 0; j < n; ++j) {
    float best = 0;
    int32_t index = 0;
    for (int r = 0; r < world; ++r) {
      const float* p = ws.all_logits.data() + (r * n + j) * 2;
      if (r == 0 || p[0] > best) {
        best = p[0];
        index = std::bit_cast<int32_t>(p[1]);
      }
    }
    out[j] = index;
  }
  return absl::OkStatus();
}

}  // namespace eagle
