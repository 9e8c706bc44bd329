// A named, non-owning view of one weight tensor inside a mapped checkpoint file.
#ifndef EAGLE_COMMON_IO_TENSOR_REF_H_
#define EAGLE_COMMON_IO_TENSOR_REF_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace eagle {

struct TensorRef {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> dims;  // row-major, outermost first: a Linear weight is [out, in]
  const uint8_t* data = nullptr;
  int64_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
  int64_t rows() const { return dims.size() < 2 ? 1 : numel() / dims.back(); }
  int64_t cols() const { return dims.empty() ? 1 : dims.back(); }
};

}  // namespace eagle

#endif  // EAGLE_COMMON_IO_TENSOR_REF_H_
