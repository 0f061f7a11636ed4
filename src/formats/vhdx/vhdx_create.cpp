#include "formats/vhdx/vhdx_create.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "base/bytes.h"
#include "formats/locator_path.h"
#include "formats/vhd/vhd_format.h"  // UTF-8 -> UTF-16
#include "formats/vhdx/vhdx_format.h"
#include "formats/vhdx/vhdx_image.h"

namespace vdisk::vhdx {
namespace {

// Where this implementation puts things (the layout Windows uses).
constexpr std::uint64_t kLogOffset = kMiB;
constexpr std::uint64_t kMetadataOffset = 2 * kMiB;
constexpr std::uint64_t kBatOffset = 3 * kMiB;
constexpr std::string_view kCreator = "virtdisk";

struct Plan {
  DiskSubtype subtype = DiskSubtype::kDynamic;
  std::uint64_t virtual_size = 0;
  std::uint32_t block_size = 0;
  std::uint32_t logical_sector_size = 0;
  std::uint32_t physical_sector_size = 0;
  Guid page83;
  const VhdxImage* parent = nullptr;
};

Result<Plan> CheckOptions(const CreateOptions& options) {
  Plan plan;
  plan.subtype = options.subtype;
  if (options.subtype != DiskSubtype::kFixed && options.subtype != DiskSubtype::kDynamic &&
      options.subtype != DiskSubtype::kDifferencing) {
    return Status(
        Code::kInvalidParameter,
        "unknown VHDX subtype " + std::to_string(static_cast<std::uint32_t>(options.subtype)));
  }
  plan.virtual_size = options.virtual_size;
  plan.logical_sector_size = options.logical_sector_size;
  plan.physical_sector_size = options.physical_sector_size;
  if (options.subtype == DiskSubtype::kDifferencing) {
    if (options.parent == nullptr)
      return Status(Code::kInvalidParameter, "a differencing VHDX needs a parent");
    plan.parent = dynamic_cast<const VhdxImage*>(options.parent);
    if (plan.parent == nullptr) {
      return Status(Code::kInvalidParameter,
                    options.parent_path.string() + ": the parent of a VHDX must be a VHDX");
    }
    const std::uint64_t parent_size = options.parent->virtual_size();
    if (plan.virtual_size == 0) plan.virtual_size = parent_size;
    if (plan.virtual_size != parent_size) {
      return Status(Code::kInvalidParameter, "a differencing VHDX has its parent's size (" +
                                                 std::to_string(parent_size) + "), not " +
                                                 std::to_string(plan.virtual_size));
    }
    const std::uint32_t parent_sector = options.parent->logical_sector_size();
    if (plan.logical_sector_size == 0) plan.logical_sector_size = parent_sector;
    if (plan.logical_sector_size != parent_sector) {
      return Status(Code::kInvalidParameter,
                    "a differencing VHDX has its parent's logical sector size (" +
                        std::to_string(parent_sector) + "), not " +
                        std::to_string(plan.logical_sector_size));
    }
    if (plan.physical_sector_size == 0)
      plan.physical_sector_size = options.parent->physical_sector_size();
  }
  if (plan.logical_sector_size == 0) plan.logical_sector_size = 512;
  if (plan.physical_sector_size == 0) plan.physical_sector_size = 4096;  // Windows' default
  for (const auto& [bytes, which] : {std::pair{plan.logical_sector_size, "logical"},
                                     std::pair{plan.physical_sector_size, "physical"}}) {
    if (bytes != 512 && bytes != 4096) {
      return Status(
          Code::kUnsupportedSectorSize,
          std::string(which) + " sector size " + std::to_string(bytes) + " is not 512 or 4096");
    }
  }
  if (plan.physical_sector_size < plan.logical_sector_size) {
    return Status(Code::kUnsupportedSectorSize, "physical sector size " +
                                                    std::to_string(plan.physical_sector_size) +
                                                    " is smaller than the logical sector size " +
                                                    std::to_string(plan.logical_sector_size));
  }
  const std::uint64_t size = plan.virtual_size;
  if (size == 0 || size % plan.logical_sector_size != 0 || size > kMaxVirtualSize) {
    return Status(Code::kInvalidParameter, "VHDX size " + std::to_string(size) +
                                               " must be a non-zero multiple of the " +
                                               std::to_string(plan.logical_sector_size) +
                                               "-byte logical sector of at most 64 TiB");
  }
  // Windows' defaults as Microsoft's storage sample lists them (CreateVirtualDisk.cpp):
  // "Dynamic VHDX: ... 32mb (default)", "Differencing VHDX: ... 2mb (default)".
  constexpr std::uint32_t kDefaultDifferencingBlockSize = 2u << 20;
  plan.block_size = options.block_size != 0                         ? options.block_size
                    : options.subtype == DiskSubtype::kDifferencing ? kDefaultDifferencingBlockSize
                                                                    : kDefaultBlockSize;
  if (!IsPowerOfTwo(plan.block_size) || plan.block_size < kMinBlockSize ||
      plan.block_size > kMaxBlockSize) {
    return Status(Code::kVhdInvalidBlockSize,
                  "VHDX block size " + std::to_string(plan.block_size) +
                      " is not a power of two between 1 MiB and 256 MiB");
  }
  plan.page83 = options.unique_id.is_zero() ? Guid::Random() : options.unique_id;
  return plan;
}

std::vector<std::byte> MakeHeader(std::uint64_t sequence, const Guid& file_write,
                                  const Guid& data_write) {
  Header h{};
  h.signature.set(kHeaderSignature);
  h.sequence_number.set(sequence);
  h.file_write_guid = file_write;
  h.data_write_guid = data_write;
  h.log_version.set(kLogVersion);
  h.version.set(kVersion);
  h.log_length.set(kDefaultLogSize);
  h.log_offset.set(kLogOffset);
  std::vector<std::byte> bytes(kHeaderSize);
  StoreAs(bytes, 0, h);
  h.checksum.set(Crc32cWithZeroedField(bytes, offsetof(Header, checksum)));
  StoreAs(bytes, 0, h);
  return bytes;
}

std::vector<std::byte> MakeRegionTable(std::uint64_t bat_length) {
  std::vector<std::byte> table(kRegionTableSize);
  RegionTableHeader header{};
  header.signature.set(kRegionTableSignature);
  header.entry_count.set(2);
  RegionTableEntry bat{};
  bat.guid = kBatRegionGuid;
  bat.file_offset.set(kBatOffset);
  bat.length.set(static_cast<std::uint32_t>(bat_length));
  bat.required.set(1);
  RegionTableEntry metadata{};
  metadata.guid = kMetadataRegionGuid;
  metadata.file_offset.set(kMetadataOffset);
  metadata.length.set(kDefaultMetadataRegionSize);
  metadata.required.set(1);
  StoreAs(table, sizeof header, bat);
  StoreAs(table, sizeof header + sizeof bat, metadata);
  StoreAs(table, 0, header);
  header.checksum.set(Crc32cWithZeroedField(table, offsetof(RegionTableHeader, checksum)));
  StoreAs(table, 0, header);
  return table;
}

Result<std::vector<std::byte>> MakeMetadataRegion(const Plan& plan,
                                                  const std::filesystem::path& path,
                                                  const CreateOptions& options) {
  std::vector<std::byte> region(kDefaultMetadataRegionSize);
  std::vector<MetadataItem> items;
  std::uint64_t next = kMetadataTableSize;
  auto add = [&](const Guid& id, std::uint32_t flags, std::span<const std::byte> bytes) {
    items.push_back(
        {id, static_cast<std::uint32_t>(next), static_cast<std::uint32_t>(bytes.size()), flags});
    std::memcpy(region.data() + next, bytes.data(), bytes.size());
    next = RoundUp(next + bytes.size(), 8);
  };
  constexpr std::uint32_t kSystem = kMetadataIsRequired;
  constexpr std::uint32_t kVirtualDisk = kMetadataIsRequired | kMetadataIsVirtualDisk;

  FileParameters params{};
  params.block_size.set(plan.block_size);
  params.flags.set((plan.subtype == DiskSubtype::kFixed ? kLeaveBlocksAllocated : 0) |
                   (plan.subtype == DiskSubtype::kDifferencing ? kHasParent : 0));
  add(kFileParametersGuid, kSystem, std::as_bytes(std::span(&params, 1)));
  Le64 size;
  size.set(plan.virtual_size);
  add(kVirtualDiskSizeGuid, kVirtualDisk, std::as_bytes(std::span(&size, 1)));
  add(kPage83DataGuid, kVirtualDisk, std::as_bytes(std::span(plan.page83.bytes)));
  Le32 logical;
  logical.set(plan.logical_sector_size);
  add(kLogicalSectorSizeGuid, kVirtualDisk, std::as_bytes(std::span(&logical, 1)));
  Le32 physical;
  physical.set(plan.physical_sector_size);
  add(kPhysicalSectorSizeGuid, kVirtualDisk, std::as_bytes(std::span(&physical, 1)));
  if (plan.subtype == DiskSubtype::kDifferencing) {
    VDISK_ASSIGN_OR_RETURN(
        const ParentLocator locator,
        MakeParentLocator(path, options.parent_path, plan.parent->data_write_guid()));
    const auto bytes = SerializeParentLocator(locator);
    if (next + bytes.size() > region.size()) {
      return Status(Code::kInvalidParameter,
                    options.parent_path.string() + ": the parent path is too long for a locator");
    }
    add(kParentLocatorGuid, kSystem, bytes);
  }
  const auto table = SerializeMetadataTable(items);
  std::copy(table.begin(), table.end(), region.begin());
  return region;
}

Status WriteNewImage(platform::File& file, const std::filesystem::path& path, const Plan& plan,
                     const CreateOptions& options) {
  const BatGeometry g =
      BatGeometry::Compute(plan.virtual_size, plan.block_size, plan.logical_sector_size,
                           plan.subtype == DiskSubtype::kDifferencing);
  const std::uint64_t bat_length = RoundUp(g.entry_count * 8, kMiB);
  if (bat_length > UINT32_MAX) {
    return Status(Code::kInvalidParameter, "a BAT of " + std::to_string(bat_length) +
                                               " bytes exceeds what a region can describe");
  }
  const std::uint64_t data_offset = kBatOffset + bat_length;
  const std::uint64_t file_end = plan.subtype == DiskSubtype::kFixed
                                     ? data_offset + g.payload_blocks * plan.block_size
                                     : data_offset;
  // Size (or reserve) the file first: everything not written below reads as zeros.
  if (plan.subtype == DiskSubtype::kFixed && options.full_physical_allocation) {
    VDISK_RETURN_IF_ERROR(file.Allocate(0, file_end));
  } else {
    VDISK_RETURN_IF_ERROR(file.Resize(file_end));
  }

  FileIdentifier identifier{};
  identifier.signature.set(kFileSignature);
  const auto creator = vhd::Utf8ToUtf16(kCreator, /*big_endian=*/false);
  std::memcpy(identifier.creator.data(), creator.data(), creator.size());
  VDISK_RETURN_IF_ERROR(file.WriteAt(0, std::as_bytes(std::span(&identifier, 1))));
  const Guid file_write = Guid::Random();
  // GET_VIRTUAL_DISK_INFO_IDENTIFIER of a VHDX is its DataWriteGuid (VhdxImage::unique_id), so a
  // UniqueId given at creation is both that and the Page 83 id until the first data write.
  const Guid data_write = plan.page83;
  VDISK_RETURN_IF_ERROR(file.WriteAt(kHeader1Offset, MakeHeader(1, file_write, data_write)));
  VDISK_RETURN_IF_ERROR(file.WriteAt(kHeader2Offset, MakeHeader(2, file_write, data_write)));
  const auto region_table = MakeRegionTable(bat_length);
  VDISK_RETURN_IF_ERROR(file.WriteAt(kRegionTable1Offset, region_table));
  VDISK_RETURN_IF_ERROR(file.WriteAt(kRegionTable2Offset, region_table));
  VDISK_ASSIGN_OR_RETURN(const auto metadata, MakeMetadataRegion(plan, path, options));
  VDISK_RETURN_IF_ERROR(file.WriteAt(kMetadataOffset, metadata));

  if (plan.subtype == DiskSubtype::kFixed) {
    // Every payload block present, in order after the BAT; sector bitmap entries stay 0.
    constexpr std::uint64_t kPieceEntries = kMiB / 8;
    std::vector<std::byte> piece;
    for (std::uint64_t first = 0; first < g.entry_count; first += kPieceEntries) {
      const std::uint64_t count = std::min(kPieceEntries, g.entry_count - first);
      piece.assign(static_cast<std::size_t>(count * 8), std::byte{0});
      for (std::uint64_t k = 0; k < count; ++k) {
        const std::uint64_t index = first + k;
        if ((index + 1) % (g.chunk_ratio + 1) == 0) continue;
        const std::uint64_t block = index - index / (g.chunk_ratio + 1);
        Le64 entry;
        entry.set(MakeBatEntry(kPayloadFullyPresent, data_offset + block * plan.block_size));
        std::memcpy(piece.data() + k * 8, &entry, 8);
      }
      VDISK_RETURN_IF_ERROR(file.WriteAt(kBatOffset + first * 8, piece));
    }
  }
  return file.Flush();
}

}  // namespace

Result<ParentLocator> MakeParentLocator(const std::filesystem::path& child_path,
                                        const std::filesystem::path& parent_path,
                                        const Guid& parent_data_write_guid) {
  std::error_code ec;
  const auto parent = std::filesystem::absolute(parent_path, ec).lexically_normal();
  if (ec) return Status(Code::kInvalidParameter, parent_path.string() + ": " + ec.message());
  const auto child_dir = std::filesystem::absolute(child_path, ec).parent_path().lexically_normal();
  if (ec) return Status(Code::kInvalidParameter, child_path.string() + ": " + ec.message());

  ParentLocator locator;
  // §2.6.2.6.3: the parent's DataWriteGuid, "a lowercase string with enclosing braces" (libvhdi
  // reads no other form; readers here accept any case).
  std::string linkage = parent_data_write_guid.ToString();
  std::transform(linkage.begin(), linkage.end(), linkage.begin(), [](char c) {
    return c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  locator.Set("parent_linkage", std::move(linkage));
  const auto relative = parent.lexically_relative(child_dir);
  if (!relative.empty()) {
    std::string text = ToLocatorText(relative);
    if (!text.starts_with("..")) text = ".\\" + text;
    locator.Set("relative_path", std::move(text));
  }
  std::string absolute = ToLocatorText(parent);
  // §2.6.2.6.3: absolute_win32_path is an extended-length path ("\\?\d:\...") on Windows.
  if (absolute.size() >= 2 && absolute[1] == ':') absolute = "\\\\?\\" + absolute;
  locator.Set("absolute_win32_path", std::move(absolute));
  return locator;
}

Result<std::unique_ptr<Image>> CreateVhdxImage(const std::filesystem::path& path,
                                               const CreateOptions& options) {
  VDISK_ASSIGN_OR_RETURN(const Plan plan, CheckOptions(options));
  return CreateImageFile(
      path, options, [&](platform::File& file) { return WriteNewImage(file, path, plan, options); },
      OpenImageAs<VhdxImage>);
}

}  // namespace vdisk::vhdx
