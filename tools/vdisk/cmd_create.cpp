// vdisk create PATH --size SIZE | --parent PARENT | --source SRC
#include <fmt/format.h>

#include <memory>
#include <optional>
#include <string>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "options.h"

namespace vdisk_tool {
namespace {

struct CreateOptions {
  std::string path;
  std::string size;
  std::string type;
  bool fixed = false;
  std::string block_size;
  std::string sector_size;
  std::string parent;
  std::string source;
};

ULONG DeviceFor(const std::string& type_option, const fs::path& path) {
  ImageFormat format = type_option.empty() ? FormatFromName(path) : ParseFormat("--type", type_option);
  if (format == ImageFormat::kVhd) return VIRTUAL_STORAGE_TYPE_DEVICE_VHD;
  if (format == ImageFormat::kVhdx) return VIRTUAL_STORAGE_TYPE_DEVICE_VHDX;
  if (format == ImageFormat::kRaw) throw UsageError("create makes VHD or VHDX disks; for raw use convert");
  throw UsageError(fmt::format("cannot tell the format from the name '{}': name it .vhd or "
                               ".vhdx, or give --type vhd|vhdx",
                               path.filename().string()));
}

int RunCreate(const CreateOptions& o) {
  const fs::path path = o.path;
  const ULONG device = DeviceFor(o.type, path);
  std::uint64_t size = 0;
  if (!o.size.empty()) size = ParseSize("--size", o.size);
  if (!o.parent.empty()) {
    if (!o.size.empty()) throw UsageError("a differencing disk takes its size from --parent; drop --size");
    if (o.fixed) throw UsageError("a differencing disk cannot be --fixed");
    if (!o.source.empty()) throw UsageError("--parent and --source exclude each other");
  } else if (o.source.empty() && o.size.empty()) {
    throw UsageError("--size is required (e.g. --size 64M), unless --parent or --source gives it");
  }
  if (!o.size.empty() && (size == 0 || size % kMinimumSector != 0)) {
    throw UsageError(fmt::format("--size must be a nonzero multiple of 512 bytes, got {}", size));
  }
  std::uint64_t block_size = 0;
  if (!o.block_size.empty()) {
    block_size = ParseSize("--block-size", o.block_size);
    if (block_size == 0 || block_size > 0xFFFFFFFFU) throw UsageError("--block-size must be between 1 byte and 4 GiB");
  }
  std::uint64_t sector_size = 0;
  if (!o.sector_size.empty()) {
    sector_size = ParseSize("--sector-size", o.sector_size);
    if (sector_size != 512 && sector_size != 4096) throw UsageError("--sector-size is 512 or 4096");
  }
  const WString wide_path = ToWide(path);
  const WString wide_parent = o.parent.empty() ? WString() : ToWide(o.parent);
  const WString wide_source = o.source.empty() ? WString() : ToWide(o.source);
  VIRTUAL_STORAGE_TYPE storage_type = StorageType(device);
  CREATE_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  parameters.Version2.MaximumSize = size;
  parameters.Version2.BlockSizeInBytes = static_cast<ULONG>(block_size);
  parameters.Version2.SectorSizeInBytes = static_cast<ULONG>(sector_size);
  parameters.Version2.ParentPath = o.parent.empty() ? nullptr : wide_parent.c_str();
  parameters.Version2.SourcePath = o.source.empty() ? nullptr : wide_source.c_str();
  OwnedHandle disk;
  Check(CreateVirtualDisk(&storage_type, wide_path.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                          o.fixed ? CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION
                                  : CREATE_VIRTUAL_DISK_FLAG_NONE,
                          0, &parameters, nullptr, disk.Receive()),
        path.string(), "creating");
  const InfoReply sizes = Query(disk.get(), GET_VIRTUAL_DISK_INFO_SIZE, path.string());
  const InfoReply subtype = Query(disk.get(), GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, path.string());
  disk.Close(path.string());
  std::string line = fmt::format("created {}: {} {}, virtual size {}", path.string(),
                                 DeviceName(device), SubtypeName(subtype->ProviderSubtype),
                                 HumanBytes(sizes->Size.VirtualSize));
  if (sizes->Size.BlockSize != 0) line += fmt::format(", block size {}", HumanBytes(sizes->Size.BlockSize));
  if (!o.parent.empty()) line += ", parent " + o.parent;
  if (!o.source.empty()) line += ", data from " + o.source;
  fmt::print("{}\n", line);
  return 0;
}

}  // namespace

void AddCreateCommand(CLI::App& app, RunState& state) {
  auto o = std::make_shared<CreateOptions>();
  auto* cmd = app.add_subcommand("create", "Create a VHD or VHDX disk (dynamic unless --fixed)");
  cmd->add_option("PATH", o->path, "The new disk; .vhd or .vhdx unless --type says")->required();
  cmd->add_option("-s,--size", o->size, "Virtual size, e.g. 64M, 1.5G, 2T");
  cmd->add_option("-t,--type", o->type, "vhd or vhdx (default: from the extension)");
  cmd->add_flag("--fixed", o->fixed, "Allocate the whole size now (a fixed disk)");
  cmd->add_option("--block-size", o->block_size, "Block size (VHD default 2M, VHDX 32M)");
  cmd->add_option("--sector-size", o->sector_size, "Logical sector size, 512 or 4096 (VHDX)");
  cmd->add_option("--parent", o->parent, "Make a differencing disk over PARENT");
  cmd->add_option("--source", o->source, "Fill the new disk with the data of another VHD/VHDX");
  cmd->callback([o, &state] { state.exit_code = RunCreate(*o); });
}

}  // namespace vdisk_tool
