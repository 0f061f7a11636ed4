// vdisk info [--output=json] [-U] PATH...
#include <fmt/format.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#ifndef _WIN32
#include <sys/stat.h>
#endif

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "json.h"
#include "options.h"

namespace vdisk_tool {
namespace {

struct InfoOptions {
  std::vector<std::string> paths;
  std::string output = "human";
  bool shared = false;
};

// Bytes the host file system has allocated for the file (what qemu-img calls "disk size");
// nullopt where unknown.
std::optional<std::uint64_t> DiskUsage(const fs::path& path) {
#ifndef _WIN32
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) return static_cast<std::uint64_t>(st.st_blocks) * 512;
#else
  (void)path;
#endif
  return std::nullopt;
}

bool IsNullGuid(const GUID& guid) {
  static const GUID kNull{};
  return std::memcmp(&guid, &kNull, sizeof guid) == 0;
}

struct ParentInfo {
  std::vector<std::string> locations;  // resolved: one path; else the stored candidates
  bool resolved = false;
};

ParentInfo ParentOf(HANDLE disk) {
  ParentInfo parent;
  InfoReply reply;
  if (QueryInfo(disk, GET_VIRTUAL_DISK_INFO_PARENT_LOCATION, &reply) != ERROR_SUCCESS) return parent;
  const std::size_t offset = offsetof(GET_VIRTUAL_DISK_INFO, ParentLocation.ParentLocationBuffer);
  const std::size_t capacity = reply.size() > offset ? (reply.size() - offset) / sizeof(WCHAR) : 0;
  const WCHAR* text = reply->ParentLocation.ParentLocationBuffer;
  parent.resolved = reply->ParentLocation.ParentResolved != FALSE;
  for (std::size_t i = 0; i < capacity && text[i] != 0;) {
    std::size_t end = i;
    while (end < capacity && text[end] != 0) ++end;
    parent.locations.push_back(ToNarrow(text + i, end - i));
    if (parent.resolved) break;
    i = end + 1;
  }
  return parent;
}

// A disk's description, built once for both outputs.
struct Description {
  Json json = Json::Object();
  std::vector<std::pair<std::string, std::string>> rows;  // label, text
  void Add(const std::string& key, const std::string& label, Json value, std::string text) {
    json.Set(key, std::move(value));
    rows.emplace_back(label, std::move(text));
  }
};

Description Describe(const fs::path& path, bool shared, std::vector<std::string>* notes) {
  OwnedHandle disk;
  // -U: a get-info-only handle on the file alone, which the library opens read-only without the
  // image's lock (like qemu-img info -U): it reads a disk another process holds for writing and
  // never keeps that process out. The parents are described by their own such handles below.
  if (shared) {
    Check(TryOpen(path, OpenMode::kInfoOnly, &disk, OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS),
          path.string(), "opening");
  }
  // Otherwise the whole chain first; a disk whose chain does not open is described from its own
  // file alone, with a note saying so.
  DWORD error = shared ? ERROR_SUCCESS : TryOpen(path, OpenMode::kReadOnly, &disk);
  if (error != ERROR_SUCCESS) {
    const std::string reason = LastReason();
    if (error == ERROR_SHARING_VIOLATION) {
      throw Failure(path.string(), "opening", error,
                    (reason.empty() ? std::string("the disk is in use") : reason) +
                        " (vdisk info -U reads a disk that another process holds)");
    }
    const DWORD alone =
        TryOpen(path, OpenMode::kInfoOnly, &disk, OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS);
    if (alone != ERROR_SUCCESS) throw Failure(path.string(), "opening", error, reason);
    notes->push_back(fmt::format("{}: the chain did not open ({}: {}); this file alone is shown",
                                 path.string(), ErrorName(error), reason));
  }
  const std::string name = path.string();
  const InfoReply type = Query(disk.get(), GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE, name);
  const ULONG device = type->VirtualStorageType.DeviceId;
  const InfoReply sizes = Query(disk.get(), GET_VIRTUAL_DISK_INFO_SIZE, name);
  Description d;
  d.json.Set("filename", Json::String(name));
  d.Add("format", "format", Json::String(DeviceName(device)), DeviceName(device));
  if (device == VIRTUAL_STORAGE_TYPE_DEVICE_VHD || device == VIRTUAL_STORAGE_TYPE_DEVICE_VHDX) {
    const InfoReply subtype = Query(disk.get(), GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, name);
    const char* kind = SubtypeName(subtype->ProviderSubtype);
    d.Add("type", "type", Json::String(kind), kind);
  }
  d.Add("virtual-size", "virtual size", Json::Number(sizes->Size.VirtualSize),
        Bytes(sizes->Size.VirtualSize) + ", what the disk's user sees");
  d.Add("file-size", "file size", Json::Number(sizes->Size.PhysicalSize),
        Bytes(sizes->Size.PhysicalSize) + ", the image file's length");
  if (const auto usage = DiskUsage(path)) {
    d.Add("disk-usage", "disk usage", Json::Number(*usage),
          HumanBytes(*usage) +
              ", blocks the host file system allocated (qemu-img's \"disk size\"; less than the "
              "file size where the file has holes)");
  }
  if (sizes->Size.BlockSize != 0) {
    d.Add("block-size", "block size", Json::Number(sizes->Size.BlockSize),
          HumanBytes(sizes->Size.BlockSize));
  }
  d.Add("logical-sector-size", "logical sector size", Json::Number(sizes->Size.SectorSize),
        fmt::format("{} bytes", sizes->Size.SectorSize));
  if (InfoReply physical; QueryInfo(disk.get(), GET_VIRTUAL_DISK_INFO_VHD_PHYSICAL_SECTOR_SIZE,
                                    &physical) == ERROR_SUCCESS) {
    d.Add("physical-sector-size", "physical sector size",
          Json::Number(physical->VhdPhysicalSectorSize),
          fmt::format("{} bytes", physical->VhdPhysicalSectorSize));
  }
  if (InfoReply id; QueryInfo(disk.get(), GET_VIRTUAL_DISK_INFO_IDENTIFIER, &id) == ERROR_SUCCESS &&
                    !IsNullGuid(id->Identifier)) {  // an ISO has none
    d.Add("identifier", "identifier", Json::String(GuidString(id->Identifier)),
          GuidString(id->Identifier));
  }
  if (device == VIRTUAL_STORAGE_TYPE_DEVICE_VHDX) {
    if (InfoReply id;
        QueryInfo(disk.get(), GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID, &id) == ERROR_SUCCESS) {
      d.Add("virtual-disk-id", "virtual disk id", Json::String(GuidString(id->VirtualDiskId)),
            GuidString(id->VirtualDiskId));
    }
  }
  const ParentInfo parent = ParentOf(disk.get());
  if (!parent.locations.empty()) {
    std::string text = parent.locations.front() + (parent.resolved ? "" : " (not found)");
    d.Add("parent", "parent", Json::String(parent.locations.front()), text);
    d.json.Set("parent-resolved", Json::Bool(parent.resolved));
    if (InfoReply id;
        QueryInfo(disk.get(), GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER, &id) == ERROR_SUCCESS) {
      d.Add("parent-identifier", "parent identifier",
            Json::String(GuidString(id->ParentIdentifier)), GuidString(id->ParentIdentifier));
    }
    // The chain below: each parent's own parent, as far as it resolves.
    Json chain = Json::Array();
    std::string chain_text;
    std::string next = parent.resolved ? parent.locations.front() : std::string();
    for (int depth = 0; !next.empty() && depth < 64; ++depth) {
      chain.Add(Json::String(next));
      chain_text += (chain_text.empty() ? "" : " -> ") + next;
      OwnedHandle ancestor;
      if (TryOpen(next, OpenMode::kInfoOnly, &ancestor, OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS) !=
          ERROR_SUCCESS) {
        break;
      }
      const ParentInfo up = ParentOf(ancestor.get());
      if (up.locations.empty() || !up.resolved) break;
      next = up.locations.front();
    }
    d.Add("backing-chain", "backing chain", std::move(chain), chain_text);
  }
  std::vector<WCHAR> uri(2048);
  ULONG bytes = static_cast<ULONG>(uri.size() * sizeof(WCHAR));
  if (GetVirtualDiskPhysicalPath(disk.get(), &bytes, uri.data()) == ERROR_SUCCESS) {
    d.Add("attached", "attached at", Json::String(ToNarrow(uri.data())), ToNarrow(uri.data()));
  }
  disk.Close(name);
  return d;
}

int RunInfo(const InfoOptions& o) {
  const bool json = o.output == "json";
  Json all = Json::Array();
  std::vector<std::string> notes;
  for (std::size_t i = 0; i < o.paths.size(); ++i) {
    Description d = Describe(o.paths[i], o.shared, &notes);
    if (json) {
      if (o.paths.size() == 1) {
        fmt::print("{}\n", d.json.Dump());
      } else {
        all.Add(std::move(d.json));
      }
      continue;
    }
    if (i > 0) fmt::print("\n");
    fmt::print("{}\n", o.paths[i]);
    for (const auto& [label, text] : d.rows) fmt::print("  {:<22}{}\n", label + ":", text);
  }
  if (json && o.paths.size() > 1) fmt::print("{}\n", all.Dump());
  for (const auto& note : notes) std::fprintf(stderr, "vdisk: note: %s\n", note.c_str());
  return 0;
}

}  // namespace

void AddInfoCommand(CLI::App& app, RunState& state) {
  auto o = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Show what a disk is: format, sizes, ids, parent chain");
  cmd->add_option("PATH", o->paths, "Disks to describe")->required();
  cmd->add_option("--output", o->output, "human (default) or json")
      ->check(CLI::IsMember({"human", "json"}));
  cmd->add_flag("-U,--force-share", o->shared,
                "Read a disk that another process holds (its own file, read-only)");
  cmd->callback([o, &state] { state.exit_code = RunInfo(*o); });
}

}  // namespace vdisk_tool
