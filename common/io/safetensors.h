// Hugging Face checkpoints: one or many *.safetensors files (memory-mapped) with their JSON
// headers, merged into one tensor table. F32, F16 and BF16 tensors (plus I8/BOOL, I32, I64 for
// auxiliary buffers such as EAGLE-3's d2t/t2d).
//
// Thread contract: after Open, all methods are const and thread-safe.
#ifndef EAGLE_COMMON_IO_SAFETENSORS_H_
#define EAGLE_COMMON_IO_SAFETENSORS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/io/mapped_file.h"
#include "common/io/tensor_ref.h"

namespace eagle {

class SafetensorsSet {
 public:
  // `path` is a .safetensors file or a directory: with model.safetensors.index.json the files it
  // names, otherwise every *.safetensors file in it.
  static absl::StatusOr<std::unique_ptr<SafetensorsSet>> Open(const std::string& path);

  const TensorRef* FindTensor(const std::string& name) const;
  const std::vector<TensorRef>& tensors() const { return tensors_; }

 private:
  absl::Status AddFile(const std::string& file);

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<TensorRef> tensors_;
  std::map<std::string, size_t> index_;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_IO_SAFETENSORS_H_
