// The NBD server the NBD fuzzer and the seed capture tool run: export "fuzz", a 1 MiB dynamic
// VHD (64 KiB blocks, 4 KiB of data at 128 KiB) held in memory, capped at 4 MiB of file.
#pragma once

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "attach/disk_export_target.h"
#include "attach/nbd_server.h"
#include "core/open_disk.h"
#include "core/virtual_disk.h"
#include "formats/vhd/vhd_provider.h"
#include "platform/memory_file.h"

namespace vdisk::fuzz {

// Listens on `socket_path`; the disk is made in `scratch` (a directory) and read into memory.
inline Result<std::unique_ptr<attach::NbdServer>> StartNbdServer(
    const std::filesystem::path& scratch, const std::filesystem::path& socket_path) {
  static const std::unique_ptr<Provider> vhd = MakeVhdProvider();
  const std::filesystem::path path = scratch / "disk.vhd";
  {
    CreateOptions options;
    options.subtype = DiskSubtype::kDynamic;
    options.virtual_size = 1 << 20;
    options.block_size = 512 * 1024;
    VDISK_ASSIGN_OR_RETURN(auto image, vhd->Create(path, options));
    const std::vector<std::byte> data(4096, std::byte{0x3C});
    VDISK_RETURN_IF_ERROR(image->Write(128 * 1024, data));
  }
  std::vector<std::byte> bytes;
  {
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> chars((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    bytes.resize(chars.size());
    std::memcpy(bytes.data(), chars.data(), chars.size());
  }
  std::filesystem::remove(path);
  auto file = std::make_unique<platform::MemoryFile>(std::move(bytes), path);
  platform::MemoryFileFaults faults;
  faults.capacity = 4 << 20;
  file->set_faults(faults);
  OpenOptions options;
  options.read_only = false;
  VDISK_ASSIGN_OR_RETURN(auto image, vhd->Open(std::move(file), options));
  std::vector<std::unique_ptr<Image>> chain;
  chain.push_back(std::move(image));
  VDISK_ASSIGN_OR_RETURN(auto open,
                         OpenDisk::Adopt(std::make_unique<VirtualDisk>(std::move(chain))));
  VDISK_ASSIGN_OR_RETURN(auto target, attach::DiskExportTarget::Create(open, {}));
  attach::NbdServerOptions server_options;
  server_options.socket_path = socket_path;
  server_options.export_name = "fuzz";
  server_options.description = "a 1 MiB dynamic VHD";
  return attach::NbdServer::Start(std::move(target), server_options);
}

}  // namespace vdisk::fuzz
