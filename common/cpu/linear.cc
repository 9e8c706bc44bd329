#include "common/cpu/linear.h"

#include <algorithm>

#include "common/status_macros.h"

namespace eagle::cpu {

absl::StatusOr<Precision> ParsePrecision(std::string_view name) {
  if (name == "auto") return Precision::kAuto;
  if (name == "int16") return Precision::kInt16;
  if (name == "int8") return Precision::kInt8;
  if (name == "f32") return Precision::kF32;
  return absl::InvalidArgumentError("precision must be auto, int16, int8 or f32");
}

absl::StatusOr<Linear> Linear::Create(const Matrix& raw, Precision precision) {
  return CreateStacked({&raw, 1}, precision);
}

absl::StatusOr<Linear> Linear::CreateStacked(std::span<const Matrix> parts, Precision precision) {
  if (parts.empty()) return absl::InvalidArgumentError("Linear without matrices");
  Linear l;
  l.parts_.assign(parts.begin(), parts.end());
  bool packable = true;
  for (const Matrix& m : parts) {
    if (m.cols != parts[0].cols)
      return absl::InvalidArgumentError("stacked matrices differ in cols");
    l.rows_ += m.rows;
    packable = packable && CanPack(m) && m.dtype == parts[0].dtype;
  }
  const bool want_int = precision == Precision::kInt8 || precision == Precision::kInt16 ||
                        (precision == Precision::kAuto && QMatMulAccelerated());
  l.activation_bits_ = precision == Precision::kInt8 ? 8 : 15;
  if (want_int && packable) {
    ASSIGN_OR_RETURN(PackedMatrix p, PackStacked(parts));
    l.packed_ = std::make_shared<const PackedMatrix>(std::move(p));
  }
  return l;
}

int64_t Linear::bytes() const {
  if (packed_) return packed_->bytes();
  int64_t n = 0;
  // Rows as read: a column slice (one tensor-parallel rank's share) reads its columns only.
  for (const Matrix& m : parts_) n += m.rows * RowBytes(m.dtype, m.cols);
  return n;
}

void Linear::Apply(const float* x, int64_t num_tokens, float* y, ThreadPool* pool) const {
  if (packed_ != nullptr) {
    thread_local QuantizedActs acts;
    QuantizeActs(x, num_tokens, cols(), activation_bits_, &acts, pool);
    QMatMul(*packed_, acts, y, pool);
    return;
  }
  if (parts_.size() == 1) return MatMul(parts_[0], x, num_tokens, y, pool);
  thread_local std::vector<float> part;
  int64_t offset = 0;
  for (const Matrix& m : parts_) {
    part.resize(num_tokens * m.rows);
    MatMul(m, x, num_tokens, part.data(), pool);
    for (int64_t t = 0; t < num_tokens; ++t) {
      std::copy(part.begin() + t * m.rows, part.begin() + (t + 1) * m.rows, y + t * rows_ + offset);
    }
    offset += m.rows;
  }
}

}  // namespace eagle::cpu
