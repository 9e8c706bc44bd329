// Read-only memory map of a whole file (RAII, move-only).
#ifndef EAGLE_COMMON_IO_MAPPED_FILE_H_
#define EAGLE_COMMON_IO_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace eagle {

class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the resident pages of [p, p + n) (whole pages inside the range only). Reads of the range
  // still work: the pages come back from the file on demand.
  void Release(const uint8_t* p, size_t n) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_IO_MAPPED_FILE_H_
