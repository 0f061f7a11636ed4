// DiskExportTarget over real VHDX files: byte-granular I/O on sector-granular disks (read-modify-
// write that never loses a concurrent neighbour's bytes), restricted ranges, read-only exports,
// allocation through a differencing chain, write-zeroes that keeps holes, and writes that take
// OpenDisk's path (where a mirror intercepts them).
#include "attach/disk_export_target.h"

#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "core/open_disk.h"
#include "formats/registry/registry.h"
#include "test_support.h"

namespace vdisk::attach {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;
using vdisk_unit::TempDir;

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kDiskSize = 8 * kMiB;

Bytes Pattern(std::size_t n, std::uint32_t seed) {
  Bytes out(n);
  std::mt19937 rng(seed);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

std::unique_ptr<VirtualDisk> CreateVhdx(const fs::path& path, std::uint32_t sector = 512,
                                        const fs::path& parent = {}) {
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhdx;
  request.options.virtual_size = parent.empty() ? kDiskSize : 0;
  request.options.block_size = 1 << 20;
  request.options.logical_sector_size = parent.empty() ? sector : 0;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(BuiltinProviders(), request);
  EXPECT_TRUE(disk.ok()) << path << ": " << disk.status().message();
  return disk.ok() ? std::move(disk).value() : nullptr;
}

std::shared_ptr<OpenDisk> Adopt(std::unique_ptr<VirtualDisk> disk) {
  auto open = OpenDisk::Adopt(std::move(disk));
  EXPECT_TRUE(open.ok());
  return open.ok() ? *open : nullptr;
}

std::unique_ptr<DiskExportTarget> MakeTarget(std::shared_ptr<OpenDisk> disk,
                                             const DiskExportOptions& options = {}) {
  auto target = DiskExportTarget::Create(std::move(disk), options);
  EXPECT_TRUE(target.ok()) << target.status().message();
  return target.ok() ? std::move(target).value() : nullptr;
}

Bytes ReadDisk(OpenDisk& disk, std::uint64_t offset, std::size_t n) {
  Bytes out(n);
  EXPECT_TRUE(disk.Read(offset, out).ok());
  return out;
}

using Extents = std::vector<AllocationExtent>;
constexpr AllocationExtent Data(std::uint64_t n) { return {n, false, false}; }
constexpr AllocationExtent Hole(std::uint64_t n) { return {n, true, true}; }

std::string Describe(const Extents& extents) {
  std::string s;
  for (const auto& e : extents) {
    s += "[" + std::to_string(e.length) + (e.hole ? " hole" : " data") + (e.zero ? ",zero" : "") +
         "] ";
  }
  return s;
}

TEST(DiskExportTarget, AdvertisesTheSectorAsMinimumBlockSize) {
  TempDir dir;
  for (const std::uint32_t sector : {512u, 4096u}) {
    auto target =
        MakeTarget(Adopt(CreateVhdx(dir / ("s" + std::to_string(sector) + ".vhdx"), sector)));
    ASSERT_NE(target, nullptr);
    EXPECT_EQ(target->size(), kDiskSize);
    EXPECT_FALSE(target->read_only());
    EXPECT_EQ(target->block_size().minimum, sector);
    EXPECT_EQ(target->block_size().preferred, 4096u);
    EXPECT_EQ(target->block_size().maximum, 32u << 20);
  }
}

TEST(DiskExportTarget, UnalignedWritesChangeOnlyTheirBytes) {
  TempDir dir;
  for (const std::uint32_t sector : {512u, 4096u}) {
    auto disk = Adopt(CreateVhdx(dir / ("u" + std::to_string(sector) + ".vhdx"), sector));
    auto target = MakeTarget(disk);
    ASSERT_NE(target, nullptr);
    Bytes expected = Pattern(3 * sector, sector);
    ASSERT_TRUE(disk->Write(sector, expected).ok());
    // One byte, a run across a sector boundary, and a run inside one sector.
    const std::vector<std::pair<std::uint64_t, std::size_t>> writes = {
        {sector + 1, 1}, {2 * sector - 3, 7}, {3 * sector + 10, sector / 2}};
    std::uint32_t seed = 100;
    for (const auto& [offset, length] : writes) {
      const Bytes data = Pattern(length, ++seed);
      ASSERT_TRUE(target->Write(offset, data).ok());
      std::memcpy(expected.data() + (offset - sector), data.data(), length);
    }
    EXPECT_TRUE(ReadDisk(*disk, sector, 3 * sector) == expected) << "sector " << sector;
    // Unaligned reads see the same bytes.
    Bytes piece(5);
    ASSERT_TRUE(target->Read(2 * sector - 2, piece).ok());
    EXPECT_EQ(0, std::memcmp(piece.data(), expected.data() + sector - 2, 5));
  }
}

TEST(DiskExportTarget, ConcurrentUnalignedWritesIntoSharedSectorsAllSurvive) {
  TempDir dir;
  auto disk = Adopt(CreateVhdx(dir / "race.vhdx", 4096));
  auto target = MakeTarget(disk);
  ASSERT_NE(target, nullptr);
  // Each thread owns 3 bytes; all of them lie in two 4 KiB sectors, so every write is a
  // read-modify-write of a sector the others are rewriting too.
  constexpr int kThreads = 8;
  constexpr int kRounds = 150;
  auto offset_of = [](int t) { return std::uint64_t{4096 - 12 + 3 * static_cast<unsigned>(t)}; };
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 1; round <= kRounds; ++round) {
        const std::byte v = static_cast<std::byte>(round);
        const Bytes data = {v, static_cast<std::byte>(t), v};
        if (!target->Write(offset_of(t), data).ok()) ++failures[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const Bytes after = ReadDisk(*disk, 0, 2 * 4096);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], 0);
    const std::byte* mine = after.data() + offset_of(t);
    EXPECT_EQ(mine[0], std::byte{kRounds}) << "thread " << t << "'s last write was lost";
    EXPECT_EQ(mine[1], static_cast<std::byte>(t));
    EXPECT_EQ(mine[2], std::byte{kRounds});
  }
}

TEST(DiskExportTarget, RestrictedRangeIsAWindowOntoTheDisk) {
  TempDir dir;
  auto disk = Adopt(CreateVhdx(dir / "window.vhdx"));
  DiskExportOptions options;
  options.restricted_range = DiskExportOptions::Range{kMiB, 2 * kMiB};
  auto target = MakeTarget(disk, options);
  ASSERT_NE(target, nullptr);
  EXPECT_EQ(target->size(), 2 * kMiB);
  const Bytes data = Pattern(4096, 1);
  ASSERT_TRUE(target->Write(0, data).ok());
  EXPECT_TRUE(ReadDisk(*disk, kMiB, 4096) == data) << "window offset 0 is disk offset 1 MiB";
  EXPECT_EQ(target->Write(2 * kMiB - 512, Pattern(1024, 2)).code(), Code::kInvalidParameter)
      << "a write past the window";
  auto extents = target->BlockStatus(0, 2 * kMiB);
  ASSERT_TRUE(extents.ok());
  EXPECT_EQ(*extents, (Extents{Data(kMiB), Hole(kMiB)})) << Describe(*extents);

  for (const auto& [offset, length] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
           {100, kMiB}, {0, kMiB + 7}, {0, 0}, {kDiskSize - kMiB, 2 * kMiB}}) {
    options.restricted_range = DiskExportOptions::Range{offset, length};
    EXPECT_EQ(DiskExportTarget::Create(disk, options).status().code(), Code::kInvalidParameter)
        << length << " bytes at " << offset;
  }
}

TEST(DiskExportTarget, ReadOnlyExportsRefuseWrites) {
  TempDir dir;
  const fs::path path = dir / "ro.vhdx";
  {
    auto disk = Adopt(CreateVhdx(path));
    DiskExportOptions options;
    options.read_only = true;
    auto target = MakeTarget(disk, options);
    ASSERT_NE(target, nullptr);
    EXPECT_TRUE(target->read_only());
    EXPECT_EQ(target->Write(0, Pattern(512, 1)).code(), Code::kWriteProtect);
    EXPECT_EQ(target->WriteZeroes(0, 512, true).code(), Code::kWriteProtect);
    EXPECT_EQ(target->Trim(0, 512).code(), Code::kWriteProtect);
  }
  // A disk opened read-only gives a read-only export even if the export did not ask for one.
  DiskOpenRequest request;
  request.path = path;
  request.options.read_only = true;
  auto opened = OpenDisk::Open(BuiltinProviders(), request);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  auto target = MakeTarget(*opened);
  ASSERT_NE(target, nullptr);
  EXPECT_TRUE(target->read_only());
}

TEST(DiskExportTarget, BlockStatusFollowsTheDifferencingChain) {
  TempDir dir;
  const fs::path parent_path = dir / "parent.vhdx";
  {
    auto parent = CreateVhdx(parent_path);
    ASSERT_NE(parent, nullptr);
    ASSERT_TRUE(parent->Write(2 * kMiB, Pattern(kMiB, 1)).ok());
    ASSERT_TRUE(parent->Flush().ok());
  }
  auto child = CreateVhdx(dir / "child.vhdx", 0, parent_path);
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(child->chain().size(), 2u);
  ASSERT_TRUE(child->Write(5 * kMiB, Pattern(kMiB, 2)).ok());  // a whole block
  ASSERT_TRUE(child->Write(7 * kMiB, Pattern(4096, 3)).ok());  // part of a block
  auto target = MakeTarget(Adopt(std::move(child)));
  ASSERT_NE(target, nullptr);

  auto all = target->BlockStatus(0, kDiskSize);
  ASSERT_TRUE(all.ok()) << all.status().message();
  const Extents expected = {Hole(2 * kMiB), Data(kMiB), Hole(2 * kMiB),   Data(kMiB),
                            Hole(kMiB),     Data(4096), Hole(kMiB - 4096)};
  EXPECT_EQ(*all, expected) << Describe(*all);

  // Unaligned questions get answers that start where they asked and end where they asked.
  auto inside = target->BlockStatus(2 * kMiB + 100, 1000);
  ASSERT_TRUE(inside.ok());
  EXPECT_EQ(*inside, (Extents{Data(1000)})) << Describe(*inside);
  auto across = target->BlockStatus(3 * kMiB - 10, 20);
  ASSERT_TRUE(across.ok());
  EXPECT_EQ(*across, (Extents{Data(10), Hole(10)})) << Describe(*across);
  EXPECT_FALSE(target->BlockStatus(kDiskSize - 512, 1024).ok()) << "past the end";
}

TEST(DiskExportTarget, WriteZeroesKeepsHolesUnlessToldNotTo) {
  TempDir dir;
  auto disk = Adopt(CreateVhdx(dir / "zero.vhdx"));
  auto target = MakeTarget(disk);
  ASSERT_NE(target, nullptr);
  const Bytes data = Pattern(kMiB, 9);
  ASSERT_TRUE(disk->Write(2 * kMiB, data).ok());

  // Over a hole: it stays a hole.
  ASSERT_TRUE(target->WriteZeroes(0, kMiB, false).ok());
  auto hole = target->BlockStatus(0, kMiB);
  ASSERT_TRUE(hole.ok());
  EXPECT_EQ(*hole, (Extents{Hole(kMiB)})) << Describe(*hole);
  // With NO_HOLE: allocated, reading as zeros.
  ASSERT_TRUE(target->WriteZeroes(kMiB, kMiB, true).ok());
  auto allocated = target->BlockStatus(kMiB, kMiB);
  ASSERT_TRUE(allocated.ok());
  EXPECT_EQ(*allocated, (Extents{Data(kMiB)})) << Describe(*allocated);
  EXPECT_TRUE(ReadDisk(*disk, kMiB, kMiB) == Bytes(kMiB));
  // Over data, unaligned: exactly those bytes become zeros.
  ASSERT_TRUE(target->WriteZeroes(2 * kMiB + 100, 5000, false).ok());
  Bytes expected = data;
  std::fill_n(expected.begin() + 100, 5000, std::byte{0});
  EXPECT_TRUE(ReadDisk(*disk, 2 * kMiB, kMiB) == expected);
}

// Records what reaches OpenDisk's write path, as a running mirror would.
class RecordingFanout final : public WriteFanout {
 public:
  Status Write(VirtualDisk& active, std::uint64_t offset,
               std::span<const std::byte> data) override {
    {
      std::lock_guard lock(mutex_);
      writes_.emplace_back(offset, data.size());
    }
    return active.Write(offset, data);
  }
  std::vector<std::pair<std::uint64_t, std::size_t>> writes() {
    std::lock_guard lock(mutex_);
    return writes_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<std::uint64_t, std::size_t>> writes_;
};

TEST(DiskExportTarget, WritesTakeTheOpenDiskPathThatAMirrorIntercepts) {
  TempDir dir;
  auto disk = Adopt(CreateVhdx(dir / "mirrored.vhdx"));
  auto target = MakeTarget(disk);
  ASSERT_NE(target, nullptr);
  auto fanout = std::make_shared<RecordingFanout>();
  ASSERT_TRUE(disk->SetWriteFanout(fanout).ok());
  ASSERT_TRUE(target->Write(4096, Pattern(8192, 1)).ok());
  ASSERT_TRUE(target->Write(10000, Pattern(10, 2)).ok());
  ASSERT_TRUE(target->WriteZeroes(kMiB, 4096, true).ok());
  disk->ClearWriteFanout();
  const std::vector<std::pair<std::uint64_t, std::size_t>> expected = {
      {4096, 8192}, {9728, 512}, {kMiB, 4096}};
  EXPECT_EQ(fanout->writes(), expected) << "every write, sector-aligned, through the fan-out";
}

}  // namespace
}  // namespace vdisk::attach
