// The flags of the bench and datagen tools: `--name value` pairs over known defaults. Every
// error (an unknown flag, a flag without its value, a value that is not a number of the asked
// type or lies outside its range) is a precise usage error on stderr and exit status 2, never
// an exception or an abort.
#ifndef EAGLE_TOOLS_FLAG_MAP_H_
#define EAGLE_TOOLS_FLAG_MAP_H_

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "absl/strings/numbers.h"

namespace eagle {

class FlagMap {
 public:
  // `defaults`: every flag with its default; `no_default`: flags that exist but have none (Has()
  // tells whether they were given).
  FlagMap(std::string tool, std::map<std::string, std::string> defaults,
          std::set<std::string> no_default = {})
      : tool_(std::move(tool)), values_(std::move(defaults)), no_default_(std::move(no_default)) {}

  // Reads argv; on an unknown or dangling flag prints the error and exits 2.
  void Parse(int argc, char** argv) {
    for (int i = 1; i < argc; i += 2) {
      const std::string name = argv[i];
      if (!values_.count(name) && !no_default_.count(name)) {
        Fail(name, "unknown flag (see the source header of " + tool_ + ")");
      }
      if (i + 1 >= argc) Fail(name, "needs a value");
      values_[name] = argv[i + 1];
    }
  }

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  const std::string& tool() const { return tool_; }
  std::string& operator[](const std::string& name) { return values_[name]; }

  int Int(const std::string& name, int lo = INT_MIN, int hi = INT_MAX) const {
    return static_cast<int>(Int64(name, lo, hi));
  }
  int64_t Int64(const std::string& name, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const {
    int64_t v = 0;
    if (!absl::SimpleAtoi(Value(name), &v)) Fail(name, "'" + Value(name) + "' is not an integer");
    if (v < lo || v > hi) {
      Fail(name,
           Value(name) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v;
  }
  uint64_t Uint64(const std::string& name) const {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(Value(name), &v)) {
      Fail(name, "'" + Value(name) + "' is not a non-negative integer");
    }
    return v;
  }
  double Double(const std::string& name) const {
    double v = 0;
    if (!absl::SimpleAtod(Value(name), &v)) Fail(name, "'" + Value(name) + "' is not a number");
    return v;
  }

 private:
  std::string Value(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? "" : it->second;
  }
  [[noreturn]] void Fail(const std::string& name, const std::string& why) const {
    std::fprintf(stderr, "%s: error: %s: %s\n", tool_.c_str(), name.c_str(), why.c_str());
    std::exit(2);
  }

  std::string tool_;
  std::map<std::string, std::string> values_;
  std::set<std::string> no_default_;
};

}  // namespace eagle

#endif  // EAGLE_TOOLS_FLAG_MAP_H_
