// A linear layer's weight matrix in the form the CPU backend computes with: int8-packed
// (Q4_0/Q4_1/Q8_0 weights with int8 activations, the fast path) or the stored blocks with f32
// activations (the reference path, and every other type).
#ifndef EAGLE_COMMON_CPU_LINEAR_H_
#define EAGLE_COMMON_CPU_LINEAR_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/cpu/kernels.h"
#include "common/cpu/qmatmul.h"

namespace eagle::cpu {

enum class Precision {
  kAuto,  // int8 where the weights allow it and the CPU has AVX-512 VNNI, else f32
  kInt8,  // int8 activations wherever the weights allow it (scalar code without VNNI)
  kF32,   // f32 activations everywhere: the numerical reference
};

class Linear {
 public:
  Linear() = default;
  // `raw` must outlive the Linear (it is kept for f32 use and row lookups).
  static absl::StatusOr<Linear> Create(const Matrix& raw, Precision precision);

  // y[T, rows] = x[T, cols] . W^T
  void Apply(const float* x, int64_t num_tokens, float* y) const;
  bool packed() const { return packed_ != nullptr; }
  const Matrix& raw() const { return raw_; }
  int64_t rows() const { return raw_.rows; }
  int64_t cols() const { return raw_.cols; }
  // Bytes read per token when applied.
  int64_t bytes() const { return packed_ ? packed_->bytes() : raw_.rows * raw_.row_bytes; }

 private:
  Matrix raw_;
  std::shared_ptr<const PackedMatrix> packed_;
};

}  // namespace eagle::cpu

#endif  // EAGLE_COMMON_CPU_LINEAR_H_
