// Image: one opened virtual disk file, one layer of a differencing chain.
//
// A format provider (src/formats/*) implements Image. VirtualDisk (virtual_disk.h) stacks images
// into a chain and does the reading through parents, so a format only answers "where does this
// range live in my file?" (Map) and knows how to store a write (Write).
//
// Thread safety: Map, ReadData, Write and WriteFromFile may be called from several threads at
// once; an image serialises its own metadata updates.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/guid.h"
#include "base/status.h"
#include "platform/file.h"

namespace vdisk {

// Values are VIRTUAL_STORAGE_TYPE_DEVICE_*.
enum class DiskFormat : std::uint32_t { kUnknown = 0, kIso = 1, kVhd = 2, kVhdx = 3, kVhdSet = 4 };
// Values are those of GET_VIRTUAL_DISK_INFO.ProviderSubtype.
enum class DiskSubtype : std::uint32_t { kFixed = 2, kDynamic = 3, kDifferencing = 4 };

// Where a range of the virtual disk lives, as seen by one layer.
struct Extent {
  enum class Kind {
    kData,    // in this layer's file at file_offset
    kZero,    // reads as zeros; does not fall through to a parent
    kParent,  // not present in this layer: read the parent (zeros if there is none)
  };
  Kind kind = Kind::kZero;
  std::uint64_t length = 0;       // bytes from the queried offset; > 0
  std::uint64_t file_offset = 0;  // kData only
};

// What a differencing image records about its parent.
struct ParentReference {
  // Paths to try, in order (relative locator first, then absolute), already resolved against
  // the child's directory and converted to this OS's conventions. A provider leaves out the
  // relative ones when OpenOptions::ignore_relative_parent_locator is set.
  std::vector<std::filesystem::path> candidates;
  // The locator strings as stored, for GET_VIRTUAL_DISK_INFO_PARENT_LOCATION.
  std::vector<std::string> stored_locations;
  Guid parent_id;                                 // unique id the parent must have
  std::optional<std::uint32_t> parent_timestamp;  // VHD only
};

// The bytes a write stores: memory (Image::Write) or a range of another file
// (Image::WriteFromFile). A format runs both through one allocation path and hands the payload to
// its data step, so a copy from a file allocates in the same crash-safe order as a write.
// Not thread-safe; lives for one call.
class WritePayload {
 public:
  // How the file-to-file data steps of one WriteFromFile went.
  struct CopyTally {
    std::uint64_t kernel_bytes = 0;
    std::uint64_t buffered_bytes = 0;
  };

  explicit WritePayload(std::span<const std::byte> data) : data_(data), size_(data.size()) {}
  // REQUIRES: `source` and `tally` outlive the payload and its sub-payloads.
  WritePayload(platform::File& source, std::uint64_t source_offset, std::uint64_t length,
               CopyTally& tally)
      : source_(&source), source_offset_(source_offset), size_(length), tally_(&tally) {}

  std::uint64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The `n` bytes from `from`. REQUIRES: from + n <= size().
  WritePayload Sub(std::uint64_t from, std::uint64_t n) const;
  // Writes the payload at `offset` of `file` (WriteAt, or CopyFrom for a file's bytes).
  Status WriteTo(platform::File& file, std::uint64_t offset) const;

 private:
  std::span<const std::byte> data_;
  platform::File* source_ = nullptr;  // set: the payload is source_'s bytes
  std::uint64_t source_offset_ = 0;
  std::uint64_t size_ = 0;
  CopyTally* tally_ = nullptr;
};

// Progress and cancellation of a long operation on an image (resize, compaction, merge; the
// core's OperationContext is one). Lives for one call.
class OperationControl {
 public:
  virtual ~OperationControl() = default;
  // Polled between steps: when true, the operation stops at the next point where its files are
  // consistent and returns kOperationAborted.
  virtual bool cancelled() const = 0;
  // GetVirtualDiskOperationProgress's CurrentValue and CompletionValue.
  virtual void SetProgress(std::uint64_t current, std::uint64_t completion) = 0;
};

// An OperationControl made of two functions, either of which may be empty (never cancelled, no
// progress): for tests and tools that watch or stop an operation at chosen points.
class CallbackControl final : public OperationControl {
 public:
  std::function<bool()> stop_when;
  std::function<void(std::uint64_t, std::uint64_t)> on_progress;

  bool cancelled() const override { return stop_when && stop_when(); }
  void SetProgress(std::uint64_t current, std::uint64_t completion) override {
    if (on_progress) on_progress(current, completion);
  }
};

// --- Compaction (CompactVirtualDisk; core/compact.h runs it over a chain).

struct CompactOptions {
  bool zero_scan = true;    // give back blocks whose data is all zeros (!NO_ZERO_SCAN)
  bool block_moves = true;  // move blocks into holes and shorten the file (!NO_BLOCK_MOVES)
};

// What a compaction did, for progress reports, tests and the bench.
struct CompactReport {
  std::uint64_t blocks_scanned = 0;   // allocated blocks read by the zero scan
  std::uint64_t blocks_released = 0;  // given back: unallocated / NOT_PRESENT
  std::uint64_t blocks_zeroed = 0;    // VHDX differencing: kept as PAYLOAD_BLOCK_ZERO
  std::uint64_t blocks_moved = 0;
  std::uint64_t file_size_before = 0;
  std::uint64_t file_size_after = 0;
};

// What the caller of Image::Compact provides: progress and cancellation (the compaction stops
// between steps, each of which leaves the image consistent), the disk's I/O path and the layers
// below.
class CompactEnvironment : public OperationControl {
 public:
  // Runs `step` while no read or write of the disk is in flight or starting, so that no request
  // holds a mapping that the step changes.
  virtual Status Exclusive(const std::function<Status()>& step) = 0;
  // Differencing images: whether the layers below this one read zeros over
  // [offset, offset + length) of the virtual disk (so that a zero block may fall through).
  virtual Result<bool> BelowReadsZero(std::uint64_t offset, std::uint64_t length) = 0;
};

class Image {
 public:
  virtual ~Image() = default;

  virtual DiskFormat format() const = 0;
  virtual DiskSubtype subtype() const = 0;
  virtual std::uint64_t virtual_size() const = 0;
  virtual std::uint32_t logical_sector_size() const = 0;
  virtual std::uint32_t physical_sector_size() const = 0;
  // Allocation unit of a dynamic or differencing image; 0 for fixed images.
  virtual std::uint32_t block_size() const = 0;
  // GET_VIRTUAL_DISK_INFO_IDENTIFIER: the image's unique id (what a child records as parent id).
  virtual Guid unique_id() const = 0;
  // GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID: identity of the disk as a guest sees it.
  virtual Guid virtual_disk_id() const { return unique_id(); }
  // Timestamp a child records for this image (VHD: footer time stamp).
  virtual std::uint32_t timestamp() const { return 0; }
  virtual bool read_only() const = 0;
  // GET_VIRTUAL_DISK_INFO_IS_4K_ALIGNED: every payload block starts on a 4 KiB boundary.
  virtual bool is_4k_aligned() const { return true; }
  virtual std::optional<ParentReference> parent() const { return std::nullopt; }
  // Checks that `parent` is the image this one was created against. Default: ids match.
  virtual Status CheckParent(const Image& parent) const;

  // Maps [offset, offset+length) from its start. REQUIRES: offset < virtual_size(), length > 0.
  // The returned extent covers at least one logical sector and at most `length` bytes.
  virtual Result<Extent> Map(std::uint64_t offset, std::uint64_t length) = 0;
  // Reads payload bytes of a kData extent.
  virtual Status ReadData(std::uint64_t file_offset, std::span<std::byte> out) {
    return file().ReadAt(file_offset, out);
  }
  // Stores `data` at virtual `offset`, allocating as needed; the rest of a newly allocated block
  // reads as before (zeros, or the parent's data in a differencing image).
  // REQUIRES: offset and size are multiples of logical_sector_size(), range within the disk.
  virtual Status Write(std::uint64_t offset, std::span<const std::byte> data) = 0;
  // Stores at virtual [offset, offset+length) the `length` bytes of `source` from
  // `source_offset`, as Write would store them after a read: the same allocation in the same
  // crash-safe order, with the data step done by platform::File::CopyFrom, in the kernel where
  // source and image file allow it (copy_file_range; a reflink on CoW filesystems). Returns
  // kKernel if every byte went through the kernel. The default reads and calls Write.
  // REQUIRES: as Write; `source` is not this image's file.
  virtual Result<platform::CopyMethod> WriteFromFile(std::uint64_t offset, std::uint64_t length,
                                                     platform::File& source,
                                                     std::uint64_t source_offset);
  // Whether ReadData(file_offset, ...) reads file() at file_offset, so that a kData extent's
  // bytes can be copied from the file directly. False while a read-only VHDX keeps a replayed
  // log in memory.
  virtual bool data_in_file() const { return true; }
  // Makes every completed write durable.
  virtual Status Flush() = 0;
  // Whether allocating writes and metadata updates flush between their steps, so that a crash
  // loses nothing acknowledged (OpenOptions::no_write_hardening turns it off: a mirror target
  // is flushed once, at the switch, and must harden from then on).
  virtual bool write_hardening() const { return true; }
  virtual void SetWriteHardening(bool /*on*/) {}

  // The file behind this image (the Image owns it).
  virtual platform::File& file() const = 0;

  // --- Metadata operations (SetVirtualDiskInformation, user metadata). A format that has no
  // such thing answers kNotSupported (the defaults). Each update is durable when it returns and
  // crash-consistent (VHDX: journalled through the log).

  // GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE.
  virtual Result<std::uint64_t> SmallestSafeVirtualSize() const {
    return Status(Code::kNotSupported, "smallest safe virtual size is not defined for this format");
  }
  // ResizeVirtualDisk / ExpandVirtualDisk: makes the virtual size `new_size`. Data below the
  // smaller of the two sizes is kept; space added reads as zeros, also where a shrink cut data
  // off before. Crash-consistent: a process killed at any point leaves the image at the old or
  // the new size, and calling Resize again with the same size completes it.
  // REQUIRES: nothing else uses the image during the call (the caller drains its I/O);
  // new_size > 0 and a multiple of logical_sector_size().
  virtual Status Resize(std::uint64_t /*new_size*/, OperationControl& /*progress*/) {
    return Unsupported("this format cannot change its size");
  }
  // SET_VIRTUAL_DISK_INFO_PARENT_PATH(_WITH_DEPTH) / PARENT_LOCATOR: re-points the locators.
  virtual Status SetParentLocation(const std::filesystem::path& /*parent_path*/,
                                   const Image& /*parent*/) {
    return Unsupported("this format cannot record a parent");
  }
  // SET_VIRTUAL_DISK_INFO_IDENTIFIER.
  virtual Status SetUniqueId(const Guid& /*id*/) {
    return Unsupported("this format cannot change its identifier");
  }
  // SET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID.
  virtual Status SetVirtualDiskId(const Guid& /*id*/) {
    return Unsupported("this format has no virtual disk id");
  }
  // SET_VIRTUAL_DISK_INFO_PHYSICAL_SECTOR_SIZE (512 or 4096).
  virtual Status SetPhysicalSectorSize(std::uint32_t /*bytes*/) {
    return Unsupported("this format cannot change its physical sector size");
  }
  // Compacts the file (CompactVirtualDisk): the zero scan gives back blocks that read as zeros
  // (a differencing image only where the layers below read zeros too, or as a zero state where
  // the format has one), block moves fill holes from the end of the file, which then shrinks.
  // Content is unchanged at every step, and every step is crash-safe: a block is copied and
  // flushed before the table points at it, and its old space is reused or cut off only after
  // the table change is durable. Fixed images: kVhdInvalidType. REQUIRES: writable image.
  virtual Result<CompactReport> Compact(const CompactOptions& /*options*/,
                                        CompactEnvironment& /*env*/) {
    return Status(Code::kNotSupported, file().path().string() + ": this format cannot compact");
  }

  // User metadata items (Enumerate/Get/Set/DeleteVirtualDiskMetadata). Get/Delete of an
  // unknown item: kNotFound.
  virtual Result<std::vector<Guid>> ListUserMetadata() const {
    return Unsupported("this format has no user metadata");
  }
  virtual Result<std::vector<std::byte>> GetUserMetadata(const Guid& /*item*/) const {
    return Unsupported("this format has no user metadata");
  }
  virtual Status SetUserMetadata(const Guid& /*item*/, std::span<const std::byte> /*data*/) {
    return Unsupported("this format has no user metadata");
  }
  virtual Status DeleteUserMetadata(const Guid& /*item*/) {
    return Unsupported("this format has no user metadata");
  }

 protected:
  // The answer of an operation a format does not have (the defaults above).
  static Status Unsupported(const char* what) { return Status(Code::kNotSupported, what); }
};

// The refusals every format's Image::Resize starts with: a read-only image (kWriteProtect), a
// differencing one (kVhdInvalidType), a size that is not a whole number of `sector_size`
// sectors from one sector to `max_size` (kInvalidParameter; `limit` names the limit), and a
// cancellation already asked for (kOperationAborted, as ResizeCancelled).
Status CheckResize(const Image& image, std::uint64_t new_size, std::uint32_t sector_size,
                   std::uint64_t max_size, std::string_view limit, const OperationControl& control);
// kOperationAborted: "<file>: resize cancelled; the disk keeps its old size".
Status ResizeCancelled(const platform::File& file);

// An image whose writes all take one path, given a WritePayload (VHD and VHDX): Write and
// WriteFromFile hand their bytes to WritePayloadAt.
class PayloadImage : public Image {
 public:
  Status Write(std::uint64_t offset, std::span<const std::byte> data) final;
  // The same steps as Write, with the payload data copied by File::CopyFrom.
  Result<platform::CopyMethod> WriteFromFile(std::uint64_t offset, std::uint64_t length,
                                             platform::File& source,
                                             std::uint64_t source_offset) final;

 protected:
  virtual Status WritePayloadAt(std::uint64_t offset, const WritePayload& data) = 0;
};

}  // namespace vdisk
