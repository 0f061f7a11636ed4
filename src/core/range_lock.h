// StripedRangeLock: makes a disk's reads and writes atomic per sector with respect to each other.
//
// A disk returns each sector of a read wholly as it was before an overlapping write or wholly as
// that write left it, and applies overlapping writes one after the other. The image files do not
// give that on their own: a buffered pread that overlaps a pwrite of the same bytes can return
// part of a sector old and part new (Linux copies page-cache data without a lock readers take;
// Wine's ReadFile/WriteFile are that pread/pwrite). Windows' I/O manager serialises it for a
// real disk; VirtualDisk::Read and Write take this lock so that the library does it everywhere.
//
// Why stripes, not an interval list: the disk is cut into kRegionBytes regions, region r guarded
// by stripe r % kStripes, each a reader/writer lock. A read takes the stripes of the regions it
// touches shared, a write exclusive; overlapping requests share a region and so a stripe and
// exclude each other, while requests in different regions mostly take different stripes and run
// in parallel. A 4 KiB request takes one stripe: one uncontended atomic operation on a cache
// line of its own, no allocation, no lock every request passes through. An interval list (held
// ranges under one mutex, waiters on a condition variable) is exact, but every request would
// take that one mutex twice and insert into and erase from the list, and the mutex's cache line
// would move between all cores doing I/O. What stripes cost instead: requests in the same
// region, or in regions kStripes apart, wait for each other although they do not overlap (rare
// for random I/O: 1 in kStripes for unrelated regions), and a request of kStripes regions or
// more (16 MiB) takes every stripe, so it waits for all requests in flight and they for it.
//
// No deadlock: every request takes its stripes in ascending stripe order and releases them
// before it returns, and none is taken twice by one request (so the writer-first stripes, which
// are not recursive, are safe). A caller must not hold a guard while it takes another guard of
// the same lock.
//
// Thread safety: Shared and Exclusive may be called from any thread; a guard is released by the
// thread that took it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "platform/shared_mutex.h"

namespace vdisk {

class StripedRangeLock {
 public:
  static constexpr unsigned kRegionShift = 16;  // 64 KiB: a multiple of every sector size
  static constexpr std::uint64_t kRegionBytes = std::uint64_t{1} << kRegionShift;
  static constexpr std::size_t kStripes = 256;

  // Holds the stripes of one range until it goes out of scope.
  class [[nodiscard]] Guard {
   public:
    ~Guard() {
      if (lock_ == nullptr) return;
      lock_->ForEach(first_, count_, [this](std::size_t s) {
        if (shared_) {
          lock_->stripes_[s].mutex.unlock_shared();
        } else {
          lock_->stripes_[s].mutex.unlock();
        }
      });
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    friend class StripedRangeLock;
    Guard(StripedRangeLock* lock, std::size_t first, std::size_t count, bool shared)
        : lock_(lock), first_(first), count_(count), shared_(shared) {}

    StripedRangeLock* lock_;  // nullptr: holds nothing (an empty range)
    std::size_t first_;
    std::size_t count_;
    bool shared_;
  };

  StripedRangeLock() = default;
  StripedRangeLock(const StripedRangeLock&) = delete;
  StripedRangeLock& operator=(const StripedRangeLock&) = delete;

  // For a read of [offset, offset + length): waits for the writes that overlap it.
  Guard Shared(std::uint64_t offset, std::uint64_t length) { return Take(offset, length, true); }
  // For a write: waits for the reads and writes that overlap it.
  Guard Exclusive(std::uint64_t offset, std::uint64_t length) {
    return Take(offset, length, false);
  }

 private:
  // Own cache line each, so that requests in different regions do not share one.
  struct alignas(64) Stripe {
    platform::WriterFirstSharedMutex mutex;
  };

  Guard Take(std::uint64_t offset, std::uint64_t length, bool shared) {
    if (length == 0) return Guard(nullptr, 0, 0, shared);
    const std::uint64_t first_region = offset >> kRegionShift;
    const std::uint64_t regions = ((offset + length - 1) >> kRegionShift) - first_region + 1;
    const std::size_t first = regions >= kStripes ? 0 : first_region % kStripes;
    const std::size_t count = regions >= kStripes ? kStripes : static_cast<std::size_t>(regions);
    ForEach(first, count, [this, shared](std::size_t s) {
      if (shared) {
        stripes_[s].mutex.lock_shared();
      } else {
        stripes_[s].mutex.lock();
      }
    });
    return Guard(this, first, count, shared);
  }

  // Calls fn for the `count` stripes from `first` (wrapping past the last), in ascending order.
  template <typename Fn>
  static void ForEach(std::size_t first, std::size_t count, Fn fn) {
    const std::size_t wrapped = first + count > kStripes ? first + count - kStripes : 0;
    for (std::size_t s = 0; s < wrapped; ++s) fn(s);
    for (std::size_t s = first; s < first + count - wrapped; ++s) fn(s);
  }

  std::array<Stripe, kStripes> stripes_;
};

}  // namespace vdisk
