// CompactDisk (core/compact.h) and the formats' Image::Compact: the zero scan, block moves,
// truncation, flags, cancellation, and the state checks, on VHD and VHDX, dynamic and
// differencing. The content before and after is compared through our reader; qemu-img compares
// it in tests/api/compact_api_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "core/compact.h"
#include "core/open_disk.h"
#include "core/virtual_disk.h"
#include "formats/compaction.h"
#include "formats/registry/registry.h"
#include "host_shell.h"
#include "test_support.h"

namespace vdisk {
namespace {

// Neither cancels nor watches progress.
CallbackControl quiet;

using vdisk_unit::TempDir;
namespace fs = std::filesystem;

constexpr std::uint64_t kMiB = 1 << 20;

struct Layout {
  DiskFormat format;
  std::uint32_t block_size;
  const char* name;
};

std::string ParamName(const ::testing::TestParamInfo<Layout>& info) { return info.param.name; }

std::vector<std::byte> Pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> data(n);
  std::mt19937 rng(seed);
  for (auto& b : data) b = static_cast<std::byte>(rng() | 1);  // never zero
  return data;
}

std::uint64_t FileSize(const fs::path& path) { return fs::file_size(path); }

class CompactTest : public ::testing::TestWithParam<Layout> {
 protected:
  fs::path Path(const char* stem) const {
    return dir_ / (std::string(stem) + (GetParam().format == DiskFormat::kVhd ? ".vhd" : ".vhdx"));
  }

  // Creates a dynamic disk of `blocks` blocks; `content(b)` says what block b holds: 0 nothing
  // written, 1 zeros written, 2 data.
  void CreateDisk(const fs::path& path, std::uint64_t blocks, const std::vector<int>& content,
                  const fs::path& parent = {}) {
    DiskCreateRequest request;
    request.path = path;
    request.format = GetParam().format;
    request.options.virtual_size = blocks * GetParam().block_size;
    request.options.block_size = GetParam().block_size;
    if (!parent.empty()) {
      request.parent_path = parent;
      request.options.subtype = DiskSubtype::kDifferencing;
    }
    auto disk = VirtualDisk::Create(BuiltinProviders(), request);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    for (std::size_t b = 0; b < content.size(); ++b) {
      if (content[b] == 0) continue;
      std::vector<std::byte> data = content[b] == 2 ? Pattern(GetParam().block_size,
                                                              static_cast<std::uint32_t>(b + 7))
                                                    : std::vector<std::byte>(GetParam().block_size);
      ASSERT_TRUE((*disk)->Write(b * GetParam().block_size, data).ok());
    }
    ASSERT_TRUE((*disk)->Flush().ok());
  }

  std::shared_ptr<OpenDisk> OpenWritable(const fs::path& path) {
    DiskOpenRequest request;
    request.path = path;
    request.options.read_only = false;
    auto open = OpenDisk::Open(BuiltinProviders(), request);
    EXPECT_TRUE(open.ok()) << open.status().message();
    return open.ok() ? *open : nullptr;
  }

  std::vector<std::byte> ReadAll(const fs::path& path) {
    DiskOpenRequest request;
    request.path = path;
    auto disk = VirtualDisk::Open(BuiltinProviders(), request);
    EXPECT_TRUE(disk.ok()) << disk.status().message();
    if (!disk.ok()) return {};
    std::vector<std::byte> out((*disk)->size());
    EXPECT_TRUE((*disk)->Read(0, out).ok());
    return out;
  }

  Result<CompactReport> Compact(const fs::path& path, CompactOptions options = {},
                                OperationControl* control = nullptr) {
    auto open = OpenWritable(path);
    if (!open) return Status(Code::kInternal, "open failed");
    return CompactDisk(*open, options, control != nullptr ? *control : quiet);
  }

  // The chain's bytes as libvhdi reads them (empty, with a test failure, if it cannot).
  std::vector<std::byte> LibvhdiRead(const fs::path& child, const fs::path& parent) {
    const fs::path out = dir_ / "libvhdi.raw";
    std::string output;
    const int status = vdisk_unit::HostShell("\"$VIRTDISK_LIBVHDI_DUMP\" " +
                                                 vdisk_unit::ShellQuote(out) + " " +
                                                 vdisk_unit::ShellQuote(child) + " " +
                                                 vdisk_unit::ShellQuote(parent),
                                             &output);
    EXPECT_EQ(status, 0) << output;
    return status == 0 ? vdisk_unit::ReadWholeFile(out) : std::vector<std::byte>{};
  }

  TempDir dir_;
};

TEST_P(CompactTest, ZeroBlocksGoAndTheFileShrinksWithContentUnchanged) {
  const fs::path path = Path("disk");
  // Zeros at the start and in the middle, data at the end: the data has to move down.
  const std::vector<int> content = {1, 2, 1, 1, 2, 0, 1, 2};
  ASSERT_NO_FATAL_FAILURE(CreateDisk(path, 8, content));
  const auto before = ReadAll(path);
  const std::uint64_t size_before = FileSize(path);

  auto report = Compact(path);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->blocks_scanned, 7u);
  EXPECT_EQ(report->blocks_released, 4u);
  EXPECT_GE(report->blocks_moved, 1u);
  EXPECT_EQ(report->file_size_before, size_before);
  EXPECT_EQ(report->file_size_after, FileSize(path));
  // Smaller by at least the four zero blocks.
  EXPECT_LE(FileSize(path) + 4 * GetParam().block_size, size_before)
      << "before " << size_before << ", after " << FileSize(path);
  EXPECT_TRUE(ReadAll(path) == before) << "content changed";

  // The compacted file takes new writes, which allocate after what stayed.
  {
    auto open = OpenWritable(path);
    ASSERT_NE(open, nullptr);
    const auto data = Pattern(GetParam().block_size, 99);
    ASSERT_TRUE(open->Write(0, data).ok());
    ASSERT_TRUE(open->Flush().ok());
  }
  auto after = before;
  const auto data = Pattern(GetParam().block_size, 99);
  std::memcpy(after.data(), data.data(), data.size());
  EXPECT_TRUE(ReadAll(path) == after) << "a write after compaction reads back wrong";
}

TEST_P(CompactTest, NoZeroScanKeepsZeroBlocks) {
  const fs::path path = Path("disk");
  ASSERT_NO_FATAL_FAILURE(CreateDisk(path, 6, {1, 2, 1, 2}));
  const auto before = ReadAll(path);
  const std::uint64_t size_before = FileSize(path);
  CompactOptions options;
  options.zero_scan = false;
  auto report = Compact(path, options);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->blocks_scanned, 0u);
  EXPECT_EQ(report->blocks_released, 0u);
  EXPECT_EQ(FileSize(path), size_before);
  EXPECT_TRUE(ReadAll(path) == before);
}

TEST_P(CompactTest, NoBlockMovesReleasesButMovesNothing) {
  const fs::path path = Path("disk");
  // The zero blocks lie before the data: without moves only a zero block at the end could go.
  ASSERT_NO_FATAL_FAILURE(CreateDisk(path, 6, {1, 1, 2, 2, 1}));
  const auto before = ReadAll(path);
  const std::uint64_t size_before = FileSize(path);
  CompactOptions options;
  options.block_moves = false;
  auto report = Compact(path, options);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->blocks_released, 3u);
  EXPECT_EQ(report->blocks_moved, 0u);
  // Only the trailing zero block is cut off.
  EXPECT_LE(FileSize(path) + GetParam().block_size, size_before);
  EXPECT_GT(FileSize(path) + 2 * GetParam().block_size, size_before);
  EXPECT_TRUE(ReadAll(path) == before);
  // A second run with moves fills the two holes.
  auto second = Compact(path);
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(second->blocks_moved, 2u);
  EXPECT_LE(FileSize(path) + 3 * GetParam().block_size, size_before);
  EXPECT_TRUE(ReadAll(path) == before);
}

TEST_P(CompactTest, DifferencingZeroBlockFallsThroughOnlyOverZeroParent) {
  const fs::path parent = Path("parent");
  // Parent: data in blocks 0 and 1, nothing in 2 and 3.
  ASSERT_NO_FATAL_FAILURE(CreateDisk(parent, 4, {2, 2, 0, 0}));
  const fs::path child = Path("child");
  // Child: zeros over parent data (block 0) must keep shadowing it; zeros over nothing
  // (block 2) can go; data in block 3 stays.
  ASSERT_NO_FATAL_FAILURE(CreateDisk(child, 4, {1, 0, 1, 2}, parent));
  const auto before = ReadAll(child);
  const auto parent_content = ReadAll(parent);
  ASSERT_FALSE(vdisk::AllZero(std::span(parent_content).first(GetParam().block_size)))
      << "the parent's block 0 holds data";

  auto report = Compact(child);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->blocks_scanned, 3u);
  EXPECT_EQ(report->blocks_released, 1u) << "block 2 (zeros over an empty parent)";
  if (GetParam().format == DiskFormat::kVhdx) {
    EXPECT_EQ(report->blocks_zeroed, 1u) << "block 0 becomes PAYLOAD_BLOCK_ZERO";
  } else {
    EXPECT_EQ(report->blocks_zeroed, 0u) << "VHD has no zero state: block 0 stays";
  }
  const auto after = ReadAll(child);
  EXPECT_TRUE(after == before) << "content changed";
  EXPECT_TRUE(vdisk::AllZero(std::span(after).first(GetParam().block_size)))
      << "block 0 must still read zeros, not the parent's data";
}

// libvhdi (tests/interop/libvhdi_dump) reads the chain the same before and after compaction:
// released blocks fall through to a parent that reads zeros there. (VHDX blocks kept as
// PAYLOAD_BLOCK_ZERO over a parent's data are left out: libvhdi 20210425 reads them through to
// the parent, where MS-VHDX §2.5.1.1 and we read zeros; see docs/lifecycle.md. It also misreads
// parts of this 1 MiB-block VHDX chain before any compaction, so for VHDX it is compared with
// itself, for VHD with us too.)
TEST_P(CompactTest, LibvhdiReadsTheSameChainBeforeAndAfter) {
  if (!vdisk_unit::HostShellAvailable() ||
      vdisk_unit::HostShell("test -x \"${VIRTDISK_LIBVHDI_DUMP:-}\"") != 0) {
    VDISK_ORACLE_MISSING("no libvhdi_dump (VIRTDISK_LIBVHDI_DUMP)");
  }
  const fs::path parent = Path("parent");
  ASSERT_NO_FATAL_FAILURE(CreateDisk(parent, 4, {2, 0, 0, 1}));
  const fs::path child = Path("child");
  ASSERT_NO_FATAL_FAILURE(CreateDisk(child, 4, {0, 1, 1, 2}, parent));
  const auto ours = ReadAll(child);
  const auto theirs_before = LibvhdiRead(child, parent);
  ASSERT_FALSE(theirs_before.empty());
  if (GetParam().format == DiskFormat::kVhd) EXPECT_TRUE(theirs_before == ours);
  auto report = Compact(child);
  ASSERT_TRUE(report.ok()) << report.status().message();
  ASSERT_EQ(report->blocks_released, 2u);
  EXPECT_TRUE(ReadAll(child) == ours);
  EXPECT_TRUE(LibvhdiRead(child, parent) == theirs_before)
      << "libvhdi reads the compacted chain differently from before";
}

TEST_P(CompactTest, DifferencingPartialBlockOverZeroParentIsReleased) {
  const fs::path parent = Path("parent");
  ASSERT_NO_FATAL_FAILURE(CreateDisk(parent, 2, {2, 0}));
  const fs::path child = Path("child");
  ASSERT_NO_FATAL_FAILURE(CreateDisk(child, 2, {}, parent));
  {
    auto open = OpenWritable(child);
    ASSERT_NE(open, nullptr);
    // 64 KiB of zeros in each block: block 0 shadows data, block 1 shadows nothing.
    std::vector<std::byte> zeros(64 << 10);
    ASSERT_TRUE(open->Write(128 << 10, zeros).ok());
    ASSERT_TRUE(open->Write(GetParam().block_size + (128 << 10), zeros).ok());
  }
  const auto before = ReadAll(child);
  auto report = Compact(child);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->blocks_released, 1u);
  EXPECT_TRUE(ReadAll(child) == before) << "content changed";
  // A partial write into the released block allocates it again and reads back with the parent
  // (zeros here) around it.
  {
    auto open = OpenWritable(child);
    ASSERT_NE(open, nullptr);
    const auto data = Pattern(4096, 5);
    ASSERT_TRUE(open->Write(GetParam().block_size + (512 << 10), data).ok());
  }
  auto expected = before;
  const auto data = Pattern(4096, 5);
  std::memcpy(expected.data() + GetParam().block_size + (512 << 10), data.data(), data.size());
  EXPECT_TRUE(ReadAll(child) == expected);
}

TEST_P(CompactTest, CancelStopsBetweenStepsAndLeavesTheDiskReadable) {
  const fs::path path = Path("disk");
  std::vector<int> content;
  for (int b = 0; b < 24; ++b) content.push_back(b % 3 == 0 ? 2 : 1);
  ASSERT_NO_FATAL_FAILURE(CreateDisk(path, 24, content));
  const auto before = ReadAll(path);
  CallbackControl control;
  int polls = 0;
  control.stop_when = [&polls] { return ++polls > 2; };
  auto report = Compact(path, {}, &control);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), Code::kOperationAborted) << report.status().message();
  EXPECT_TRUE(ReadAll(path) == before) << "content changed by a cancelled compaction";
  const std::uint64_t size_cancelled = FileSize(path);
  // Running it again completes it.
  auto again = Compact(path);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_TRUE(ReadAll(path) == before);
  EXPECT_LT(FileSize(path), size_cancelled);
}

TEST_P(CompactTest, ProgressEndsAtItsTotal) {
  const fs::path path = Path("disk");
  ASSERT_NO_FATAL_FAILURE(CreateDisk(path, 6, {1, 2, 1, 2, 1, 2}));
  std::uint64_t last_done = 0;
  std::uint64_t last_total = 0;
  int calls = 0;
  CallbackControl control;
  control.on_progress = [&](std::uint64_t done, std::uint64_t total) {
    EXPECT_LE(done, total);
    last_done = done;
    last_total = total;
    ++calls;
  };
  auto report = Compact(path, {}, &control);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_GE(calls, 2);
  EXPECT_GT(last_total, 0u);
  EXPECT_EQ(last_done, last_total);
}

TEST_P(CompactTest, RefusedWhileAttachedReadWriteAllowedReadOnly) {
  const fs::path path = Path("disk");
  ASSERT_NO_FATAL_FAILURE(CreateDisk(path, 4, {1, 2, 1, 2}));
  const auto before = ReadAll(path);
  auto open = OpenWritable(path);
  ASSERT_NE(open, nullptr);
  ASSERT_TRUE(open->AttachRaw(/*read_only=*/false).ok());
  auto refused = CompactDisk(*open, {}, quiet);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kVhdInvalidState) << refused.status().message();
  ASSERT_TRUE(open->Detach().ok());
  ASSERT_TRUE(open->AttachRaw(/*read_only=*/true).ok());
  auto allowed = CompactDisk(*open, {}, quiet);
  ASSERT_TRUE(allowed.ok()) << allowed.status().message();
  EXPECT_EQ(allowed->blocks_released, 2u);
  std::vector<std::byte> through_attachment(before.size());
  ASSERT_TRUE(open->Read(0, through_attachment).ok());
  EXPECT_TRUE(through_attachment == before);
}

TEST_P(CompactTest, FixedDiskIsRefused) {
  const fs::path path = Path("fixed");
  DiskCreateRequest request;
  request.path = path;
  request.format = GetParam().format;
  request.options.subtype = DiskSubtype::kFixed;
  request.options.virtual_size = 4 * kMiB;
  ASSERT_TRUE(VirtualDisk::Create(BuiltinProviders(), request).ok());
  auto report = Compact(path);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), Code::kVhdInvalidType) << report.status().message();
}

INSTANTIATE_TEST_SUITE_P(Formats, CompactTest,
                         ::testing::Values(Layout{DiskFormat::kVhd, 2 * kMiB, "Vhd"},
                                           Layout{DiskFormat::kVhdx, 1 * kMiB, "Vhdx"}),
                         ParamName);

TEST(CompactPlan, HighestBlocksFillLowestHoles) {
  using compaction::LayoutItem;
  // Metadata [0,10); blocks of 10 at 10, 30, 50, 60; holes at 20 and 40.
  std::vector<LayoutItem> items = {{0, 10, 0, false}, {10, 10, 1, true}, {30, 10, 2, true},
                                   {50, 10, 3, true}, {60, 10, 4, true}};
  const auto moves =
      compaction::PlanBlockMoves(items, 0, [](std::uint64_t c, std::uint64_t) { return c; });
  ASSERT_EQ(moves.size(), 2u);
  EXPECT_EQ(moves[0].id, 4u);
  EXPECT_EQ(moves[0].to, 20u);
  EXPECT_EQ(moves[1].id, 3u);
  EXPECT_EQ(moves[1].to, 40u);
}

TEST(CompactPlan, NothingMovesUpOrPastImmovableMetadata) {
  using compaction::LayoutItem;
  std::vector<LayoutItem> items = {{0, 10, 0, false}, {10, 10, 1, true}, {20, 10, 2, true}};
  EXPECT_TRUE(
      compaction::PlanBlockMoves(items, 0, [](std::uint64_t c, std::uint64_t) { return c; })
          .empty());
  // A hole too small for the block.
  items = {{0, 10, 0, false}, {15, 10, 1, true}, {40, 10, 2, true}};
  const auto moves =
      compaction::PlanBlockMoves(items, 0, [](std::uint64_t c, std::uint64_t) { return c; });
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0].id, 2u);
  EXPECT_EQ(moves[0].to, 25u);
}

}  // namespace
}  // namespace vdisk
