// Writes small valid VHDX files (4 MiB each, the smallest our layout allows) into a directory,
// as a seed corpus for vhdx_fuzz: dynamic 512/4096-byte sectors, a differencing child, one with
// user metadata, and one with a dirty log that replay must apply.
//
// usage: vhdx_seed_gen DIRECTORY
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhdx/vhdx_format.h"
#include "formats/vhdx/vhdx_log.h"
#include "formats/vhdx/vhdx_provider.h"
#include "../support/provider_registry.h"
#include "fuzz_support.h"

namespace fs = std::filesystem;
using namespace vdisk;  // NOLINT(build/namespaces): a small tool

namespace {

const ProviderRegistry& Registry() { return vdisk_testing::RegistryOf<MakeVhdxProvider>(); }

bool Make(const fs::path& path, std::uint64_t size, std::uint32_t block, std::uint32_t sector,
          const fs::path& parent = {}) {
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhdx;
  request.options.virtual_size = size;
  request.options.block_size = block;
  request.options.logical_sector_size = sector;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(Registry(), request);
  return disk.ok() || fuzz::Check(disk.status(), path);
}

void Patch(const fs::path& path, std::uint64_t offset, std::span<const std::byte> bytes) {
  std::fstream out(path, std::ios::binary | std::ios::in | std::ios::out);
  out.seekp(static_cast<std::streamoff>(offset));
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Names `log_guid` in both headers (current sequence number + 1 and + 2).
void DirtyHeaders(const fs::path& path, const Guid& log_guid) {
  for (int i = 0; i < 2; ++i) {
    const std::uint64_t at = i == 0 ? vhdx::kHeader1Offset : vhdx::kHeader2Offset;
    std::vector<std::byte> bytes(vhdx::kHeaderSize);
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(at));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    vhdx::Header h;
    std::memcpy(&h, bytes.data(), sizeof h);
    h.log_guid = log_guid;
    h.sequence_number.set(h.sequence_number.get() + 10 + i);
    h.checksum.set(0);
    std::memcpy(bytes.data(), &h, sizeof h);
    h.checksum.set(vhdx::Crc32cWithZeroedField(bytes, 4));
    std::memcpy(bytes.data(), &h, sizeof h);
    Patch(path, at, bytes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  fs::create_directories(dir);
  for (const char* name : {"dynamic-512.vhdx", "dynamic-4k.vhdx", "child.avhdx", "metadata.vhdx",
                           "dirty-log.vhdx", "parent.vhdx"}) {
    fs::remove(dir / name);
  }
  bool ok = Make(dir / "dynamic-512.vhdx", 64 << 20, 1 << 20, 512) &&
            Make(dir / "dynamic-4k.vhdx", 256 << 20, 8 << 20, 4096) &&
            Make(dir / "parent.vhdx", 32 << 20, 2 << 20, 512) &&
            Make(dir / "child.avhdx", 0, 1 << 20, 0, dir / "parent.vhdx") &&
            Make(dir / "metadata.vhdx", 16 << 20, 1 << 20, 512) &&
            Make(dir / "dirty-log.vhdx", 16 << 20, 1 << 20, 512);
  if (!ok) return 1;
  fs::remove(dir / "parent.vhdx");
  {
    DiskOpenRequest request;
    request.path = dir / "metadata.vhdx";
    request.options.read_only = false;
    auto disk = VirtualDisk::Open(Registry(), request);
    if (!disk.ok()) return 1;
    std::vector<std::byte> value(40, std::byte{0x42});
    if (!(*disk)->top().SetUserMetadata(Guid::Random(), value).ok()) return 1;
  }
  // A dirty log whose entry maps payload block 0 at 4 MiB, just past the end of the file; its
  // LastFileOffset (5 MiB) makes replay extend the file.
  const Guid log_guid = Guid::Random();
  std::vector<std::byte> bat(vhdx::kLogSectorSize);
  vhdx::Le64 entry;
  entry.set(vhdx::MakeBatEntry(vhdx::kPayloadFullyPresent, 4 << 20));
  std::memcpy(bat.data(), &entry, 8);
  const std::vector<vhdx::LogUpdate> updates = {vhdx::LogUpdate::Data(3 << 20, bat)};
  const auto log_entry = vhdx::BuildLogEntry(log_guid, 1, 0, updates, 4 << 20, 5 << 20);
  Patch(dir / "dirty-log.vhdx", 1 << 20, log_entry);
  DirtyHeaders(dir / "dirty-log.vhdx", log_guid);
  std::printf("seeds written to %s\n", dir.c_str());
  return 0;
}
