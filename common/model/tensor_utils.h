// Checked views of checkpoint tensors as the types the CPU backend computes with.
#ifndef EAGLE_COMMON_MODEL_TENSOR_UTILS_H_
#define EAGLE_COMMON_MODEL_TENSOR_UTILS_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu/kernels.h"
#include "common/io/tensor_ref.h"

namespace eagle {

// A [rows, cols] matrix view of `t` (null -> NOT_FOUND naming `name`; wrong shape or an integer
// type -> INVALID_ARGUMENT).
absl::StatusOr<cpu::Matrix> MatrixFromTensor(const TensorRef* t, const std::string& name,
                                             int64_t rows, int64_t cols);
// `n` values of `t` as f32 (non-finite values -> DATA_LOSS).
absl::StatusOr<std::vector<float>> VectorFromTensor(const TensorRef* t, const std::string& name,
                                                    int64_t n);

// OK when every value is finite; otherwise INTERNAL naming `what` and the first bad element
// (used by the warm-up passes that gate readiness).
absl::Status CheckFinite(std::span<const float> values, const std::string& what);

}  // namespace eagle

#endif  // EAGLE_COMMON_MODEL_TENSOR_UTILS_H_
