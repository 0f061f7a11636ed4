// The VHDX block allocation table (MS-VHDX §2.5): validation at open, and an in-memory view that
// loads the table in 1 MiB pages on demand so that a 64 TiB disk with 1 MiB blocks (a 512 MiB
// table) costs a bounded amount of memory.
//
// Thread safety of VhdxBlockAllocationTable:
//  - Get is lock-free when the entry's page is resident: one acquire load of the page pointer
//    and one of the entry. A missing page is read under a mutex.
//  - When the table has more pages than may stay resident, pages are evicted (oldest loaded
//    first). Readers then announce themselves in a counter around the two loads, and an evicted
//    page is freed only once the counter has been seen at zero after it was unpublished, so a
//    reader never touches freed memory.
//  - Set is called by the single writer (the image's update mutex) after the new value has been
//    applied to the file; it updates a resident page, and a page loaded later reads the file.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "formats/vhdx/vhdx_format.h"
#include "formats/vhdx/vhdx_log.h"

namespace vdisk::vhdx {

// A file range that blocks must not overlap, named for messages ("the log").
struct ReservedRange {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::string what;
};

struct BatValidation {
  std::uint64_t used_end = 0;  // the end of the furthest present block in the file
};

// Checks every BAT entry (streaming the table in 1 MiB pieces): states valid for the disk type,
// reserved bits clear, and every present payload and sector bitmap block 1 MiB aligned, after
// the header section, inside the file (`file_size`), clear of the `reserved` ranges and of each
// other. Fails with kFileCorrupt, naming the entry ("BAT entry N (payload block B) ...").
Result<BatValidation> ValidateBat(const StructureReader& reader, std::uint64_t table_offset,
                                  const BatGeometry& geometry, std::uint64_t file_size,
                                  std::span<const ReservedRange> reserved);

class VhdxBlockAllocationTable {
 public:
  static constexpr std::size_t kEntriesPerPage = kMiB / 8;

  // REQUIRES: `reader` outlives this object.
  VhdxBlockAllocationTable(const StructureReader& reader, std::uint64_t table_offset,
                           std::uint64_t entry_count, std::size_t max_resident_pages);
  VhdxBlockAllocationTable(const VhdxBlockAllocationTable&) = delete;
  VhdxBlockAllocationTable& operator=(const VhdxBlockAllocationTable&) = delete;

  // The entry at `index`. REQUIRES: index < entry_count().
  Result<std::uint64_t> Get(std::uint64_t index);
  // Records a new value. REQUIRES: the value is already in the file (so that a page loaded
  // from now on sees it); one writer at a time.
  void Set(std::uint64_t index, std::uint64_t value);

  std::uint64_t entry_count() const { return entry_count_; }
  std::size_t resident_pages() const;

 private:
  struct Page {
    std::unique_ptr<std::atomic<std::uint64_t>[]> entries;
  };

  // REQUIRES: mutex_ held. Loads page `p` and publishes it, evicting another if needed.
  Result<Page*> LoadLocked(std::size_t p);
  // REQUIRES: mutex_ held. Frees retired pages that no reader can still see.
  void ReclaimLocked(bool wait);

  const StructureReader& reader_;
  const std::uint64_t table_offset_;
  const std::uint64_t entry_count_;
  const std::size_t page_count_;
  const std::size_t max_resident_pages_;
  const bool evictable_;

  std::unique_ptr<std::atomic<Page*>[]> directory_;  // published pages, by page number
  std::atomic<std::uint32_t> readers_{0};            // readers between their two loads

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Page>> pages_;    // GUARDED_BY(mutex_): owner of resident pages
  std::deque<std::size_t> resident_;            // GUARDED_BY(mutex_): load order
  std::vector<std::unique_ptr<Page>> retired_;  // GUARDED_BY(mutex_): unpublished, not yet freed
};

}  // namespace vdisk::vhdx
