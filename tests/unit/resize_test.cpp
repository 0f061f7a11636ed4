// The partition table reader (formats/partition_table.h) and ResizeDisk (core/resize.h) over VHD
// and VHDX, fixed and dynamic: data below the smaller size kept, new space zeros, the partition
// check, the BAT moves, cancellation; qemu-img as the oracle of what the files say.
#include "host_shell.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <cstring>
#include <ostream>
#include <filesystem>
#include <string>
#include <vector>

#include "core/open_disk.h"
#include "core/resize.h"
#include "core/virtual_disk.h"
#include "formats/partition_table.h"
#include "formats/registry/registry.h"
#include "formats/vhd/vhd_provider.h"
#include "formats/vhdx/vhdx_provider.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kGiB = 1024 * kMiB;
using vdisk_unit::TempDir;

// --- partition table ---------------------------------------------------------------------------

struct MemoryDisk {
  std::vector<std::byte> bytes;
  std::uint64_t furthest = 0;  // the end of the furthest read
  VirtualReader reader() {
    return [this](std::uint64_t offset, std::span<std::byte> out) -> Status {
      if (offset + out.size() > bytes.size()) return Status(Code::kInvalidParameter, "past the end");
      std::memcpy(out.data(), bytes.data() + offset, out.size());
      furthest = std::max<std::uint64_t>(furthest, offset + out.size());
      return Status::Ok();
    };
  }
};

void Put(std::vector<std::byte>& bytes, std::size_t at, std::uint64_t value, int width) {
  for (int i = 0; i < width; ++i) bytes[at + i] = static_cast<std::byte>(value >> (8 * i));
}

void MbrEntry(std::vector<std::byte>& disk, int slot, std::uint8_t type, std::uint32_t first,
              std::uint32_t count) {
  const std::size_t at = 446 + 16 * slot;
  disk[at + 4] = std::byte{type};
  Put(disk, at + 8, first, 4);
  Put(disk, at + 12, count, 4);
  disk[510] = std::byte{0x55};
  disk[511] = std::byte{0xAA};
}

// A GPT header at LBA 1 naming `count` entries of 128 bytes at `entries_lba`, with the entries
// whose last LBAs are `lasts` (those inside the buffer).
void Gpt(std::vector<std::byte>& disk, std::uint32_t ls, std::uint64_t entries_lba,
         std::uint32_t count, const std::vector<std::uint64_t>& lasts) {
  MbrEntry(disk, 0, 0xEE, 1, 0xFFFFFFFF);
  std::memcpy(disk.data() + ls, "EFI PART", 8);
  Put(disk, ls + 72, entries_lba, 8);
  Put(disk, ls + 80, count, 4);
  Put(disk, ls + 84, 128, 4);
  for (std::size_t i = 0; i < lasts.size(); ++i) {
    const std::size_t at = entries_lba * ls + i * 128;
    if (at + 128 > disk.size()) break;
    disk[at] = std::byte{0xAF};  // a type GUID that is not zero
    Put(disk, at + 32, 34, 8);
    Put(disk, at + 40, lasts[i], 8);
  }
}

TEST(PartitionTable, NoBootSignatureIsNoTable) {
  MemoryDisk disk{std::vector<std::byte>(64 * 1024)};
  MbrEntry(disk.bytes, 0, 0x07, 2048, 100);
  disk.bytes[511] = std::byte{0};
  auto end = PartitionTableEnd(disk.reader(), disk.bytes.size(), 512);
  ASSERT_TRUE(end.ok()) << end.status().message();
  EXPECT_FALSE(end->has_value());
  auto smallest = SmallestSafeSize(disk.reader(), disk.bytes.size(), 512);
  ASSERT_TRUE(smallest.ok());
  EXPECT_EQ(*smallest, disk.bytes.size()) << "no table: the whole disk is needed";
}

TEST(PartitionTable, MbrEndsAtItsLastPartition) {
  MemoryDisk disk{std::vector<std::byte>(8 * kMiB)};
  MbrEntry(disk.bytes, 0, 0x07, 2048, 1000);
  MbrEntry(disk.bytes, 2, 0x83, 4096, 4000);  // the last one, in slot 2, slot 1 unused
  auto end = PartitionTableEnd(disk.reader(), disk.bytes.size(), 512);
  ASSERT_TRUE(end.ok());
  ASSERT_TRUE(end->has_value());
  EXPECT_EQ(**end, (4096 + 4000) * 512u);
}

TEST(PartitionTable, ProtectiveMbrDefersToTheGptEntries) {
  MemoryDisk disk{std::vector<std::byte>(8 * kMiB)};
  Gpt(disk.bytes, 512, 2, 128, {1000, 9000, 5000});
  auto end = PartitionTableEnd(disk.reader(), disk.bytes.size(), 512);
  ASSERT_TRUE(end.ok());
  ASSERT_TRUE(end->has_value());
  EXPECT_EQ(**end, 9001 * 512u) << "the last used entry's EndingLBA is inclusive";
}

TEST(PartitionTable, GptWithFourKiBSectors) {
  MemoryDisk disk{std::vector<std::byte>(8 * kMiB)};
  Gpt(disk.bytes, 4096, 2, 128, {600});
  auto smallest = SmallestSafeSize(disk.reader(), disk.bytes.size(), 4096);
  ASSERT_TRUE(smallest.ok());
  EXPECT_EQ(*smallest, 601 * 4096u);
}

TEST(PartitionTable, ProtectiveMbrWithoutGptHeaderCountsItsOwnEntry) {
  MemoryDisk disk{std::vector<std::byte>(8 * kMiB)};
  MbrEntry(disk.bytes, 0, 0xEE, 1, 2047);
  auto end = PartitionTableEnd(disk.reader(), disk.bytes.size(), 512);
  ASSERT_TRUE(end.ok());
  ASSERT_TRUE(end->has_value());
  EXPECT_EQ(**end, 2048 * 512u);
}

TEST(PartitionTable, GptEntriesPastTheEndOfTheDiskAreNotRead) {
  // The array starts 4 sectors before the end and claims 128 entries (32 sectors).
  MemoryDisk disk{std::vector<std::byte>(1 * kMiB)};
  const std::uint64_t sectors = disk.bytes.size() / 512;
  Gpt(disk.bytes, 512, sectors - 4, 128, {100, 200, 300, 400, 500, 600, 700, 800});
  auto end = PartitionTableEnd(disk.reader(), disk.bytes.size(), 512);
  ASSERT_TRUE(end.ok()) << end.status().message();
  ASSERT_TRUE(end->has_value());
  EXPECT_EQ(**end, 801 * 512u) << "the 16 entries inside the disk count (8 of them used)";
  EXPECT_LE(disk.furthest, disk.bytes.size());
}

TEST(PartitionTable, PartitionsPastTheDiskAreCappedAtItsSize) {
  MemoryDisk disk{std::vector<std::byte>(1 * kMiB)};
  MbrEntry(disk.bytes, 0, 0x07, 2048, 1 << 20);
  auto end = PartitionTableEnd(disk.reader(), disk.bytes.size(), 512);
  ASSERT_TRUE(end.ok());
  EXPECT_GT(**end, disk.bytes.size());
  auto smallest = SmallestSafeSize(disk.reader(), disk.bytes.size(), 512);
  ASSERT_TRUE(smallest.ok());
  EXPECT_EQ(*smallest, disk.bytes.size());
}

// --- resize ------------------------------------------------------------------------------------

const ProviderRegistry& Registry() {
  static const ProviderRegistry registry = [] {
    ProviderRegistry r;
    r.Register(MakeVhdProvider());
    r.Register(MakeVhdxProvider());
    return r;
  }();
  return registry;
}

bool HaveTool(const char* name) { return !vdisk_unit::HostTool(name).empty(); }
int Sh(const std::string& command, std::string* output = nullptr) {
  return vdisk_unit::HostShell(command, output);
}
std::string Q(const fs::path& path) { return vdisk_unit::ShellQuote(path); }

// Cancels once SetProgress has been called `after` times (never when negative).
class TestProgress final : public OperationControl {
 public:
  explicit TestProgress(int after = -1) : after_(after) {}
  bool cancelled() const override { return after_ >= 0 && calls_ >= after_; }
  void SetProgress(std::uint64_t current, std::uint64_t completion) override {
    ++calls_;
    last_current = current;
    last_completion = completion;
  }
  std::uint64_t last_current = 0;
  std::uint64_t last_completion = 0;

 private:
  int after_;
  int calls_ = 0;
};

struct Case {
  DiskFormat format;
  DiskSubtype subtype;
  const char* name;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class ResizeDiskTest : public ::testing::TestWithParam<Case> {
 protected:
  fs::path Path(const char* stem) const {
    return dir_ / (std::string(stem) + (GetParam().format == DiskFormat::kVhd ? ".vhd" : ".vhdx"));
  }
  std::shared_ptr<OpenDisk> MustCreate(const fs::path& path, std::uint64_t size,
                                       std::uint32_t block = 0) {
    DiskCreateRequest request;
    request.path = path;
    request.format = GetParam().format;
    request.options.subtype = GetParam().subtype;
    request.options.virtual_size = size;
    request.options.block_size = block;
    auto disk = VirtualDisk::Create(Registry(), request);
    EXPECT_TRUE(disk.ok()) << disk.status().message();
    if (!disk.ok()) return nullptr;
    auto open = OpenDisk::Adopt(std::move(disk).value(), &Registry());
    EXPECT_TRUE(open.ok());
    return open.ok() ? *open : nullptr;
  }
  static std::unique_ptr<VirtualDisk> MustOpen(const fs::path& path) {
    DiskOpenRequest request;
    request.path = path;
    auto disk = VirtualDisk::Open(Registry(), request);
    EXPECT_TRUE(disk.ok()) << disk.status().message();
    return disk.ok() ? std::move(disk).value() : nullptr;
  }
  // qemu-img agrees on the size, reads what we read, and (VHDX) finds the file clean.
  void ExpectOracleAgrees(const fs::path& path, std::uint64_t size) {
    if (!HaveTool("qemu-img")) {
      VDISK_ORACLE_MISSING("qemu-img is not installed");
    }
    const char* fmt = GetParam().format == DiskFormat::kVhd ? "vpc" : "vhdx";
    std::string out;
    ASSERT_EQ(Sh("qemu-img info --output=json -f " + std::string(fmt) + " " + Q(path), &out), 0)
        << out;
    EXPECT_NE(out.find("\"virtual-size\": " + std::to_string(size) + ","), std::string::npos)
        << out;
    if (GetParam().format == DiskFormat::kVhdx) {
      EXPECT_EQ(Sh("qemu-img check -f vhdx " + Q(path), &out), 0) << out;
    }
    auto disk = MustOpen(path);
    ASSERT_NE(disk, nullptr);
    std::vector<std::byte> ours(disk->size());
    ASSERT_TRUE(disk->Read(0, ours).ok());
    disk.reset();
    const fs::path raw = dir_ / "ours.raw";
    {
      std::FILE* f = std::fopen(raw.string().c_str(), "wb");
      ASSERT_NE(f, nullptr);
      std::fwrite(ours.data(), 1, ours.size(), f);
      std::fclose(f);
    }
    EXPECT_EQ(Sh("qemu-img compare -f " + std::string(fmt) + " -F raw " + Q(path) + " " + Q(raw),
                 &out),
              0)
        << out;
  }

  TempDir dir_;
};

std::vector<std::byte> Pattern(std::size_t size, std::uint8_t seed) {
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((i * 131 + seed) | 1);
  return out;
}

bool AllZero(std::span<const std::byte> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

TEST_P(ResizeDiskTest, GrowKeepsDataAndNewSpaceReadsZeros) {
  const fs::path path = Path("grow");
  auto open = MustCreate(path, 9 * kMiB);
  ASSERT_NE(open, nullptr);
  const auto head = Pattern(kMiB, 1);
  const auto tail = Pattern(kMiB, 2);
  ASSERT_TRUE(open->Write(0, head).ok());
  ASSERT_TRUE(open->Write(8 * kMiB, tail).ok());
  TestProgress progress;
  const Status status = ResizeDisk(*open, {.new_size = 40 * kMiB}, progress);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(open->disk()->size(), 40 * kMiB);
  // A write into the new space, through the same disk.
  const auto late = Pattern(kMiB, 3);
  ASSERT_TRUE(open->Write(30 * kMiB, late).ok());
  open.reset();

  auto disk = MustOpen(path);
  ASSERT_NE(disk, nullptr);
  ASSERT_EQ(disk->size(), 40 * kMiB);
  std::vector<std::byte> all(disk->size());
  ASSERT_TRUE(disk->Read(0, all).ok());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), all.begin()));
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), all.begin() + 8 * kMiB));
  EXPECT_TRUE(AllZero(std::span(all).subspan(9 * kMiB, 21 * kMiB)));
  EXPECT_TRUE(std::equal(late.begin(), late.end(), all.begin() + 30 * kMiB));
  EXPECT_TRUE(AllZero(std::span(all).subspan(31 * kMiB)));
  disk.reset();
  ExpectOracleAgrees(path, 40 * kMiB);
}

TEST_P(ResizeDiskTest, ShrinkThenGrowReadsZerosWhereDataWasCutOff) {
  const fs::path path = Path("shrink");
  auto open = MustCreate(path, 16 * kMiB);
  ASSERT_NE(open, nullptr);
  const auto data = Pattern(16 * kMiB, 7);
  ASSERT_TRUE(open->Write(0, data).ok());
  TestProgress progress;
  // 9.5 MiB: the cut falls inside a block.
  const std::uint64_t small = 9 * kMiB + 512 * 1024;
  Status status = ResizeDisk(*open, {.new_size = small, .allow_unsafe = true}, progress);
  ASSERT_TRUE(status.ok()) << status.message();
  ASSERT_EQ(open->disk()->size(), small);
  open.reset();
  ExpectOracleAgrees(path, small);
  {
    auto disk = MustOpen(path);
    ASSERT_NE(disk, nullptr);
    std::vector<std::byte> all(disk->size());
    ASSERT_TRUE(disk->Read(0, all).ok());
    EXPECT_TRUE(std::equal(all.begin(), all.end(), data.begin()));
  }
  DiskOpenRequest request;
  request.path = path;
  request.options.read_only = false;
  auto reopened = OpenDisk::Open(Registry(), request);
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  status = ResizeDisk(**reopened, {.new_size = 16 * kMiB}, progress);
  ASSERT_TRUE(status.ok()) << status.message();
  reopened->reset();
  auto disk = MustOpen(path);
  ASSERT_NE(disk, nullptr);
  std::vector<std::byte> all(disk->size());
  ASSERT_TRUE(disk->Read(0, all).ok());
  EXPECT_TRUE(std::equal(all.begin(), all.begin() + small, data.begin()));
  EXPECT_TRUE(AllZero(std::span(all).subspan(small)))
      << "what the shrink cut off must not come back";
  disk.reset();
  ExpectOracleAgrees(path, 16 * kMiB);
}

TEST_P(ResizeDiskTest, ShrinkIntoAPartitionIsRefusedUnlessUnsafe) {
  const fs::path path = Path("parts");
  auto open = MustCreate(path, 16 * kMiB);
  ASSERT_NE(open, nullptr);
  std::vector<std::byte> mbr(512);
  MbrEntry(mbr, 0, 0x07, 2048, 12 * 2048 - 2048);  // ends at 12 MiB
  ASSERT_TRUE(open->Write(0, mbr).ok());
  TestProgress progress;
  Status status = ResizeDisk(*open, {.new_size = 10 * kMiB}, progress);
  EXPECT_EQ(status.code(), Code::kVhdResizeWouldTruncateData) << status.message();
  EXPECT_EQ(open->disk()->size(), 16 * kMiB);
  status = ResizeDisk(*open, {.new_size = 12 * kMiB}, progress);
  EXPECT_TRUE(status.ok()) << "down to the partition's end is safe: " << status.message();
  status = ResizeDisk(*open, {.new_size = 14 * kMiB}, progress);
  ASSERT_TRUE(status.ok()) << status.message();
  status = ResizeDisk(*open, {.to_smallest_safe = true}, progress);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(open->disk()->size(), 12 * kMiB);
  status = ResizeDisk(*open, {.to_smallest_safe = true}, progress);
  EXPECT_EQ(status.code(), Code::kVhdAlreadyAtOrBelowMinimumVirtualSize) << status.message();
  status = ResizeDisk(*open, {.new_size = 6 * kMiB, .allow_unsafe = true}, progress);
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(open->disk()->size(), 6 * kMiB);
}

TEST_P(ResizeDiskTest, ExpandOnlyGrows) {
  auto open = MustCreate(Path("expand"), 8 * kMiB);
  ASSERT_NE(open, nullptr);
  TestProgress progress;
  EXPECT_EQ(ResizeDisk(*open, {.new_size = 8 * kMiB, .grow_only = true}, progress).code(),
            Code::kInvalidParameter);
  EXPECT_EQ(ResizeDisk(*open, {.new_size = 4 * kMiB, .grow_only = true}, progress).code(),
            Code::kInvalidParameter);
  EXPECT_EQ(ResizeDisk(*open, {.new_size = 8 * kMiB + 100}, progress).code(),
            Code::kInvalidParameter);
  EXPECT_TRUE(ResizeDisk(*open, {.new_size = 12 * kMiB, .grow_only = true}, progress).ok());
  EXPECT_EQ(open->disk()->size(), 12 * kMiB);
}

TEST_P(ResizeDiskTest, DifferencingDiskIsRefused) {
  const fs::path base = Path("base");
  {
    auto open = MustCreate(base, 8 * kMiB);
    ASSERT_NE(open, nullptr);
  }
  DiskCreateRequest request;
  request.path = Path("child");
  request.format = GetParam().format;
  request.parent_path = base;
  auto child = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(child.ok()) << child.status().message();
  auto open = OpenDisk::Adopt(std::move(child).value(), &Registry());
  ASSERT_TRUE(open.ok());
  TestProgress progress;
  const Status status = ResizeDisk(**open, {.new_size = 16 * kMiB}, progress);
  EXPECT_EQ(status.code(), Code::kVhdInvalidType) << status.message();
}

TEST_P(ResizeDiskTest, AttachedDiskIsRefused) {
  auto open = MustCreate(Path("attached"), 8 * kMiB);
  ASSERT_NE(open, nullptr);
  ASSERT_TRUE(open->AttachRaw(false).ok());
  TestProgress progress;
  EXPECT_EQ(ResizeDisk(*open, {.new_size = 16 * kMiB}, progress).code(), Code::kVhdInvalidState);
  ASSERT_TRUE(open->Detach().ok());
  EXPECT_TRUE(ResizeDisk(*open, {.new_size = 16 * kMiB}, progress).ok());
}

TEST_P(ResizeDiskTest, LargeGrowMovesTheBlockAllocationTable) {
  if (GetParam().subtype == DiskSubtype::kFixed) GTEST_SKIP() << "the test grows to 140 GiB";
  // VHD: 2 MiB blocks, a 512-byte table (128 entries); VHDX: 1 MiB blocks, a 1 MiB BAT region
  // (131072 entries, 128 GiB).
  const bool vhd = GetParam().format == DiskFormat::kVhd;
  const std::uint64_t size = vhd ? 64 * kMiB : 2 * kGiB;
  const std::uint64_t grown = vhd ? 4 * kGiB : 140 * kGiB;
  const fs::path path = Path("moved");
  auto open = MustCreate(path, size, vhd ? 0 : 1 * kMiB);
  ASSERT_NE(open, nullptr);
  const auto data = Pattern(kMiB, 9);
  ASSERT_TRUE(open->Write(size - kMiB, data).ok());
  TestProgress progress;
  const Status status = ResizeDisk(*open, {.new_size = grown}, progress);
  ASSERT_TRUE(status.ok()) << status.message();
  ASSERT_TRUE(open->Write(grown - kMiB, data).ok());
  open.reset();
  auto disk = MustOpen(path);
  ASSERT_NE(disk, nullptr);
  ASSERT_EQ(disk->size(), grown);
  std::vector<std::byte> got(kMiB);
  ASSERT_TRUE(disk->Read(size - kMiB, got).ok());
  EXPECT_EQ(got, data);
  ASSERT_TRUE(disk->Read(grown - kMiB, got).ok());
  EXPECT_EQ(got, data);
  ASSERT_TRUE(disk->Read(size, got).ok());
  EXPECT_TRUE(AllZero(got));
  disk.reset();
  if (!HaveTool("qemu-img")) {
    VDISK_ORACLE_MISSING("qemu-img is not installed");
  }
  std::string out;
  const std::string fmt = vhd ? "vpc" : "vhdx";
  ASSERT_EQ(Sh("qemu-img info --output=json -f " + fmt + " " + Q(path), &out), 0) << out;
  EXPECT_NE(out.find("\"virtual-size\": " + std::to_string(grown) + ","), std::string::npos) << out;
  if (!vhd) EXPECT_EQ(Sh("qemu-img check -f vhdx " + Q(path), &out), 0) << out;
  ASSERT_EQ(Sh("qemu-io -f " + fmt + " -c 'read -P 0 " + std::to_string(size) + " 1M' -c 'read " +
                   std::to_string(grown - kMiB) + " 1M' " + Q(path),
               &out),
            0)
      << out;
  EXPECT_EQ(out.find("fail"), std::string::npos) << out;
}

TEST_P(ResizeDiskTest, CancelledGrowKeepsTheOldSizeAndRerunCompletes) {
  // A fixed VHDX grown by 64 GiB in 1 MiB blocks journals its new entries in several log entries,
  // with a cancellation point between them.
  const bool vhdx = GetParam().format == DiskFormat::kVhdx;
  const fs::path path = Path("cancel");
  auto open = MustCreate(path, 16 * kMiB, vhdx ? 1 * kMiB : 0);
  ASSERT_NE(open, nullptr);
  const auto data = Pattern(kMiB, 5);
  ASSERT_TRUE(open->Write(15 * kMiB, data).ok());
  const std::uint64_t grown = vhdx && GetParam().subtype == DiskSubtype::kFixed ? 64 * kGiB
                                                                                : 4 * kGiB;
  TestProgress cancel_at_first(1);
  Status status = ResizeDisk(*open, {.new_size = grown}, cancel_at_first);
  EXPECT_EQ(status.code(), Code::kOperationAborted) << status.message();
  EXPECT_EQ(open->disk()->size(), 16 * kMiB);
  open.reset();
  {
    auto disk = MustOpen(path);
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->size(), 16 * kMiB);
    std::vector<std::byte> got(kMiB);
    ASSERT_TRUE(disk->Read(15 * kMiB, got).ok());
    EXPECT_EQ(got, data);
  }
  if (vhdx && HaveTool("qemu-img")) {
    std::string out;
    EXPECT_EQ(Sh("qemu-img check -f vhdx " + Q(path), &out), 0) << out;
  }
  DiskOpenRequest request;
  request.path = path;
  request.options.read_only = false;
  auto reopened = OpenDisk::Open(Registry(), request);
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  TestProgress progress;
  status = ResizeDisk(**reopened, {.new_size = grown}, progress);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(progress.last_current, progress.last_completion);
  EXPECT_EQ((*reopened)->disk()->size(), grown);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ResizeDiskTest,
    ::testing::Values(Case{DiskFormat::kVhd, DiskSubtype::kFixed, "VhdFixed"},
                      Case{DiskFormat::kVhd, DiskSubtype::kDynamic, "VhdDynamic"},
                      Case{DiskFormat::kVhdx, DiskSubtype::kFixed, "VhdxFixed"},
                      Case{DiskFormat::kVhdx, DiskSubtype::kDynamic, "VhdxDynamic"}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// qemu's VHDs say "qemu" as creator, and qemu sizes such a disk by its CHS geometry: a resize to a
// size the geometry cannot express must leave a file qemu sizes exactly.
TEST(VhdResizeInterop, QemuCreatedDiskGrowsToASizeQemuReportsExactly) {
  if (!HaveTool("qemu-img")) {
    VDISK_ORACLE_MISSING("qemu-img is not installed");
  }
  TempDir dir;
  const fs::path path = dir / "qemu.vhd";
  std::string out;
  ASSERT_EQ(Sh("qemu-img create -q -f vpc -o subformat=dynamic " + Q(path) + " 32M", &out), 0)
      << out;
  ASSERT_EQ(Sh("qemu-io -f vpc -c 'write -P 0x5a 0 1M' " + Q(path), &out), 0) << out;
  DiskOpenRequest request;
  request.path = path;
  request.options.read_only = false;
  auto open = OpenDisk::Open(Registry(), request);
  ASSERT_TRUE(open.ok()) << open.status().message();
  const std::uint64_t size = 100 * kMiB + 3 * 512;
  TestProgress progress;
  const Status status = ResizeDisk(**open, {.new_size = size}, progress);
  ASSERT_TRUE(status.ok()) << status.message();
  open->reset();
  ASSERT_EQ(Sh("qemu-img info --output=json -f vpc " + Q(path), &out), 0) << out;
  EXPECT_NE(out.find("\"virtual-size\": " + std::to_string(size) + ","), std::string::npos) << out;
  ASSERT_EQ(Sh("qemu-io -f vpc -c 'read -P 0x5a 0 1M' -c 'read -P 0 1M 99M' " + Q(path), &out),
            0)
      << out;
  EXPECT_EQ(out.find("fail"), std::string::npos) << out;
}

TEST(VhdxResize, FourKiBSectorsTakeWholeSectorsOnly) {
  TempDir dir;
  DiskCreateRequest request;
  request.path = dir / "4k.vhdx";
  request.format = DiskFormat::kVhdx;
  request.options.subtype = DiskSubtype::kDynamic;
  request.options.virtual_size = 8 * kMiB;
  request.options.logical_sector_size = 4096;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  std::vector<std::byte> data(4096, std::byte{0x42});
  ASSERT_TRUE((*disk)->Write(8 * kMiB - 4096, data).ok());
  auto open = OpenDisk::Adopt(std::move(disk).value(), &Registry());
  ASSERT_TRUE(open.ok());
  TestProgress progress;
  EXPECT_EQ(ResizeDisk(**open, {.new_size = 12 * kMiB + 512}, progress).code(),
            Code::kInvalidParameter);
  ASSERT_TRUE(ResizeDisk(**open, {.new_size = 12 * kMiB + 4096}, progress).ok());
  open->reset();
  auto reopened = VirtualDisk::Open(Registry(), {.path = dir / "4k.vhdx"});
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  EXPECT_EQ((*reopened)->size(), 12 * kMiB + 4096);
  EXPECT_EQ((*reopened)->sector_size(), 4096u);
  std::vector<std::byte> got(4096);
  ASSERT_TRUE((*reopened)->Read(8 * kMiB - 4096, got).ok());
  EXPECT_EQ(got, data);
  ASSERT_TRUE((*reopened)->Read(12 * kMiB, got).ok());
  EXPECT_TRUE(AllZero(got));
}

TEST(VhdSmallestSafeSize, FollowsThePartitionTable) {
  TempDir dir;
  DiskCreateRequest request;
  request.path = dir / "d.vhd";
  request.format = DiskFormat::kVhd;
  request.options.subtype = DiskSubtype::kDynamic;
  request.options.virtual_size = 64 * kMiB;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok());
  auto before = (*disk)->top().SmallestSafeVirtualSize();
  ASSERT_TRUE(before.ok()) << before.status().message();
  EXPECT_EQ(*before, 64 * kMiB);
  std::vector<std::byte> mbr(512);
  MbrEntry(mbr, 0, 0x07, 2048, 40960);
  ASSERT_TRUE((*disk)->Write(0, mbr).ok());
  auto after = (*disk)->top().SmallestSafeVirtualSize();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, (2048 + 40960) * 512u);
}

}  // namespace
}  // namespace vdisk
