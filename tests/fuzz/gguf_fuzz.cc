// libFuzzer target: a GGUF file from untrusted bytes. GgufFile::Open must return an error or a
// file whose every tensor lies inside the mapping (each tensor's first and last byte are read,
// so a bound that escapes the file faults here), whose metadata getters answer without crashing,
// and whose tokenizer metadata, when it parses, builds a tokenizer or a precise error.
#include <cstddef>
#include <cstdint>

#include "common/io/gguf.h"
#include "common/tokenizer.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = eagle::fuzz::WriteInputFile(data, size, ".gguf");
  auto gguf = eagle::GgufFile::Open(path);
  if (!gguf.ok()) return 0;
  const eagle::GgufFile& g = **gguf;
  const uint8_t* begin = g.file().data();
  const uint8_t* end = begin + g.file().size();
  volatile uint8_t sink = 0;
  for (const eagle::TensorRef& t : g.tensors()) {
    if (t.nbytes < 0) eagle::fuzz::Fail("negative tensor size");
    if (t.nbytes == 0) continue;
    if (t.data < begin || t.data + t.nbytes > end) eagle::fuzz::Fail("tensor outside the file");
    sink = sink + t.data[0] + t.data[t.nbytes - 1];
    if (g.FindTensor(t.name) == nullptr) eagle::fuzz::Fail("listed tensor not found by name");
  }
  for (const auto& [key, value] : g.metadata()) {
    (void)g.GetInt(key);
    (void)g.GetFloat(key);
    (void)g.GetString(key);
  }
  auto tdata = eagle::TokenizerDataFromGguf(g);
  if (!tdata.ok()) return 0;
  auto tok = eagle::Tokenizer::Create(*std::move(tdata));
  if (!tok.ok()) return 0;
  const std::vector<int32_t> ids = (*tok)->Encode("Hello, world! <|im_start|>", true);
  (void)(*tok)->Decode(ids);
  return 0;
}
