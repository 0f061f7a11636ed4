// VhdImage: one opened VHD file (fixed, dynamic or differencing) as an Image.
//
// Thread safety: Map, ReadData and Write may be called from many threads at once.
//  - BAT entries are atomics; an entry changes only from unallocated to allocated (never back), so
//    lookups and writes into allocated blocks take no lock: the hot read path is one atomic load
//    and the data pread.
//  - Allocation is serialised by allocation_mutex_ and re-checks the entry under it.
//  - Sector bitmaps of a differencing image are cached; bitmap_mutex_ guards the cache and
//    serialises the bitmap read-modify-writes.
//
// Crash safety of an allocation (a process killed at any point leaves an image that opens and
// holds every write that returned success):
//  (a) a copy of the footer is written at the new end of file, (b) the block's bitmap (over the
//  old footer) and data, (c) flush, (d) the BAT sector with the new entry, then the entry in
//  memory, (e) flush. Until (d) lands the block is unreferenced space; if the end footer is torn,
//  Open falls back to the copy at offset 0 and a read-write open rewrites the end footer.
//  WriteFromFile takes the same steps, the data of (b) copied by File::CopyFrom.
//  (c) and (e) are skipped with OpenOptions::no_write_hardening. Setting bits in the bitmap of an
//  already allocated differencing block follows its data write but is not flushed in between:
//  after a power loss (not a process kill), a sector written but never flushed may read as zeros
//  instead of its old (parent's) content.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <filesystem>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "formats/image.h"
#include "formats/registry/provider.h"
#include "formats/vhd/vhd_format.h"

namespace vdisk::vhd {

// The parent's paths as a differencing header records them (vhd_create.cpp): the name field
// (UTF-16BE) and the W2ru and W2ku locators (UTF-16LE), as Windows writes them.
struct Locator {
  std::uint32_t platform_code;
  std::vector<std::byte> data;  // UTF-16LE, no terminator
};
Status DescribeParent(const std::filesystem::path& child_path,
                      const std::filesystem::path& parent_path, std::vector<std::byte>& name,
                      std::vector<Locator>& locators);
// Reads the parent locators and name of a differencing image (vhd_image.cpp). `used_end`
// receives the end of the locator data read.
Result<ParentReference> ReadParentReference(platform::File& file, std::uint64_t file_size,
                                            const DynamicHeader& header,
                                            const OpenOptions& options, std::uint64_t& used_end);

class VhdImage final : public PayloadImage {
 public:
  // The validated metadata that Open hands to the constructor.
  struct Metadata {
    DiskSubtype subtype = DiskSubtype::kFixed;
    std::array<std::byte, kFooterSize> footer{};  // the footer bytes in use (checksum valid)
    std::uint64_t virtual_size = 0;
    std::uint32_t timestamp = 0;
    Guid unique_id;
    // Where the end footer is, or will be written when the end footer needs repair.
    std::uint64_t footer_offset = 0;
    bool repair_end_footer = false;   // the end footer is damaged; the copy at 0 is in use
    bool repair_head_footer = false;  // dynamic: the copy at 0 is damaged
    // Dynamic and differencing only.
    std::uint32_t block_size = 0;
    std::uint64_t table_offset = 0;
    std::vector<std::uint32_t> bat;  // ceil(virtual_size / block_size) entries
    std::optional<ParentReference> parent;
  };

  // Validates `file` as a VHD and returns it opened. REQUIRES: file != nullptr.
  // Fails with the specific kVhd* code naming the structure and offset at fault.
  static Result<std::unique_ptr<VhdImage>> Open(std::unique_ptr<platform::File> file,
                                                const OpenOptions& options);

  VhdImage(std::unique_ptr<platform::File> file, Metadata metadata, const OpenOptions& options);
  VhdImage(const VhdImage&) = delete;
  VhdImage& operator=(const VhdImage&) = delete;

  DiskFormat format() const override { return DiskFormat::kVhd; }
  DiskSubtype subtype() const override { return subtype_; }
  std::uint64_t virtual_size() const override { return size_; }
  std::uint32_t logical_sector_size() const override { return kSectorSize; }
  std::uint32_t physical_sector_size() const override { return kSectorSize; }
  std::uint32_t block_size() const override { return block_size_; }
  Guid unique_id() const override;
  std::uint32_t timestamp() const override { return timestamp_; }
  bool read_only() const override { return read_only_; }
  // Every allocated block's data starts on a 4 KiB boundary (always so for blocks we allocate).
  bool is_4k_aligned() const override;
  std::optional<ParentReference> parent() const override;

  Result<Extent> Map(std::uint64_t offset, std::uint64_t length) override;
  Status Flush() override;
  // The end of the last partition of an MBR or GPT at the start of the disk, else the size.
  Result<std::uint64_t> SmallestSafeVirtualSize() const override;
  // Fixed and dynamic images (vhd_resize.cpp); a differencing image answers kVhdInvalidType.
  Status Resize(std::uint64_t new_size, OperationControl& progress) override;
  bool write_hardening() const override { return write_hardening_.load(); }
  void SetWriteHardening(bool on) override { write_hardening_.store(on); }
  platform::File& file() const override { return *file_; }

  // vhd_compact.cpp: zero blocks go back to unallocated (a differencing block only where the
  // parent reads zeros there too), blocks from the end move into holes, the footer moves last.
  Result<CompactReport> Compact(const CompactOptions& options, CompactEnvironment& env) override;

  // SetVirtualDiskInformation (vhd_set_info.cpp). Each change is durable when it returns; a
  // process killed during one leaves the image as before or as after it.
  // PARENT_PATH(_WITH_DEPTH): new locators (W2ru, W2ku) and name for `parent_path`, and the
  // parent's unique id and time stamp. The locator data goes to new space before the end footer
  // (as a block allocation does), then the dynamic header names it in one write.
  Status SetParentLocation(const std::filesystem::path& parent_path, const Image& parent) override;
  // IDENTIFIER: the footer's unique id, end footer first, then the copy at offset 0.
  Status SetUniqueId(const Guid& id) override;
  // PHYSICAL_SECTOR_SIZE: a VHD records no physical sector size; 512 (what it reports) is
  // accepted and changes nothing, anything else is kNotSupported (see the .cpp).
  Status SetPhysicalSectorSize(std::uint32_t bytes) override;

 private:
  struct BitmapRun {
    bool present = false;
    std::uint32_t sectors = 0;
  };

  // Rewrites the end footer and/or the copy at offset 0 that Open found damaged (read-write
  // opens only).
  Status RepairFooters(bool end_footer, bool head_footer);
  // Write and WriteFromFile (PayloadImage).
  Status WritePayloadAt(std::uint64_t offset, const WritePayload& data) override;
  // Writes `data` (inside one block) into an allocated block at `within` bytes from its start.
  Status WriteAllocated(std::uint32_t block, std::uint32_t entry, std::uint32_t within,
                        const WritePayload& data);
  // Allocates `block` at the end of the file and writes `data` into it (see the header comment),
  // or writes into it if another thread allocated it first.
  Status AllocateAndWrite(std::uint32_t block, std::uint32_t within, const WritePayload& data);
  // Writes the BAT sector holding `block`'s entry, with `entry` as that entry's new value.
  Status WriteBatSector(std::uint32_t block, std::uint32_t entry);
  // Differencing: the run of equal bitmap bits of `block` from `first_sector`, at most `count`.
  Result<BitmapRun> ReadBitmapRun(std::uint32_t block, std::uint32_t entry,
                                  std::uint32_t first_sector, std::uint32_t count);
  // Differencing: sets the bits of [first_sector, first_sector+count) and writes changed sectors.
  Status MarkSectorsPresent(std::uint32_t block, std::uint32_t entry, std::uint32_t first_sector,
                            std::uint32_t count);
  // REQUIRES: bitmap_mutex_ held. The cached bitmap of `block`, loaded from the file if needed.
  Result<std::vector<std::uint8_t>*> CachedBitmapLocked(std::uint32_t block, std::uint32_t entry);
  void CacheBitmapLocked(std::uint32_t block, std::vector<std::uint8_t> bitmap);
  // Compaction steps (vhd_compact.cpp), each run with the disk's I/O drained.
  Status ReleaseZeroBlocks(std::uint32_t first, std::uint32_t end, CompactEnvironment& env,
                           CompactReport& report, std::uint32_t& next);
  Status MoveBlock(std::uint32_t block, std::uint64_t from, std::uint64_t to);
  Status TruncateAfterLastBlock();
  // File ranges that hold metadata: footer copy, dynamic header, BAT, parent locator data.
  Result<std::vector<std::pair<std::uint64_t, std::uint64_t>>> MetadataRanges();
  // Resize of a fixed image, and of a dynamic one (vhd_resize.cpp).
  Status ResizeFixed(std::uint64_t new_size, const std::array<std::byte, kFooterSize>& footer,
                     OperationControl& progress);
  Status ResizeDynamic(std::uint64_t new_size, const std::array<std::byte, kFooterSize>& footer,
                       OperationControl& progress);
  // Writes `footer` at the end footer's place and as the copy at 0 (dynamic), flushing each.
  Status WriteFooters(const std::array<std::byte, kFooterSize>& footer);
  // Flushes the file when write hardening is on: between the steps of a crash-safe change.
  Status FlushIfHardening() { return write_hardening_ ? file_->Flush() : Status::Ok(); }
  std::uint64_t BlockFileOffset(std::uint32_t entry) const {
    return std::uint64_t{entry} * kSectorSize;
  }

  const std::unique_ptr<platform::File> file_;
  const bool read_only_;
  std::atomic<bool> write_hardening_;
  const DiskSubtype subtype_;
  std::uint64_t size_;  // changes only in Resize, with I/O drained
  const std::uint32_t timestamp_;
  const bool ignore_relative_parent_locator_;
  // The identity and parent link; SetUniqueId and SetParentLocation change them. footer_ is
  // also written by allocations, so it changes with allocation_mutex_ held too, and by Resize
  // (with the disk's I/O drained).
  // A copy of the footer's bytes, taken under identity_mutex_.
  std::array<std::byte, kFooterSize> FooterBytes() const;

  mutable std::mutex identity_mutex_;
  Guid unique_id_;                               // GUARDED_BY(identity_mutex_)
  std::array<std::byte, kFooterSize> footer_;    // GUARDED_BY(identity_mutex_, allocation_mutex_)
  std::optional<ParentReference> parent_;        // GUARDED_BY(identity_mutex_)

  // Dynamic and differencing.
  const std::uint32_t block_size_;
  const std::uint32_t bitmap_bytes_;
  std::uint64_t table_offset_;  // changes only in Resize
  std::vector<std::atomic<std::uint32_t>> bat_;

  std::mutex allocation_mutex_;
  std::uint64_t footer_offset_;  // GUARDED_BY(allocation_mutex_)

  std::mutex bitmap_mutex_;
  // GUARDED_BY(bitmap_mutex_): block -> its sector bitmap, bounded by kMaxCachedBitmapBytes.
  std::unordered_map<std::uint32_t, std::vector<std::uint8_t>> bitmap_cache_;
  std::size_t cached_bitmap_bytes_ = 0;  // GUARDED_BY(bitmap_mutex_)
};

}  // namespace vdisk::vhd
