// SetVirtualDiskInformation for VHD: parent path, identifier, physical sector size.
//
// Crash safety (a process killed at any point leaves the image as before or as after):
//  - Parent path: the new locator data is written into new space at the end of the file, behind
//    a footer copy moved past it, exactly as a block allocation (vhd_image.h) prepares a block;
//    until the dynamic header names that space it is unreferenced. The header (1024 bytes, with
//    its checksum) is then written in one request and flushed. The old locator data stays where
//    it was, unreferenced.
//  - Identifier: the end footer (the one readers use) first, then the copy at offset 0; a kill in
//    between leaves a copy that open ignores while the end footer is valid.
#include <algorithm>
#include <cstring>
#include <string>

#include "base/bytes.h"
#include "formats/vhd/vhd_image.h"

namespace vdisk::vhd {
namespace {

std::string Where(const platform::File& file) { return file.path().string(); }

}  // namespace

Status VhdImage::SetParentLocation(const std::filesystem::path& parent_path, const Image& parent) {
  if (read_only_) return Status(Code::kWriteProtect, Where(*file_) + ": opened read-only");
  if (subtype_ != DiskSubtype::kDifferencing) {
    return Status(Code::kVhdInvalidType,
                  Where(*file_) + " is not a differencing disk: it has no parent to locate");
  }
  if (parent.virtual_size() != size_) {
    return Status(Code::kVhdChildParentSizeMismatch, Where(*file_) + ": the new parent " +
                                                         parent_path.string() + " has size " +
                                                         std::to_string(parent.virtual_size()) +
                                                         ", this disk " + std::to_string(size_));
  }
  std::vector<std::byte> name;
  std::vector<Locator> locators;
  VDISK_RETURN_IF_ERROR(DescribeParent(file_->path(), parent_path, name, locators));

  std::unique_lock allocation(allocation_mutex_);
  const std::array<std::byte, kFooterSize> footer = FooterBytes();
  Footer f = LoadAs<Footer>(footer);
  const std::uint64_t header_offset = f.data_offset.get();

  // (1) Space for the locator data before a footer copy at the new end.
  const std::uint64_t start = RoundUp(footer_offset_, kSectorSize);
  std::uint64_t end = start;
  std::vector<std::uint64_t> offsets;
  for (const Locator& l : locators) {
    offsets.push_back(end);
    end += RoundUp(l.data.size(), kSectorSize);
  }
  VDISK_RETURN_IF_ERROR(file_->WriteAt(end, footer));
  for (std::size_t i = 0; i < locators.size(); ++i) {
    std::vector<std::byte> space(RoundUp(locators[i].data.size(), kSectorSize));
    std::copy(locators[i].data.begin(), locators[i].data.end(), space.begin());
    VDISK_RETURN_IF_ERROR(file_->WriteAt(offsets[i], space));
  }
  footer_offset_ = end;
  if (write_hardening()) VDISK_RETURN_IF_ERROR(file_->Flush());

  // (2) The dynamic header names the new locators and the new parent, in one write.
  DynamicHeader h;
  VDISK_RETURN_IF_ERROR(file_->ReadAt(header_offset, std::as_writable_bytes(std::span(&h, 1))));
  const Guid parent_id = parent.unique_id();
  std::memcpy(h.parent_unique_id.data(), parent_id.bytes.data(), 16);
  h.parent_time_stamp.set(parent.timestamp());
  h.parent_unicode_name.fill(0);
  std::memcpy(h.parent_unicode_name.data(), name.data(), name.size());
  for (ParentLocatorEntry& e : h.parent_locators) e = ParentLocatorEntry{};
  for (std::size_t i = 0; i < locators.size(); ++i) {
    ParentLocatorEntry& e = h.parent_locators[i];
    e.platform_code.set(locators[i].platform_code);
    // Space in bytes, as Windows writes it (vhd_format.h).
    e.platform_data_space.set(
        static_cast<std::uint32_t>(RoundUp(locators[i].data.size(), kSectorSize)));
    e.platform_data_length.set(static_cast<std::uint32_t>(locators[i].data.size()));
    e.platform_data_offset.set(offsets[i]);
  }
  h.checksum.set(0);
  h.checksum.set(ComputeChecksum(std::as_bytes(std::span(&h, 1)), kDynamicHeaderChecksumOffset));
  VDISK_RETURN_IF_ERROR(file_->WriteAt(header_offset, std::as_bytes(std::span(&h, 1))));
  if (write_hardening()) VDISK_RETURN_IF_ERROR(file_->Flush());

  // (3) The link as Open would read it now.
  OpenOptions options;
  options.ignore_relative_parent_locator = ignore_relative_parent_locator_;
  std::uint64_t used_end = 0;
  VDISK_ASSIGN_OR_RETURN(auto ref,
                         ReadParentReference(*file_, end + kFooterSize, h, options, used_end));
  std::lock_guard identity(identity_mutex_);
  parent_ = std::move(ref);
  return Status::Ok();
}

Status VhdImage::SetUniqueId(const Guid& id) {
  if (read_only_) return Status(Code::kWriteProtect, Where(*file_) + ": opened read-only");
  std::unique_lock allocation(allocation_mutex_);
  std::array<std::byte, kFooterSize> bytes = FooterBytes();
  Footer f = LoadAs<Footer>(bytes);
  std::memcpy(f.unique_id.data(), id.bytes.data(), 16);
  f.checksum.set(0);
  std::memcpy(bytes.data(), &f, kFooterSize);
  f.checksum.set(ComputeChecksum(bytes, kFooterChecksumOffset));
  std::memcpy(bytes.data(), &f, kFooterSize);
  VDISK_RETURN_IF_ERROR(file_->WriteAt(footer_offset_, bytes));
  if (write_hardening()) VDISK_RETURN_IF_ERROR(file_->Flush());
  if (subtype_ != DiskSubtype::kFixed) {
    VDISK_RETURN_IF_ERROR(file_->WriteAt(0, bytes));
    if (write_hardening()) VDISK_RETURN_IF_ERROR(file_->Flush());
  }
  std::lock_guard identity(identity_mutex_);
  footer_ = bytes;
  unique_id_ = id;
  return Status::Ok();
}

// A VHD has no field for a physical sector size (the spec's footer and dynamic header have
// none) and reports 512, the size of every VHD sector. Microsoft's storage sample says of this
// call "This operation will only succeed on VHDX" (Samples/Hyper-V/Storage/cpp/
// SetVirtualDiskInformation.cpp), and Hyper-V's Set-VHD -PhysicalSectorSizeBytes works on VHDX
// files. Asking for the size the disk already reports changes nothing and succeeds.
Status VhdImage::SetPhysicalSectorSize(std::uint32_t bytes) {
  if (bytes == kSectorSize) return Status::Ok();
  return Status(Code::kNotSupported,
                Where(*file_) + ": a VHD records no physical sector size (it reports 512); " +
                    std::to_string(bytes) + " can be set on a VHDX only");
}

}  // namespace vdisk::vhd
