// What the VHD and VHDX compactions (vhd_compact.cpp, vhdx_compact.cpp) share: the order of the
// steps and their progress and cancellation (Run), the zero test of a block's bytes and the plan
// of block moves that lets the file shrink.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "base/status.h"
#include "formats/image.h"
#include "platform/file.h"

namespace vdisk::compaction {

// Something that occupies a range of the image file: a block the compaction may move, or
// metadata it must leave where it is.
struct LayoutItem {
  std::uint64_t start = 0;
  std::uint64_t length = 0;
  std::uint64_t id = 0;  // the format's name for it (a BAT index)
  bool movable = false;
};

struct PlannedMove {
  std::uint64_t id = 0;
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  std::uint64_t length = 0;
};

// Plans moves of the movable items from the end of the file into the holes nearest its start,
// so that everything ends as early as possible. The highest item goes first into the lowest
// hole that holds it, and only if that is below where it is now. `items` must not overlap;
// nothing goes below `floor`; `place(cursor, length)` is the first position at or after
// `cursor` where an item of `length` bytes may start (the format's alignment). The moves never
// overlap their own source, and no move's target is the source of an earlier one.
std::vector<PlannedMove> PlanBlockMoves(
    std::vector<LayoutItem> items, std::uint64_t floor,
    const std::function<std::uint64_t(std::uint64_t, std::uint64_t)>& place);

// One format's compaction steps, which Run calls in order. Each runs with the disk's I/O drained
// (CompactEnvironment::Exclusive) and leaves the image consistent.
struct Steps {
  DiskSubtype subtype = DiskSubtype::kDynamic;
  bool read_only = false;
  std::uint64_t blocks = 0;     // payload blocks of the disk
  std::uint64_t allocated = 0;  // of which have space in the file
  // Before the first change of the zero scan and of the moves, if set (VHDX: a new
  // FileWriteGuid, MS-VHDX §2.2.2).
  std::function<Status()> begin_changes;
  // One bounded step of the zero scan from block `first`: counts what it scans and gives back in
  // `report`, sets `next` to the block the next step starts at.
  std::function<Status(std::uint64_t first, CompactReport& report, std::uint64_t& next)>
      release_zero_blocks;
  // What occupies the file (blocks that may move, metadata that may not), nothing below `floor`,
  // and where an item may start (`place`, as PlanBlockMoves takes it).
  std::function<Result<std::vector<LayoutItem>>()> layout;
  std::uint64_t floor = 0;
  std::function<std::uint64_t(std::uint64_t, std::uint64_t)> place;
  std::function<Status(const PlannedMove&)> move;
  // Cuts the file after the last block in use.
  std::function<Status()> truncate;
};

// Compacts `file` with `steps`: the zero scan (options.zero_scan), the moves (block_moves), then
// the truncation, with progress (blocks scanned, then moved) and a cancellation check between
// steps (kOperationAborted, naming the file). Fixed images: kVhdInvalidType; read-only:
// kWriteProtect.
Result<CompactReport> Run(const CompactOptions& options, CompactEnvironment& env,
                          platform::File& file, const Steps& steps);

// Whether `length` bytes of `file` at `offset` all read as zero. Holes (File::FindData) are
// skipped unread; the rest is read through `buffer` (resized as needed).
Result<bool> RangeIsZero(platform::File& file, std::uint64_t offset, std::uint64_t length,
                         std::vector<std::byte>& buffer);

// Where the last of `ranges` ([begin, end) file ranges) ends; 0 for none.
std::uint64_t EndOfRanges(std::span<const std::pair<std::uint64_t, std::uint64_t>> ranges);

}  // namespace vdisk::compaction
