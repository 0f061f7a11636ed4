// vdisk metadata PATH list | get ID [--to FILE] | set ID FILE | delete ID
//
// A VHDX's user metadata items (EnumerateVirtualDiskMetadata, Get/Set/DeleteVirtualDiskMetadata),
// each named by its GUID.
#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "options.h"
#include "stream.h"

namespace vdisk_tool {
namespace {

struct MetadataOptions {
  std::string path;
  std::string id;
  std::string file;
};

GUID ItemId(const std::string& text) {
  GUID id{};
  if (!ParseGuid(text, &id)) throw UsageError(fmt::format("'{}' is not a GUID (e.g. 8d6f1e46-4b0e-4e1b-9a8a-1c2d3e4f5a6b)", text));
  return id;
}

int RunList(const MetadataOptions& o) {
  OwnedHandle disk = OpenDisk(o.path, OpenMode::kReadOnly);
  ULONG count = 0;
  DWORD error = EnumerateVirtualDiskMetadata(disk.get(), &count, nullptr);
  std::vector<GUID> items(count);
  if (error == ERROR_MORE_DATA || error == ERROR_INSUFFICIENT_BUFFER || count > 0) {
    error = EnumerateVirtualDiskMetadata(disk.get(), &count, items.data());
  }
  Check(error, o.path, "listing metadata");
  items.resize(count);
  for (const GUID& item : items) {
    ULONG size = 0;
    const DWORD got = GetVirtualDiskMetadata(disk.get(), &item, &size, nullptr);
    if (got == ERROR_SUCCESS || got == ERROR_INSUFFICIENT_BUFFER || got == ERROR_MORE_DATA) {
      fmt::print("{}  {} bytes\n", GuidString(item), size);
    } else {
      fmt::print("{}\n", GuidString(item));
    }
  }
  if (items.empty()) fmt::print("no user metadata\n");
  return 0;
}

int RunGet(const MetadataOptions& o) {
  const GUID id = ItemId(o.id);
  OwnedHandle disk = OpenDisk(o.path, OpenMode::kReadOnly);
  ULONG size = 0;
  DWORD error = GetVirtualDiskMetadata(disk.get(), &id, &size, nullptr);
  std::vector<std::byte> data(size);
  if (error == ERROR_INSUFFICIENT_BUFFER || error == ERROR_MORE_DATA || (error == ERROR_SUCCESS && size > 0)) {
    error = GetVirtualDiskMetadata(disk.get(), &id, &size, data.data());
  }
  Check(error, o.path, "reading metadata item " + o.id);
  data.resize(size);
  auto out = OutputStream::Create(o.file.empty() ? "-" : o.file, /*sparse=*/false);
  out->Write(0, data);
  out->Finish(data.size());
  return 0;
}

int RunSet(const MetadataOptions& o) {
  const GUID id = ItemId(o.id);
  auto in = InputStream::Open(o.file);
  std::vector<std::byte> data;
  std::vector<std::byte> chunk(1 << 16);
  for (std::size_t n; (n = in->Read(chunk)) > 0;) data.insert(data.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  OwnedHandle disk = OpenDisk(o.path, OpenMode::kReadWrite);
  Check(SetVirtualDiskMetadata(disk.get(), &id, static_cast<ULONG>(data.size()), data.data()), o.path,
        "writing metadata item " + o.id);
  disk.Close(o.path);
  fmt::print("{}: metadata item {} set ({} bytes)\n", o.path, GuidString(id), data.size());
  return 0;
}

int RunDelete(const MetadataOptions& o) {
  const GUID id = ItemId(o.id);
  OwnedHandle disk = OpenDisk(o.path, OpenMode::kReadWrite);
  Check(DeleteVirtualDiskMetadata(disk.get(), &id), o.path, "deleting metadata item " + o.id);
  disk.Close(o.path);
  fmt::print("{}: metadata item {} deleted\n", o.path, GuidString(id));
  return 0;
}

}  // namespace

void AddMetadataCommand(CLI::App& app, RunState& state) {
  auto o = std::make_shared<MetadataOptions>();
  auto* cmd = app.add_subcommand("metadata", "List, read, write or delete a VHDX's user metadata items");
  cmd->add_option("PATH", o->path, "The disk (VHDX)")->required();
  cmd->require_subcommand(1, 1);
  auto* list = cmd->add_subcommand("list", "List the items (GUID and size)");
  list->callback([o, &state] { state.exit_code = RunList(*o); });
  auto* get = cmd->add_subcommand("get", "Write an item's bytes to standard output or --to FILE");
  get->add_option("ID", o->id, "The item's GUID")->required();
  get->add_option("--to", o->file, "Write to this file instead");
  get->callback([o, &state] { state.exit_code = RunGet(*o); });
  auto* set = cmd->add_subcommand("set", "Create or replace an item with a file's bytes");
  set->add_option("ID", o->id, "The item's GUID")->required();
  set->add_option("FILE", o->file, "Its bytes ('-': standard input)")->required();
  set->callback([o, &state] { state.exit_code = RunSet(*o); });
  auto* del = cmd->add_subcommand("delete", "Delete an item");
  del->add_option("ID", o->id, "The item's GUID")->required();
  del->callback([o, &state] { state.exit_code = RunDelete(*o); });
}

}  // namespace vdisk_tool
