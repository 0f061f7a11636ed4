// StripedRangeLock: overlapping requests exclude each other, reads share, other regions proceed.
#include "core/range_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace vdisk {
namespace {

using Lock = StripedRangeLock;
constexpr std::uint64_t kRegion = Lock::kRegionBytes;

// Readers and writers of random ranges over a space four times the stripes' reach, so that
// ranges alias, wrap past the last stripe and (the largest) take every stripe. Each region
// records who is inside it: a count of readers, or -1 for a writer. A writer that finds anyone
// in a region of its range, or a reader that finds a writer, was let in while an overlapping
// request was under way. Ends (without deadlock) and finds nobody.
TEST(StripedRangeLock, OverlappingRequestsNeverRunTogether) {
  constexpr std::uint64_t kRegions = 4 * Lock::kStripes;
  std::vector<std::atomic<int>> inside(kRegions);
  std::atomic<int> violations{0};
  Lock lock;
  const std::uint64_t lengths[] = {512, 4096, kRegion, kRegion + 512, 3 * kRegion,
                                   (Lock::kStripes - 1) * kRegion, Lock::kStripes * kRegion};
  auto worker = [&](unsigned seed, bool writer) {
    std::mt19937_64 rng(seed);
    for (int n = 0; n < 3000; ++n) {
      const std::uint64_t length = lengths[rng() % std::size(lengths)];
      const std::uint64_t offset = rng() % (kRegions * kRegion - length) / 512 * 512;
      const std::uint64_t first = offset / kRegion;
      const std::uint64_t last = (offset + length - 1) / kRegion;
      if (writer) {
        const auto guard = lock.Exclusive(offset, length);
        for (std::uint64_t r = first; r <= last; ++r) {
          int expected = 0;
          if (!inside[r].compare_exchange_strong(expected, -1)) ++violations;
        }
        for (std::uint64_t r = first; r <= last; ++r) {
          int expected = -1;
          inside[r].compare_exchange_strong(expected, 0);
        }
      } else {
        const auto guard = lock.Shared(offset, length);
        for (std::uint64_t r = first; r <= last; ++r) {
          if (inside[r].fetch_add(1) < 0) ++violations;
        }
        for (std::uint64_t r = first; r <= last; ++r) inside[r].fetch_sub(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 6; ++t) threads.emplace_back(worker, t + 1, t % 2 == 0);
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
}

// A bound on how long a request that must not wait may take; reaching it is the failure.
constexpr auto kMustNotWait = std::chrono::seconds(60);

TEST(StripedRangeLock, ReadsOfTheSameRangeShareIt) {
  Lock lock;
  const auto held = lock.Shared(4096, 8192);
  auto other = std::async(std::launch::async, [&] { (void)lock.Shared(0, 3 * 4096); });
  EXPECT_EQ(other.wait_for(kMustNotWait), std::future_status::ready)
      << "a read waited for an overlapping read";
}

TEST(StripedRangeLock, AWriteDoesNotWaitForRequestsInOtherRegions) {
  Lock lock;
  const auto read = lock.Shared(0, kRegion);
  const auto write = lock.Exclusive(2 * kRegion, 4096);
  auto other = std::async(std::launch::async, [&] { (void)lock.Exclusive(kRegion, kRegion); });
  EXPECT_EQ(other.wait_for(kMustNotWait), std::future_status::ready)
      << "a write waited for requests in the regions either side of it";
}

TEST(StripedRangeLock, AnEmptyRangeTakesNothing) {
  Lock lock;
  const auto write = lock.Exclusive(0, Lock::kStripes * kRegion);  // every stripe
  auto other = std::async(std::launch::async, [&] { (void)lock.Exclusive(4096, 0); });
  EXPECT_EQ(other.wait_for(kMustNotWait), std::future_status::ready);
}

}  // namespace
}  // namespace vdisk
