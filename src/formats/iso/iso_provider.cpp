// ISO 9660 / UDF images: read-only, fixed, 2048-byte sectors, the file is the disk.
//
// Interop notes:
// | producer                  | what it writes                     | size we report              |
// |---------------------------|------------------------------------|-----------------------------|
// | genisoimage (plain, -J -R) | CD001 PVD + terminator (+ Joliet) | PVD volume space size       |
// | genisoimage -udf          | CD001 set, then BEA01 NSR02 TEA01  | PVD volume space size       |
// | xorriso -as mkisofs       | CD001 set                          | PVD volume space size       |
// | mkudffs (UDF only)        | BEA01 NSR0x TEA01, anchors 256, N  | file size, whole sectors    |
// Windows refuses ISO opens for writing with ERROR_ACCESS_DENIED; a malformed ISO gives
// ERROR_FILE_CORRUPT.
#include "formats/iso/iso_provider.h"

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <utility>

#include "formats/iso/iso_structures.h"
#include "formats/iso/iso_volume.h"

namespace vdisk {
namespace {

// Six fixed bytes at a fixed offset: as certain as a magic number gets, but lower than a format
// that wraps raw data (a fixed VHD holding an ISO 9660 volume shows CD001 at byte 32768 as well).
constexpr int kProbeScore = 50;

constexpr std::array<std::string_view, 1> kIsoExtensions = {".iso"};

class IsoImage final : public Image {
 public:
  IsoImage(std::unique_ptr<platform::File> file, std::uint64_t virtual_size)
      : file_(std::move(file)), virtual_size_(virtual_size) {}

  DiskFormat format() const override { return DiskFormat::kIso; }
  DiskSubtype subtype() const override { return DiskSubtype::kFixed; }
  std::uint64_t virtual_size() const override { return virtual_size_; }
  std::uint32_t logical_sector_size() const override { return iso::kSectorSize; }
  std::uint32_t physical_sector_size() const override { return iso::kSectorSize; }
  std::uint32_t block_size() const override { return 0; }
  // Neither ISO 9660 nor UDF records a GUID.
  Guid unique_id() const override { return Guid{}; }
  bool read_only() const override { return true; }

  Result<Extent> Map(std::uint64_t offset, std::uint64_t length) override {
    if (offset >= virtual_size_ || length == 0) {
      return Status(Code::kInvalidParameter,
                    file_->path().string() + ": map of " + std::to_string(length) +
                        " bytes at offset " + std::to_string(offset) + " is outside the disk of " +
                        std::to_string(virtual_size_) + " bytes");
    }
    // The volume is stored as is, sector for sector, from the start of the file.
    return Extent{Extent::Kind::kData, std::min(length, virtual_size_ - offset), offset};
  }

  Status Write(std::uint64_t offset, std::span<const std::byte> data) override {
    return Status(Code::kWriteProtect, file_->path().string() + ": ISO images are read-only (" +
                                           std::to_string(data.size()) + " bytes at offset " +
                                           std::to_string(offset) + " not written)");
  }

  Status Flush() override { return Status::Ok(); }

  platform::File& file() const override { return *file_; }

 private:
  std::unique_ptr<platform::File> file_;
  std::uint64_t virtual_size_;
};

class IsoProvider final : public NamedProvider {
 public:
  IsoProvider() : NamedProvider(DiskFormat::kIso, "ISO", kIsoExtensions) {}

  int Probe(const ProbeData& data) const override {
    constexpr std::size_t kFirst = iso::kFirstVolumeDescriptorSector * iso::kSectorSize;
    if (data.head.size() < kFirst + sizeof(iso::VolumeStructureDescriptorHeader)) return 0;
    const auto from_sector_16 = data.head.subspan(kFirst);
    // ECMA-119 8.1: a volume descriptor at sector 16, "CD001", version 1.
    const auto header = iso::LoadStruct<iso::VolumeStructureDescriptorHeader>(from_sector_16);
    const std::string_view id(header.standard_identifier.data(), header.standard_identifier.size());
    if (id == iso::kIso9660Identifier && header.version == 1) return kProbeScore;
    // ECMA-167 2/9: a UDF extended area with an NSR descriptor (within the head we were given).
    if (iso::ScanVolumeRecognition(from_sector_16).is_udf()) return kProbeScore;
    return 0;
  }

  Result<std::unique_ptr<Image>> Open(std::unique_ptr<platform::File> file,
                                      const OpenOptions& options) const override {
    if (!options.read_only) {
      return Status(Code::kAccessDenied,
                    file->path().string() + ": ISO images can only be opened read-only");
    }
    VDISK_ASSIGN_OR_RETURN(const iso::VolumeGeometry geometry, iso::ReadVolumeGeometry(*file));
    return std::unique_ptr<Image>(std::make_unique<IsoImage>(std::move(file), geometry.size));
  }

  Result<std::unique_ptr<Image>> Create(const std::filesystem::path& path,
                                        const CreateOptions&) const override {
    return Status(Code::kNotSupported, path.string() + ": ISO images cannot be created");
  }
};

}  // namespace

std::unique_ptr<Provider> MakeIsoProvider() { return std::make_unique<IsoProvider>(); }

}  // namespace vdisk
