// vdisk map [--output=json] PATH: the disk's ranges and where their data is.
// vdisk compare A B: equal (exit 0), or the first differing offset (exit 1); 2 on error.
// Either side of compare may be a raw file (by extension .raw/.img or when it is no disk).
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "json.h"
#include "options.h"

namespace vdisk_tool {
namespace {

struct MapOptions {
  std::string path;
  std::string output = "human";
};

int RunMap(const MapOptions& o) {
  OwnedHandle disk = OpenDisk(o.path, OpenMode::kReadOnly);
  const Geometry geometry = GeometryOf(disk.get(), o.path);
  const auto ranges = AllocatedRanges(disk.get(), geometry.virtual_size, o.path);
  if (o.output == "json") {
    // The fields of qemu-img map --output=json: start, length, depth, present, zero, data,
    // offset (where the data is in the file at that depth).
    Json list = Json::Array();
    for (const auto& r : ranges) {
      Json item = Json::Object();
      item.Set("start", Json::Number(r.offset))
          .Set("length", Json::Number(r.length))
          .Set("depth", Json::Number(r.depth))
          .Set("present", Json::Bool(r.data))
          .Set("zero", Json::Bool(!r.data))
          .Set("data", Json::Bool(r.data));
      if (r.file_offset_known) item.Set("offset", Json::Number(r.file_offset));
      list.Add(std::move(item));
    }
    fmt::print("{}\n", list.Dump());
    return 0;
  }
  fmt::print("{:<18} {:<18} {:<18} {}\n", "Offset", "Length", "Mapped to", "File");
  for (const auto& r : ranges) {
    if (!r.data) continue;  // as qemu-img map: only ranges with data
    fmt::print("0x{:<16x} 0x{:<16x} {:<18} {}\n", r.offset, r.length,
               r.file_offset_known ? fmt::format("0x{:x}", r.file_offset) : std::string("-"),
               r.depth == 0 ? o.path : fmt::format("(parent level {})", r.depth));
  }
  return 0;
}

// One side of a comparison: a disk through the API, or a raw file.
class Side {
 public:
  explicit Side(const std::string& path) : name_(path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw Failure(path, "opening", ERROR_FILE_NOT_FOUND, "no such file");
    if (fs::is_directory(path, ec)) throw Failure(path, "opening", ERROR_DIRECTORY, "is a directory");
    const ImageFormat named = FormatFromName(path);
    if (named != ImageFormat::kRaw) {
      OwnedHandle probe;
      const DWORD error = TryOpen(path, OpenMode::kReadOnly, &probe);
      if (error == ERROR_SUCCESS || named != ImageFormat::kUnknown) {
        if (error != ERROR_SUCCESS) Fail(error, path, "opening");
        probe.Reset();
        disk_ = std::make_unique<RawDisk>(path, false);
        size_ = disk_->geometry().virtual_size;
        return;
      }
    }
    raw_.open(path, std::ios::binary);
    if (!raw_) throw Failure(path, "cannot open");
    size_ = fs::file_size(path);
  }
  std::uint64_t size() const { return size_; }
  void Read(std::uint64_t offset, std::span<std::byte> out) {
    if (disk_) {
      // Whole sectors; the tail of a disk is always whole.
      disk_->Read(offset, out);
      return;
    }
    std::memset(out.data(), 0, out.size());
    raw_.clear();
    raw_.seekg(static_cast<std::streamoff>(offset));
    raw_.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
    if (raw_.bad()) throw Failure(name_, fmt::format("reading at offset {} failed", offset));
  }

 private:
  std::string name_;
  std::unique_ptr<RawDisk> disk_;
  std::ifstream raw_;
  std::uint64_t size_ = 0;
};

int RunCompare(const std::string& a_path, const std::string& b_path) {
  Side a(a_path), b(b_path);
  WorkBuffer a_buffer, b_buffer;
  const std::uint64_t common = std::min(a.size(), b.size());
  for (std::uint64_t at = 0; at < common;) {
    const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(a_buffer.size(), common - at));
    const auto x = a_buffer.first(chunk), y = b_buffer.first(chunk);
    a.Read(at, x);
    b.Read(at, y);
    if (std::memcmp(x.data(), y.data(), chunk) != 0) {
      std::size_t i = 0;
      while (x[i] == y[i]) ++i;
      fmt::print("Content mismatch at offset {}!\n", at + i);
      return kExitCompareDiffer;
    }
    at += chunk;
  }
  // The longer side must read as zeros beyond the shorter one (as qemu-img compare says).
  Side& longer = a.size() > b.size() ? a : b;
  for (std::uint64_t at = common; at < longer.size();) {
    const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(a_buffer.size(), longer.size() - at));
    const auto x = a_buffer.first(chunk);
    longer.Read(at, x);
    if (!AllZero(x)) {
      std::size_t i = 0;
      while (x[i] == std::byte{0}) ++i;
      fmt::print("Content mismatch at offset {}!\n", at + i);
      return kExitCompareDiffer;
    }
    at += chunk;
  }
  if (a.size() != b.size()) {
    fmt::print("Images are identical (the larger one holds only zeros beyond the smaller one's size).\n");
  } else {
    fmt::print("Images are identical.\n");
  }
  return 0;
}

}  // namespace

void AddMapCompareCommands(CLI::App& app, RunState& state) {
  auto m = std::make_shared<MapOptions>();
  auto* map = app.add_subcommand("map", "Show which ranges of a disk hold data, and where");
  map->add_option("PATH", m->path, "The disk")->required();
  map->add_option("--output", m->output, "human (default) or json")->check(CLI::IsMember({"human", "json"}));
  map->callback([m, &state] { state.exit_code = RunMap(*m); });

  auto a = std::make_shared<std::string>();
  auto b = std::make_shared<std::string>();
  auto* compare = app.add_subcommand("compare", "Compare two disks' contents (exit 0 equal, 1 differ, 2 error)");
  compare->add_option("A", *a, "A disk or raw file")->required();
  compare->add_option("B", *b, "Another")->required();
  compare->callback([a, b, &state] {
    state.failure_exit = kExitCompareError;
    state.exit_code = RunCompare(*a, *b);
  });
}

}  // namespace vdisk_tool
