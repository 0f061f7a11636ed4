// VhdxImage: one opened VHDX file (fixed, dynamic or differencing) as an Image.
//
// Open (MS-VHDX §2.2..§2.6): file type identifier, current header, log replay, region table,
// metadata, BAT validation. A log that needs replay is replayed into the file by a read-write
// open (headers updated first, then cleared) and into memory by a read-only open, which leaves
// the file's bytes untouched.
//
// Crash safety (a process killed at any point leaves a file that opens, with replay, holding
// every write that returned success):
//  - Headers change only through the two-header protocol (§2.2.2.1): write the non-current header
//    with sequence number + 1, flush, then the other one, flush. The first change of a session
//    gives the file a new FileWriteGuid; the first user data write a new DataWriteGuid.
//  - Every change to the BAT, sector bitmaps and metadata region goes through the log (§2.3):
//    the entry is written at the log's head and flushed, then applied in place. The next entry
//    is written only after the applied sectors are flushed, so each entry is its own tail. The
//    first entry of a log session is written before the header names its LogGuid, so a header
//    never names a LogGuid without a valid entry (§2.2.2 describes the header first; that order
//    leaves a window in which a crash gives a LogGuid with no entry, which §2.3.3 calls corrupt).
//    An entry that would overwrite the previous one (a full ring) first ends the log session
//    (flush, clear the LogGuid).
//  - Payload data is never journalled: an allocating write extends the file (new blocks at the
//    end, 1 MiB aligned, reading as zeros), writes the data, flushes, then journals the BAT
//    entries (and sector bitmap bits). Until the journal entry lands the block is unreferenced.
//    WriteFromFile takes the same steps, the data copied by File::CopyFrom.
//  - Closing a writable image flushes and clears the LogGuid, so other readers see a clean log.
//  OpenOptions::no_write_hardening skips the flushes but keeps the order.
//
// Thread safety: Map, ReadData and Write may be called from many threads at once. BAT lookups
// are lock-free (VhdxBlockAllocationTable); writes into present blocks take no lock; allocation,
// sector bitmap and metadata updates are serialised by update_mutex_. The sector bitmap cache
// has its own mutex.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "formats/image.h"
#include "formats/registry/provider.h"
#include "formats/vhdx/vhdx_bat.h"
#include "formats/vhdx/vhdx_format.h"
#include "formats/vhdx/vhdx_log.h"
#include "formats/vhdx/vhdx_metadata.h"

namespace vdisk::vhdx {

class VhdxImage final : public PayloadImage {
 public:
  // BAT pages (1 MiB each) kept in memory at most, when the table is larger than this.
  static constexpr std::size_t kMaxResidentBatPages = 16;
  // 4 KiB sector bitmap sectors kept in memory (each covers 32768 logical sectors).
  static constexpr std::size_t kMaxCachedBitmapSectors = 2048;

  // Validates `file` as a VHDX and returns it opened. REQUIRES: file != nullptr.
  // Fails with the most specific code (kFileCorrupt for structural damage, kNotSupported for an
  // unknown required region or metadata item, kVhdInvalidBlockSize, kUnsupportedSectorSize,
  // kVhdInvalidSize, kVhdUnsupportedVersion), naming the structure at fault.
  static Result<std::unique_ptr<VhdxImage>> Open(std::unique_ptr<platform::File> file,
                                                 const OpenOptions& options);
  ~VhdxImage() override;
  VhdxImage(const VhdxImage&) = delete;
  VhdxImage& operator=(const VhdxImage&) = delete;

  DiskFormat format() const override { return DiskFormat::kVhdx; }
  DiskSubtype subtype() const override { return subtype_; }
  std::uint64_t virtual_size() const override { return geometry_.virtual_size; }
  std::uint32_t logical_sector_size() const override { return geometry_.logical_sector_size; }
  std::uint32_t physical_sector_size() const override;
  // 0 for fixed images (Image's contract), the payload block size otherwise.
  std::uint32_t block_size() const override {
    return subtype_ == DiskSubtype::kFixed ? 0 : geometry_.block_size;
  }
  // IDENTIFIER: the header's DataWriteGuid, what a child records as parent_linkage.
  Guid unique_id() const override;
  // VIRTUAL_DISK_ID: the Page 83 Data item.
  Guid virtual_disk_id() const override;
  bool read_only() const override { return read_only_; }
  bool is_4k_aligned() const override { return true; }
  std::optional<ParentReference> parent() const override;
  // The parent must be a VHDX whose DataWriteGuid is the parent_linkage (or parent_linkage2)
  // this image records (kVhdChildParentIdMismatch), of the same size and logical sector size
  // (kVhdChildParentSizeMismatch).
  Status CheckParent(const Image& parent) const override;

  Result<Extent> Map(std::uint64_t offset, std::uint64_t length) override;
  Status ReadData(std::uint64_t file_offset, std::span<std::byte> out) override;
  bool data_in_file() const override { return !reader_.has_overlay(); }
  Status Flush() override;
  bool write_hardening() const override { return write_hardening_.load(); }
  void SetWriteHardening(bool on) override { write_hardening_.store(on); }
  platform::File& file() const override { return *file_; }

  // The end of the last partition of an MBR or GPT at the start of the disk (read through this
  // image; a differencing image's parent ranges read as zeros), else the virtual size.
  Result<std::uint64_t> SmallestSafeVirtualSize() const override;
  // Fixed and dynamic files (vhdx_resize.cpp); a differencing file answers kVhdInvalidType.
  Status Resize(std::uint64_t new_size, OperationControl& progress) override;
  Status SetParentLocation(const std::filesystem::path& parent_path, const Image& parent) override;
  Status SetUniqueId(const Guid& id) override;
  Status SetVirtualDiskId(const Guid& id) override;
  Status SetPhysicalSectorSize(std::uint32_t bytes) override;
  // User metadata items (§2.6.1.2 IsUser). Set creates or replaces an item: kInvalidParameter
  // for an item over 1 MiB or one whose update cannot fit in one log entry, kDiskFull when the
  // metadata region has no free range for it or the table is full (2047 items, 1024 user items).
  // Get/Delete of a missing item: kNotFound.
  Result<std::vector<Guid>> ListUserMetadata() const override;
  Result<std::vector<std::byte>> GetUserMetadata(const Guid& item) const override;
  Status SetUserMetadata(const Guid& item, std::span<const std::byte> data) override;
  Status DeleteUserMetadata(const Guid& item) override;

  // vhdx_compact.cpp: zero blocks become NOT_PRESENT (a differencing block where the parent
  // reads zeros too, else PAYLOAD_BLOCK_ZERO), blocks from the end move into holes, the file is
  // cut after the last one in use. Journalled; the DataWriteGuid stays (content is unchanged,
  // so children stay linked).
  Result<CompactReport> Compact(const CompactOptions& options, CompactEnvironment& env) override;

  // The header's DataWriteGuid (§2.2.2): what a differencing child records as parent_linkage.
  Guid data_write_guid() const;
  Guid file_write_guid() const;
  // Whether open found a log to replay (replayed into the file, or into memory if read-only).
  bool replayed_log() const { return replayed_log_; }
  const BatGeometry& geometry() const { return geometry_; }
  // The BAT entry at `index` (tests and diagnostics).
  Result<std::uint64_t> BatEntry(std::uint64_t index) { return bat_->Get(index); }
  std::size_t resident_bat_pages() const { return bat_->resident_pages(); }

 private:
  using StagedSectors = std::map<std::uint64_t, std::vector<std::byte>>;

  VhdxImage(std::unique_ptr<platform::File> file, const OpenOptions& options);
  Status Load();
  Status ReadHeaders();
  Status ReplayLog(std::uint64_t& file_size);
  Status ReadRegionTable(std::uint64_t file_size);
  Status BuildParentReference();

  // Header updates (§2.2.2.1). REQUIRES: header_mutex_ held.
  Status UpdateHeadersLocked(const std::function<void(Header&)>& edit);
  // Before the first change of a session: new FileWriteGuid, and for user data a new
  // DataWriteGuid.
  Status BeginSession(bool user_data);

  // Journalling. REQUIRES for all: update_mutex_ held.
  Status StageBytes(StagedSectors& staged, std::uint64_t file_offset,
                    std::span<const std::byte> bytes);
  Status StageBatEntry(StagedSectors& staged, std::uint64_t index, std::uint64_t value);
  // Sets (`set`) or clears the bitmap bits of `count` sectors from `first_sector` of payload
  // `block`, whose chunk's sector bitmap block is described by `bitmap_entry`. `changed` tells
  // whether any bit changed.
  Status StageBitmapBits(StagedSectors& staged, std::uint64_t block, std::uint64_t bitmap_entry,
                         std::uint64_t first_sector, std::uint64_t count, bool set,
                         bool& changed);
  Status Commit(StagedSectors& staged);
  Status EndLogSessionLocked();
  // Puts the committed bitmap sectors of `staged` in the bitmap cache.
  void CacheStagedBitmapSectors(const StagedSectors& staged, std::uint64_t chunk,
                                std::uint64_t bitmap_entry);

  // Write and WriteFromFile (PayloadImage).
  Status WritePayloadAt(std::uint64_t offset, const WritePayload& data) override;
  Status WriteAllocated(std::uint64_t block, std::uint64_t entry, std::uint64_t within,
                        const WritePayload& data);
  Status AllocateAndWrite(std::uint64_t block, std::uint64_t within, const WritePayload& data);
  Status MarkSectorsPresent(std::uint64_t block, std::uint64_t first_sector, std::uint64_t count);
  // Differencing: the run of equal bitmap bits of `block` from `first_sector`, at most `count`.
  Result<std::pair<bool, std::uint64_t>> BitmapRun(std::uint64_t block, std::uint64_t first_sector,
                                                   std::uint64_t count);
  // Metadata region updates: stage the new table and `payload` at its item, commit, publish.
  Status CommitMetadata(std::vector<MetadataItem> items,
                        std::span<const std::pair<std::uint32_t, std::vector<std::byte>>> payload);
  // Resize's steps. REQUIRES: update_mutex_ held.
  Status ResizeLocked(std::uint64_t new_size, OperationControl& progress);
  Result<std::uint32_t> PlaceItem(std::vector<MetadataItem>& items, const Guid& id, bool is_user,
                                  std::uint32_t flags, std::uint32_t length);
  Status WriteSystemItem(const Guid& id, std::span<const std::byte> bytes);

  // Compaction steps (vhdx_compact.cpp), each run with the disk's I/O drained.
  Status ReleaseZeroBlocks(std::uint64_t first, std::uint64_t end, CompactEnvironment& env,
                           CompactReport& report, std::uint64_t& next);
  Status MoveBlock(std::uint64_t index, std::uint64_t from, std::uint64_t to,
                   std::uint64_t length);
  Status TruncateAfterLastBlock();
  // File ranges [start, end) of the header section, the log and every region of the table.
  Result<std::vector<std::pair<std::uint64_t, std::uint64_t>>> FixedRanges() const;

  const std::unique_ptr<platform::File> file_;
  const bool read_only_;
  std::atomic<bool> write_hardening_;
  const bool ignore_relative_parent_locator_;
  const bool keep_data_write_guid_;  // OpenOptions::keep_data_write_guid
  StructureReader reader_;

  // Layout, fixed after Load but for Resize, which changes the BAT's place, the geometry and the
  // table object with I/O drained.
  std::uint64_t log_offset_ = 0;
  std::uint32_t log_length_ = 0;
  std::uint64_t bat_offset_ = 0;
  std::uint64_t bat_length_ = 0;
  std::uint64_t metadata_offset_ = 0;
  std::uint64_t metadata_length_ = 0;
  BatGeometry geometry_;
  DiskSubtype subtype_ = DiskSubtype::kDynamic;
  std::unique_ptr<VhdxBlockAllocationTable> bat_;
  bool replayed_log_ = false;

  mutable std::mutex header_mutex_;
  std::array<std::byte, kHeaderSize> header_{};  // GUARDED_BY(header_mutex_): current header
  int current_header_ = 0;                 // GUARDED_BY(header_mutex_): 0 at 64 KiB, 1 at 128 KiB
  std::atomic<bool> file_session_{false};  // FileWriteGuid changed in this session
  std::atomic<bool> data_session_{false};  // DataWriteGuid changed in this session

  mutable std::mutex metadata_mutex_;  // guards the two below for readers
  Metadata metadata_;
  std::optional<ParentReference> parent_;

  mutable std::mutex update_mutex_;
  std::uint64_t physical_size_ = 0;  // GUARDED_BY(update_mutex_): the file's length
  std::uint64_t alloc_end_ = 0;      // GUARDED_BY(update_mutex_): where the next block goes
  // The log writer, GUARDED_BY(update_mutex_).
  bool log_active_ = false;  // the header names log_guid_
  Guid log_guid_;
  std::uint64_t log_sequence_ = 0;
  std::uint32_t log_head_ = 0;
  std::uint32_t last_entry_length_ = 0;
  bool apply_unflushed_ = false;
  bool journal_failed_ = false;  // an entry may be half applied: only replay can fix it

  mutable std::mutex bitmap_mutex_;
  // GUARDED_BY(bitmap_mutex_): (chunk << 8 | sector of its bitmap block) -> 4 KiB of bits.
  std::unordered_map<std::uint64_t, std::vector<std::uint8_t>> bitmap_cache_;
};

}  // namespace vdisk::vhdx
