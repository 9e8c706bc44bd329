// CPU compute kernels. Each has a scalar reference (namespace scalar) and a vectorised version
// chosen at run time from the CPU's features (AVX-512 where present, else the scalar code).
//
// Batch invariance contract: every output element is computed by a fixed sequence of operations
// that depends only on its own inputs, never on how many other rows/tokens are computed beside
// it. MatMul computes y[t][n] as: acc = 0 (16 lanes); for k in steps of 16: acc = fma(w[n][k..],
// x[t][k..], acc); y = horizontal_sum(acc), whatever the tile shape or thread count.
#ifndef EAGLE_COMMON_CPU_KERNELS_H_
#define EAGLE_COMMON_CPU_KERNELS_H_

#include <cstdint>
#include <string>

#include "common/cpu/thread_pool.h"
#include "common/dtype.h"

namespace eagle::cpu {

// A weight matrix [rows, cols] (PyTorch Linear layout [out, in]), rows stored contiguously, each
// row `row_bytes` long in `dtype` blocks. cols must be a multiple of 32.
struct Matrix {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;
  int64_t row_bytes = 0;
  const uint8_t* row(int64_t r) const { return data + r * row_bytes; }
};

enum class Isa { kScalar, kAvx2, kAvx512 };
// The ISA the dispatcher uses on this machine (overridable for tests).
Isa ActiveIsa();
void SetIsaForTesting(Isa isa);
std::string CpuFeatureString();

// y[t, n] = sum_k x[t, k] * w[n, k] for t < num_tokens. x: [num_tokens, cols] f32 contiguous;
// y: [num_tokens, rows] f32 contiguous. Row tiles run on `pool` (null: the calling thread).
void MatMul(const Matrix& w, const float* x, int64_t num_tokens, float* y,
            ThreadPool* pool = nullptr);

// Dequantizes row r of w into out[cols].
void DequantizeRow(const Matrix& w, int64_t r, float* out);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], sums in a fixed order.
void RmsNorm(const float* x, const float* weight, float eps, int n, float* out);
// out[i] = silu(gate[i]) * up[i].
void SwiGlu(const float* gate, const float* up, int n, float* out);
float Dot(const float* a, const float* b, int n);
// y += a * x
void Axpy(float a, const float* x, float* y, int n);
// x[i] = exp(x[i] - max); returns the sum (in a fixed order).
float ExpShiftSum(float* x, int n, float max);
// The first index of the largest of x[0..n) (n >= 1), NaNs skipped; 0 if x[0] is NaN. Exactly
// `best = 0; for i: if (x[i] > x[best]) best = i`, in two vector passes (the maximum, then its
// first index).
int32_t Argmax(const float* x, int n);

// `num_q` query heads that share one key/value head (grouped-query attention) attending over
// cached slots: [0, n_prefix) followed by the `n_extra` slots listed in `extra` (increasing).
// Keys are stored transposed: element d of slot s is kt[d * kt_stride + s]. Value of slot s is
// at v + s * v_stride. For each head g: out[g] = softmax(scale * q[g] . k_s) . v_s over the
// slots in that order. Each score is one fma chain over d in order, the same whichever slots
// are computed beside it (batch invariance). q: [num_q, head_dim]; out: [num_q, head_dim];
// scores: scratch of num_q * (n_prefix + n_extra) floats.
void AttendGroup(const float* q, int num_q, const float* kt, int64_t kt_stride, const float* v,
                 int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                 int n_extra, float scale, float* scores, float* out);

namespace scalar {
void AttendGroup(const float* q, int num_q, const float* kt, int64_t kt_stride, const float* v,
                 int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                 int n_extra, float scale, float* scores, float* out);
void MatMul(const Matrix& w, const float* x, int64_t num_tokens, float* y, ThreadPool* pool);
void RmsNorm(const float* x, const float* weight, float eps, int n, float* out);
void SwiGlu(const float* gate, const float* up, int n, float* out);
float Dot(const float* a, const float* b, int n);
void Axpy(float a, const float* x, float* y, int n);
float ExpShiftSum(float* x, int n, float max);
int32_t Argmax(const float* x, int n);
}  // namespace scalar

namespace avx2 {
bool Supported();
void AttendGroup(const float* q, int num_q, const float* kt, int64_t kt_stride, const float* v,
                 int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                 int n_extra, float scale, float* scores, float* out);
void MatMul(const Matrix& w, const float* x, int64_t num_tokens, float* y, ThreadPool* pool);
void RmsNorm(const float* x, const float* weight, float eps, int n, float* out);
void SwiGlu(const float* gate, const float* up, int n, float* out);
float Dot(const float* a, const float* b, int n);
void Axpy(float a, const float* x, float* y, int n);
float ExpShiftSum(float* x, int n, float max);
int32_t Argmax(const float* x, int n);
// GFLOP/s of one thread issuing independent FMAs (registers only): the compute roof.
double FmaProbeGflops(int64_t iters);
}  // namespace avx2

namespace avx512 {
bool Supported();
void AttendGroup(const float* q, int num_q, const float* kt, int64_t kt_stride, const float* v,
                 int64_t v_stride, int head_dim, int64_t n_prefix, const int32_t* extra,
                 int n_extra, float scale, float* scores, float* out);
void MatMul(const Matrix& w, const float* x, int64_t num_tokens, float* y, ThreadPool* pool);
void RmsNorm(const float* x, const float* weight, float eps, int n, float* out);
void SwiGlu(const float* gate, const float* up, int n, float* out);
float Dot(const float* a, const float* b, int n);
void Axpy(float a, const float* x, float* y, int n);
float ExpShiftSum(float* x, int n, float max);
int32_t Argmax(const float* x, int n);
// GFLOP/s of one thread issuing independent FMAs (registers only): the compute roof.
double FmaProbeGflops(int64_t iters);
}  // namespace avx512

}  // namespace eagle::cpu

#endif  // EAGLE_COMMON_CPU_KERNELS_H_
