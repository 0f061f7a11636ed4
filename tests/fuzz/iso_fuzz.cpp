// libFuzzer target for the ISO 9660 / UDF parser (src/formats/iso): the input is a whole image,
// held in memory. It is probed (head and tail, as the registry probes), scanned for its volume
// recognition sequence, opened (the primary volume descriptor, or the UDF anchors, volume
// descriptor sequences and partitions that size the volume) and read across; a read-write open
// must be refused.
//
// The parser reads only what sizes the volume: it does not walk directory trees (the disk is
// served sector for sector), so there is no directory code to reach here.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "formats/iso/iso_provider.h"
#include "formats/registry/registry.h"
#include "formats/iso/iso_structures.h"
#include "formats/iso/iso_volume.h"
#include "fuzz_support.h"
#include "platform/memory_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::unique_ptr<vdisk::Provider> provider = vdisk::MakeIsoProvider();
  std::vector<std::byte> bytes(size);
  if (size != 0) std::memcpy(bytes.data(), data, size);
  vdisk::ProbeData probe;
  probe.head = std::span(bytes).first(std::min<std::size_t>(size, vdisk::kProbeHeadBytes));
  probe.tail = std::span(bytes).last(std::min<std::size_t>(size, vdisk::kProbeTailBytes));
  probe.file_size = size;
  (void)provider->Probe(probe);
  constexpr std::size_t kFirst = vdisk::iso::kFirstVolumeDescriptorSector * vdisk::iso::kSectorSize;
  if (size > kFirst) (void)vdisk::iso::ScanVolumeRecognition(std::span(bytes).subspan(kFirst));
  for (const bool read_only : {true, false}) {
    vdisk::OpenOptions options;
    options.read_only = read_only;
    auto image = provider->Open(std::make_unique<vdisk::platform::MemoryFile>(bytes, "fuzz.iso"),
                                options);
    if (!image.ok()) continue;
    if (!read_only) __builtin_trap();  // ISO images are read-only
    if ((*image)->virtual_size() > size) __builtin_trap();  // the volume lies within the file
    vdisk::fuzz::ReadAcross(**image);
  }
  return 0;
}
