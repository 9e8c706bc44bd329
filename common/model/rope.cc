#include "common/model/rope.h"

#include <cmath>

namespace eagle {

Rope::Rope(int head_dim, double theta, const RopeScaling& rs, int max_position, bool interleaved)
    : head_dim_(head_dim), max_position_(max_position), interleaved_(interleaved) {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / static_cast<float>(std::pow(theta, static_cast<double>(expo)));
  }
  if (rs.type == RopeScaling::Type::kLinear) {
    for (float& f : inv_freq) f = static_cast<float>(f / rs.factor);
  } else if (rs.type == RopeScaling::Type::kLlama3) {
    const double low_wavelen = rs.original_max_position / rs.low_freq_factor;
    const double high_wavelen = rs.original_max_position / rs.high_freq_factor;
    for (float& f : inv_freq) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / rs.factor);
      } else if (wavelen >= high_wavelen) {
        const double smooth = (rs.original_max_position / wavelen - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        f = static_cast<float>((1 - smooth) * f / rs.factor + smooth * f);
      }
    }
  }
  cos_.resize(static_cast<size_t>(max_position) * half);
  sin_.resize(cos_.size());
  for (int64_t pos = 0; pos < max_position; ++pos) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos) * inv_freq[i];
      cos_[pos * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_[pos * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

void Rope::Apply(float* x, int num_heads, int64_t pos) const {
  const int hd = head_dim_, half = hd / 2;
  const float* cs = cos_.data() + pos * half;
  const float* sn = sin_.data() + pos * half;
  for (int h = 0; h < num_heads; ++h) {
    float* v = x + h * hd;
    if (interleaved_) {
      for (int i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cs[i] - b * sn[i];
        v[2 * i + 1] = a * sn[i] + b * cs[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

}  // namespace eagle
