#include "formats/vhdx/vhdx_bat.h"

#include <algorithm>
#include <cstring>
#include <thread>

namespace vdisk::vhdx {
namespace {

constexpr std::size_t kScanBytes = kMiB;

std::uint64_t LoadEntry(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{std::to_integer<std::uint8_t>(p[i])} << (8 * i);
  return v;
}

// One bit per MiB of the file: which MiBs blocks already occupy.
class UsedSpace {
 public:
  explicit UsedSpace(std::uint64_t file_size) : bits_((file_size + kMiB - 1) / kMiB) {}
  // Marks [start, end); false if any of it was marked already.
  bool Claim(std::uint64_t start, std::uint64_t end) {
    for (std::uint64_t unit = start / kMiB; unit < (end + kMiB - 1) / kMiB; ++unit) {
      if (bits_[unit]) return false;
      bits_[unit] = true;
    }
    return true;
  }

 private:
  std::vector<bool> bits_;
};

}  // namespace

Result<BatValidation> ValidateBat(const StructureReader& reader, std::uint64_t table_offset,
                                  const BatGeometry& g, std::uint64_t file_size,
                                  std::span<const ReservedRange> reserved) {
  BatValidation result;
  UsedSpace used(file_size);
  std::vector<std::byte> piece;
  std::vector<bool> chunk_has_partial(g.bitmap_blocks, false);
  const std::uint64_t group = g.chunk_ratio + 1;

  // Checks one present block [offset, offset + length) of entry `index`.
  auto check_block = [&](std::uint64_t index, const std::string& what, std::uint64_t entry,
                         std::uint64_t length) -> Status {
    const std::uint64_t offset = BatFileOffset(entry);
    const std::string name = "BAT entry " + std::to_string(index) + " (" + what + ")";
    if ((entry & kBatReservedMask) != 0) {
      return Status(Code::kFileCorrupt, name +
                                            ": file offset is not 1 MiB aligned (reserved "
                                            "bits 3..19 are set)");
    }
    if (offset < kHeaderSectionSize) {
      return Status(Code::kFileCorrupt, name + ": file offset " + DescribeOffset(offset) +
                                            " lies in the header section");
    }
    if (offset + length > file_size || offset + length < offset) {
      return Status(Code::kFileCorrupt, name + ": block at " + DescribeOffset(offset) +
                                            " ends past the end of the file (" +
                                            std::to_string(file_size) + " bytes)");
    }
    for (const ReservedRange& r : reserved) {
      if (offset < r.end && r.start < offset + length) {
        return Status(Code::kFileCorrupt,
                      name + ": block at " + DescribeOffset(offset) + " overlaps " + r.what);
      }
    }
    if (!used.Claim(offset, offset + length)) {
      return Status(Code::kFileCorrupt, name + ": block at " + DescribeOffset(offset) +
                                            " overlaps another payload or sector bitmap block");
    }
    result.used_end = std::max(result.used_end, offset + length);
    return Status::Ok();
  };

  for (std::uint64_t first = 0; first < g.entry_count; first += kScanBytes / 8) {
    const std::uint64_t count = std::min<std::uint64_t>(kScanBytes / 8, g.entry_count - first);
    piece.resize(count * 8);
    VDISK_RETURN_IF_ERROR(reader.Read(table_offset + first * 8, piece));
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::uint64_t index = first + k;
      const std::uint64_t entry = LoadEntry(piece.data() + k * 8);
      const std::uint8_t state = BatState(entry);
      const std::uint64_t chunk = index / group;
      const bool bitmap_entry = (index + 1) % group == 0;
      // The common case of a sparse table, kept cheap: 64 TiB in 1 MiB blocks is 64 M entries.
      if (entry == 0 && !(bitmap_entry && g.has_parent && chunk_has_partial[chunk])) continue;
      if (bitmap_entry) {
        // A sector bitmap entry (§2.5.1.2): only differencing files have such blocks.
        if (!g.has_parent) continue;
        const std::string what = "sector bitmap block " + std::to_string(chunk);
        if (state == kBitmapPresent) {
          VDISK_RETURN_IF_ERROR(check_block(index, what, entry, kSectorBitmapBlockSize));
        } else if (state != kBitmapNotPresent) {
          return Status(Code::kFileCorrupt, "BAT entry " + std::to_string(index) + " (" + what +
                                                "): state " + std::to_string(state) +
                                                " is reserved");
        } else if (chunk_has_partial[chunk]) {
          return Status(Code::kFileCorrupt,
                        "BAT entry " + std::to_string(index) + " (" + what +
                            "): not present, but a payload block of its chunk is partially "
                            "present");
        }
        continue;
      }
      const std::uint64_t block = index - chunk;
      if (block >= g.payload_blocks) continue;  // padding of a differencing table's last chunk
      const std::string what = "payload block " + std::to_string(block);
      switch (state) {
        case kPayloadNotPresent:
        case kPayloadUndefined:
        case kPayloadZero:
        case kPayloadUnmapped:
          break;
        case kPayloadPartiallyPresent:
          if (!g.has_parent) {
            return Status(Code::kFileCorrupt, "BAT entry " + std::to_string(index) + " (" + what +
                                                  "): partially present in a file without parent");
          }
          chunk_has_partial[chunk] = true;
          [[fallthrough]];
        case kPayloadFullyPresent: {
          // The last block of a disk whose size is not a multiple of the block size need only
          // hold the disk's tail (rounded to the 1 MiB allocation unit).
          const std::uint64_t length = std::min<std::uint64_t>(
              g.block_size, RoundUp(g.virtual_size - block * g.block_size, kMiB));
          VDISK_RETURN_IF_ERROR(check_block(index, what, entry, length));
          break;
        }
        default:
          return Status(Code::kFileCorrupt, "BAT entry " + std::to_string(index) + " (" + what +
                                                "): state " + std::to_string(state) +
                                                " is reserved");
      }
    }
  }
  return result;
}

VhdxBlockAllocationTable::VhdxBlockAllocationTable(const StructureReader& reader,
                                                   std::uint64_t table_offset,
                                                   std::uint64_t entry_count,
                                                   std::size_t max_resident_pages)
    : reader_(reader),
      table_offset_(table_offset),
      entry_count_(entry_count),
      page_count_(static_cast<std::size_t>((entry_count + kEntriesPerPage - 1) / kEntriesPerPage)),
      max_resident_pages_(std::max<std::size_t>(max_resident_pages, 2)),
      evictable_(page_count_ > max_resident_pages_),
      directory_(std::make_unique<std::atomic<Page*>[]>(page_count_)),
      pages_(page_count_) {
  for (std::size_t i = 0; i < page_count_; ++i)
    directory_[i].store(nullptr, std::memory_order_relaxed);
}

Result<std::uint64_t> VhdxBlockAllocationTable::Get(std::uint64_t index) {
  const auto p = static_cast<std::size_t>(index / kEntriesPerPage);
  const auto i = static_cast<std::size_t>(index % kEntriesPerPage);
  if (!evictable_) {
    if (Page* page = directory_[p].load(std::memory_order_acquire))
      return page->entries[i].load(std::memory_order_acquire);
  } else {
    readers_.fetch_add(1, std::memory_order_seq_cst);
    Page* page = directory_[p].load(std::memory_order_seq_cst);
    const std::uint64_t value = page ? page->entries[i].load(std::memory_order_acquire) : 0;
    readers_.fetch_sub(1, std::memory_order_release);
    if (page) return value;
  }
  std::lock_guard lock(mutex_);
  Page* page = directory_[p].load(std::memory_order_relaxed);
  if (page == nullptr) {
    VDISK_ASSIGN_OR_RETURN(page, LoadLocked(p));
  }
  return page->entries[i].load(std::memory_order_acquire);
}

void VhdxBlockAllocationTable::Set(std::uint64_t index, std::uint64_t value) {
  std::lock_guard lock(mutex_);
  const auto p = static_cast<std::size_t>(index / kEntriesPerPage);
  if (Page* page = directory_[p].load(std::memory_order_relaxed))
    page->entries[index % kEntriesPerPage].store(value, std::memory_order_release);
}

std::size_t VhdxBlockAllocationTable::resident_pages() const {
  std::lock_guard lock(mutex_);
  return resident_.size();
}

Result<VhdxBlockAllocationTable::Page*> VhdxBlockAllocationTable::LoadLocked(std::size_t p) {
  const std::uint64_t first = std::uint64_t{p} * kEntriesPerPage;
  const auto count =
      static_cast<std::size_t>(std::min<std::uint64_t>(kEntriesPerPage, entry_count_ - first));
  std::vector<std::byte> bytes(count * 8);
  VDISK_RETURN_IF_ERROR(reader_.Read(table_offset_ + first * 8, bytes));
  auto page = std::make_unique<Page>();
  page->entries = std::make_unique<std::atomic<std::uint64_t>[]>(count);
  for (std::size_t i = 0; i < count; ++i)
    page->entries[i].store(LoadEntry(bytes.data() + i * 8), std::memory_order_relaxed);

  if (evictable_ && resident_.size() >= max_resident_pages_) {
    const std::size_t victim = resident_.front();
    resident_.pop_front();
    directory_[victim].store(nullptr, std::memory_order_seq_cst);
    retired_.push_back(std::move(pages_[victim]));
    ReclaimLocked(/*wait=*/retired_.size() > 4);
  }
  Page* raw = page.get();
  pages_[p] = std::move(page);
  resident_.push_back(p);
  directory_[p].store(raw, std::memory_order_seq_cst);
  return raw;
}

void VhdxBlockAllocationTable::ReclaimLocked(bool wait) {
  // A reader that incremented the counter before the page was unpublished may still hold it;
  // one that increments later sees the null pointer (both are sequentially consistent).
  while (readers_.load(std::memory_order_seq_cst) != 0) {
    if (!wait) return;
    std::this_thread::yield();
  }
  retired_.clear();
}

}  // namespace vdisk::vhdx
