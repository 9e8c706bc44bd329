// libFuzzer target: a .safetensors file from untrusted bytes. SafetensorsSet::Open must return
// an error or tensors that lie inside the file, each with as many bytes as its dtype and shape
// say (each tensor's first and last byte are read, so a bound that escapes the file faults here).
#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/io/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = eagle::fuzz::WriteInputFile(data, size, ".safetensors");
  auto set = eagle::SafetensorsSet::Open(path);
  if (!set.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const eagle::TensorRef& t : (*set)->tensors()) {
    if (t.nbytes < 0) eagle::fuzz::Fail("negative tensor size");
    for (const int64_t d : t.dims) {
      if (d < 0) eagle::fuzz::Fail("negative dimension");
    }
    if ((*set)->FindTensor(t.name) == nullptr) eagle::fuzz::Fail("listed tensor not found");
    if (t.nbytes == 0) continue;
    sink = sink + t.data[0] + t.data[t.nbytes - 1];
  }
  return 0;
}
