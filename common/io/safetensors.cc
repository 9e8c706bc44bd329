#include "common/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMaxHeader = 100u << 20;

absl::StatusOr<DType> ParseDType(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  if (s == "I64") return DType::kI64;
  if (s == "I32") return DType::kI32;
  if (s == "I8" || s == "BOOL" || s == "U8") return DType::kI8;
  return absl::UnimplementedError(absl::StrCat("unsupported safetensors dtype ", s));
}

}  // namespace

absl::Status SafetensorsSet::AddFile(const std::string& path) {
  ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  auto bad = [&](auto&&... parts) {
    return absl::DataLossError(absl::StrCat(path, ": ", parts...));
  };
  if (file->size() < 8) return bad("too short for a safetensors header");
  uint64_t n;
  std::memcpy(&n, file->data(), 8);
  if (n > kMaxHeader || n > file->size() - 8) return bad("header length ", n, " is out of range");
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = file->size() - data_start;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file->data() + 8, file->data() + 8 + n);
  } catch (const std::exception& e) {
    return bad("bad JSON header: ", e.what());
  }
  if (!header.is_object()) return bad("header is not a JSON object");
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const nlohmann::json& v = it.value();
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
        !v["data_offsets"].is_array() || v["data_offsets"].size() != 2) {
      return bad("tensor '", it.key(), "' has a malformed header entry");
    }
    TensorRef ref;
    ref.name = it.key();
    auto dt = ParseDType(v["dtype"].get<std::string>());
    if (!dt.ok()) return bad("tensor '", ref.name, "': ", dt.status().message());
    ref.dtype = *dt;
    int64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) return bad("tensor '", ref.name, "' has a bad shape");
      const int64_t x = d.get<int64_t>();
      if (x > (int64_t{1} << 40)) return bad("tensor '", ref.name, "' has a bad shape");
      ref.dims.push_back(x);
      numel *= x;
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return bad("tensor '", ref.name, "' has bad data_offsets");
    }
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size) {
      return bad("tensor '", ref.name, "' data [", b, ", ", e, ") runs past the end of the data (",
                 data_size, " bytes): truncated?");
    }
    ref.nbytes = static_cast<int64_t>(e - b);
    if (ref.nbytes != numel * GetDTypeInfo(ref.dtype).type_size) {
      return bad("tensor '", ref.name, "' has ", ref.nbytes, " bytes, its shape needs ",
                 numel * GetDTypeInfo(ref.dtype).type_size);
    }
    ref.data = file->data() + data_start + b;
    if (!index_.emplace(ref.name, tensors_.size()).second) {
      return bad("tensor '", ref.name, "' appears in more than one file");
    }
    tensors_.push_back(std::move(ref));
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsSet>> SafetensorsSet::Open(const std::string& path) {
  auto set = std::unique_ptr<SafetensorsSet>(new SafetensorsSet());
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    RETURN_IF_ERROR(set->AddFile(path));
    return set;
  }
  std::vector<std::string> files;
  const fs::path index = fs::path(path) / "model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      in >> j;
    } catch (const std::exception& e) {
      return absl::DataLossError(absl::StrCat(index.string(), ": bad JSON: ", e.what()));
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
      return absl::DataLossError(absl::StrCat(index.string(), ": no weight_map object"));
    }
    std::set<std::string> names;
    for (const auto& [k, v] : j["weight_map"].items()) {
      if (!v.is_string())
        return absl::DataLossError(absl::StrCat(index.string(), ": bad entry ", k));
      names.insert(v.get<std::string>());
    }
    for (const auto& n : names) {
      if (n.find('/') != std::string::npos || n.find("..") != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(index.string(), ": bad file name ", n));
      }
      files.push_back((fs::path(path) / n).string());
    }
  } else {
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat(path, ": no *.safetensors files"));
  }
  for (const auto& f : files) RETURN_IF_ERROR(set->AddFile(f));
  return set;
}

const TensorRef* SafetensorsSet::FindTensor(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace eagle
