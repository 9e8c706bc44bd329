// GGUF v2/v3 reader: metadata, tensor table and alignment, over a memory-mapped file. Every
// offset, count and length is bounds-checked, so a truncated or corrupted file yields an error
// that names the file and the problem.
//
// Thread contract: after Open, all methods are const and thread-safe.
#ifndef EAGLE_COMMON_IO_GGUF_H_
#define EAGLE_COMMON_IO_GGUF_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/io/mapped_file.h"
#include "common/io/tensor_ref.h"

namespace eagle {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

struct GgufValue {
  GgufType type = GgufType::kUint8;
  GgufType elem_type = GgufType::kUint8;  // for arrays
  int64_t i = 0;                          // integer and bool scalars
  double f = 0;                           // float scalars
  std::string s;                          // string scalar
  std::vector<std::string> strs;          // array of strings
  std::vector<int64_t> ints;              // array of integers/bools
  std::vector<double> floats;             // array of floats
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const MappedFile& file() const { return *file_; }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<TensorRef>& tensors() const { return tensors_; }
  const TensorRef* FindTensor(const std::string& name) const;

  // Typed metadata access: NOT_FOUND when absent, INVALID_ARGUMENT on a type mismatch.
  absl::StatusOr<int64_t> GetInt(const std::string& key) const;
  absl::StatusOr<double> GetFloat(const std::string& key) const;
  absl::StatusOr<std::string> GetString(const std::string& key) const;
  const GgufValue* Find(const std::string& key) const;

 private:
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<TensorRef> tensors_;
  std::map<std::string, size_t> index_;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_IO_GGUF_H_
