#include "formats/vhd/vhd_create.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "base/bytes.h"
#include "formats/locator_path.h"
#include "formats/vhd/vhd_format.h"
#include "formats/vhd/vhd_image.h"

namespace vdisk::vhd {
namespace {

// Where Windows puts the dynamic header and the BAT: right after the footer copy.
constexpr std::uint64_t kDynamicHeaderOffset = kFooterSize;
constexpr std::uint64_t kTableOffset = kDynamicHeaderOffset + kDynamicHeaderSize;

template <std::size_t N>
void CopyText(std::array<char, N>& field, std::string_view text) {
  std::copy_n(text.begin(), std::min(N, text.size()), field.begin());
}

Status CheckSectorSize(std::uint32_t bytes, std::string_view which) {
  if (bytes == 0 || bytes == kSectorSize) return Status::Ok();
  if (bytes == 4096) {
    return Status(Code::kUnsupportedSectorSize,
                  std::string(which) + " sector size 4096: VHD supports 512-byte sectors only");
  }
  return Status(Code::kInvalidParameter,
                std::string(which) + " sector size " + std::to_string(bytes) + " is not valid");
}

Status CheckOptions(const CreateOptions& options) {
  if (options.subtype != DiskSubtype::kFixed && options.subtype != DiskSubtype::kDynamic &&
      options.subtype != DiskSubtype::kDifferencing) {
    return Status(
        Code::kInvalidParameter,
        "unknown VHD subtype " + std::to_string(static_cast<std::uint32_t>(options.subtype)));
  }
  if (options.subtype == DiskSubtype::kDifferencing) {
    if (options.parent == nullptr)
      return Status(Code::kInvalidParameter, "a differencing VHD needs a parent");
    if (options.parent->format() != DiskFormat::kVhd) {
      return Status(Code::kInvalidParameter,
                    options.parent_path.string() + ": the parent of a VHD must be a VHD");
    }
    if (options.virtual_size != options.parent->virtual_size()) {
      return Status(Code::kInvalidParameter, "a differencing VHD has its parent's size (" +
                                                 std::to_string(options.parent->virtual_size()) +
                                                 "), not " + std::to_string(options.virtual_size));
    }
  }
  const std::uint64_t size = options.virtual_size;
  if (size == 0 || size % kSectorSize != 0 || size > kMaxDiskSize) {
    return Status(Code::kInvalidParameter,
                  "VHD size " + std::to_string(size) +
                      " must be a non-zero multiple of 512 of at most 2040 GiB");
  }
  VDISK_RETURN_IF_ERROR(CheckSectorSize(options.logical_sector_size, "logical"));
  VDISK_RETURN_IF_ERROR(CheckSectorSize(options.physical_sector_size, "physical"));
  const std::uint32_t block = options.block_size;
  const bool block_ok =
      options.subtype == DiskSubtype::kFixed
          ? (block == 0 || block == kDefaultBlockSize)
          : (block == 0 || block == kDefaultBlockSize || block == kSmallBlockSize);
  if (!block_ok) {
    return Status(Code::kInvalidParameter,
                  "VHD block size " + std::to_string(block) +
                      (options.subtype == DiskSubtype::kFixed ? " is not 2 MiB"
                                                              : " is not 512 KiB or 2 MiB"));
  }
  return Status::Ok();
}

std::array<std::byte, kFooterSize> MakeFooter(const CreateOptions& options) {
  Footer f{};
  CopyText(f.cookie, kFooterCookie);
  f.features.set(kFeatureReserved);
  f.file_format_version.set(kVersion);
  f.data_offset.set(options.subtype == DiskSubtype::kFixed ? kFixedDataOffset
                                                           : kDynamicHeaderOffset);
  f.time_stamp.set(VhdTimestampNow());
  CopyText(f.creator_application, kCreatorApplication);
  f.creator_version.set(kCreatorVersion);
  CopyText(f.creator_host_os, kCreatorHostOs);
  f.original_size.set(options.virtual_size);
  f.current_size.set(options.virtual_size);
  const Geometry g = ComputeGeometry(options.virtual_size);
  f.cylinders.set(g.cylinders);
  f.heads = g.heads;
  f.sectors_per_track = g.sectors_per_track;
  f.disk_type.set(static_cast<std::uint32_t>(options.subtype));
  const Guid id = options.unique_id.is_zero() ? Guid::Random() : options.unique_id;
  std::memcpy(f.unique_id.data(), id.bytes.data(), 16);
  std::array<std::byte, kFooterSize> bytes;
  std::memcpy(bytes.data(), &f, kFooterSize);
  f.checksum.set(ComputeChecksum(bytes, kFooterChecksumOffset));
  std::memcpy(bytes.data(), &f, kFooterSize);
  return bytes;
}

}  // namespace

// The parent's paths as a differencing header records them: the name field (UTF-16BE) and the
// W2ru (relative, ".\name" style) and W2ku (absolute) locators (UTF-16LE), as Windows does.
Status DescribeParent(const std::filesystem::path& child_path,
                      const std::filesystem::path& parent_path, std::vector<std::byte>& name,
                      std::vector<Locator>& locators) {
  std::error_code ec;
  const auto parent = std::filesystem::absolute(parent_path, ec).lexically_normal();
  if (ec) return Status(Code::kInvalidParameter, parent_path.string() + ": " + ec.message());
  const auto child_dir = std::filesystem::absolute(child_path, ec).parent_path().lexically_normal();
  if (ec) return Status(Code::kInvalidParameter, child_path.string() + ": " + ec.message());

  const std::string absolute = ToLocatorText(parent);
  const auto relative_path = parent.lexically_relative(child_dir);
  if (!relative_path.empty()) {
    std::string relative = ToLocatorText(relative_path);
    if (!relative.starts_with("..")) relative = ".\\" + relative;
    locators.push_back({kPlatformW2ru, Utf8ToUtf16(relative, /*big_endian=*/false)});
  }
  locators.push_back({kPlatformW2ku, Utf8ToUtf16(absolute, /*big_endian=*/false)});

  // The name field holds 256 UTF-16 units; a path too long for it is recorded by file name.
  constexpr std::size_t kNameBytes = sizeof(DynamicHeader::parent_unicode_name);
  name = Utf8ToUtf16(absolute, /*big_endian=*/true);
  if (name.size() > kNameBytes) name = Utf8ToUtf16(ToLocatorText(parent.filename()), true);
  if (name.size() > kNameBytes) name.resize(kNameBytes);
  return Status::Ok();
}

namespace {

// Everything of a dynamic or differencing image before its end footer, the BAT empty.
Result<std::vector<std::byte>> BuildDynamicImage(const std::filesystem::path& path,
                                                 const CreateOptions& options,
                                                 const std::array<std::byte, kFooterSize>& footer) {
  const std::uint32_t block_size = options.block_size == 0 ? kDefaultBlockSize : options.block_size;
  const std::uint64_t entries = (options.virtual_size + block_size - 1) / block_size;
  const std::uint64_t table_bytes = RoundUp(entries * 4, kSectorSize);

  DynamicHeader h{};
  CopyText(h.cookie, kDynamicHeaderCookie);
  h.data_offset.set(~std::uint64_t{0});
  h.table_offset.set(kTableOffset);
  h.header_version.set(kVersion);
  h.max_table_entries.set(static_cast<std::uint32_t>(entries));
  h.block_size.set(block_size);

  std::vector<Locator> locators;
  std::uint64_t end = kTableOffset + table_bytes;
  if (options.subtype == DiskSubtype::kDifferencing) {
    const Guid parent_id = options.parent->unique_id();
    std::memcpy(h.parent_unique_id.data(), parent_id.bytes.data(), 16);
    h.parent_time_stamp.set(options.parent->timestamp());
    std::vector<std::byte> name;
    VDISK_RETURN_IF_ERROR(DescribeParent(path, options.parent_path, name, locators));
    std::memcpy(h.parent_unicode_name.data(), name.data(), name.size());
    for (std::size_t i = 0; i < locators.size(); ++i) {
      // Platform data space in bytes, as Windows writes it (the spec says sectors; readers
      // use the length and offset).
      const std::uint64_t space = RoundUp(locators[i].data.size(), kSectorSize);
      ParentLocatorEntry& e = h.parent_locators[i];
      e.platform_code.set(locators[i].platform_code);
      e.platform_data_space.set(static_cast<std::uint32_t>(space));
      e.platform_data_length.set(static_cast<std::uint32_t>(locators[i].data.size()));
      e.platform_data_offset.set(end);
      end += space;
    }
  }

  std::vector<std::byte> image(end);
  std::copy(footer.begin(), footer.end(), image.begin());
  std::memcpy(image.data() + kDynamicHeaderOffset, &h, kDynamicHeaderSize);
  const auto header_bytes = std::span(image).subspan(kDynamicHeaderOffset, kDynamicHeaderSize);
  h.checksum.set(ComputeChecksum(header_bytes, kDynamicHeaderChecksumOffset));
  std::memcpy(image.data() + kDynamicHeaderOffset, &h, kDynamicHeaderSize);
  std::fill_n(image.begin() + kTableOffset, table_bytes, std::byte{0xFF});
  for (std::size_t i = 0; i < locators.size(); ++i) {
    const auto offset = h.parent_locators[i].platform_data_offset.get();
    std::copy(locators[i].data.begin(), locators[i].data.end(), image.begin() + offset);
  }
  return image;
}

Status WriteNewImage(platform::File& file, const std::filesystem::path& path,
                     const CreateOptions& options) {
  const auto footer = MakeFooter(options);
  if (options.subtype == DiskSubtype::kFixed) {
    if (options.full_physical_allocation) {
      VDISK_RETURN_IF_ERROR(file.Allocate(0, options.virtual_size + kFooterSize));
    } else {
      VDISK_RETURN_IF_ERROR(file.Resize(options.virtual_size));
    }
    VDISK_RETURN_IF_ERROR(file.WriteAt(options.virtual_size, footer));
  } else {
    VDISK_ASSIGN_OR_RETURN(const auto image, BuildDynamicImage(path, options, footer));
    VDISK_RETURN_IF_ERROR(file.WriteAt(0, image));
    VDISK_RETURN_IF_ERROR(file.WriteAt(image.size(), footer));
  }
  return file.Flush();
}

}  // namespace

Result<std::unique_ptr<Image>> CreateVhdImage(const std::filesystem::path& path,
                                              const CreateOptions& options) {
  VDISK_RETURN_IF_ERROR(CheckOptions(options));
  return CreateImageFile(
      path, options, [&](platform::File& file) { return WriteNewImage(file, path, options); },
      OpenImageAs<VhdImage>);
}

}  // namespace vdisk::vhd
