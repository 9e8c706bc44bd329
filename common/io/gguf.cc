#include "common/io/gguf.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;

// Bounds-checked little-endian cursor over the mapped bytes.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, size_t size)
      : path_(path), data_(data), size_(size) {}

  template <typename T>
  absl::StatusOr<T> Read(const char* what) {
    if (size_ - pos_ < sizeof(T)) return Truncated(what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  absl::StatusOr<std::string> ReadString(const char* what) {
    ASSIGN_OR_RETURN(uint64_t n, Read<uint64_t>(what));
    if (n > size_ - pos_) return Truncated(what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  absl::Status Truncated(const char* what) const {
    return absl::DataLossError(absl::StrCat(path_, ": truncated or corrupt GGUF while reading ",
                                            what, " at byte ", pos_, " of ", size_));
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

 private:
  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

size_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

bool IsFloat(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

absl::Status ReadScalar(Cursor& c, GgufType t, int64_t* i, double* f) {
  switch (t) {
    case GgufType::kUint8: {
      ASSIGN_OR_RETURN(*i, c.Read<uint8_t>("u8"));
      break;
    }
    case GgufType::kInt8: {
      ASSIGN_OR_RETURN(*i, c.Read<int8_t>("i8"));
      break;
    }
    case GgufType::kBool: {
      ASSIGN_OR_RETURN(*i, c.Read<uint8_t>("bool"));
      break;
    }
    case GgufType::kUint16: {
      ASSIGN_OR_RETURN(*i, c.Read<uint16_t>("u16"));
      break;
    }
    case GgufType::kInt16: {
      ASSIGN_OR_RETURN(*i, c.Read<int16_t>("i16"));
      break;
    }
    case GgufType::kUint32: {
      ASSIGN_OR_RETURN(*i, c.Read<uint32_t>("u32"));
      break;
    }
    case GgufType::kInt32: {
      ASSIGN_OR_RETURN(*i, c.Read<int32_t>("i32"));
      break;
    }
    case GgufType::kUint64: {
      ASSIGN_OR_RETURN(uint64_t u, c.Read<uint64_t>("u64"));
      *i = static_cast<int64_t>(u);
      break;
    }
    case GgufType::kInt64: {
      ASSIGN_OR_RETURN(*i, c.Read<int64_t>("i64"));
      break;
    }
    case GgufType::kFloat32: {
      ASSIGN_OR_RETURN(*f, c.Read<float>("f32"));
      break;
    }
    case GgufType::kFloat64: {
      ASSIGN_OR_RETURN(*f, c.Read<double>("f64"));
      break;
    }
    case GgufType::kString:
    case GgufType::kArray:
      return absl::InternalError("not a scalar");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  auto g = std::unique_ptr<GgufFile>(new GgufFile());
  ASSIGN_OR_RETURN(g->file_, MappedFile::Open(path));
  Cursor c(path, g->file_->data(), g->file_->size());
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parts...));
  };

  ASSIGN_OR_RETURN(uint32_t magic, c.Read<uint32_t>("magic"));
  if (magic != kGgufMagic) return bad("not a GGUF file (bad magic)");
  ASSIGN_OR_RETURN(g->version_, c.Read<uint32_t>("version"));
  if (g->version_ != 2 && g->version_ != 3) {
    return bad("unsupported GGUF version ", g->version_, " (supported: 2, 3)");
  }
  ASSIGN_OR_RETURN(uint64_t n_tensors, c.Read<uint64_t>("tensor count"));
  ASSIGN_OR_RETURN(uint64_t n_kv, c.Read<uint64_t>("metadata count"));
  // Each entry takes at least 8 bytes on disk: larger counts are corrupt.
  if (n_tensors > c.remaining() / 8 || n_kv > c.remaining() / 8) {
    return bad("implausible tensor/metadata count (", n_tensors, ", ", n_kv, ")");
  }

  for (uint64_t k = 0; k < n_kv; ++k) {
    ASSIGN_OR_RETURN(std::string key, c.ReadString("metadata key"));
    ASSIGN_OR_RETURN(uint32_t type_id, c.Read<uint32_t>("metadata type"));
    if (type_id > 12) return bad("metadata '", key, "' has unknown type ", type_id);
    GgufValue v;
    v.type = static_cast<GgufType>(type_id);
    if (v.type == GgufType::kString) {
      ASSIGN_OR_RETURN(v.s, c.ReadString("metadata string"));
    } else if (v.type == GgufType::kArray) {
      ASSIGN_OR_RETURN(uint32_t et, c.Read<uint32_t>("array type"));
      if (et > 12 || et == 9) return bad("metadata '", key, "' has bad array element type ", et);
      v.elem_type = static_cast<GgufType>(et);
      ASSIGN_OR_RETURN(uint64_t n, c.Read<uint64_t>("array length"));
      const size_t es = v.elem_type == GgufType::kString ? 8 : ScalarSize(v.elem_type);
      if (n > c.remaining() / es) return c.Truncated("array");
      if (v.elem_type == GgufType::kString) {
        v.strs.reserve(n);
        for (uint64_t j = 0; j < n; ++j) {
          ASSIGN_OR_RETURN(std::string s, c.ReadString("array string"));
          v.strs.push_back(std::move(s));
        }
      } else {
        for (uint64_t j = 0; j < n; ++j) {
          int64_t iv = 0;
          double fv = 0;
          RETURN_IF_ERROR(ReadScalar(c, v.elem_type, &iv, &fv));
          if (IsFloat(v.elem_type)) {
            v.floats.push_back(fv);
          } else {
            v.ints.push_back(iv);
          }
        }
      }
    } else {
      RETURN_IF_ERROR(ReadScalar(c, v.type, &v.i, &v.f));
    }
    if (!g->kv_.emplace(key, std::move(v)).second) return bad("duplicate metadata key '", key, "'");
  }

  uint64_t alignment = 32;
  if (const GgufValue* a = g->Find("general.alignment")) {
    alignment = static_cast<uint64_t>(a->i);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      return bad("general.alignment ", alignment, " is not a power of two");
    }
  }

  struct Pending {
    uint64_t offset;
  };
  std::vector<Pending> offsets;
  for (uint64_t t = 0; t < n_tensors; ++t) {
    TensorRef ref;
    ASSIGN_OR_RETURN(ref.name, c.ReadString("tensor name"));
    ASSIGN_OR_RETURN(uint32_t n_dims, c.Read<uint32_t>("tensor rank"));
    if (n_dims == 0 || n_dims > kMaxDims) return bad("tensor '", ref.name, "' has rank ", n_dims);
    std::vector<int64_t> ne(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      ASSIGN_OR_RETURN(uint64_t x, c.Read<uint64_t>("tensor dim"));
      if (x == 0 || x > (1ull << 40)) return bad("tensor '", ref.name, "' has bad dim ", x);
      ne[d] = static_cast<int64_t>(x);
    }
    ASSIGN_OR_RETURN(uint32_t type_id, c.Read<uint32_t>("tensor type"));
    if (!IsSupportedDType(type_id)) {
      return absl::UnimplementedError(
          absl::StrCat(path, ": tensor '", ref.name, "' has unsupported GGML type ", type_id));
    }
    ref.dtype = static_cast<DType>(type_id);
    ASSIGN_OR_RETURN(uint64_t off, c.Read<uint64_t>("tensor offset"));
    if (off % alignment != 0) return bad("tensor '", ref.name, "' offset is not aligned");
    // GGUF lists dims innermost first; we keep them outermost first.
    ref.dims.assign(ne.rbegin(), ne.rend());
    const DTypeInfo info = GetDTypeInfo(ref.dtype);
    if (ne[0] % info.block_size != 0) {
      return bad("tensor '", ref.name, "' row length ", ne[0], " is not a multiple of the ",
                 info.name, " block size ", info.block_size);
    }
    int64_t n = 1;
    for (int64_t x : ne) {
      if (n > (int64_t{1} << 44) / x) return bad("tensor '", ref.name, "' is too large");
      n *= x;
    }
    ref.nbytes = n / info.block_size * info.type_size;
    offsets.push_back({off});
    if (!g->index_.emplace(ref.name, g->tensors_.size()).second) {
      return bad("duplicate tensor '", ref.name, "'");
    }
    g->tensors_.push_back(std::move(ref));
  }

  const uint64_t data_start = (c.pos() + alignment - 1) / alignment * alignment;
  const uint64_t size = g->file_->size();
  for (size_t t = 0; t < g->tensors_.size(); ++t) {
    TensorRef& ref = g->tensors_[t];
    const uint64_t begin = data_start + offsets[t].offset;
    if (begin > size || static_cast<uint64_t>(ref.nbytes) > size - begin) {
      return absl::DataLossError(absl::StrCat(path, ": tensor '", ref.name, "' (", ref.nbytes,
                                              " bytes at ", begin, ") runs past the end of the ",
                                              size, "-byte file: truncated?"));
    }
    ref.data = g->file_->data() + begin;
  }
  return g;
}

const TensorRef* GgufFile::FindTensor(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

absl::StatusOr<int64_t> GgufFile::GetInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat(path(), ": no metadata '", key, "'"));
  if (v->type == GgufType::kString || v->type == GgufType::kArray || IsFloat(v->type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path(), ": metadata '", key, "' is not an integer"));
  }
  return v->i;
}

absl::StatusOr<double> GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat(path(), ": no metadata '", key, "'"));
  if (IsFloat(v->type)) return v->f;
  if (v->type == GgufType::kString || v->type == GgufType::kArray) {
    return absl::InvalidArgumentError(
        absl::StrCat(path(), ": metadata '", key, "' is not a number"));
  }
  return static_cast<double>(v->i);
}

absl::StatusOr<std::string> GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat(path(), ": no metadata '", key, "'"));
  if (v->type != GgufType::kString) {
    return absl::InvalidArgumentError(
        absl::StrCat(path(), ": metadata '", key, "' is not a string"));
  }
  return v->s;
}

}  // namespace eagle
