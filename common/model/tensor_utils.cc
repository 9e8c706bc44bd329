#include "common/model/tensor_utils.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace eagle {

absl::StatusOr<cpu::Matrix> MatrixFromTensor(const TensorRef* t, const std::string& name,
                                             int64_t rows, int64_t cols) {
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("missing tensor ", name));
  if (t->dims.size() != 2 || t->rows() != rows || t->cols() != cols) {
    std::string dims;
    for (int64_t d : t->dims) absl::StrAppend(&dims, dims.empty() ? "" : "x", d);
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, " has shape [", dims, "], expected [", rows, "x", cols, "]"));
  }
  switch (t->dtype) {
    case DType::kI8:
    case DType::kI32:
    case DType::kI64:
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, " has integer type ", DTypeName(t->dtype)));
    default:
      break;
  }
  if (cols % GetDTypeInfo(t->dtype).block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " row is not whole blocks"));
  }
  cpu::Matrix m;
  m.dtype = t->dtype;
  m.rows = rows;
  m.cols = cols;
  m.data = t->data;
  m.row_bytes = RowBytes(t->dtype, cols);
  return m;
}

absl::StatusOr<std::vector<float>> VectorFromTensor(const TensorRef* t, const std::string& name,
                                                    int64_t n) {
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("missing tensor ", name));
  if (t->numel() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, " has ", t->numel(), " elements, expected ", n));
  }
  if (n % GetDTypeInfo(t->dtype).block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " is not whole blocks"));
  }
  std::vector<float> v(n);
  DequantizeRowScalar(t->dtype, t->data, v.data(), n);
  for (float x : v) {
    if (!std::isfinite(x))
      return absl::DataLossError(absl::StrCat("tensor ", name, " has non-finite values"));
  }
  return v;
}

absl::Status CheckFinite(std::span<const float> values, const std::string& what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InternalError(
          absl::StrCat("warm-up: ", what, " element ", i, " is ", values[i], " (broken weights?)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace eagle
