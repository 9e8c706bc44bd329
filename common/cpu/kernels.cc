#include "common/cpu/kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace eagle::cpu {
namespace {

std::atomic<int> g_isa{-1};

Isa DetectIsa() {
  if (avx512::Supported()) return Isa::kAvx512;
  if (avx2::Supported()) return Isa::kAvx2;
  return Isa::kScalar;
}

}  // namespace

Isa ActiveIsa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(DetectIsa());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

void SetIsaForTesting(Isa isa) { g_isa.store(static_cast<int>(isa)); }

std::string CpuFeatureString() {
  __builtin_cpu_init();
  std::string s;
  auto add = [&](const char* name, bool on) {
    if (on) s += std::string(s.empty() ? "" : " ") + name;
  };
  add("avx2", __builtin_cpu_supports("avx2"));
  add("fma", __builtin_cpu_supports("fma"));
  add("avx512f", __builtin_cpu_supports("avx512f"));
  add("avx512bw", __builtin_cpu_supports("avx512bw"));
  add("avx512vl", __builtin_cpu_supports("avx512vl"));
  add("avx512vnni", __builtin_cpu_supports("avx512vnni"));
  add("avx512bf16", __builtin_cpu_supports("avx512bf16"));
  s += ActiveIsa() == Isa::kAvx512 ? " -> kernels: avx512"
       : ActiveIsa() == Isa::kAvx2 ? " -> kernels: avx2"
                                   : " -> kernels: scalar";
  return s;
}

void DequantizeRow(const Matrix& w, int64_t r, float* out) {
  DequantizeRowScalar(w.dtype, w.row(r), out, w.cols);
}

#define EAGLE_DISPATCH(fn, ...)                          \
  (ActiveIsa() == Isa::kAvx512 ? avx512::fn(__VA_ARGS__) \
   : ActiveIsa() == Isa::kAvx2 ? avx2::fn(__VA_ARGS__)   \
                               : scalar::fn(__VA_ARGS__))

void MatMul(const Matrix& w, const float* x, int64_t t, float* y, ThreadPool* pool) {
  EAGLE_DISPATCH(MatMul, w, x, t, y, pool);
}
void RmsNorm(const float* x, const float* wt, float eps, int n, float* out) {
  EAGLE_DISPATCH(RmsNorm, x, wt, eps, n, out);
}
void SwiGlu(const float* g, const float* u, int n, float* out) {
  EAGLE_DISPATCH(SwiGlu, g, u, n, out);
}
float Dot(const float* a, const float* b, int n) { return EAGLE_DISPATCH(Dot, a, b, n); }
void Axpy(float a, const float* x, float* y, int n) { EAGLE_DISPATCH(Axpy, a, x, y, n); }
float ExpShiftSum(float* x, int n, float max) { return EAGLE_DISPATCH(ExpShiftSum, x, n, max); }
int32_t Argmax(const float* x, int n) { return EAGLE_DISPATCH(Argmax, x, n); }

void AttendGroup(const float* q, int num_q, const float* kt, int64_t kt_stride, const float* v,
                 int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                 int n_extra, float scale, float* scores, float* out) {
  EAGLE_DISPATCH(AttendGroup, q, num_q, kt, kt_stride, v, v_stride, head_dim, n_prefix, extra,
                 n_extra, scale, scores, out);
}

namespace scalar {

void AttendGroup(const float* q, int num_q, const float* kt, int64_t kt_stride, const float* v,
                 int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                 int n_extra, float scale, float* scores, float* out) {
  const int64_t n = n_prefix + n_extra;
  auto slot = [&](int64_t i) {
    return i < n_prefix ? i : static_cast<int64_t>(extra[i - n_prefix]);
  };
  for (int g = 0; g < num_q; ++g) {
    const float* qg = q + g * head_dim;
    float* sg = scores + g * n;
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = slot(i);
      float acc = 0.0f;
      for (int d = 0; d < head_dim; ++d) acc = std::fma(qg[d], kt[d * kt_stride + s], acc);
      sg[i] = acc * scale;
      mx = std::max(mx, sg[i]);
    }
    const float inv = 1.0f / ExpShiftSum(sg, static_cast<int>(n), mx);
    float* og = out + g * head_dim;
    std::fill(og, og + head_dim, 0.0f);
    for (int64_t i = 0; i < n; ++i) Axpy(sg[i] * inv, v + slot(i) * v_stride, og, head_dim);
  }
}

void MatMul(const Matrix& w, const float* x, int64_t num_tokens, float* y, ThreadPool* pool) {
  const int64_t k_len = w.cols;
  ParallelFor(pool, w.rows, GrainFor(pool, w.rows), [&](int64_t n0, int64_t n1) {
    thread_local std::vector<float> row;
    row.resize(k_len);
    for (int64_t n = n0; n < n1; ++n) {
      DequantizeRowScalar(w.dtype, w.row(n), row.data(), k_len);
      for (int64_t t = 0; t < num_tokens; ++t) {
        const float* xt = x + t * k_len;
        float acc[16] = {};
        for (int64_t k = 0; k < k_len; k += 16) {
          for (int l = 0; l < 16; ++l) acc[l] = std::fma(row[k + l], xt[k + l], acc[l]);
        }
        float s = 0;
        for (float a : acc) s += a;
        y[t * w.rows + n] = s;
      }
    }
  });
}

void RmsNorm(const float* x, const float* weight, float eps, int n, float* out) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int i = 0; i < n; ++i) out[i] = x[i] * inv * weight[i];
}

void SwiGlu(const float* gate, const float* up, int n, float* out) {
  for (int i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

float Dot(const float* a, const float* b, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s = std::fma(a[i], b[i], s);
  return s;
}

void Axpy(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}

int32_t Argmax(const float* x, int n) {
  int32_t best = 0;
  float top = x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] > top) {
      top = x[i];
      best = i;
    }
  }
  return best;
}

float ExpShiftSum(float* x, int n, float max) {
  float s = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    s += x[i];
  }
  return s;
}

}  // namespace scalar
}  // namespace eagle::cpu
