// A small JSON writer for --output=json: objects and arrays built in order, printed compactly
// or indented like qemu-img's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vdisk_tool {

class Json {
 public:
  static Json Object() { return Json(Kind::kObject); }
  static Json Array() { return Json(Kind::kArray); }
  static Json String(std::string_view text);
  static Json Number(std::uint64_t value);
  static Json Bool(bool value);
  static Json Null() { return Json(Kind::kRaw, "null"); }

  Json& Set(std::string key, Json value);  // object
  Json& Add(Json value);                   // array
  bool empty() const { return members_.empty(); }
  std::string Dump(int indent = 2) const;

 private:
  enum class Kind { kObject, kArray, kRaw };
  explicit Json(Kind kind, std::string raw = {}) : kind_(kind), raw_(std::move(raw)) {}
  void DumpTo(std::string& out, int indent, int depth) const;
  Kind kind_;
  std::string raw_;
  std::vector<std::pair<std::string, Json>> members_;
};

}  // namespace vdisk_tool
