// VHDX images end to end through VirtualDisk: create, write, read back, reopen; differencing
// chains; identity and parent locators; metadata operations; concurrency; memory use of huge
// disks.
#include "test_support.h"
#include "formats/vhdx/vhdx_image.h"

#include <gtest/gtest.h>

#ifdef __linux__
#include <malloc.h>
#endif
#ifdef _WIN32
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#include <psapi.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhd/vhd_provider.h"
#include "formats/vhdx/vhdx_create.h"
#include "formats/vhdx/vhdx_format.h"
#include "formats/vhdx/vhdx_provider.h"
#include "platform/file.h"
#include "support/disk_calls.h"
#include "support/provider_registry.h"
#include "support/sanitizers.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
using vhdx::VhdxImage;
constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kGiB = 1024 * kMiB;
constexpr std::uint64_t kTiB = 1024 * kGiB;

using vdisk_unit::FirstTornSector;
using vdisk_unit::TempDir;

const ProviderRegistry& Registry() { return vdisk_testing::RegistryOf<MakeVhdProvider, MakeVhdxProvider>(); }

struct Spec {
  DiskSubtype subtype = DiskSubtype::kDynamic;
  std::uint64_t size = 0;
  std::uint32_t block_size = 0;
  std::uint32_t logical = 0;
  std::uint32_t physical = 0;
  fs::path parent;
  Guid unique_id;
};

Result<std::unique_ptr<VirtualDisk>> Create(const fs::path& path, const Spec& spec) {
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhdx;
  request.options.subtype = spec.subtype;
  request.options.virtual_size = spec.size;
  request.options.block_size = spec.block_size;
  request.options.logical_sector_size = spec.logical;
  request.options.physical_sector_size = spec.physical;
  request.options.unique_id = spec.unique_id;
  request.parent_path = spec.parent;
  return VirtualDisk::Create(Registry(), request);
}

std::unique_ptr<VirtualDisk> MustCreate(const fs::path& path, const Spec& spec) {
  return vdisk_testing::Must(Create(path, spec), "create", path);
}

Result<std::unique_ptr<VirtualDisk>> Open(const fs::path& path, bool read_only = true,
                                          bool ignore_relative = false) {
  return vdisk_testing::OpenImage(Registry(), path, read_only, ignore_relative);
}

std::unique_ptr<VirtualDisk> MustOpen(const fs::path& path, bool read_only = true) {
  return vdisk_testing::Must(Open(path, read_only), "open", path);
}

VhdxImage& Top(VirtualDisk& disk) { return dynamic_cast<VhdxImage&>(disk.top()); }

// What a disk should read as: its own writes, in order, over its parent's content (or zeros).
// Sparse, so that multi-GiB disks cost only what was written.
struct Model {
  const Model* parent = nullptr;
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> writes;

  void Write(std::uint64_t offset, std::span<const std::byte> data) {
    writes.emplace_back(offset, std::vector<std::byte>(data.begin(), data.end()));
  }
  void Expected(std::uint64_t offset, std::span<std::byte> out) const {
    if (parent != nullptr) {
      parent->Expected(offset, out);
    } else {
      std::fill(out.begin(), out.end(), std::byte{0});
    }
    const std::uint64_t end = offset + out.size();
    for (const auto& [at, bytes] : writes) {
      const std::uint64_t a = std::max(offset, at);
      const std::uint64_t b = std::min(end, at + bytes.size());
      if (a < b) std::memcpy(out.data() + (a - offset), bytes.data() + (a - at), b - a);
    }
  }
};

std::vector<std::byte> RandomBytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, n - i));
  }
  return out;
}

// Random writes of up to `max_len` bytes, a third of them straddling a block boundary.
void RandomWrites(VirtualDisk& disk, Model& model, std::mt19937_64& rng, int count,
                  std::uint64_t max_len, std::uint64_t block_size) {
  const std::uint64_t sector = disk.sector_size();
  const std::uint64_t size = disk.size();
  max_len = std::min(max_len, size);
  for (int i = 0; i < count; ++i) {
    const std::uint64_t len = std::uniform_int_distribution<std::uint64_t>(
                                  1, std::max<std::uint64_t>(1, max_len / sector))(rng) *
                              sector;
    std::uint64_t offset;
    if (i % 3 == 0 && size / block_size >= 2) {
      const std::uint64_t boundary =
          std::uniform_int_distribution<std::uint64_t>(1, size / block_size - 1)(rng) * block_size;
      offset = boundary - std::min(boundary, (len / sector / 2) * sector);
    } else {
      offset = std::uniform_int_distribution<std::uint64_t>(0, (size - len) / sector)(rng) * sector;
    }
    if (offset + len > size) offset = size - len;
    const auto data = RandomBytes(rng, len);
    const Status status = disk.Write(offset, data);
    ASSERT_TRUE(status.ok()) << status.message();
    model.Write(offset, data);
  }
}

// Reads every written range (with margins) and some random ranges, and compares with the model.
void Verify(VirtualDisk& disk, const Model& model, std::mt19937_64& rng, const std::string& when) {
  const std::uint64_t sector = disk.sector_size();
  const std::uint64_t size = disk.size();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const Model* m = &model; m != nullptr; m = m->parent) {
    for (const auto& [at, bytes] : m->writes) {
      const std::uint64_t a = at >= 8 * sector ? at - 8 * sector : 0;
      const std::uint64_t b = std::min(size, at + bytes.size() + 8 * sector);
      ranges.emplace_back(a, b - a);
    }
  }
  for (int i = 0; i < 8; ++i) {
    const std::uint64_t len = std::min<std::uint64_t>(size, 64 * sector);
    ranges.emplace_back(
        std::uniform_int_distribution<std::uint64_t>(0, (size - len) / sector)(rng) * sector, len);
  }
  ranges.emplace_back(size - sector, sector);
  std::vector<std::byte> actual;
  std::vector<std::byte> expected;
  for (const auto& [offset, length] : ranges) {
    actual.resize(length);
    expected.resize(length);
    const Status status = disk.Read(offset, actual);
    ASSERT_TRUE(status.ok()) << when << ": read " << length << " at " << offset << ": "
                             << status.message();
    model.Expected(offset, expected);
    if (actual != expected) {
      std::size_t i = 0;
      while (actual[i] == expected[i]) ++i;
      FAIL() << when << ": byte " << offset + i << " (in a read of " << length << " at " << offset
             << ") differs from the model";
    }
  }
}

void RoundTrip(DiskSubtype subtype, std::uint32_t block_size, std::uint32_t logical,
               std::uint64_t size) {
  SCOPED_TRACE("subtype " + std::to_string(static_cast<int>(subtype)) + ", block " +
               std::to_string(block_size) + ", sector " + std::to_string(logical));
  TempDir dir;
  std::mt19937_64 rng(block_size ^ logical ^ static_cast<std::uint64_t>(subtype));
  Model model;
  const fs::path path = dir / "disk.vhdx";
  {
    auto disk = MustCreate(path, {subtype, size, block_size, logical});
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->size(), size);
    EXPECT_EQ(disk->sector_size(), logical);
    EXPECT_EQ(disk->top().subtype(), subtype);
    ASSERT_NO_FATAL_FAILURE(RandomWrites(*disk, model, rng, 24, 3 * kMiB, block_size));
    ASSERT_NO_FATAL_FAILURE(Verify(*disk, model, rng, "while open"));
    ASSERT_TRUE(disk->Flush().ok());
  }
  {
    auto disk = MustOpen(path);
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->top().block_size(), subtype == DiskSubtype::kFixed ? 0u : block_size);
    ASSERT_NO_FATAL_FAILURE(Verify(*disk, model, rng, "after reopening read-only"));
  }
  {
    auto disk = MustOpen(path, /*read_only=*/false);
    ASSERT_NE(disk, nullptr);
    ASSERT_NO_FATAL_FAILURE(RandomWrites(*disk, model, rng, 8, 2 * kMiB, block_size));
  }
  auto disk = MustOpen(path);
  ASSERT_NE(disk, nullptr);
  ASSERT_NO_FATAL_FAILURE(Verify(*disk, model, rng, "after a second session"));
}

TEST(VhdxRoundTrip, DynamicDiskWithEveryBlockSizeAndSectorSize) {
  for (std::uint32_t logical : {512u, 4096u}) {
    for (std::uint64_t block : {1 * kMiB, 8 * kMiB, 32 * kMiB, 256 * kMiB}) {
      // Several blocks and a partial last one.
      const std::uint64_t size = 3 * block + 5 * 4096;
      ASSERT_NO_FATAL_FAILURE(
          RoundTrip(DiskSubtype::kDynamic, static_cast<std::uint32_t>(block), logical, size));
    }
  }
}

TEST(VhdxRoundTrip, FixedDiskWithEveryBlockSizeAndSectorSize) {
  for (std::uint32_t logical : {512u, 4096u}) {
    for (std::uint64_t block : {1 * kMiB, 8 * kMiB, 32 * kMiB, 256 * kMiB}) {
      const std::uint64_t size = 2 * block + 3 * 4096;
      ASSERT_NO_FATAL_FAILURE(
          RoundTrip(DiskSubtype::kFixed, static_cast<std::uint32_t>(block), logical, size));
    }
  }
}

// --- differencing chains ---------------------------------------------------------------------

void DifferencingChain(std::uint32_t logical) {
  SCOPED_TRACE("logical sector " + std::to_string(logical));
  TempDir dir;
  std::mt19937_64 rng(logical);
  const std::uint64_t size = 40 * kMiB + 8 * 4096;
  const std::uint32_t block = 2 * kMiB;
  Model base;
  Model mid{&base, {}};
  Model top{&mid, {}};
  std::uint64_t whole_block = 0;
  {
    auto disk = MustCreate(dir / "base.vhdx", {DiskSubtype::kDynamic, size, block, logical});
    ASSERT_NE(disk, nullptr);
    ASSERT_NO_FATAL_FAILURE(RandomWrites(*disk, base, rng, 20, 3 * kMiB, block));
  }
  {
    auto disk = MustCreate(dir / "mid.avhdx",
                           {DiskSubtype::kDifferencing, 0, block, 0, 0, dir / "base.vhdx"});
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->chain().size(), 2u);
    EXPECT_EQ(disk->sector_size(), logical);
    ASSERT_NO_FATAL_FAILURE(RandomWrites(*disk, mid, rng, 20, 700 * kKiB, block));
    ASSERT_NO_FATAL_FAILURE(Verify(*disk, mid, rng, "mid while open"));
  }
  {
    auto disk = MustCreate(dir / "top.avhdx",
                           {DiskSubtype::kDifferencing, 0, 1 * kMiB, 0, 0, dir / "mid.avhdx"});
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->chain().size(), 3u);
    ASSERT_NO_FATAL_FAILURE(RandomWrites(*disk, top, rng, 30, 300 * kKiB, 1 * kMiB));
    // A whole block written at once becomes fully present, partial ones partially present.
    auto& image = Top(*disk);
    for (whole_block = 0; whole_block < size / kMiB; ++whole_block) {
      auto entry = image.BatEntry(image.geometry().PayloadIndex(whole_block));
      ASSERT_TRUE(entry.ok());
      if (vhdx::BatState(*entry) == vhdx::kPayloadNotPresent) break;
    }
    ASSERT_LT(whole_block, size / kMiB);
    std::vector<std::byte> whole(kMiB, std::byte{0x5C});
    ASSERT_TRUE(disk->Write(whole_block * kMiB, whole).ok());
    top.Write(whole_block * kMiB, whole);
    ASSERT_NO_FATAL_FAILURE(Verify(*disk, top, rng, "top while open"));
  }
  auto disk = MustOpen(dir / "top.avhdx");
  ASSERT_NE(disk, nullptr);
  ASSERT_EQ(disk->chain().size(), 3u);
  ASSERT_NO_FATAL_FAILURE(Verify(*disk, top, rng, "top reopened"));
  auto& image = Top(*disk);
  const std::uint64_t index = image.geometry().PayloadIndex(whole_block);
  auto entry = image.BatEntry(index);
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(vhdx::BatState(*entry), vhdx::kPayloadFullyPresent);
  auto mid_disk = MustOpen(dir / "mid.avhdx");
  ASSERT_NE(mid_disk, nullptr);
  ASSERT_NO_FATAL_FAILURE(Verify(*mid_disk, mid, rng, "mid reopened"));
}

TEST(VhdxDifferencing, ThreeLevelChainWith512ByteSectors) { DifferencingChain(512); }
TEST(VhdxDifferencing, ThreeLevelChainWith4096ByteSectors) { DifferencingChain(4096); }

TEST(VhdxDifferencing, RecordsParentLinkageAndLocators) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "base.vhdx", {DiskSubtype::kDynamic, 8 * kMiB}), nullptr);
  Guid base_data_write;
  {
    auto base = MustOpen(dir / "base.vhdx");
    ASSERT_NE(base, nullptr);
    base_data_write = Top(*base).data_write_guid();
  }
  auto child =
      MustCreate(dir / "child.avhdx", {DiskSubtype::kDifferencing, 0, 0, 0, 0, dir / "base.vhdx"});
  ASSERT_NE(child, nullptr);
  const auto ref = child->top().parent();
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->parent_id, base_data_write);
  ASSERT_GE(ref->stored_locations.size(), 2u);
  EXPECT_EQ(ref->stored_locations[0], ".\\base.vhdx");
  EXPECT_NE(ref->stored_locations[1].find("base.vhdx"), std::string::npos);
  ASSERT_FALSE(ref->candidates.empty());
  EXPECT_EQ(ref->candidates.front(), (dir / "base.vhdx").lexically_normal());
  EXPECT_EQ(child->top().subtype(), DiskSubtype::kDifferencing);
  EXPECT_EQ(child->top().virtual_size(), 8 * kMiB);
}

TEST(VhdxDifferencing, FindsItsParentThroughTheRelativeLocatorAfterAMove) {
  TempDir dir;
  fs::create_directories(dir / "a");
  ASSERT_NE(MustCreate(dir / "a" / "base.vhdx", {DiskSubtype::kDynamic, 8 * kMiB}), nullptr);
  {
    auto child = MustCreate(dir / "a" / "child.avhdx",
                            {DiskSubtype::kDifferencing, 0, 0, 0, 0, dir / "a" / "base.vhdx"});
    ASSERT_NE(child, nullptr);
    std::vector<std::byte> data(4096, std::byte{0x11});
    ASSERT_TRUE(child->Write(4096, data).ok());
  }
  fs::rename(dir / "a", dir / "b");
  auto moved = Open(dir / "b" / "child.avhdx");
  ASSERT_TRUE(moved.ok()) << moved.status().message();
  EXPECT_EQ((*moved)->chain().size(), 2u);
  // Without the relative locator only the old absolute path is left, which no longer exists.
  auto ignored = Open(dir / "b" / "child.avhdx", true, /*ignore_relative=*/true);
  ASSERT_FALSE(ignored.ok());
  EXPECT_EQ(ignored.status().code(), Code::kVhdParentNotFound) << ignored.status().message();
}

TEST(VhdxDifferencing, ParentWrittenSinceTheChildWasCreatedIsAMismatch) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "base.vhdx", {DiskSubtype::kDynamic, 8 * kMiB}), nullptr);
  ASSERT_NE(
      MustCreate(dir / "child.avhdx", {DiskSubtype::kDifferencing, 0, 0, 0, 0, dir / "base.vhdx"}),
      nullptr);
  // Opening and closing the parent without writing keeps its DataWriteGuid.
  ASSERT_NE(MustOpen(dir / "base.vhdx", /*read_only=*/false), nullptr);
  ASSERT_TRUE(Open(dir / "child.avhdx").ok());
  {
    auto base = MustOpen(dir / "base.vhdx", /*read_only=*/false);
    ASSERT_NE(base, nullptr);
    std::vector<std::byte> data(512, std::byte{1});
    ASSERT_TRUE(base->Write(0, data).ok());
  }
  auto child = Open(dir / "child.avhdx");
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), Code::kVhdChildParentIdMismatch) << child.status().message();
  EXPECT_NE(child.status().message().find("DataWriteGuid"), std::string::npos);
}

TEST(VhdxDifferencing, SetParentLocationRepointsTheLocators) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "base.vhdx", {DiskSubtype::kDynamic, 8 * kMiB}), nullptr);
  ASSERT_NE(
      MustCreate(dir / "child.avhdx", {DiskSubtype::kDifferencing, 0, 0, 0, 0, dir / "base.vhdx"}),
      nullptr);
  fs::create_directories(dir / "elsewhere");
  fs::rename(dir / "base.vhdx", dir / "elsewhere" / "renamed.vhdx");
  auto lost = Open(dir / "child.avhdx");
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), Code::kVhdParentNotFound);
  {
    DiskOpenRequest request;
    request.path = dir / "child.avhdx";
    request.options.read_only = false;
    request.no_parents = true;
    auto child = VirtualDisk::Open(Registry(), request);
    ASSERT_TRUE(child.ok()) << child.status().message();
    auto parent = MustOpen(dir / "elsewhere" / "renamed.vhdx");
    ASSERT_NE(parent, nullptr);
    const Status status =
        (*child)->top().SetParentLocation(dir / "elsewhere" / "renamed.vhdx", parent->top());
    ASSERT_TRUE(status.ok()) << status.message();
    const auto ref = (*child)->top().parent();
    ASSERT_TRUE(ref.has_value());
    EXPECT_EQ(ref->stored_locations[0], ".\\elsewhere\\renamed.vhdx");
  }
  auto found = Open(dir / "child.avhdx");
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ((*found)->chain().size(), 2u);
}

TEST(VhdxDifferencing, RejectsAVhdParent) {
  TempDir dir;
  DiskCreateRequest vhd;
  vhd.path = dir / "base.vhd";
  vhd.format = DiskFormat::kVhd;
  vhd.options.virtual_size = 8 * kMiB;
  ASSERT_TRUE(VirtualDisk::Create(Registry(), vhd).ok());
  auto child =
      Create(dir / "child.avhdx", {DiskSubtype::kDifferencing, 0, 0, 0, 0, dir / "base.vhd"});
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), Code::kInvalidParameter) << child.status().message();
  EXPECT_FALSE(fs::exists(dir / "child.avhdx"));
}

// --- create ------------------------------------------------------------------------------------

TEST(VhdxCreate, AppliesWindowsDefaults) {
  TempDir dir;
  auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 3 * kGiB});
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->top().format(), DiskFormat::kVhdx);
  EXPECT_EQ(disk->top().block_size(), 32 * kMiB);
  EXPECT_EQ(disk->top().logical_sector_size(), 512u);
  EXPECT_EQ(disk->top().physical_sector_size(), 4096u);
  EXPECT_TRUE(disk->top().is_4k_aligned());
  EXPECT_FALSE(disk->top().unique_id().is_zero());
  EXPECT_EQ(disk->top().unique_id(), disk->top().virtual_disk_id());
  // Headers, log, metadata, 1 MiB of BAT: a dynamic disk starts at 4 MiB.
  EXPECT_EQ(fs::file_size(dir / "d.vhdx"), 4 * kMiB);
}

TEST(VhdxCreate, UsesTheGivenIdentityAndSectorSizes) {
  TempDir dir;
  const Guid id = Guid::Random();
  auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 64 * kMiB, 0, 4096, 4096, {}, id});
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->top().unique_id(), id);
  EXPECT_EQ(disk->top().logical_sector_size(), 4096u);
  EXPECT_EQ(disk->top().physical_sector_size(), 4096u);
}

TEST(VhdxCreate, FixedDiskIsFullySized) {
  TempDir dir;
  auto disk = MustCreate(dir / "f.vhdx", {DiskSubtype::kFixed, 20 * kMiB + 4096, 8 * kMiB});
  ASSERT_NE(disk, nullptr);
  // 3 MiB of headers, log and metadata, 1 MiB BAT, 3 whole 8 MiB blocks.
  EXPECT_EQ(fs::file_size(dir / "f.vhdx"), 4 * kMiB + 24 * kMiB);
  auto& image = Top(*disk);
  for (std::uint64_t b = 0; b < 3; ++b) {
    auto entry = image.BatEntry(image.geometry().PayloadIndex(b));
    ASSERT_TRUE(entry.ok());
    EXPECT_EQ(vhdx::BatState(*entry), vhdx::kPayloadFullyPresent);
    EXPECT_EQ(vhdx::BatFileOffset(*entry), 4 * kMiB + b * 8 * kMiB);
  }
}

TEST(VhdxCreate, FullPhysicalAllocationReservesStorage) {
  TempDir dir;
  DiskCreateRequest request;
  request.path = dir / "f.vhdx";
  request.format = DiskFormat::kVhdx;
  request.options.subtype = DiskSubtype::kFixed;
  request.options.virtual_size = 16 * kMiB;
  request.options.block_size = kMiB;
  request.options.full_physical_allocation = true;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  auto allocated = (*disk)->top().file().AllocatedBytes();
  ASSERT_TRUE(allocated.ok());
  EXPECT_GE(*allocated, 16 * kMiB);
}

TEST(VhdxCreate, RejectsInvalidParametersAndLeavesNoFile) {
  TempDir dir;
  struct Case {
    Spec spec;
    Code code;
  };
  const Case cases[] = {
      {{DiskSubtype::kDynamic, 0}, Code::kInvalidParameter},
      {{DiskSubtype::kDynamic, 64 * kMiB + 100}, Code::kInvalidParameter},
      {{DiskSubtype::kDynamic, 64 * kMiB + 512, 0, 4096}, Code::kInvalidParameter},
      {{DiskSubtype::kDynamic, 64 * kTiB + kMiB}, Code::kInvalidParameter},
      {{DiskSubtype::kDynamic, 64 * kMiB, 3 * kMiB}, Code::kVhdInvalidBlockSize},
      {{DiskSubtype::kDynamic, 64 * kMiB, 512 * 1024}, Code::kVhdInvalidBlockSize},
      {{DiskSubtype::kDynamic, 64 * kMiB, 512 * kMiB}, Code::kVhdInvalidBlockSize},
      {{DiskSubtype::kDynamic, 64 * kMiB, 0, 1024}, Code::kUnsupportedSectorSize},
      {{DiskSubtype::kDynamic, 64 * kMiB, 0, 512, 2048}, Code::kUnsupportedSectorSize},
      {{DiskSubtype::kDynamic, 64 * kMiB, 0, 4096, 512}, Code::kUnsupportedSectorSize},
      {{static_cast<DiskSubtype>(9), 64 * kMiB}, Code::kInvalidParameter},
  };
  for (const Case& c : cases) {
    auto disk = Create(dir / "bad.vhdx", c.spec);
    ASSERT_FALSE(disk.ok()) << "size " << c.spec.size << " block " << c.spec.block_size;
    EXPECT_EQ(disk.status().code(), c.code) << "size " << c.spec.size << " block "
                                            << c.spec.block_size << ": " << disk.status().message();
    EXPECT_FALSE(fs::exists(dir / "bad.vhdx"));
  }
  // 64 TiB exactly is allowed.
  auto max = Create(dir / "max.vhdx", {DiskSubtype::kDynamic, 64 * kTiB});
  EXPECT_TRUE(max.ok()) << max.status().message();
}

TEST(VhdxCreate, RefusesToOverwriteAnExistingFile) {
  TempDir dir;
  { std::ofstream(dir / "x.vhdx") << "precious"; }
  auto disk = Create(dir / "x.vhdx", {DiskSubtype::kDynamic, 8 * kMiB});
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kFileExists);
  EXPECT_EQ(fs::file_size(dir / "x.vhdx"), 8u);
}

// --- open, probe, map --------------------------------------------------------------------------

TEST(VhdxOpen, DetectsAVhdxWithoutItsExtension) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "disk.vhdx", {DiskSubtype::kDynamic, 8 * kMiB}), nullptr);
  fs::rename(dir / "disk.vhdx", dir / "disk.img");
  auto disk = Open(dir / "disk.img");
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  EXPECT_EQ((*disk)->top().format(), DiskFormat::kVhdx);
}

TEST(VhdxOpen, ReadOnlyOpenRejectsWritesAndMetadataChanges) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "disk.vhdx", {DiskSubtype::kDynamic, 8 * kMiB}), nullptr);
  auto disk = MustOpen(dir / "disk.vhdx");
  ASSERT_NE(disk, nullptr);
  std::vector<std::byte> data(512);
  EXPECT_EQ(disk->Write(0, data).code(), Code::kWriteProtect);
  EXPECT_EQ(disk->top().Write(0, data).code(), Code::kWriteProtect);
  EXPECT_EQ(disk->top().SetUniqueId(Guid::Random()).code(), Code::kWriteProtect);
  EXPECT_EQ(disk->top().SetUserMetadata(Guid::Random(), data).code(), Code::kWriteProtect);
}

TEST(VhdxMap, DynamicDiskMapsBlocksAsZeroOrData) {
  TempDir dir;
  auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 16 * kMiB, kMiB});
  ASSERT_NE(disk, nullptr);
  std::vector<std::byte> data(4096, std::byte{7});
  ASSERT_TRUE(disk->Write(3 * kMiB + 4096, data).ok());
  ASSERT_TRUE(disk->Write(4 * kMiB, data).ok());
  Image& image = disk->top();
  auto zero = image.Map(0, 16 * kMiB);
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->kind, Extent::Kind::kZero);
  EXPECT_EQ(zero->length, 3 * kMiB);  // three unallocated blocks in one extent
  auto block3 = image.Map(3 * kMiB, 16 * kMiB);
  ASSERT_TRUE(block3.ok());
  EXPECT_EQ(block3->kind, Extent::Kind::kData);
  EXPECT_EQ(block3->file_offset % kMiB, 0u);
  // Blocks 3 and 4 were allocated one after the other: one extent.
  EXPECT_EQ(block3->length, 2 * kMiB);
}

TEST(VhdxMap, DifferencingDiskMapsRunsOfTheSectorBitmap) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "base.vhdx", {DiskSubtype::kDynamic, 16 * kMiB, kMiB}), nullptr);
  auto disk = MustCreate(dir / "child.avhdx",
                         {DiskSubtype::kDifferencing, 0, kMiB, 0, 0, dir / "base.vhdx"});
  ASSERT_NE(disk, nullptr);
  std::vector<std::byte> data(3 * 512, std::byte{7});
  ASSERT_TRUE(disk->Write(kMiB + 8 * 512, data).ok());
  Image& image = disk->top();
  auto parent = image.Map(0, 16 * kMiB);
  ASSERT_TRUE(parent.ok());
  EXPECT_EQ(parent->kind, Extent::Kind::kParent);
  EXPECT_EQ(parent->length, kMiB);
  auto before = image.Map(kMiB, kMiB);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->kind, Extent::Kind::kParent);
  EXPECT_EQ(before->length, 8 * 512u);
  auto written = image.Map(kMiB + 8 * 512, kMiB);
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(written->kind, Extent::Kind::kData);
  EXPECT_EQ(written->length, 3 * 512u);
  auto after = image.Map(kMiB + 11 * 512, kMiB);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->kind, Extent::Kind::kParent);
  EXPECT_EQ(after->length, kMiB - 11 * 512);
  auto& vhdx_image = Top(*disk);
  auto entry = vhdx_image.BatEntry(vhdx_image.geometry().PayloadIndex(1));
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(vhdx::BatState(*entry), vhdx::kPayloadPartiallyPresent);
  auto bitmap = vhdx_image.BatEntry(vhdx_image.geometry().BitmapIndex(0));
  ASSERT_TRUE(bitmap.ok());
  EXPECT_EQ(vhdx::BatState(*bitmap), vhdx::kBitmapPresent);
}

// --- metadata operations -----------------------------------------------------------------------

TEST(VhdxMetadata, UserItemsCanBeSetReplacedListedAndDeleted) {
  TempDir dir;
  const Guid a = Guid::Random();
  const Guid b = Guid::Random();
  std::vector<std::byte> one(100, std::byte{1});
  std::vector<std::byte> two(70000, std::byte{2});
  std::vector<std::byte> three(10, std::byte{3});
  {
    auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 8 * kMiB});
    ASSERT_NE(disk, nullptr);
    Image& image = disk->top();
    auto empty = image.ListUserMetadata();
    ASSERT_TRUE(empty.ok());
    EXPECT_TRUE(empty->empty());
    EXPECT_EQ(image.GetUserMetadata(a).status().code(), Code::kNotFound);
    EXPECT_EQ(image.DeleteUserMetadata(a).code(), Code::kNotFound);
    ASSERT_TRUE(image.SetUserMetadata(a, one).ok());
    ASSERT_TRUE(image.SetUserMetadata(b, two).ok());
    ASSERT_TRUE(image.SetUserMetadata(a, three).ok());  // replace
    auto got = image.GetUserMetadata(a);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, three);
  }
  {
    auto disk = MustOpen(dir / "d.vhdx", /*read_only=*/false);
    ASSERT_NE(disk, nullptr);
    Image& image = disk->top();
    auto ids = image.ListUserMetadata();
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(ids->size(), 2u);
    auto got_b = image.GetUserMetadata(b);
    ASSERT_TRUE(got_b.ok());
    EXPECT_EQ(*got_b, two);
    ASSERT_TRUE(image.DeleteUserMetadata(b).ok());
    ASSERT_TRUE(image.SetUserMetadata(b, {}).ok());  // an empty item
  }
  auto disk = MustOpen(dir / "d.vhdx");
  ASSERT_NE(disk, nullptr);
  auto got_a = disk->top().GetUserMetadata(a);
  ASSERT_TRUE(got_a.ok());
  EXPECT_EQ(*got_a, three);
  auto got_b = disk->top().GetUserMetadata(b);
  ASSERT_TRUE(got_b.ok());
  EXPECT_TRUE(got_b->empty());
}

TEST(VhdxMetadata, LimitsOfUserItems) {
  TempDir dir;
  auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 8 * kMiB});
  ASSERT_NE(disk, nullptr);
  Image& image = disk->top();
  std::vector<std::byte> too_big(kMiB + 1);
  EXPECT_EQ(image.SetUserMetadata(Guid::Random(), too_big).code(), Code::kInvalidParameter);
  // 1 MiB region: 64 KiB table, then items; two 500 KiB items do not both fit.
  std::vector<std::byte> big(500 * kKiB, std::byte{9});
  ASSERT_TRUE(image.SetUserMetadata(Guid::Random(), big).ok());
  const Status full = image.SetUserMetadata(Guid::Random(), big);
  EXPECT_EQ(full.code(), Code::kDiskFull) << full.message();
  // 1024 user items at most.
  for (int i = 0; i < 1023; ++i) {
    const Status status = image.SetUserMetadata(Guid::Random(), std::vector<std::byte>(8));
    ASSERT_TRUE(status.ok()) << i << ": " << status.message();
  }
  EXPECT_EQ(image.SetUserMetadata(Guid::Random(), std::vector<std::byte>(8)).code(),
            Code::kDiskFull);
  disk.reset();
  auto reopened = MustOpen(dir / "d.vhdx");
  ASSERT_NE(reopened, nullptr);
  auto ids = reopened->top().ListUserMetadata();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), 1024u);
}

TEST(VhdxMetadata, IdentityAndPhysicalSectorSizeChangesPersist) {
  TempDir dir;
  const Guid id = Guid::Random();
  {
    auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 8 * kMiB});
    ASSERT_NE(disk, nullptr);
    ASSERT_TRUE(disk->top().SetUniqueId(id).ok());
    EXPECT_EQ(disk->top().unique_id(), id);
    ASSERT_TRUE(disk->top().SetPhysicalSectorSize(512).ok());
    EXPECT_EQ(disk->top().SetPhysicalSectorSize(1024).code(), Code::kInvalidParameter);
  }
  auto disk = MustOpen(dir / "d.vhdx");
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->top().unique_id(), id);
  EXPECT_NE(disk->top().virtual_disk_id(), id) << "IDENTIFIER (DataWriteGuid) and VIRTUAL_DISK_ID "
                                                  "(Page 83) are separate";
  EXPECT_EQ(disk->top().physical_sector_size(), 512u);
}

TEST(VhdxMetadata, MetadataChangesDoNotChangeTheDataWriteGuid) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "base.vhdx", {DiskSubtype::kDynamic, 8 * kMiB}), nullptr);
  ASSERT_NE(
      MustCreate(dir / "child.avhdx", {DiskSubtype::kDifferencing, 0, 0, 0, 0, dir / "base.vhdx"}),
      nullptr);
  {
    auto base = MustOpen(dir / "base.vhdx", /*read_only=*/false);
    ASSERT_NE(base, nullptr);
    const Guid before = Top(*base).data_write_guid();
    const Guid file_before = Top(*base).file_write_guid();
    ASSERT_TRUE(base->top().SetUserMetadata(Guid::Random(), std::vector<std::byte>(16)).ok());
    EXPECT_EQ(Top(*base).data_write_guid(), before);
    EXPECT_NE(Top(*base).file_write_guid(), file_before);
  }
  EXPECT_TRUE(Open(dir / "child.avhdx").ok());
}

TEST(VhdxMetadata, LargeItemsThatDoNotFitTheLogTwiceStartANewLogSession) {
  TempDir dir;
  const Guid id = Guid::Random();
  std::vector<std::byte> first(600 * kKiB, std::byte{1});
  std::vector<std::byte> second(600 * kKiB, std::byte{2});
  {
    auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 8 * kMiB});
    ASSERT_NE(disk, nullptr);
    ASSERT_TRUE(disk->top().SetUserMetadata(id, first).ok());
    // Two 600 KiB entries do not fit the 1 MiB ring together: the second one ends the first
    // log session (flush, clear the LogGuid) and starts another at the head of the ring.
    const Status status = disk->top().SetUserMetadata(id, second);
    ASSERT_TRUE(status.ok()) << status.message();
    ASSERT_TRUE(disk->Write(0, std::vector<std::byte>(4096, std::byte{3})).ok());
    auto got = disk->top().GetUserMetadata(id);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, second);
  }
  auto disk = MustOpen(dir / "d.vhdx");
  ASSERT_NE(disk, nullptr);
  auto got = disk->top().GetUserMetadata(id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, second);
  disk.reset();
  // A 1 MiB item is valid in itself but cannot fit the 1 MiB region next to its table.
  auto rw = MustOpen(dir / "d.vhdx", /*read_only=*/false);
  ASSERT_NE(rw, nullptr);
  EXPECT_EQ(rw->top().SetUserMetadata(Guid::Random(), std::vector<std::byte>(kMiB)).code(),
            Code::kDiskFull);
}

TEST(VhdxSession, WriteGuidsChangeOnlyWhenTheFileChanges) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 8 * kMiB}), nullptr);
  const auto before = vdisk_unit::ReadWholeFile(dir / "d.vhdx");
  Guid data_write;
  Guid file_write;
  {
    // A read-write open that changes nothing leaves every byte as it was.
    auto disk = MustOpen(dir / "d.vhdx", /*read_only=*/false);
    ASSERT_NE(disk, nullptr);
    data_write = Top(*disk).data_write_guid();
    file_write = Top(*disk).file_write_guid();
  }
  EXPECT_TRUE(before == vdisk_unit::ReadWholeFile(dir / "d.vhdx"));
  auto disk = MustOpen(dir / "d.vhdx", /*read_only=*/false);
  ASSERT_NE(disk, nullptr);
  ASSERT_TRUE(disk->Write(0, std::vector<std::byte>(512, std::byte{1})).ok());
  const Guid data_after = Top(*disk).data_write_guid();
  const Guid file_after = Top(*disk).file_write_guid();
  EXPECT_NE(data_after, data_write);
  EXPECT_NE(file_after, file_write);
  // Only once per session.
  ASSERT_TRUE(disk->Write(8192, std::vector<std::byte>(512, std::byte{1})).ok());
  EXPECT_EQ(Top(*disk).data_write_guid(), data_after);
  EXPECT_EQ(Top(*disk).file_write_guid(), file_after);
}

// Writes a protective MBR and a GPT whose last partition ends at `end_lba` (exclusive).
void WriteGpt(VirtualDisk& disk, std::uint64_t end_lba) {
  const std::uint32_t ls = disk.sector_size();
  std::vector<std::byte> lba(3 * ls);
  auto* p = reinterpret_cast<std::uint8_t*>(lba.data());
  p[446 + 4] = 0xEE;
  const std::uint32_t one = 1, all = 0xFFFFFFFF;
  std::memcpy(p + 446 + 8, &one, 4);
  std::memcpy(p + 446 + 12, &all, 4);
  p[510] = 0x55;
  p[511] = 0xAA;
  std::uint8_t* h = p + ls;
  std::memcpy(h, "EFI PART", 8);
  const std::uint64_t entries_lba = 2;
  const std::uint32_t count = 4, size = 128;
  std::memcpy(h + 72, &entries_lba, 8);
  std::memcpy(h + 80, &count, 4);
  std::memcpy(h + 84, &size, 4);
  std::uint8_t* e = p + 2 * ls;
  for (int i = 0; i < 2; ++i) {
    std::uint8_t* entry = e + i * 128;
    entry[0] = 0xAF;  // a non-zero type GUID
    const std::uint64_t first = 34 + i * 100;
    const std::uint64_t last = i == 0 ? 100 : end_lba - 1;
    std::memcpy(entry + 32, &first, 8);
    std::memcpy(entry + 40, &last, 8);
  }
  ASSERT_TRUE(disk.Write(0, lba).ok());
}

TEST(VhdxMetadata, SmallestSafeVirtualSizeFollowsThePartitionTable) {
  TempDir dir;
  auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 64 * kMiB});
  ASSERT_NE(disk, nullptr);
  auto empty = disk->top().SmallestSafeVirtualSize();
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, 64 * kMiB);
  // MBR: one partition from LBA 2048 of 40960 sectors.
  std::vector<std::byte> mbr(512);
  auto* p = reinterpret_cast<std::uint8_t*>(mbr.data());
  p[446 + 4] = 0x07;
  const std::uint32_t start = 2048, count = 40960;
  std::memcpy(p + 446 + 8, &start, 4);
  std::memcpy(p + 446 + 12, &count, 4);
  p[510] = 0x55;
  p[511] = 0xAA;
  ASSERT_TRUE(disk->Write(0, mbr).ok());
  auto with_mbr = disk->top().SmallestSafeVirtualSize();
  ASSERT_TRUE(with_mbr.ok());
  EXPECT_EQ(*with_mbr, (2048 + 40960) * 512u);
  ASSERT_NO_FATAL_FAILURE(WriteGpt(*disk, 50000));
  auto with_gpt = disk->top().SmallestSafeVirtualSize();
  ASSERT_TRUE(with_gpt.ok());
  EXPECT_EQ(*with_gpt, 50000 * 512u);
}

// --- concurrency -------------------------------------------------------------------------------

std::vector<std::byte> ChunkPattern(std::uint64_t index, std::size_t size) {
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t v = index * 0x9E3779B97F4A7C15ull + i;
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, size - i));
  }
  return out;
}

// Four threads write interleaved chunks (so that they race for the same blocks) while a fifth
// reads; then every chunk must read back. The disk reads as zeros before. Each sector the reader
// sees must be wholly zeros or wholly the chunk's pattern, as on a disk: a sector part old and
// part new (torn) fails, as does data from anywhere else. Every other read is of a chunk a
// writer has under way, so reads overlap writes in flight on every run.
void ParallelWriters(VirtualDisk& disk, std::uint64_t chunk) {
  constexpr int kWriters = 4;
  constexpr std::uint64_t kIdle = ~std::uint64_t{0};
  const std::uint64_t chunks = disk.size() / chunk;
  std::mutex mutex;
  std::string failure;  // the first one
  const auto fail = [&](const std::string& what) {
    std::lock_guard lock(mutex);
    if (failure.empty()) failure = what;
  };
  std::atomic<bool> done{false};
  std::array<std::atomic<std::uint64_t>, kWriters> writing;  // the chunk each writer writes
  for (auto& w : writing) w = kIdle;
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint64_t i = t; i < chunks; i += kWriters) {
        const auto pattern = ChunkPattern(i, chunk);
        writing[t] = i;
        const Status status = disk.Write(i * chunk, pattern);
        if (!status.ok())
          fail("write of chunk " + std::to_string(i) + ": " + std::string(status.message()));
      }
      writing[t] = kIdle;
    });
  }
  std::thread reader([&] {
    std::vector<std::byte> buffer(chunk);
    const std::vector<std::byte> zeros(chunk);
    std::mt19937_64 rng(5);
    for (std::uint64_t n = 0; !done; ++n) {
      std::uint64_t i = n % 2 == 0 ? kIdle : writing[n / 2 % kWriters].load();
      if (i == kIdle) i = rng() % chunks;
      const Status status = disk.Read(i * chunk, buffer);
      if (!status.ok())
        fail("read of chunk " + std::to_string(i) + ": " + std::string(status.message()));
      const std::string torn =
          FirstTornSector(buffer, zeros, ChunkPattern(i, chunk), i * chunk, 512);
      if (!torn.empty()) fail("chunk " + std::to_string(i) + ": " + torn);
    }
  });
  for (auto& t : threads) t.join();
  done = true;
  reader.join();
  ASSERT_EQ(failure, "");
  std::vector<std::byte> buffer(chunk);
  for (std::uint64_t i = 0; i < chunks; ++i) {
    ASSERT_TRUE(disk.Read(i * chunk, buffer).ok());
    ASSERT_EQ(buffer, ChunkPattern(i, chunk)) << "chunk " << i;
  }
}

// --- WriteFromFile -------------------------------------------------------------------------

TEST(VhdxWriteFromFile, StoresWhatWriteWouldStoreCopyingInTheKernel) {
  for (const DiskSubtype subtype :
       {DiskSubtype::kFixed, DiskSubtype::kDynamic, DiskSubtype::kDifferencing}) {
    SCOPED_TRACE("subtype " + std::to_string(static_cast<int>(subtype)));
    TempDir dir;
    std::mt19937_64 rng(9);
    Spec spec;
    spec.size = 8 * kMiB;
    spec.block_size = static_cast<std::uint32_t>(kMiB);
    Model base_model;
    {
      auto base = MustCreate(dir / "base.vhdx", spec);
      ASSERT_NE(base, nullptr);
      RandomWrites(*base, base_model, rng, 6, 700 * kKiB, kMiB);
    }
    Model model;
    fs::path path = dir / "base.vhdx";
    if (subtype == DiskSubtype::kDifferencing) {
      path = dir / "child.vhdx";
      Spec child = spec;
      child.subtype = subtype;
      child.size = 0;
      child.parent = dir / "base.vhdx";
      ASSERT_NE(MustCreate(path, child), nullptr);
      model.parent = &base_model;
    } else if (subtype == DiskSubtype::kFixed) {
      path = dir / "fixed.vhdx";
      Spec fixed = spec;
      fixed.subtype = subtype;
      ASSERT_NE(MustCreate(path, fixed), nullptr);
    } else {
      model = base_model;
    }
    const auto bytes = RandomBytes(rng, 4 * kMiB);
    auto staging = platform::OpenOsFile(dir / "staging", platform::FileAccess::kReadWrite,
                                        platform::FileDisposition::kCreateNew);
    ASSERT_TRUE(staging.ok());
    ASSERT_TRUE((*staging)->WriteAt(8192, bytes).ok());
    {
      auto disk = MustOpen(path, /*read_only=*/false);
      ASSERT_NE(disk, nullptr);
      // Inside one block, across blocks, and a whole block.
      const std::pair<std::uint64_t, std::uint64_t> ranges[] = {
          {kMiB + 3 * 512, 11 * 512}, {3 * kMiB - 64 * kKiB, 1500 * kKiB}, {6 * kMiB, kMiB}};
      std::uint64_t from = 8192;
      for (const auto& [offset, length] : ranges) {
        auto method = disk->top().WriteFromFile(offset, length, **staging, from);
        ASSERT_TRUE(method.ok()) << method.status().message();
#ifdef __linux__
        EXPECT_EQ(*method, platform::CopyMethod::kKernel);
#endif
        model.Write(offset, std::span(bytes).subspan(from - 8192, length));
        from += length;
      }
    }
    auto disk = MustOpen(path);
    ASSERT_NE(disk, nullptr);
    Verify(*disk, model, rng, "after WriteFromFile");
  }
}

TEST(VhdxConcurrency, FourWritersOnADynamicDisk) {
  TempDir dir;
  {
    auto disk = MustCreate(dir / "d.vhdx", {DiskSubtype::kDynamic, 48 * kMiB, kMiB});
    ASSERT_NE(disk, nullptr);
    ASSERT_NO_FATAL_FAILURE(ParallelWriters(*disk, 96 * kKiB));
  }
  auto disk = MustOpen(dir / "d.vhdx");
  ASSERT_NE(disk, nullptr);
  std::vector<std::byte> buffer(96 * kKiB);
  for (std::uint64_t i = 0; i < 48 * kMiB / buffer.size(); ++i) {
    ASSERT_TRUE(disk->Read(i * buffer.size(), buffer).ok());
    ASSERT_EQ(buffer, ChunkPattern(i, buffer.size())) << "chunk " << i << " after reopening";
  }
}

TEST(VhdxConcurrency, FourWritersOnADifferencingDisk) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "base.vhdx", {DiskSubtype::kDynamic, 24 * kMiB, kMiB}), nullptr);
  {
    auto disk = MustCreate(dir / "child.avhdx",
                           {DiskSubtype::kDifferencing, 0, kMiB, 0, 0, dir / "base.vhdx"});
    ASSERT_NE(disk, nullptr);
    ASSERT_NO_FATAL_FAILURE(ParallelWriters(*disk, 20 * kKiB));
  }
  auto disk = MustOpen(dir / "child.avhdx");
  ASSERT_NE(disk, nullptr);
  std::vector<std::byte> buffer(20 * kKiB);
  for (std::uint64_t i = 0; i < 24 * kMiB / buffer.size(); ++i) {
    ASSERT_TRUE(disk->Read(i * buffer.size(), buffer).ok());
    ASSERT_EQ(buffer, ChunkPattern(i, buffer.size())) << "chunk " << i << " after reopening";
  }
}

// --- memory ------------------------------------------------------------------------------------

#if defined(__linux__) || defined(_WIN32)
using vdisk_testing::kSanitized;

#ifdef _WIN32
// Windows has no resettable peak: the measure is the commit charge (PagefileUsage; Wine reports
// no PrivateUsage) while the disk is open, after all its writes and reads.
constexpr const char* kMeasure = "commit charge";
std::uint64_t CurrentKiB() {
  PROCESS_MEMORY_COUNTERS counters{};
  if (!GetProcessMemoryInfo(GetCurrentProcess(), &counters, sizeof counters)) return 0;
  return counters.PagefileUsage / 1024;
}
std::uint64_t StartRssMeasurement() { return CurrentKiB(); }
std::uint64_t PeakKiB() { return CurrentKiB(); }
#else
constexpr const char* kMeasure = "VmRSS";
std::uint64_t StatusKiB(std::string_view field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::stoull(line.substr(field.size() + 1));
  }
  return 0;
}

// Starts a measurement: gives freed heap back to the kernel (so that reusing it shows up as
// growth) and resets the peak (VmHWM) to the current resident size.
std::uint64_t StartRssMeasurement() {
  malloc_trim(0);
  std::ofstream("/proc/self/clear_refs") << "5";
  return StatusKiB("VmRSS");
}
std::uint64_t PeakKiB() { return std::max(StatusKiB("VmRSS"), StatusKiB("VmHWM")); }
#endif

void HugeDiskStaysSmall(std::uint32_t block_size) {
  TempDir dir;
  const std::uint64_t size = 64 * kTiB;
  const std::uint64_t before = StartRssMeasurement();
  std::uint64_t peak = 0;
  {
    auto disk = MustCreate(dir / "huge.vhdx", {DiskSubtype::kDynamic, size, block_size});
    ASSERT_NE(disk, nullptr);
    disk.reset();
    disk = MustOpen(dir / "huge.vhdx", /*read_only=*/false);
    ASSERT_NE(disk, nullptr);
    std::mt19937_64 rng(block_size);
    std::vector<std::uint64_t> offsets;
    for (int i = 0; i < 40; ++i) offsets.push_back((rng() % (size / 4096)) * 4096);
    offsets.push_back(size - 4096);
    for (std::uint64_t offset : offsets) {
      ASSERT_TRUE(disk->Write(offset, ChunkPattern(offset, 4096)).ok()) << offset;
    }
    std::vector<std::byte> buffer(4096);
    for (std::uint64_t offset : offsets) {
      ASSERT_TRUE(disk->Read(offset, buffer).ok());
      ASSERT_EQ(buffer, ChunkPattern(offset, 4096)) << offset;
      ASSERT_TRUE(disk->Read((offset + 64 * kGiB) % size, buffer).ok());
    }
    peak = PeakKiB();
    ASSERT_GT(before, 0u) << "memory cannot be measured";
    std::printf(
        "[ RSS      ] 64 TiB dynamic VHDX, %u MiB blocks: %s %llu KiB before, peak %llu "
        "KiB through create, open, %zu writes and reads (+%lld KiB), %zu BAT pages "
        "resident\n",
        block_size / static_cast<std::uint32_t>(kMiB), kMeasure,
        static_cast<unsigned long long>(before),
        static_cast<unsigned long long>(peak), offsets.size(),
        static_cast<long long>(peak) - static_cast<long long>(before),
        Top(*disk).resident_bat_pages());
  }
  // Sanitizers keep freed memory in quarantine and add shadow memory: only plain builds measure.
  if (!kSanitized) EXPECT_LT(peak, before + 40 * 1024) << kMeasure << " grew by more than 40 MiB";
  auto disk = MustOpen(dir / "huge.vhdx");
  ASSERT_NE(disk, nullptr);
  std::vector<std::byte> buffer(4096);
  ASSERT_TRUE(disk->Read(size - 4096, buffer).ok());
  EXPECT_EQ(buffer, ChunkPattern(size - 4096, 4096));
}

TEST(VhdxMemory, A64TiBDiskWith32MiBBlocksStaysUnder40MiB) { HugeDiskStaysSmall(32 * kMiB); }
TEST(VhdxMemory, A64TiBDiskWith1MiBBlocksStaysUnder40MiB) { HugeDiskStaysSmall(1 * kMiB); }
#endif

}  // namespace
}  // namespace vdisk
