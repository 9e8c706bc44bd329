#include "common/cpu/linear.h"

#include "common/status_macros.h"

namespace eagle::cpu {

absl::StatusOr<Linear> Linear::Create(const Matrix& raw, Precision precision) {
  Linear l;
  l.raw_ = raw;
  const bool want_int8 =
      precision == Precision::kInt8 || (precision == Precision::kAuto && QMatMulAccelerated());
  if (want_int8 && CanPack(raw)) {
    ASSIGN_OR_RETURN(PackedMatrix p, Pack(raw));
    l.packed_ = std::make_shared<const PackedMatrix>(std::move(p));
  }
  return l;
}

void Linear::Apply(const float* x, int64_t num_tokens, float* y) const {
  if (packed_ == nullptr) return MatMul(raw_, x, num_tokens, y);
  thread_local QuantizedActs acts;
  QuantizeActs(x, num_tokens, raw_.cols, &acts);
  QMatMul(*packed_, acts, y);
}

}  // namespace eagle::cpu
