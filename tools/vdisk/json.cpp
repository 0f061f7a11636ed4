#include "json.h"

#include <fmt/format.h>

namespace vdisk_tool {

Json Json::String(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  return Json(Kind::kRaw, out + "\"");
}

Json Json::Number(std::uint64_t value) { return Json(Kind::kRaw, std::to_string(value)); }
Json Json::Bool(bool value) { return Json(Kind::kRaw, value ? "true" : "false"); }

Json& Json::Set(std::string key, Json value) {
  members_.emplace_back(std::move(key), std::move(value));
  return *this;
}

Json& Json::Add(Json value) {
  members_.emplace_back(std::string(), std::move(value));
  return *this;
}

std::string Json::Dump(int indent) const {
  std::string out;
  DumpTo(out, indent, 0);
  return out;
}

void Json::DumpTo(std::string& out, int indent, int depth) const {
  if (kind_ == Kind::kRaw) {
    out += raw_;
    return;
  }
  const bool object = kind_ == Kind::kObject;
  out += object ? '{' : '[';
  if (members_.empty()) {
    out += object ? '}' : ']';
    return;
  }
  const std::string pad(static_cast<std::size_t>(indent * (depth + 1)), ' ');
  for (std::size_t i = 0; i < members_.size(); ++i) {
    out += i == 0 ? "" : ",";
    if (indent > 0) out += "\n" + pad;
    if (object) out += String(members_[i].first).raw_ + (indent > 0 ? ": " : ":");
    members_[i].second.DumpTo(out, indent, depth + 1);
  }
  if (indent > 0) out += "\n" + std::string(static_cast<std::size_t>(indent * depth), ' ');
  out += object ? '}' : ']';
}

}  // namespace vdisk_tool
