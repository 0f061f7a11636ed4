#include "formats/compaction.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/bytes.h"

namespace vdisk::compaction {
namespace {

Status Cancelled(const platform::File& file) {
  return Status(Code::kOperationAborted, file.path().string() + ": compaction cancelled");
}

}  // namespace

Result<CompactReport> Run(const CompactOptions& options, CompactEnvironment& env,
                          platform::File& file, const Steps& steps) {
  const std::string path = file.path().string();
  if (steps.subtype == DiskSubtype::kFixed) {
    return Status(Code::kVhdInvalidType,
                  path + ": a fixed disk cannot be compacted (only dynamic and differencing)");
  }
  if (steps.read_only) return Status(Code::kWriteProtect, path + ": opened read-only");
  CompactReport report;
  VDISK_ASSIGN_OR_RETURN(report.file_size_before, file.Size());
  std::uint64_t total = (options.zero_scan ? steps.allocated : 0) +
                        (options.block_moves ? steps.allocated : 0);
  std::uint64_t done = 0;
  env.SetProgress(done, total);

  if (options.zero_scan && steps.allocated > 0) {
    if (steps.begin_changes) VDISK_RETURN_IF_ERROR(steps.begin_changes());
    for (std::uint64_t block = 0; block < steps.blocks;) {
      if (env.cancelled()) return Cancelled(file);
      std::uint64_t next = block;
      const std::uint64_t scanned_before = report.blocks_scanned;
      VDISK_RETURN_IF_ERROR(
          env.Exclusive([&] { return steps.release_zero_blocks(block, report, next); }));
      done += report.blocks_scanned - scanned_before;
      env.SetProgress(done, total);
      block = next;
    }
  }

  if (options.block_moves) {
    if (env.cancelled()) return Cancelled(file);
    VDISK_ASSIGN_OR_RETURN(std::vector<LayoutItem> items, steps.layout());
    const auto moves = PlanBlockMoves(std::move(items), steps.floor, steps.place);
    total = done + moves.size();
    env.SetProgress(done, total);
    if (!moves.empty() && steps.begin_changes) VDISK_RETURN_IF_ERROR(steps.begin_changes());
    for (const PlannedMove& move : moves) {
      if (env.cancelled()) return Cancelled(file);
      VDISK_RETURN_IF_ERROR(env.Exclusive([&] { return steps.move(move); }));
      ++report.blocks_moved;
      env.SetProgress(++done, total);
    }
  }

  // Space after the last block in use goes, with or without moves.
  if (env.cancelled()) return Cancelled(file);
  VDISK_RETURN_IF_ERROR(env.Exclusive([&] { return steps.truncate(); }));
  VDISK_ASSIGN_OR_RETURN(report.file_size_after, file.Size());
  env.SetProgress(total, total);
  return report;
}

std::vector<PlannedMove> PlanBlockMoves(
    std::vector<LayoutItem> items, std::uint64_t floor,
    const std::function<std::uint64_t(std::uint64_t, std::uint64_t)>& place) {
  std::sort(items.begin(), items.end(),
            [](const LayoutItem& a, const LayoutItem& b) { return a.start < b.start; });
  std::vector<PlannedMove> moves;
  if (items.empty()) return moves;
  // Two ends: `low` is the item whose start bounds the hole being filled, `cursor` the first
  // free byte of that hole; `high` is the highest item not yet considered. Holes fill from the
  // start, items leave from the end, and the two meet once nothing fits further down.
  std::size_t low = 0;
  std::size_t high = items.size() - 1;
  std::uint64_t cursor = floor;
  while (low <= high) {
    const LayoutItem& top = items[high];
    if (!top.movable) {
      if (high == 0) break;
      --high;
      continue;
    }
    const std::uint64_t hole_end = items[low].start;
    const std::uint64_t at = place(cursor, top.length);
    if (at >= cursor && at + top.length <= hole_end && at + top.length <= top.start) {
      moves.push_back({top.id, top.start, at, top.length});
      cursor = at + top.length;
      if (high == 0) break;
      --high;
      continue;
    }
    cursor = std::max(cursor, items[low].start + items[low].length);
    ++low;
  }
  return moves;
}

Result<bool> RangeIsZero(platform::File& file, std::uint64_t offset, std::uint64_t length,
                         std::vector<std::byte>& buffer) {
  constexpr std::uint64_t kChunk = std::uint64_t{1} << 20;
  const std::uint64_t end = offset + length;
  std::uint64_t at = offset;
  while (at < end) {
    VDISK_ASSIGN_OR_RETURN(const platform::FileRange data, file.FindData(at, end));
    if (data.empty()) return true;
    at = std::max(at, data.begin);
    const std::uint64_t data_end = std::min(end, data.end);
    while (at < data_end) {
      const std::uint64_t n = std::min(kChunk, data_end - at);
      buffer.resize(static_cast<std::size_t>(n));
      VDISK_RETURN_IF_ERROR(file.ReadAt(at, buffer));
      if (!AllZero(buffer)) return false;
      at += n;
    }
  }
  return true;
}

std::uint64_t EndOfRanges(std::span<const std::pair<std::uint64_t, std::uint64_t>> ranges) {
  std::uint64_t end = 0;
  for (const auto& range : ranges) end = std::max(end, range.second);
  return end;
}

}  // namespace vdisk::compaction
