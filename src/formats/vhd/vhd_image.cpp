#include "formats/vhd/vhd_image.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "base/bytes.h"
#include "formats/locator_path.h"

namespace vdisk::vhd {
namespace {

// Sector bitmaps kept in memory per differencing image (2 MiB blocks: 64 GiB of disk).
constexpr std::size_t kMaxCachedBitmapBytes = std::size_t{16} << 20;
// More blocks than this (64 MiB of BAT in memory) only come from tiny blocks on a huge disk, which
// no known writer produces: 2040 GiB in 512 KiB blocks is 4177920.
constexpr std::uint64_t kMaxBlocks = std::uint64_t{1} << 24;

std::string Hex32(std::uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08X", v);
  return text;
}

std::string Where(const platform::File& file, std::string_view structure, std::uint64_t offset) {
  return file.path().string() + ": " + std::string(structure) + " at offset " +
         std::to_string(offset);
}

bool HasCookie(std::span<const std::byte> bytes, std::string_view cookie) {
  return bytes.size() >= cookie.size() &&
         std::memcmp(bytes.data(), cookie.data(), cookie.size()) == 0;
}

// What a footer and a dynamic header both begin with: a cookie, a checksum over the structure
// and a version whose major part is 1. The codes and words of each structure's failures.
struct Envelope {
  std::string_view cookie;
  std::size_t checksum_offset;
  Code missing_code;
  std::string_view missing_text;
  Code checksum_code;
  std::string_view checksum_name;
  Code version_code;
  std::string_view version_name;
};

constexpr Envelope kFooterEnvelope{kFooterCookie,
                                   kFooterChecksumOffset,
                                   Code::kVhdFooterMissing,
                                   "no VHD footer (cookie \"conectix\" missing)",
                                   Code::kVhdFooterChecksumMismatch,
                                   "footer checksum",
                                   Code::kVhdUnsupportedVersion,
                                   "footer file format version"};
constexpr Envelope kDynamicHeaderEnvelope{kDynamicHeaderCookie,
                                          kDynamicHeaderChecksumOffset,
                                          Code::kVhdSparseHeaderCorrupt,
                                          "cookie \"cxsparse\" missing",
                                          Code::kVhdSparseHeaderChecksumMismatch,
                                          "checksum",
                                          Code::kVhdSparseHeaderUnsupportedVersion,
                                          "header version"};

// Checks the envelope `e` of `bytes`, whose stored checksum and version are `checksum` and
// `version`; `where` names the file and offset.
Status CheckEnvelope(std::span<const std::byte> bytes, const Envelope& e, std::uint32_t checksum,
                     std::uint32_t version, const std::string& where) {
  if (!HasCookie(bytes, e.cookie)) {
    return Status(e.missing_code, where + ": " + std::string(e.missing_text));
  }
  const std::uint32_t computed = ComputeChecksum(bytes, e.checksum_offset);
  if (checksum != computed) {
    return Status(e.checksum_code, where + ": " + std::string(e.checksum_name) + " " +
                                       Hex32(checksum) + " does not match the computed " +
                                       Hex32(computed));
  }
  if ((version >> 16) != (kVersion >> 16)) {
    return Status(e.version_code, where + ": " + std::string(e.version_name) + " " +
                                      Hex32(version) + " is not 0x00010000");
  }
  return Status::Ok();
}

// Validates one footer (spec "Hard Disk Footer Format"); `where` names the file and offset.
Status CheckFooter(std::span<const std::byte, kFooterSize> bytes, const std::string& where) {
  const auto footer = LoadAs<Footer>(bytes);
  VDISK_RETURN_IF_ERROR(CheckEnvelope(bytes, kFooterEnvelope, footer.checksum.get(),
                                      footer.file_format_version.get(), where));
  const std::uint32_t type = footer.disk_type.get();
  if (type != static_cast<std::uint32_t>(DiskType::kFixed) &&
      type != static_cast<std::uint32_t>(DiskType::kDynamic) &&
      type != static_cast<std::uint32_t>(DiskType::kDifferencing)) {
    return Status(Code::kVhdInvalidType, where + ": footer disk type " + std::to_string(type) +
                                             " is not fixed (2), dynamic (3) or differencing (4)");
  }
  const std::uint64_t size = footer.current_size.get();
  if (size % kSectorSize != 0 || size > kMaxDiskSize) {
    return Status(Code::kVhdInvalidSize, where + ": footer current size " + std::to_string(size) +
                                             " is not a multiple of 512 of at most 2040 GiB");
  }
  return Status::Ok();
}

bool IsDamagedFooter(const Status& status) {
  return status.code() == Code::kVhdFooterMissing ||
         status.code() == Code::kVhdFooterChecksumMismatch;
}

bool HasDrivePrefix(std::string_view text) {
  return text.size() >= 2 && text[1] == ':' &&
         ((text[0] >= 'A' && text[0] <= 'Z') || (text[0] >= 'a' && text[0] <= 'z'));
}

void AddCandidate(ParentReference& ref, std::filesystem::path candidate) {
  candidate = candidate.lexically_normal();
  if (std::find(ref.candidates.begin(), ref.candidates.end(), candidate) == ref.candidates.end())
    ref.candidates.push_back(std::move(candidate));
}

// A file region holding metadata, for the overlap checks.
struct Region {
  std::uint64_t start;
  std::uint64_t end;
  const char* what;
};

bool Overlap(std::uint64_t a_start, std::uint64_t a_end, const Region& b) {
  return a_start < b.end && b.start < a_end;
}

// Validates the dynamic header and the BAT of a dynamic or differencing image and fills in
// `m`. `data_limit`: where metadata and blocks must end (the end footer's offset, or the file
// size when the end footer is damaged). `used_end` receives the end of everything in use.
Status ReadDynamicMetadata(platform::File& file, std::uint64_t file_size, std::uint64_t data_limit,
                           const Footer& footer, const OpenOptions& options, VhdImage::Metadata& m,
                           std::uint64_t& used_end) {
  const std::string path = file.path().string();
  const std::uint64_t header_offset = footer.data_offset.get();
  if (header_offset < kFooterSize || header_offset > data_limit ||
      data_limit - header_offset < kDynamicHeaderSize) {
    return Status(Code::kVhdSparseHeaderCorrupt,
                  path + ": the footer's data offset " + std::to_string(header_offset) +
                      " does not point at a dynamic header inside the file (data ends at " +
                      std::to_string(data_limit) + ")");
  }
  std::array<std::byte, kDynamicHeaderSize> header_bytes;
  VDISK_RETURN_IF_ERROR(file.ReadAt(header_offset, header_bytes));
  const std::string where = Where(file, "dynamic header", header_offset);
  const auto header = LoadAs<DynamicHeader>(header_bytes);
  VDISK_RETURN_IF_ERROR(CheckEnvelope(header_bytes, kDynamicHeaderEnvelope, header.checksum.get(),
                                      header.header_version.get(), where));
  const std::uint32_t block_size = header.block_size.get();
  if (!IsPowerOfTwo(block_size) || block_size < kMinBlockSize || block_size > kMaxBlockSize) {
    return Status(Code::kVhdInvalidBlockSize,
                  where + ": block size " + std::to_string(block_size) +
                      " is not a power of two between 512 bytes and 256 MiB");
  }
  const std::uint64_t needed = (m.virtual_size + block_size - 1) / block_size;
  if (needed > kMaxBlocks) {
    return Status(Code::kVhdInvalidBlockSize,
                  where + ": block size " + std::to_string(block_size) + " makes " +
                      std::to_string(needed) + " blocks of a " + std::to_string(m.virtual_size) +
                      "-byte disk; at most " + std::to_string(kMaxBlocks) + " are supported");
  }
  const std::uint32_t max_entries = header.max_table_entries.get();
  if (max_entries < needed) {
    return Status(Code::kVhdBlockAllocationTableCorrupt,
                  where + ": " + std::to_string(max_entries) + " BAT entries cannot map " +
                      std::to_string(m.virtual_size) + " bytes in blocks of " +
                      std::to_string(block_size) + " (" + std::to_string(needed) + " needed)");
  }
  // Tables longer than needed are tolerated (the extra entries are ignored) if they fit.
  const std::uint64_t table_offset = header.table_offset.get();
  const std::uint64_t table_bytes = std::uint64_t{max_entries} * 4;
  if (table_offset > data_limit || data_limit - table_offset < table_bytes) {
    return Status(Code::kVhdBlockAllocationTableCorrupt,
                  Where(file, "BAT", table_offset) + ": " + std::to_string(max_entries) +
                      " entries end past the image data, which ends at " +
                      std::to_string(data_limit));
  }
  std::vector<std::byte> table(needed * 4);
  VDISK_RETURN_IF_ERROR(file.ReadAt(table_offset, table));

  // Every allocated block must lie inside the image data and clear of the metadata and of every
  // other block.
  const std::array<Region, 3> metadata = {{
      {0, kFooterSize, "the footer copy"},
      {header_offset, header_offset + kDynamicHeaderSize, "the dynamic header"},
      {table_offset, table_offset + table_bytes, "the BAT"},
  }};
  for (const Region& r : std::span(metadata).first(2)) {
    if (Overlap(table_offset, table_offset + table_bytes, r)) {
      return Status(Code::kVhdBlockAllocationTableCorrupt,
                    Where(file, "BAT", table_offset) + ": overlaps " + r.what + " at offset " +
                        std::to_string(r.start));
    }
  }
  used_end = std::max(header_offset + kDynamicHeaderSize, table_offset + table_bytes);
  const std::uint32_t bitmap_bytes = BitmapBytes(block_size);
  auto block_end = [&](std::uint32_t entry, std::uint64_t index) {
    const std::uint64_t data_bytes =
        std::min<std::uint64_t>(block_size, m.virtual_size - index * block_size);
    return std::uint64_t{entry} * kSectorSize + bitmap_bytes + data_bytes;
  };
  struct Placed {
    std::uint32_t entry;
    std::uint32_t index;
  };
  std::vector<Placed> placed;
  m.bat.resize(needed);
  for (std::uint64_t i = 0; i < needed; ++i) {
    const std::uint32_t entry = LoadAs<Be32>(std::span(table).subspan(i * 4, 4)).get();
    m.bat[i] = entry;
    if (entry == kUnallocated) continue;
    const std::uint64_t start = std::uint64_t{entry} * kSectorSize;
    const std::uint64_t end = block_end(entry, i);
    if (end > data_limit) {
      return Status(Code::kVhdBlockAllocationTableCorrupt,
                    Where(file, "BAT", table_offset) + ": entry " + std::to_string(i) +
                        " points at sector " + std::to_string(entry) + " whose block ends at " +
                        std::to_string(end) + ", past the image data, which ends at " +
                        std::to_string(data_limit));
    }
    for (const Region& r : metadata) {
      if (Overlap(start, end, r)) {
        return Status(Code::kVhdBlockAllocationTableCorrupt,
                      Where(file, "BAT", table_offset) + ": the block of entry " +
                          std::to_string(i) + " at offset " + std::to_string(start) + " overlaps " +
                          r.what + " at offset " + std::to_string(r.start));
      }
    }
    placed.push_back({entry, static_cast<std::uint32_t>(i)});
    used_end = std::max(used_end, end);
  }
  std::sort(placed.begin(), placed.end(),
            [](const Placed& a, const Placed& b) { return a.entry < b.entry; });
  for (std::size_t i = 1, furthest = 0; i < placed.size(); ++i) {
    const Placed& a = placed[furthest];  // of the blocks so far, the one reaching furthest
    const Placed& b = placed[i];
    if (std::uint64_t{b.entry} * kSectorSize < block_end(a.entry, a.index)) {
      return Status(Code::kVhdBlockAllocationTableCorrupt,
                    Where(file, "BAT", table_offset) + ": the block of entry " +
                        std::to_string(b.index) + " at offset " +
                        std::to_string(std::uint64_t{b.entry} * kSectorSize) +
                        " overlaps the block of entry " + std::to_string(a.index) + " at offset " +
                        std::to_string(std::uint64_t{a.entry} * kSectorSize));
    }
    if (block_end(b.entry, b.index) > block_end(a.entry, a.index)) furthest = i;
  }

  m.block_size = block_size;
  m.table_offset = table_offset;
  if (m.subtype == DiskSubtype::kDifferencing) {
    VDISK_ASSIGN_OR_RETURN(m.parent,
                           ReadParentReference(file, file_size, header, options, used_end));
  }
  return Status::Ok();
}

}  // namespace

// Reads the parent locators (spec "Parent Locator Entries") and the parent name of a
// differencing image. Locators whose data lies outside the file are ignored.
Result<ParentReference> ReadParentReference(platform::File& file, std::uint64_t file_size,
                                            const DynamicHeader& header, const OpenOptions& options,
                                            std::uint64_t& used_end) {
  ParentReference ref;
  std::memcpy(ref.parent_id.bytes.data(), header.parent_unique_id.data(), 16);
  ref.parent_timestamp = header.parent_time_stamp.get();

  std::string relative;
  std::string absolute;
  for (const ParentLocatorEntry& entry : header.parent_locators) {
    const std::uint32_t code = entry.platform_code.get();
    if (code != kPlatformW2ru && code != kPlatformW2ku) continue;
    std::string& target = code == kPlatformW2ru ? relative : absolute;
    if (!target.empty()) continue;
    const std::uint32_t length = entry.platform_data_length.get();
    const std::uint64_t offset = entry.platform_data_offset.get();
    if (length == 0 || length > kMaxLocatorBytes || offset > file_size ||
        file_size - offset < length) {
      continue;
    }
    std::vector<std::byte> data(length);
    VDISK_RETURN_IF_ERROR(file.ReadAt(offset, data));
    target = Utf16ToUtf8(data, /*big_endian=*/false);
    used_end = std::max(used_end, offset + length);
  }
  const std::string name =
      Utf16ToUtf8(std::as_bytes(std::span(header.parent_unicode_name)), /*big_endian=*/true);

  const std::filesystem::path dir = file.path().parent_path();
  if (!relative.empty()) {
    ref.stored_locations.push_back(relative);
    std::string_view rel = relative;
    if (rel.starts_with(".\\") || rel.starts_with("./")) rel.remove_prefix(2);
    if (!options.ignore_relative_parent_locator)
      AddCandidate(ref, dir / FromLocatorText(std::string(rel)));
  }
  if (!absolute.empty()) {
    ref.stored_locations.push_back(absolute);
    // A Windows path ("C:\...") is not absolute elsewhere; it cannot name a file here.
    if (auto path = FromLocatorText(absolute); path.is_absolute())
      AddCandidate(ref, std::move(path));
  }
  if (!name.empty()) {
    ref.stored_locations.push_back(name);
    auto path = FromLocatorText(name);
    if (!path.is_absolute() && HasDrivePrefix(name)) path = path.filename();
    if (path.is_absolute() || !options.ignore_relative_parent_locator)
      AddCandidate(ref, dir / path);
  }
  return ref;
}

Result<std::unique_ptr<VhdImage>> VhdImage::Open(std::unique_ptr<platform::File> file,
                                                 const OpenOptions& options) {
  const std::string path = file->path().string();
  VDISK_ASSIGN_OR_RETURN(const std::uint64_t file_size, file->Size());
  if (file_size < kOldFooterSize) {
    return Status(Code::kVhdFooterMissing, path + ": the file is " + std::to_string(file_size) +
                                               " bytes, too small to hold a VHD footer");
  }

  // The end footer: the last 512 bytes, or the last 511 of an old Virtual PC image.
  std::array<std::byte, kFooterSize> end_footer{};
  std::uint64_t end_offset = file_size - kOldFooterSize;
  {
    const std::size_t tail_size = static_cast<std::size_t>(std::min<std::uint64_t>(file_size, 512));
    std::array<std::byte, kFooterSize> tail{};
    VDISK_RETURN_IF_ERROR(file->ReadAt(file_size - tail_size, std::span(tail).first(tail_size)));
    if (tail_size == kFooterSize && HasCookie(tail, kFooterCookie)) {
      end_footer = tail;
      end_offset = file_size - kFooterSize;
    } else if (HasCookie(std::span(tail).subspan(tail_size - kOldFooterSize), kFooterCookie)) {
      std::copy_n(tail.begin() + (tail_size - kOldFooterSize), kOldFooterSize, end_footer.begin());
    } else if (tail_size == kFooterSize) {
      end_footer = tail;
      end_offset = file_size - kFooterSize;
    }
  }
  Metadata m;
  const Status end_status = CheckFooter(end_footer, Where(*file, "footer", end_offset));
  bool use_head_copy = false;
  std::array<std::byte, kFooterSize> head_footer{};
  std::optional<Status> head_status;
  if (file_size >= kFooterSize) {
    VDISK_RETURN_IF_ERROR(file->ReadAt(0, head_footer));
    head_status = CheckFooter(head_footer, Where(*file, "footer copy", 0));
  }
  const auto head_type = LoadAs<Footer>(head_footer).disk_type.get();
  const bool head_is_dynamic = head_status && head_status->ok() &&
                               (head_type == static_cast<std::uint32_t>(DiskType::kDynamic) ||
                                head_type == static_cast<std::uint32_t>(DiskType::kDifferencing));
  if (!end_status.ok()) {
    // A dynamic image whose end footer was torn (e.g. by a crash while the file grew) is still
    // described by its copy at offset 0.
    if (!IsDamagedFooter(end_status) || !head_is_dynamic) return end_status;
    use_head_copy = true;
    m.footer = head_footer;
    m.repair_end_footer = true;
  } else {
    m.footer = end_footer;
  }

  const auto footer = LoadAs<Footer>(m.footer);
  m.virtual_size = footer.current_size.get();
  m.timestamp = footer.time_stamp.get();
  std::memcpy(m.unique_id.bytes.data(), footer.unique_id.data(), 16);
  m.subtype = static_cast<DiskSubtype>(footer.disk_type.get());

  if (m.subtype == DiskSubtype::kFixed) {
    if (end_offset < m.virtual_size) {
      return Status(Code::kVhdInvalidFileSize,
                    Where(*file, "footer", end_offset) + ": a fixed disk of " +
                        std::to_string(m.virtual_size) + " bytes needs a file of at least " +
                        std::to_string(m.virtual_size + kFooterSize) + " bytes, this one has " +
                        std::to_string(file_size));
    }
    m.footer_offset = end_offset;
    return std::make_unique<VhdImage>(std::move(file), std::move(m), options);
  }

  const std::uint64_t data_limit = use_head_copy ? file_size : end_offset;
  std::uint64_t used_end = 0;
  VDISK_RETURN_IF_ERROR(
      ReadDynamicMetadata(*file, file_size, data_limit, footer, options, m, used_end));
  if (use_head_copy) {
    // The new end footer goes after everything in use, and no earlier than the last whole
    // sector of the file, where the torn footer was.
    const std::uint64_t last_sector = file_size / kSectorSize * kSectorSize;
    m.footer_offset = std::max(last_sector >= kSectorSize ? last_sector - kSectorSize : 0,
                               RoundUp(used_end, kSectorSize));
  } else {
    m.footer_offset = end_offset;
    m.repair_head_footer = head_status && IsDamagedFooter(*head_status);
  }
  const bool repair_end = m.repair_end_footer;
  const bool repair_head = m.repair_head_footer;
  auto image = std::make_unique<VhdImage>(std::move(file), std::move(m), options);
  VDISK_RETURN_IF_ERROR(image->RepairFooters(repair_end, repair_head));
  return image;
}

VhdImage::VhdImage(std::unique_ptr<platform::File> file, Metadata metadata,
                   const OpenOptions& options)
    : file_(std::move(file)),
      read_only_(options.read_only || !file_->writable()),
      write_hardening_(!options.no_write_hardening),
      subtype_(metadata.subtype),
      size_(metadata.virtual_size),
      timestamp_(metadata.timestamp),
      ignore_relative_parent_locator_(options.ignore_relative_parent_locator),
      unique_id_(metadata.unique_id),
      footer_(metadata.footer),
      parent_(std::move(metadata.parent)),
      block_size_(metadata.block_size),
      bitmap_bytes_(metadata.block_size == 0 ? 0 : BitmapBytes(metadata.block_size)),
      table_offset_(metadata.table_offset),
      bat_(metadata.bat.size()),
      footer_offset_(metadata.footer_offset) {
  for (std::size_t i = 0; i < metadata.bat.size(); ++i)
    bat_[i].store(metadata.bat[i], std::memory_order_relaxed);
}

Guid VhdImage::unique_id() const {
  std::lock_guard lock(identity_mutex_);
  return unique_id_;
}

std::optional<ParentReference> VhdImage::parent() const {
  std::lock_guard lock(identity_mutex_);
  return parent_;
}

Status VhdImage::RepairFooters(bool end_footer, bool head_footer) {
  if (read_only_ || (!end_footer && !head_footer)) return Status::Ok();
  if (end_footer) {
    VDISK_RETURN_IF_ERROR(file_->WriteAt(footer_offset_, footer_));
    VDISK_ASSIGN_OR_RETURN(const std::uint64_t file_size, file_->Size());
    if (file_size > footer_offset_ + kFooterSize)
      VDISK_RETURN_IF_ERROR(file_->Resize(footer_offset_ + kFooterSize));
  }
  if (head_footer) VDISK_RETURN_IF_ERROR(file_->WriteAt(0, footer_));
  return file_->Flush();
}

Result<Extent> VhdImage::Map(std::uint64_t offset, std::uint64_t length) {
  if (offset >= size_ || length == 0) {
    return Status(Code::kInvalidParameter, file_->path().string() + ": map of " +
                                               std::to_string(length) + " bytes at " +
                                               std::to_string(offset) + " outside the disk");
  }
  length = std::min(length, size_ - offset);
  if (subtype_ == DiskSubtype::kFixed) return Extent{Extent::Kind::kData, length, offset};

  const auto block = static_cast<std::uint32_t>(offset / block_size_);
  const auto within = static_cast<std::uint32_t>(offset % block_size_);
  const std::uint64_t n = std::min<std::uint64_t>(length, block_size_ - within);
  const std::uint32_t entry = bat_[block].load(std::memory_order_acquire);
  if (entry == kUnallocated) {
    return Extent{
        subtype_ == DiskSubtype::kDifferencing ? Extent::Kind::kParent : Extent::Kind::kZero, n, 0};
  }
  const std::uint64_t data_offset = BlockFileOffset(entry) + bitmap_bytes_ + within;
  // Dynamic disks: the bitmap is not consulted (as qemu does); unwritten sectors of an
  // allocated block read as the zeros the file holds there.
  if (subtype_ == DiskSubtype::kDynamic) return Extent{Extent::Kind::kData, n, data_offset};

  const auto sectors = static_cast<std::uint32_t>((n + kSectorSize - 1) / kSectorSize);
  VDISK_ASSIGN_OR_RETURN(const BitmapRun run,
                         ReadBitmapRun(block, entry, within / kSectorSize, sectors));
  const std::uint64_t run_bytes =
      std::min<std::uint64_t>(n, std::uint64_t{run.sectors} * kSectorSize);
  if (run.present) return Extent{Extent::Kind::kData, run_bytes, data_offset};
  return Extent{Extent::Kind::kParent, run_bytes, 0};
}

std::array<std::byte, kFooterSize> VhdImage::FooterBytes() const {
  std::lock_guard identity(identity_mutex_);
  return footer_;
}

Status VhdImage::WritePayloadAt(std::uint64_t offset, const WritePayload& data) {
  if (read_only_) {
    return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  }
  if (offset % kSectorSize != 0 || data.size() % kSectorSize != 0 || offset > size_ ||
      data.size() > size_ - offset) {
    return Status(Code::kInvalidParameter, file_->path().string() + ": write of " +
                                               std::to_string(data.size()) + " bytes at " +
                                               std::to_string(offset) +
                                               " is not sector aligned or ends past the disk");
  }
  if (subtype_ == DiskSubtype::kFixed) return data.WriteTo(*file_, offset);

  for (std::uint64_t done = 0; done < data.size();) {
    const auto block = static_cast<std::uint32_t>(offset / block_size_);
    const auto within = static_cast<std::uint32_t>(offset % block_size_);
    const std::uint64_t n = std::min<std::uint64_t>(data.size() - done, block_size_ - within);
    const WritePayload piece = data.Sub(done, n);
    const std::uint32_t entry = bat_[block].load(std::memory_order_acquire);
    VDISK_RETURN_IF_ERROR(entry == kUnallocated ? AllocateAndWrite(block, within, piece)
                                                : WriteAllocated(block, entry, within, piece));
    offset += n;
    done += n;
  }
  return Status::Ok();
}

Status VhdImage::WriteAllocated(std::uint32_t block, std::uint32_t entry, std::uint32_t within,
                                const WritePayload& data) {
  VDISK_RETURN_IF_ERROR(data.WriteTo(*file_, BlockFileOffset(entry) + bitmap_bytes_ + within));
  if (subtype_ != DiskSubtype::kDifferencing) return Status::Ok();
  // The bits go after the data, so that no reader sees a "present" sector before its data.
  return MarkSectorsPresent(block, entry, within / kSectorSize,
                            static_cast<std::uint32_t>(data.size() / kSectorSize));
}

bool VhdImage::is_4k_aligned() const {
  for (const auto& slot : bat_) {
    const std::uint32_t entry = slot.load(std::memory_order_acquire);
    if (entry != kUnallocated &&
        (std::uint64_t{entry} * kSectorSize + bitmap_bytes_) % kDataAlignment != 0) {
      return false;
    }
  }
  return true;
}

Status VhdImage::AllocateAndWrite(std::uint32_t block, std::uint32_t within,
                                  const WritePayload& data) {
  std::unique_lock lock(allocation_mutex_);
  if (const std::uint32_t entry = bat_[block].load(std::memory_order_acquire);
      entry != kUnallocated) {
    lock.unlock();
    return WriteAllocated(block, entry, within, data);
  }
  // The block goes where its data starts on a 4 KiB boundary (its bitmap just before), as
  // Hyper-V lays out 4K-aligned VHDs: a 4 KiB guest access then touches one page, not two.
  const std::uint64_t block_offset =
      RoundUp(RoundUp(footer_offset_, kSectorSize) + bitmap_bytes_, kDataAlignment) - bitmap_bytes_;
  const std::uint64_t new_footer_offset = block_offset + bitmap_bytes_ + block_size_;
  if (block_offset / kSectorSize >= kUnallocated) {
    return Status(Code::kVhdBlockAllocationFailure,
                  Where(*file_, "new block", block_offset) +
                      ": past what 32-bit BAT sector numbers can address");
  }
  // (a) The footer copy at the new end of file; the block's space becomes a hole that reads
  // as zeros.
  VDISK_RETURN_IF_ERROR(file_->WriteAt(new_footer_offset, FooterBytes()));
  // The old footer, where the alignment gap leaves it uncovered, is cleared: no stale footer
  // stays inside the file.
  if (block_offset >= footer_offset_ + kFooterSize) {
    static const std::array<std::byte, kFooterSize> kZeroFooter{};
    VDISK_RETURN_IF_ERROR(file_->WriteAt(footer_offset_, kZeroFooter));
  }
  // (b) The bitmap over the old footer, then the data. Dynamic disks mark every sector present
  // (as qemu and Windows do); a differencing block marks only the sectors written.
  const bool differencing = subtype_ == DiskSubtype::kDifferencing;
  std::vector<std::uint8_t> bitmap(bitmap_bytes_, differencing ? 0x00 : 0xFF);
  if (differencing) {
    const std::uint32_t first = within / kSectorSize;
    const auto count = static_cast<std::uint32_t>(data.size() / kSectorSize);
    for (std::uint32_t s = first; s < first + count; ++s)
      bitmap[s / 8] = static_cast<std::uint8_t>(bitmap[s / 8] | (0x80u >> (s % 8)));
  }
  VDISK_RETURN_IF_ERROR(file_->WriteAt(block_offset, std::as_bytes(std::span(bitmap))));
  VDISK_RETURN_IF_ERROR(data.WriteTo(*file_, block_offset + bitmap_bytes_ + within));
  // From here the block's space lies before the end footer: a later allocation goes after it
  // even if the rest fails, so half-prepared space is never handed out twice.
  footer_offset_ = new_footer_offset;
  // (c) Data durable before the BAT points at it.
  VDISK_RETURN_IF_ERROR(FlushIfHardening());
  // (d) The BAT sector on disk, then the entry in memory: no thread writes into the block until
  // the file references it.
  const auto entry = static_cast<std::uint32_t>(block_offset / kSectorSize);
  if (differencing) {
    std::lock_guard bitmap_lock(bitmap_mutex_);
    CacheBitmapLocked(block, std::move(bitmap));
  }
  VDISK_RETURN_IF_ERROR(WriteBatSector(block, entry));
  bat_[block].store(entry, std::memory_order_release);
  // (e)
  VDISK_RETURN_IF_ERROR(FlushIfHardening());
  return Status::Ok();
}

Status VhdImage::WriteBatSector(std::uint32_t block, std::uint32_t entry) {
  const std::size_t first = block / kBatEntriesPerSector * kBatEntriesPerSector;
  const std::size_t last = std::min<std::size_t>(first + kBatEntriesPerSector, bat_.size());
  std::array<Be32, kBatEntriesPerSector> sector;
  for (std::size_t i = first; i < last; ++i) {
    sector[i - first].set(i == block ? entry : bat_[i].load(std::memory_order_relaxed));
  }
  return file_->WriteAt(table_offset_ + first * 4,
                        std::as_bytes(std::span(sector).first(last - first)));
}

Status VhdImage::Flush() {
  if (read_only_) return Status::Ok();
  return file_->Flush();
}

Result<VhdImage::BitmapRun> VhdImage::ReadBitmapRun(std::uint32_t block, std::uint32_t entry,
                                                    std::uint32_t first_sector,
                                                    std::uint32_t count) {
  std::lock_guard lock(bitmap_mutex_);
  VDISK_ASSIGN_OR_RETURN(const std::vector<std::uint8_t>* bitmap, CachedBitmapLocked(block, entry));
  const std::uint8_t* bits = bitmap->data();
  auto bit = [bits](std::uint32_t s) { return ((bits[s / 8] >> (7 - s % 8)) & 1) != 0; };
  const bool present = bit(first_sector);
  const std::uint8_t same = present ? 0xFF : 0x00;
  const std::uint32_t end = first_sector + count;
  std::uint32_t s = first_sector + 1;
  while (s < end) {
    if (s % 8 == 0 && end - s >= 8 && bits[s / 8] == same) {
      s += 8;
      continue;
    }
    if (bit(s) != present) break;
    ++s;
  }
  return BitmapRun{present, s - first_sector};
}

Status VhdImage::MarkSectorsPresent(std::uint32_t block, std::uint32_t entry,
                                    std::uint32_t first_sector, std::uint32_t count) {
  std::lock_guard lock(bitmap_mutex_);
  VDISK_ASSIGN_OR_RETURN(std::vector<std::uint8_t> * bitmap, CachedBitmapLocked(block, entry));
  bool changed = false;
  for (std::uint32_t s = first_sector; s < first_sector + count; ++s) {
    std::uint8_t& byte = (*bitmap)[s / 8];
    const auto mask = static_cast<std::uint8_t>(0x80u >> (s % 8));
    if ((byte & mask) == 0) {
      byte = static_cast<std::uint8_t>(byte | mask);
      changed = true;
    }
  }
  if (!changed) return Status::Ok();
  // Write back only the bitmap sectors that hold the changed bits.
  const std::size_t lo = first_sector / 8 / kSectorSize * kSectorSize;
  const std::size_t hi = RoundUp((first_sector + count - 1) / 8 + 1, kSectorSize);
  const Status status = file_->WriteAt(BlockFileOffset(entry) + lo,
                                       std::as_bytes(std::span(*bitmap).subspan(lo, hi - lo)));
  if (!status.ok()) {
    // The file may hold either version now; reload it on next use.
    cached_bitmap_bytes_ -= bitmap->size();
    bitmap_cache_.erase(block);
  }
  return status;
}

Result<std::vector<std::uint8_t>*> VhdImage::CachedBitmapLocked(std::uint32_t block,
                                                                std::uint32_t entry) {
  if (auto it = bitmap_cache_.find(block); it != bitmap_cache_.end()) return &it->second;
  std::vector<std::uint8_t> bitmap(bitmap_bytes_);
  VDISK_RETURN_IF_ERROR(
      file_->ReadAt(BlockFileOffset(entry), std::as_writable_bytes(std::span(bitmap))));
  CacheBitmapLocked(block, std::move(bitmap));
  return &bitmap_cache_.find(block)->second;
}

void VhdImage::CacheBitmapLocked(std::uint32_t block, std::vector<std::uint8_t> bitmap) {
  if (auto it = bitmap_cache_.find(block); it != bitmap_cache_.end()) {
    cached_bitmap_bytes_ -= it->second.size();
    bitmap_cache_.erase(it);
  }
  while (!bitmap_cache_.empty() && cached_bitmap_bytes_ + bitmap.size() > kMaxCachedBitmapBytes) {
    cached_bitmap_bytes_ -= bitmap_cache_.begin()->second.size();
    bitmap_cache_.erase(bitmap_cache_.begin());
  }
  cached_bitmap_bytes_ += bitmap.size();
  bitmap_cache_.emplace(block, std::move(bitmap));
}

}  // namespace vdisk::vhd
