// libFuzzer target for the VHDX parser: the input is a whole VHDX file, held in memory
// (platform::MemoryFile, capped so that a hostile LastFileOffset cannot exhaust memory). Each
// input is opened read-only (log replay in memory) and read-write (replay into the "file"), and
// a few ranges are mapped and read; the read-write image also takes a write and a metadata update.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "formats/image.h"
#include "formats/registry/provider.h"
#include "formats/vhdx/vhdx_provider.h"
#include "platform/memory_file.h"

namespace {

constexpr std::uint64_t kCapacity = 96ull << 20;

void Exercise(vdisk::Image& image, bool writable) {
  const std::uint64_t size = image.virtual_size();
  const std::uint32_t sector = image.logical_sector_size();
  (void)image.unique_id();
  (void)image.parent();
  (void)image.physical_sector_size();
  std::vector<std::byte> buffer(64 * 1024);
  const std::uint64_t offsets[] = {0, size / 3, size / 2, size - sector};
  for (std::uint64_t start : offsets) {
    std::uint64_t offset = start / sector * sector;
    // Follow a few extents from each starting point.
    for (int i = 0; i < 4 && offset < size; ++i) {
      auto extent = image.Map(offset, std::min<std::uint64_t>(buffer.size(), size - offset));
      if (!extent.ok()) break;
      const auto n =
          static_cast<std::size_t>(std::min<std::uint64_t>(extent->length, buffer.size()));
      if (n == 0) __builtin_trap();  // Map must make progress
      if (extent->kind == vdisk::Extent::Kind::kData)
        (void)image.ReadData(extent->file_offset, std::span(buffer).first(n));
      offset += n;
    }
  }
  if (auto ids = image.ListUserMetadata(); ids.ok()) {
    for (std::size_t i = 0; i < ids->size() && i < 4; ++i) (void)image.GetUserMetadata((*ids)[i]);
  }
  (void)image.SmallestSafeVirtualSize();
  if (!writable) return;
  std::vector<std::byte> data(sector, std::byte{0x5A});
  (void)image.Write(0, data);
  (void)image.Write((size / 2) / sector * sector, data);
  vdisk::Guid item;
  item.bytes[0] = 1;
  (void)image.SetUserMetadata(item, std::span(data).first(16));
  (void)image.Flush();
  (void)image.Map(0, sector);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::unique_ptr<vdisk::Provider> provider = vdisk::MakeVhdxProvider();
  std::vector<std::byte> bytes(size);
  if (size != 0) std::memcpy(bytes.data(), data, size);
  vdisk::ProbeData probe;
  probe.head = std::span(bytes).first(std::min<std::size_t>(size, 64 * 1024));
  probe.file_size = size;
  (void)provider->Probe(probe);
  for (bool read_only : {true, false}) {
    auto file = std::make_unique<vdisk::platform::MemoryFile>(bytes, "fuzz.vhdx");
    vdisk::platform::MemoryFileFaults faults;
    faults.capacity = kCapacity;
    file->set_faults(faults);
    vdisk::OpenOptions options;
    options.read_only = read_only;
    auto image = provider->Open(std::move(file), options);
    if (image.ok()) Exercise(**image, !read_only);
  }
  return 0;
}
