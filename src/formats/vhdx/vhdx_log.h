// The VHDX log (MS-VHDX §2.3): a ring buffer of entries, each a set of 4 KiB sector updates to
// the file's metadata (BAT, sector bitmaps, metadata region, region tables). Updates are written
// to the log, flushed, then applied in place; after a crash the newest complete sequence of
// entries (the "active sequence", §2.3.3) is replayed.
//
// This file knows the log's bytes only: finding and decoding the active sequence of a log read
// into memory, building entries, and an in-memory overlay for replay without writing. The image
// (vhdx_image.cpp) decides where the log lives and when to write, flush and apply.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/guid.h"
#include "base/status.h"
#include "formats/vhdx/vhdx_format.h"
#include "platform/file.h"

namespace vdisk::vhdx {

// One update through the log: 4 KiB of data at file_offset (a data descriptor, §2.3.1.3), or
// zero_length zeros at file_offset (a zero descriptor, §2.3.1.2). Offsets and lengths are
// multiples of 4 KiB.
struct LogUpdate {
  std::uint64_t file_offset = 0;
  std::uint64_t zero_length = 0;  // > 0: a zero descriptor; data is empty
  std::vector<std::byte> data;    // kLogSectorSize bytes for a data descriptor

  static LogUpdate Data(std::uint64_t file_offset, std::span<const std::byte> sector);
  static LogUpdate Zero(std::uint64_t file_offset, std::uint64_t length);
};

// The active sequence of a log, decoded (§2.3.3): what replay must do, in order.
struct LogSequence {
  std::vector<LogUpdate> updates;          // every descriptor of every entry, tail entry first
  std::uint64_t flushed_file_offset = 0;   // of the head entry: the file is at least this long
  std::uint64_t last_file_offset = 0;      // of the head entry: extend the file to this
  std::uint64_t head_sequence_number = 0;  // of the head (newest) entry
  std::uint32_t entry_count = 0;
  std::uint32_t tail_position = 0;  // log offset of the tail (oldest) entry
  std::uint32_t end_position = 0;   // log offset just past the head entry (mod log size)
};

struct LogScan {
  std::optional<LogSequence> active;  // none: no valid and complete sequence exists
  // Why the most promising entry that was rejected was rejected ("log entry at log offset
  // 8 KiB: CRC-32C mismatch"), for the error when there is no active sequence.
  std::string first_problem;
};

// Finds the active sequence of `log` (the whole log region, a multiple of 4 KiB) among entries
// carrying `log_guid`, with the scan of §2.3.3. Entries that wrap around the end of the ring are
// read across it.
LogScan FindActiveSequence(std::span<const std::byte> log, const Guid& log_guid);

// The bytes of one log entry (§2.3.1): descriptor sectors (the header, then the descriptors),
// then one data sector per data descriptor, with the CRC-32C filled in. `tail` is the log offset
// of the first entry of the sequence this entry ends.
std::vector<std::byte> BuildLogEntry(const Guid& log_guid, std::uint64_t sequence_number,
                                     std::uint32_t tail, std::span<const LogUpdate> updates,
                                     std::uint64_t flushed_file_offset,
                                     std::uint64_t last_file_offset);
// The length BuildLogEntry gives an entry with these descriptors.
std::uint64_t LogEntryLength(std::size_t data_descriptors, std::size_t zero_descriptors);

// A replayed log kept in memory, for read-only opens (MS-VHDX §5 note <5>: a read-only open
// must replay in memory). Later updates win over earlier ones.
class LogOverlay {
 public:
  void Apply(const LogUpdate& update);
  bool empty() const { return sectors_.empty() && zeros_.empty(); }
  // Rewrites the bytes of out, which were read at `offset`, that the log changed.
  void Patch(std::uint64_t offset, std::span<std::byte> out) const;
  // True if [offset, offset+length) intersects anything the log changed.
  bool Touches(std::uint64_t offset, std::uint64_t length) const;

 private:
  std::map<std::uint64_t, std::vector<std::byte>> sectors_;  // 4 KiB aligned offset -> data
  std::map<std::uint64_t, std::uint64_t> zeros_;             // disjoint [start, end) ranges
};

// Reads image structures as the log leaves them: the file, zeros between its physical end and the
// end that replay establishes (the head entry's LastFileOffset), and the overlay of a read-only
// replay on top. Without an overlay it reads the file as is. Thread-safe once set up.
class StructureReader {
 public:
  explicit StructureReader(platform::File& file) : file_(&file) {}
  // Makes reads see `overlay`; the file is `physical_size` bytes and reads as `logical_size`.
  void SetOverlay(LogOverlay overlay, std::uint64_t physical_size, std::uint64_t logical_size);
  bool has_overlay() const { return has_overlay_; }
  const LogOverlay& overlay() const { return overlay_; }
  Status Read(std::uint64_t offset, std::span<std::byte> out) const;

 private:
  platform::File* file_;
  bool has_overlay_ = false;
  LogOverlay overlay_;
  std::uint64_t physical_size_ = 0;
  std::uint64_t logical_size_ = 0;
};

}  // namespace vdisk::vhdx
