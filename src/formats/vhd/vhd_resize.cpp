// VhdImage::Resize: ResizeVirtualDisk and ExpandVirtualDisk for fixed and dynamic VHDs.
//
// The footer's Current Size (and its CHS geometry, spec appendix "CHS Calculation") is what says
// how large the disk is, so the switch from the old size to the new one is one 512-byte footer
// write. Everything a grow needs is prepared before it, in places the old footer does not
// describe, so that a process killed at any point leaves the old disk or the new one:
//  fixed grow:    (1) a copy of the OLD footer at the new end of data (the file grows; the disk
//                 is still the old one), (2) zeros over the old footer's place, now data of the
//                 new range, (3) the new footer over the copy of (1).
//  fixed shrink:  (1) the new footer in place (a fixed disk may be followed by unused bytes),
//                 (2) the new footer at the new end of data, (3) the file truncated after it.
//  dynamic grow:  (1) the tail of the last block past the old size zeroed (a shrink leaves it),
//                 (2) BAT entries of the new blocks written as unallocated (in place when the
//                 table has room before the next structure; otherwise a new table at the end of
//                 the file, the old footer copied past it, then the dynamic header pointing at
//                 it: a table longer than the disk needs is valid), (3) the new footer at the
//                 end, then its copy at offset 0 (Open prefers the end footer).
//  dynamic shrink: the footers only; entries past the new end are left, and (2) of a later grow
//                 marks them unallocated before the size covers them again.
// Each step is flushed before the next unless write hardening is off. Resize again with the same
// size rewrites both footers and the data layout, which completes an interrupted run.
// Windows shrinks only VHDX files (docs/lifecycle.md); shrinking a VHD here is issue 16's ask.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "formats/partition_table.h"
#include "formats/vhd/vhd_image.h"

namespace vdisk::vhd {
namespace {

constexpr std::uint64_t kZeroPiece = std::uint64_t{1} << 20;

std::array<std::byte, kFooterSize> FooterWithSize(const std::array<std::byte, kFooterSize>& old,
                                                  std::uint64_t size) {
  Footer f;
  std::memcpy(&f, old.data(), kFooterSize);
  f.current_size.set(size);
  const Geometry g = ComputeGeometry(size);
  f.cylinders.set(g.cylinders);
  f.heads = g.heads;
  f.sectors_per_track = g.sectors_per_track;
  // Readers size a disk by its geometry unless they trust the creator (formats-and-peers.md);
  // when the geometry cannot say the new size exactly, the creator becomes one they trust, as
  // this implementation's own files have.
  const std::uint64_t chs =
      std::uint64_t{g.cylinders} * g.heads * g.sectors_per_track * kSectorSize;
  const std::string_view creator(f.creator_application.data(), 4);
  const bool trusted = creator == "win " || creator == "qem2" || creator == "d2v " ||
                       creator == "CTXS" || creator == std::string_view("tap\0", 4);
  if (!trusted && chs != size)
    std::memcpy(f.creator_application.data(), kCreatorApplication.data(), 4);
  f.checksum.set(0);
  std::array<std::byte, kFooterSize> out;
  std::memcpy(out.data(), &f, kFooterSize);
  f.checksum.set(ComputeChecksum(out, kFooterChecksumOffset));
  std::memcpy(out.data(), &f, kFooterSize);
  return out;
}

Status WriteZeros(platform::File& file, std::uint64_t from, std::uint64_t to) {
  std::vector<std::byte> zeros(static_cast<std::size_t>(std::min(kZeroPiece, to - from)));
  for (std::uint64_t at = from; at < to;) {
    const std::uint64_t n = std::min<std::uint64_t>(zeros.size(), to - at);
    VDISK_RETURN_IF_ERROR(file.WriteAt(at, std::span(zeros).first(static_cast<std::size_t>(n))));
    at += n;
  }
  return Status::Ok();
}

}  // namespace

Result<std::uint64_t> VhdImage::SmallestSafeVirtualSize() const {
  return SmallestSafeSizeOf(*this);
}

Status VhdImage::Resize(std::uint64_t new_size, OperationControl& progress) {
  const std::string path = file_->path().string();
  VDISK_RETURN_IF_ERROR(
      CheckResize(*this, new_size, kSectorSize, kMaxDiskSize, "2040 GiB, the VHD limit", progress));
  std::lock_guard lock(allocation_mutex_);
  const auto footer = FooterWithSize(footer_, new_size);
  const Status status = subtype_ == DiskSubtype::kFixed ? ResizeFixed(new_size, footer, progress)
                                                        : ResizeDynamic(new_size, footer, progress);
  if (!status.ok())
    return status.code() == Code::kOperationAborted ? status
                                                    : status.WithContext(path + ": resize");
  size_ = new_size;
  footer_ = footer;
  return Status::Ok();
}

Status VhdImage::ResizeFixed(std::uint64_t new_size,
                             const std::array<std::byte, kFooterSize>& footer,
                             OperationControl& progress) {
  const std::uint64_t old_size = size_;
  progress.SetProgress(0, 1);
  if (progress.cancelled()) return ResizeCancelled(*file_);
  if (new_size > old_size) {
    const std::uint64_t file_end = footer_offset_ + kFooterSize;
    if (footer_offset_ < new_size) {
      VDISK_RETURN_IF_ERROR(file_->WriteAt(new_size, footer_));  // (1)
      VDISK_RETURN_IF_ERROR(FlushIfHardening());
      footer_offset_ = new_size;
    }
    VDISK_RETURN_IF_ERROR(WriteZeros(*file_, old_size, std::min(new_size, file_end)));  // (2)
    VDISK_RETURN_IF_ERROR(FlushIfHardening());
  }
  VDISK_RETURN_IF_ERROR(file_->WriteAt(footer_offset_, footer));  // the switch
  VDISK_RETURN_IF_ERROR(FlushIfHardening());
  progress.SetProgress(1, 1);
  if (footer_offset_ != new_size) {
    VDISK_RETURN_IF_ERROR(file_->WriteAt(new_size, footer));
    VDISK_RETURN_IF_ERROR(FlushIfHardening());
    VDISK_RETURN_IF_ERROR(file_->Resize(new_size + kFooterSize));
    VDISK_RETURN_IF_ERROR(FlushIfHardening());
    footer_offset_ = new_size;
  }
  return Status::Ok();
}

Status VhdImage::WriteFooters(const std::array<std::byte, kFooterSize>& footer) {
  VDISK_RETURN_IF_ERROR(file_->WriteAt(footer_offset_, footer));
  VDISK_RETURN_IF_ERROR(FlushIfHardening());
  VDISK_RETURN_IF_ERROR(file_->WriteAt(0, footer));
  VDISK_RETURN_IF_ERROR(FlushIfHardening());
  return Status::Ok();
}

Status VhdImage::ResizeDynamic(std::uint64_t new_size,
                               const std::array<std::byte, kFooterSize>& footer,
                               OperationControl& progress) {
  const std::uint64_t old_size = size_;
  const std::uint64_t bs = block_size_;
  const std::uint64_t old_blocks = bat_.size();
  const std::uint64_t new_blocks = (new_size + bs - 1) / bs;
  if (new_blocks >= kUnallocated / kSectorSize) {
    return Status(Code::kInvalidParameter, "a disk of " + std::to_string(new_size) +
                                               " bytes has too many blocks of " +
                                               std::to_string(bs) + " bytes");
  }
  const std::uint64_t steps = 3;
  progress.SetProgress(0, steps);

  if (new_size > old_size) {
    // (1) The last block's bytes past the old size, where a shrink may have left data.
    const std::uint64_t tail = old_size % bs;
    const std::uint32_t last = bat_[old_blocks - 1].load(std::memory_order_relaxed);
    if (tail != 0 && last != kUnallocated) {
      const std::uint64_t data = BlockFileOffset(last) + bitmap_bytes_;
      const std::uint64_t end = std::min(bs, new_size - (old_blocks - 1) * bs);
      if (data + end > footer_offset_) {
        return Status(Code::kVirtualDiskLimitation,
                      "the last block ends before the block size (a short block another "
                      "program wrote); it cannot grow in place");
      }
      VDISK_RETURN_IF_ERROR(WriteZeros(*file_, data + tail, data + end));
      VDISK_RETURN_IF_ERROR(FlushIfHardening());
    }
    progress.SetProgress(1, steps);
    if (progress.cancelled()) return ResizeCancelled(*file_);

    // (2) The new blocks' entries, unallocated.
    if (new_blocks > old_blocks) {
      Footer current;
      std::memcpy(&current, footer_.data(), kFooterSize);
      const std::uint64_t dh_offset = current.data_offset.get();
      std::array<std::byte, kDynamicHeaderSize> header_bytes;
      VDISK_RETURN_IF_ERROR(file_->ReadAt(dh_offset, header_bytes));
      DynamicHeader header;
      std::memcpy(&header, header_bytes.data(), kDynamicHeaderSize);
      // The table may grow into the space up to the next structure.
      std::uint64_t room = footer_offset_;
      if (dh_offset > table_offset_) room = std::min(room, dh_offset);
      for (const auto& slot : bat_) {
        const std::uint32_t e = slot.load(std::memory_order_relaxed);
        if (e != kUnallocated && BlockFileOffset(e) > table_offset_)
          room = std::min(room, BlockFileOffset(e));
      }
      auto write_header = [&](std::uint64_t table_offset, std::uint64_t entries) -> Status {
        header.table_offset.set(table_offset);
        header.max_table_entries.set(static_cast<std::uint32_t>(entries));
        header.checksum.set(0);
        std::memcpy(header_bytes.data(), &header, kDynamicHeaderSize);
        header.checksum.set(ComputeChecksum(header_bytes, kDynamicHeaderChecksumOffset));
        std::memcpy(header_bytes.data(), &header, kDynamicHeaderSize);
        return file_->WriteAt(dh_offset, header_bytes);
      };
      if (table_offset_ + new_blocks * 4 <= room) {
        const std::vector<std::byte> unallocated((new_blocks - old_blocks) * 4, std::byte{0xFF});
        VDISK_RETURN_IF_ERROR(file_->WriteAt(table_offset_ + old_blocks * 4, unallocated));
        VDISK_RETURN_IF_ERROR(FlushIfHardening());
        if (new_blocks > header.max_table_entries.get()) {
          VDISK_RETURN_IF_ERROR(write_header(table_offset_, new_blocks));
          VDISK_RETURN_IF_ERROR(FlushIfHardening());
        }
      } else {
        // A new table at the end of the file, the old footer copied past it.
        const std::uint64_t table = RoundUp(footer_offset_, kSectorSize);
        const std::uint64_t table_bytes = RoundUp(new_blocks * 4, kSectorSize);
        const std::uint64_t new_footer_offset = table + table_bytes;
        VDISK_RETURN_IF_ERROR(file_->WriteAt(new_footer_offset, footer_));
        std::vector<Be32> entries(table_bytes / 4);
        for (std::uint64_t i = 0; i < entries.size(); ++i) {
          entries[i].set(i < old_blocks ? bat_[i].load(std::memory_order_relaxed) : kUnallocated);
        }
        VDISK_RETURN_IF_ERROR(file_->WriteAt(table, std::as_bytes(std::span(entries))));
        VDISK_RETURN_IF_ERROR(FlushIfHardening());
        footer_offset_ = new_footer_offset;  // blocks now go after the new table
        VDISK_RETURN_IF_ERROR(write_header(table, table_bytes / 4));
        VDISK_RETURN_IF_ERROR(FlushIfHardening());
        table_offset_ = table;
      }
    }
  }
  progress.SetProgress(2, steps);
  if (progress.cancelled()) return ResizeCancelled(*file_);

  // (3) The switch.
  VDISK_RETURN_IF_ERROR(WriteFooters(footer));
  std::vector<std::atomic<std::uint32_t>> bat(new_blocks);
  for (std::uint64_t i = 0; i < new_blocks; ++i) {
    bat[i].store(i < old_blocks ? bat_[i].load(std::memory_order_relaxed) : kUnallocated,
                 std::memory_order_relaxed);
  }
  bat_.swap(bat);
  progress.SetProgress(steps, steps);
  return Status::Ok();
}

}  // namespace vdisk::vhd
