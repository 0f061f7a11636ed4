// vdisk attach PATH [--read-only] [--permanent] [--tcp], vdisk detach PATH, vdisk list
// [--output=json]
//
// An attached disk is an NBD export (libvirtdisk has no kernel driver): attach prints its URI
// (GetVirtualDiskPhysicalPath) with ready qemu-io and nbdinfo lines.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "json.h"
#include "progress.h"

#ifndef _WIN32
#include <virtdisk/extensions.h>
#endif

namespace vdisk_tool {
namespace {

struct AttachOptions {
  std::string path;
  bool read_only = false;
  bool permanent = false;
  bool tcp = false;
};

std::string PhysicalPath(HANDLE disk, const std::string& file, DWORD* error_out = nullptr) {
  std::vector<WCHAR> text(4096);
  ULONG bytes = static_cast<ULONG>(text.size() * sizeof(WCHAR));
  const DWORD error = GetVirtualDiskPhysicalPath(disk, &bytes, text.data());
  if (error_out != nullptr) {
    *error_out = error;
    if (error != ERROR_SUCCESS) return {};
  } else {
    Check(error, file, "GetVirtualDiskPhysicalPath");
  }
  return ToNarrow(text.data());
}

#ifdef _WIN32
// Every attached disk of this user (GetAllAttachedVirtualDiskPhysicalPaths, a MULTI_SZ).
std::vector<std::string> AllAttached() {
  std::vector<WCHAR> text(4096);
  for (int attempt = 0; attempt < 4; ++attempt) {
    ULONG bytes = static_cast<ULONG>(text.size() * sizeof(WCHAR));
    const DWORD error = GetAllAttachedVirtualDiskPhysicalPaths(&bytes, text.data());
    if (error == ERROR_INSUFFICIENT_BUFFER) {
      text.resize(bytes / sizeof(WCHAR) + 1);
      continue;
    }
    Check(error, "", "GetAllAttachedVirtualDiskPhysicalPaths");
    std::vector<std::string> out;
    const std::size_t count = bytes / sizeof(WCHAR);
    for (std::size_t i = 0; i < count && text[i] != 0;) {
      std::size_t end = i;
      while (end < count && text[end] != 0) ++end;
      out.push_back(ToNarrow(text.data() + i, end - i));
      i = end + 1;
    }
    return out;
  }
  Fail(ERROR_INSUFFICIENT_BUFFER, "", "GetAllAttachedVirtualDiskPhysicalPaths");
}
#endif

std::string Quoted(const std::string& text) { return "'" + text + "'"; }

int RunAttach(const AttachOptions& o) {
  if (o.tcp) {
    // The library's switch for the export's transport (TCP on 127.0.0.1 instead of a Unix
    // socket; always TCP on Windows).
#ifdef _WIN32
    _putenv_s("VIRTDISK_ATTACH_TRANSPORT", "tcp");
#else
    setenv("VIRTDISK_ATTACH_TRANSPORT", "tcp", 1);
#endif
  }
  OwnedHandle disk = OpenDisk(o.path, o.read_only ? OpenMode::kReadOnly : OpenMode::kReadWrite);
  // Both kinds are PERMANENT_LIFETIME attachments, served by the library's attach host: other
  // processes can then read the disk's information (info -U) and detach it through the API.
  // Without --permanent, vdisk stays in the foreground and detaches on Ctrl-C, SIGTERM or
  // SIGHUP (a SIGKILL leaves it attached: vdisk detach ends it).
  ATTACH_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ATTACH_VIRTUAL_DISK_FLAG flags = ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME;
  if (o.read_only) flags = flags | ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY;
  if (!o.permanent) InstallInterruptHandlers();
  Check(AttachVirtualDisk(disk.get(), nullptr, flags, 0, &parameters, nullptr), o.path, "attaching");
  const std::string uri = PhysicalPath(disk.get(), o.path);
  fmt::print("attached {} at {}\n", o.path, uri);
  fmt::print("  nbdinfo {}\n", Quoted(uri));
  fmt::print("  qemu-io -f raw {}-c 'read -v 0 512' {}\n", o.read_only ? "-r " : "", Quoted(uri));
  if (o.permanent) {
    fmt::print("it stays attached after vdisk exits; end it with: vdisk detach {}\n", o.path);
    disk.Close(o.path);
    return 0;
  }
  fmt::print("attached until Ctrl-C (or vdisk detach {} from another shell)\n", o.path);
  std::fflush(stdout);
  // A detach from elsewhere ends the attachment too: the disk then has no physical path.
  while (!WaitForInterrupt(std::chrono::milliseconds(250))) {
    DWORD error = ERROR_SUCCESS;
    const std::string now = PhysicalPath(disk.get(), o.path, &error);
    if (error != ERROR_SUCCESS || now != uri) {
      fmt::print("detached {} (by another process)\n", o.path);
      return 0;
    }
  }
  Check(DetachVirtualDisk(disk.get(), DETACH_VIRTUAL_DISK_FLAG_NONE, 0), o.path, "detaching");
  disk.Close(o.path);
  fmt::print("detached {}\n", o.path);
  return 0;
}

int RunDetach(const std::string& path) {
  OwnedHandle disk;
  DWORD error = TryOpen(path, OpenMode::kReadOnly, &disk);
  if (error != ERROR_SUCCESS) error = TryOpen(path, OpenMode::kInfoOnly, &disk, OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS);
  Check(error, path, "opening");
  Check(DetachVirtualDisk(disk.get(), DETACH_VIRTUAL_DISK_FLAG_NONE, 0), path, "detaching");
  disk.Close(path);
  fmt::print("detached {}\n", path);
  return 0;
}

// One attached disk as list shows it. Where the library cannot say more than the URI
// (VirtDisk.dll has no entry point for it), the other fields stay unknown.
struct Attachment {
  std::string uri;
  bool known = false;  // the fields below are set
  std::string disk;
  bool read_only = false;
  bool permanent = false;
  long long pid = 0;
};

std::vector<Attachment> Attachments() {
  std::vector<Attachment> out;
#ifdef _WIN32
  for (auto& uri : AllAttached()) out.push_back(Attachment{std::move(uri)});
#else
  // libvirtdisk's VirtDiskEnumerateAttachments: what the attach registry records of each.
  const auto add = [](void* context, const VIRTDISK_ATTACHMENT* a) {
    Attachment item;
    item.uri = ToNarrow(a->PhysicalPath);
    item.known = true;
    item.disk = ToNarrow(a->DiskPath);
    item.read_only = (a->Flags & VIRTDISK_ATTACHMENT_FLAG_READ_ONLY) != 0;
    item.permanent = (a->Flags & VIRTDISK_ATTACHMENT_FLAG_PERMANENT) != 0;
    item.pid = a->ProcessId;
    static_cast<std::vector<Attachment>*>(context)->push_back(std::move(item));
  };
  Check(VirtDiskEnumerateAttachments(add, &out), "", "VirtDiskEnumerateAttachments");
#endif
  return out;
}

int RunList(const std::string& output) {
  const auto attachments = Attachments();
  if (output == "json") {
    Json list = Json::Array();
    for (const auto& a : attachments) {
      Json item = Json::Object();
      if (a.known) item.Set("disk", Json::String(a.disk));
      item.Set("uri", Json::String(a.uri));
      if (a.known) {
        item.Set("read-only", Json::Bool(a.read_only));
        item.Set("permanent", Json::Bool(a.permanent));
        item.Set("pid", Json::Number(static_cast<std::uint64_t>(a.pid)));
      }
      list.Add(std::move(item));
    }
    fmt::print("{}\n", list.Dump());
    return 0;
  }
  if (attachments.empty()) {
    fmt::print("no attached disks\n");
    return 0;
  }
  // A table: the disk, its URI, rw/ro, permanent (served by an attach host until vdisk detach)
  // or process (until the attaching process ends it), and the process serving it.
  std::vector<std::vector<std::string>> rows = {{"DISK", "URI", "MODE", "LIFETIME", "PID"}};
  for (const auto& a : attachments) {
    if (!a.known) {
      rows.push_back({"?", a.uri, "?", "?", "?"});
      continue;
    }
    rows.push_back({a.disk, a.uri, a.read_only ? "ro" : "rw",
                    a.permanent ? "permanent" : "process", std::to_string(a.pid)});
  }
  std::vector<std::size_t> width(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += i + 1 < row.size() ? fmt::format("{:<{}}  ", row[i], width[i]) : row[i];
    }
    fmt::print("{}\n", line);
  }
  return 0;
}

}  // namespace

void AddAttachCommands(CLI::App& app, RunState& state) {
  auto o = std::make_shared<AttachOptions>();
  auto* attach = app.add_subcommand("attach", "Export a disk over NBD and print its URI");
  attach->add_option("PATH", o->path, "The disk")->required();
  attach->add_flag("-r,--read-only", o->read_only, "Clients may only read");
  attach->add_flag("--permanent", o->permanent,
                   "Keep it attached after vdisk exits (until vdisk detach)");
  attach->add_flag("--tcp", o->tcp, "Export on TCP 127.0.0.1 (TLS-PSK) instead of a Unix socket");
  attach->callback([o, &state] { state.exit_code = RunAttach(*o); });

  auto path = std::make_shared<std::string>();
  auto* detach = app.add_subcommand("detach", "End a disk's attachment (made by attach --permanent)");
  detach->add_option("PATH", *path, "The disk")->required();
  detach->callback([path, &state] { state.exit_code = RunDetach(*path); });

  auto output = std::make_shared<std::string>("human");
  auto* list = app.add_subcommand("list", "List this user's attached disks: image, URI, mode, lifetime, serving process");
  list->add_option("--output", *output, "human (default) or json")->check(CLI::IsMember({"human", "json"}));
  list->callback([output, &state] { state.exit_code = RunList(*output); });
}

}  // namespace vdisk_tool
