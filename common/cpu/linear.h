// A linear layer's weight matrix in the form the CPU backend computes with: int8-packed
// (Q4_0/Q4_1/Q8_0 weights with int8 activations, the fast path) or the stored blocks with f32
// activations (the reference path, and every other type).
#ifndef EAGLE_COMMON_CPU_LINEAR_H_
#define EAGLE_COMMON_CPU_LINEAR_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu/kernels.h"
#include "common/cpu/qmatmul.h"

namespace eagle::cpu {

enum class Precision {
  kAuto,   // kInt16 where an integer kernel runs (AVX-512 VNNI or AVX2), else kF32
  kInt16,  // 15-bit integer activations (two int8 passes) with Q4_0/Q4_1/Q8_0 weights
  kInt8,   // 8-bit integer activations (as llama.cpp): fastest, least accurate
  kF32,    // f32 activations everywhere: the numerical reference
};
// "auto" | "int16" | "int8" | "f32".
absl::StatusOr<Precision> ParsePrecision(std::string_view name);

class Linear {
 public:
  Linear() = default;
  // `raw` must outlive the Linear (it is kept for f32 use and row lookups).
  static absl::StatusOr<Linear> Create(const Matrix& raw, Precision precision);
  // Several matrices with the same input, stacked by rows: y = [x.A^T | x.B^T | ...]. On the int8
  // path they are packed together (one matmul, one activation quantization).
  static absl::StatusOr<Linear> CreateStacked(std::span<const Matrix> parts, Precision precision);

  // y[T, rows] = x[T, cols] . W^T, on `pool` (null: the calling thread).
  void Apply(const float* x, int64_t num_tokens, float* y, ThreadPool* pool = nullptr) const;
  bool packed() const { return packed_ != nullptr; }
  // The first (or only) stacked matrix.
  const Matrix& raw() const { return parts_[0]; }
  std::span<const Matrix> parts() const { return parts_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return parts_.empty() ? 0 : parts_[0].cols; }
  // Bytes read per token when applied.
  int64_t bytes() const;

 private:
  std::vector<Matrix> parts_;
  int64_t rows_ = 0;
  std::shared_ptr<const PackedMatrix> packed_;
  int activation_bits_ = 15;
};

}  // namespace eagle::cpu

#endif  // EAGLE_COMMON_CPU_LINEAR_H_
