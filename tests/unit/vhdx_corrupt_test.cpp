// VHDX open on damaged or hostile input: each case asserts the specific error code and that the
// message names the structure at fault. Also the damage that Open tolerates (one bad header or
// region table, equal sequence numbers, unknown optional regions and items) and broken
// differencing chains.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "test_support.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhd/vhd_format.h"
#include "formats/vhd/vhd_provider.h"
#include "formats/vhdx/vhdx_format.h"
#include "formats/vhdx/vhdx_log.h"
#include "formats/vhdx/vhdx_metadata.h"
#include "formats/vhdx/vhdx_provider.h"
#include "support/file_bytes.h"
#include "support/provider_registry.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
using namespace vhdx;  // NOLINT(build/namespaces): test of the format's own structures

// Where the files we create put things.
constexpr std::uint64_t kLogOffset = kMiB;
constexpr std::uint64_t kMetadataOffset = 2 * kMiB;
constexpr std::uint64_t kBatOffset = 3 * kMiB;

using vdisk_unit::TempDir;

const ProviderRegistry& Registry() { return vdisk_testing::RegistryOf<MakeVhdProvider, MakeVhdxProvider>(); }

void Create(const fs::path& path, std::uint64_t size = 64 * kMiB, std::uint32_t block = kMiB,
            std::uint32_t logical = 0, const fs::path& parent = {}, int writes = 3) {
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhdx;
  request.options.virtual_size = size;
  request.options.block_size = block;
  request.options.logical_sector_size = logical;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  std::vector<std::byte> data(4096, std::byte{0xC5});
  for (int i = 0; i < writes; ++i) ASSERT_TRUE((*disk)->Write(i * 5 * kMiB, data).ok());
}

Result<std::unique_ptr<VirtualDisk>> Open(const fs::path& path, bool read_only = true) {
  DiskOpenRequest request;
  request.path = path;
  request.format = DiskFormat::kVhdx;
  request.options.read_only = read_only;
  return VirtualDisk::Open(Registry(), request);
}

void ExpectOpenFails(const fs::path& path, Code expected, std::string_view names) {
  auto disk = Open(path);
  ASSERT_FALSE(disk.ok()) << path << " opened, expected code " << static_cast<int>(expected);
  EXPECT_EQ(disk.status().code(), expected)
      << "expected code " << static_cast<int>(expected) << ", got "
      << static_cast<int>(disk.status().code()) << ": " << disk.status().message();
  EXPECT_NE(disk.status().message().find(names), std::string_view::npos)
      << "message \"" << disk.status().message() << "\" should name \"" << names << "\"";
  // A read-write open fails the same way (and must not have "repaired" anything).
  auto rw = Open(path, /*read_only=*/false);
  ASSERT_FALSE(rw.ok());
  EXPECT_EQ(rw.status().code(), expected) << rw.status().message();
}

void ExpectOpens(const fs::path& path) {
  for (bool read_only : {true, false}) {
    auto disk = Open(path, read_only);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    std::vector<std::byte> data(4096);
    ASSERT_TRUE((*disk)->Read(5 * kMiB, data).ok());
    EXPECT_EQ(data[0], std::byte{0xC5});
  }
}

using vdisk_testing::ReadFileBytes;
using vdisk_testing::WriteFileBytes;

template <typename T>
T Get(std::span<const std::byte> bytes, std::size_t offset = 0) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof v);
  return v;
}

template <typename T>
void Put(std::span<std::byte> bytes, std::size_t offset, const T& v) {
  std::memcpy(bytes.data() + offset, &v, sizeof v);
}

// Edits header `index` (0 or 1), recomputing its CRC unless told not to.
void EditHeader(const fs::path& path, int index, const std::function<void(Header&)>& edit,
                bool fix_crc = true) {
  const std::uint64_t offset = index == 0 ? kHeader1Offset : kHeader2Offset;
  auto bytes = ReadFileBytes(path, offset, kHeaderSize);
  Header h = Get<Header>(bytes);
  edit(h);
  Put(std::span(bytes), 0, h);
  if (fix_crc) {
    h.checksum.set(Crc32cWithZeroedField(bytes, offsetof(Header, checksum)));
    Put(std::span(bytes), 0, h);
  }
  WriteFileBytes(path, offset, bytes);
}

void EditBothHeaders(const fs::path& path, const std::function<void(Header&)>& edit) {
  EditHeader(path, 0, edit);
  EditHeader(path, 1, edit);
}

// Edits both region tables (or only `only` when >= 0), recomputing the CRC unless told not to.
void EditRegionTables(const fs::path& path,
                      const std::function<void(std::vector<std::byte>&)>& edit, bool fix_crc = true,
                      int only = -1) {
  for (int i = 0; i < 2; ++i) {
    if (only >= 0 && i != only) continue;
    const std::uint64_t offset = i == 0 ? kRegionTable1Offset : kRegionTable2Offset;
    auto table = ReadFileBytes(path, offset, kRegionTableSize);
    edit(table);
    if (fix_crc) {
      Le32 crc;
      crc.set(Crc32cWithZeroedField(table, 4));
      Put(std::span(table), 4, crc);
    }
    WriteFileBytes(path, offset, table);
  }
}

RegionTableEntry& Region(std::vector<std::byte>& table, int i) {
  return *reinterpret_cast<RegionTableEntry*>(table.data() + 16 + i * 32);
}
RegionTableHeader& RegionHeader(std::vector<std::byte>& table) {
  return *reinterpret_cast<RegionTableHeader*>(table.data());
}
// Our files list the BAT region first, then the metadata region.
constexpr int kBatRegion = 0;
constexpr int kMetadataRegion = 1;

// Edits the metadata region (table and items; no checksum covers it).
void EditMetadata(const fs::path& path, const std::function<void(std::vector<std::byte>&)>& edit) {
  auto region = ReadFileBytes(path, kMetadataOffset, kMiB);
  edit(region);
  WriteFileBytes(path, kMetadataOffset, region);
}

MetadataTableEntry& Item(std::vector<std::byte>& region, int i) {
  return *reinterpret_cast<MetadataTableEntry*>(region.data() + 32 + i * 32);
}
MetadataTableHeader& ItemHeader(std::vector<std::byte>& region) {
  return *reinterpret_cast<MetadataTableHeader*>(region.data());
}
int FindItem(std::vector<std::byte>& region, const Guid& id) {
  for (int i = 0; i < ItemHeader(region).entry_count.get(); ++i) {
    if (Item(region, i).item_id == id) return i;
  }
  ADD_FAILURE() << "no metadata item " << id.ToString();
  return 0;
}
std::span<std::byte> ItemData(std::vector<std::byte>& region, const Guid& id) {
  const auto& e = Item(region, FindItem(region, id));
  return std::span(region).subspan(e.offset.get(), e.length.get());
}
void RemoveItem(std::vector<std::byte>& region, const Guid& id) {
  const int i = FindItem(region, id);
  const int count = ItemHeader(region).entry_count.get();
  std::memmove(&Item(region, i), &Item(region, i + 1), (count - i - 1) * 32);
  ItemHeader(region).entry_count.set(static_cast<std::uint16_t>(count - 1));
}
void SetU32Item(const fs::path& path, const Guid& id, std::uint32_t value) {
  EditMetadata(path, [&](std::vector<std::byte>& region) {
    Le32 v;
    v.set(value);
    Put(ItemData(region, id), 0, v);
  });
}

void WriteBatEntry(const fs::path& path, std::uint64_t index, std::uint64_t value) {
  Le64 v;
  v.set(value);
  WriteFileBytes(path, kBatOffset + index * 8, std::as_bytes(std::span(&v, 1)));
}
std::uint64_t ReadBatEntry(const fs::path& path, std::uint64_t index) {
  return Get<Le64>(ReadFileBytes(path, kBatOffset + index * 8, 8)).get();
}

class VhdxCorrupt : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Create(path_)); }
  TempDir dir_;
  fs::path path_ = dir_ / "disk.vhdx";
};

// --- header section ----------------------------------------------------------------------------

TEST_F(VhdxCorrupt, FileSmallerThanTheHeaderSection) {
  fs::resize_file(path_, 512 * 1024);
  ExpectOpenFails(path_, Code::kFileCorrupt, "header section");
}

TEST_F(VhdxCorrupt, MissingFileTypeIdentifier) {
  WriteFileBytes(path_, 0, std::as_bytes(std::span("vhdXfile", 8)));
  ExpectOpenFails(path_, Code::kFileCorrupt, "file type identifier");
}

TEST_F(VhdxCorrupt, BothHeadersWithoutSignature) {
  EditBothHeaders(path_, [](Header& h) { h.signature.set(0x12345678); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "both headers");
}

TEST_F(VhdxCorrupt, BothHeadersWithBadChecksums) {
  EditHeader(
      path_, 0, [](Header& h) { h.log_length.set(2 * kMiB); }, /*fix_crc=*/false);
  EditHeader(
      path_, 1, [](Header& h) { h.reserved[7] = 1; }, /*fix_crc=*/false);
  auto disk = Open(path_);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kFileCorrupt);
  EXPECT_NE(disk.status().message().find("header 1 at 64 KiB: CRC-32C mismatch"), std::string::npos)
      << disk.status().message();
  EXPECT_NE(disk.status().message().find("header 2 at 128 KiB: CRC-32C mismatch"),
            std::string::npos)
      << disk.status().message();
}

TEST_F(VhdxCorrupt, OneBadHeaderIsToleratedAndRepairedByAWriter) {
  // Header 2 is current in a fresh file; damage it and the older header 1 is used.
  EditHeader(
      path_, 1, [](Header& h) { h.reserved[0] = 9; }, /*fix_crc=*/false);
  ExpectOpens(path_);  // the read-write open rewrote both headers when it began its session?
  {
    auto disk = Open(path_, false);
    ASSERT_TRUE(disk.ok());
    ASSERT_TRUE((*disk)->Write(0, std::vector<std::byte>(512, std::byte{0xC5})).ok());
  }
  for (int i = 0; i < 2; ++i) {
    const auto bytes = ReadFileBytes(path_, i == 0 ? kHeader1Offset : kHeader2Offset, kHeaderSize);
    EXPECT_EQ(Get<Header>(bytes).checksum.get(), Crc32cWithZeroedField(bytes, 4))
        << "header " << i + 1;
  }
}

TEST_F(VhdxCorrupt, EqualSequenceNumbersAreAccepted) {
  EditBothHeaders(path_, [](Header& h) { h.sequence_number.set(7); });
  ExpectOpens(path_);
}

TEST_F(VhdxCorrupt, UnsupportedVersion) {
  EditBothHeaders(path_, [](Header& h) { h.version.set(2); });
  ExpectOpenFails(path_, Code::kVhdUnsupportedVersion, "version 2");
}

TEST_F(VhdxCorrupt, UnsupportedLogVersionWithALogToReplay) {
  EditBothHeaders(path_, [](Header& h) {
    h.log_version.set(1);
    h.log_guid = Guid::Random();
  });
  ExpectOpenFails(path_, Code::kVhdUnsupportedVersion, "log version");
}

TEST_F(VhdxCorrupt, UnknownLogVersionWithoutALogIsFine) {
  EditBothHeaders(path_, [](Header& h) { h.log_version.set(1); });
  auto disk = Open(path_);
  EXPECT_TRUE(disk.ok()) << disk.status().message();
}

TEST_F(VhdxCorrupt, MisalignedLog) {
  EditBothHeaders(path_, [](Header& h) { h.log_offset.set(kMiB + 4096); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "log at");
}

TEST_F(VhdxCorrupt, LogPastTheEndOfTheFile) {
  EditBothHeaders(path_, [](Header& h) { h.log_offset.set(1024 * kMiB); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "log at");
}

// --- region table ------------------------------------------------------------------------------

TEST_F(VhdxCorrupt, OneBadRegionTableIsTolerated) {
  EditRegionTables(
      path_, [](auto& t) { t[100] = std::byte{1}; }, /*fix_crc=*/false, /*only=*/0);
  ExpectOpens(path_);
}

TEST_F(VhdxCorrupt, BothRegionTablesWithBadChecksums) {
  EditRegionTables(
      path_, [](auto& t) { t[60000] = std::byte{1}; }, /*fix_crc=*/false);
  auto disk = Open(path_);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kFileCorrupt);
  EXPECT_NE(disk.status().message().find("region table 1 at 192 KiB: CRC-32C mismatch"),
            std::string::npos)
      << disk.status().message();
}

TEST_F(VhdxCorrupt, RegionTableWithTooManyEntries) {
  EditRegionTables(path_, [](auto& t) { RegionHeader(t).entry_count.set(2048); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "at most 2047");
}

TEST_F(VhdxCorrupt, UnknownRequiredRegion) {
  const Guid unknown = Guid::Random();
  EditRegionTables(path_, [&](auto& t) {
    RegionHeader(t).entry_count.set(3);
    Region(t, 2).guid = unknown;
    Region(t, 2).file_offset.set(200 * kMiB);
    Region(t, 2).length.set(kMiB);
    Region(t, 2).required.set(1);
  });
  ExpectOpenFails(path_, Code::kNotSupported, unknown.ToString());
}

TEST_F(VhdxCorrupt, UnknownOptionalRegionIsIgnored) {
  EditRegionTables(path_, [&](auto& t) {
    RegionHeader(t).entry_count.set(3);
    Region(t, 2).guid = Guid::Random();
    Region(t, 2).file_offset.set(4 * kMiB);  // inside the file, clear of everything but data
    Region(t, 2).length.set(0);
  });
  ExpectOpens(path_);
}

TEST_F(VhdxCorrupt, OverlappingRegions) {
  EditRegionTables(path_, [](auto& t) { Region(t, kBatRegion).file_offset.set(kMetadataOffset); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "overlaps the BAT region");
}

TEST_F(VhdxCorrupt, RegionOverlappingTheLog) {
  EditRegionTables(path_, [](auto& t) { Region(t, kMetadataRegion).file_offset.set(kLogOffset); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "overlaps the log");
}

TEST_F(VhdxCorrupt, MisalignedRegion) {
  EditRegionTables(path_, [](auto& t) { Region(t, kBatRegion).file_offset.set(kBatOffset + 512); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "the BAT region");
}

TEST_F(VhdxCorrupt, RegionPastTheEndOfTheFile) {
  EditRegionTables(path_, [](auto& t) { Region(t, kBatRegion).length.set(512 * kMiB); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "ends past the end of the file");
}

TEST_F(VhdxCorrupt, MissingBatRegion) {
  EditRegionTables(path_, [](auto& t) {
    Region(t, kBatRegion) = Region(t, kMetadataRegion);
    RegionHeader(t).entry_count.set(1);
  });
  ExpectOpenFails(path_, Code::kFileCorrupt, "BAT region is missing");
}

TEST_F(VhdxCorrupt, BatRegionTooSmallForTheDisk) {
  TempDir dir;
  const fs::path path = dir / "big.vhdx";
  // 512 GiB in 1 MiB blocks: 524288 entries need 4 MiB of BAT.
  ASSERT_NO_FATAL_FAILURE(Create(path, 512ull << 30, kMiB, 0, {}, 0));
  EditRegionTables(path, [](auto& t) { Region(t, kBatRegion).length.set(kMiB); });
  ExpectOpenFails(path, Code::kFileCorrupt, "cannot hold");
}

// --- metadata ----------------------------------------------------------------------------------

TEST_F(VhdxCorrupt, MetadataTableWithoutSignature) {
  EditMetadata(path_, [](auto& r) { r[0] = std::byte{'M'}; });
  ExpectOpenFails(path_, Code::kFileCorrupt, "metadata table");
}

TEST_F(VhdxCorrupt, MetadataTableWithTooManyEntries) {
  EditMetadata(path_, [](auto& r) { ItemHeader(r).entry_count.set(2048); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "metadata table");
}

TEST_F(VhdxCorrupt, OverlappingMetadataItems) {
  EditMetadata(path_, [](auto& r) {
    Item(r, FindItem(r, kPage83DataGuid))
        .offset.set(Item(r, FindItem(r, kVirtualDiskSizeGuid)).offset.get() + 4);
  });
  ExpectOpenFails(path_, Code::kFileCorrupt, "overlaps metadata item");
}

TEST_F(VhdxCorrupt, MetadataItemInsideTheTable) {
  EditMetadata(path_, [](auto& r) { Item(r, FindItem(r, kFileParametersGuid)).offset.set(4096); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "File Parameters");
}

TEST_F(VhdxCorrupt, MetadataItemOutsideTheRegion) {
  EditMetadata(path_, [](auto& r) { Item(r, FindItem(r, kPage83DataGuid)).offset.set(kMiB - 8); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "Page 83 Data");
}

TEST_F(VhdxCorrupt, MissingRequiredMetadataItem) {
  EditMetadata(path_, [](auto& r) { RemoveItem(r, kVirtualDiskSizeGuid); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "required metadata item Virtual Disk Size missing");
}

TEST_F(VhdxCorrupt, ShortMetadataItem) {
  EditMetadata(path_, [](auto& r) { Item(r, FindItem(r, kPage83DataGuid)).length.set(8); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "Page 83 Data");
}

TEST_F(VhdxCorrupt, UnknownRequiredMetadataItem) {
  const Guid unknown = Guid::Random();
  EditMetadata(path_, [&](auto& r) {
    const int n = ItemHeader(r).entry_count.get();
    Item(r, n).item_id = unknown;
    Item(r, n).offset.set(512 * 1024);
    Item(r, n).length.set(16);
    Item(r, n).flags.set(kMetadataIsRequired);
    ItemHeader(r).entry_count.set(static_cast<std::uint16_t>(n + 1));
  });
  ExpectOpenFails(path_, Code::kNotSupported, unknown.ToString());
}

TEST_F(VhdxCorrupt, UnknownOptionalMetadataItemIsKept) {
  const Guid unknown = Guid::Random();
  EditMetadata(path_, [&](auto& r) {
    const int n = ItemHeader(r).entry_count.get();
    Item(r, n).item_id = unknown;
    Item(r, n).offset.set(512 * 1024);
    Item(r, n).length.set(16);
    ItemHeader(r).entry_count.set(static_cast<std::uint16_t>(n + 1));
  });
  ExpectOpens(path_);
  {
    // A metadata update keeps the item.
    auto disk = Open(path_, false);
    ASSERT_TRUE(disk.ok());
    ASSERT_TRUE((*disk)->top().SetUserMetadata(Guid::Random(), std::vector<std::byte>(10)).ok());
  }
  const auto region = ReadFileBytes(path_, kMetadataOffset, kMetadataTableSize);
  bool kept = false;
  for (int i = 0; i < Get<MetadataTableHeader>(region).entry_count.get(); ++i)
    kept |= Get<MetadataTableEntry>(region, 32 + i * 32).item_id == unknown;
  EXPECT_TRUE(kept);
}

TEST_F(VhdxCorrupt, BlockSizeNotAPowerOfTwo) {
  SetU32Item(path_, kFileParametersGuid, 3 * kMiB);
  ExpectOpenFails(path_, Code::kVhdInvalidBlockSize, "File Parameters");
}

TEST_F(VhdxCorrupt, BlockSizeBelow1MiB) {
  SetU32Item(path_, kFileParametersGuid, 512 * 1024);
  ExpectOpenFails(path_, Code::kVhdInvalidBlockSize, "block size 524288");
}

TEST_F(VhdxCorrupt, BadLogicalSectorSize) {
  SetU32Item(path_, kLogicalSectorSizeGuid, 1024);
  ExpectOpenFails(path_, Code::kUnsupportedSectorSize, "Logical Sector Size");
}

TEST_F(VhdxCorrupt, BadPhysicalSectorSize) {
  SetU32Item(path_, kPhysicalSectorSizeGuid, 2048);
  ExpectOpenFails(path_, Code::kUnsupportedSectorSize, "Physical Sector Size");
}

TEST_F(VhdxCorrupt, VirtualSizeNotAMultipleOfTheSector) {
  SetU32Item(path_, kLogicalSectorSizeGuid, 4096);
  EditMetadata(path_, [](auto& r) {
    Le64 v;
    v.set(64 * kMiB - 512);
    Put(ItemData(r, kVirtualDiskSizeGuid), 0, v);
  });
  ExpectOpenFails(path_, Code::kVhdInvalidSize, "Virtual Disk Size");
}

TEST_F(VhdxCorrupt, VirtualSizeAbove64TiB) {
  EditMetadata(path_, [](auto& r) {
    Le64 v;
    v.set(65 * kTiB);
    Put(ItemData(r, kVirtualDiskSizeGuid), 0, v);
  });
  ExpectOpenFails(path_, Code::kVhdInvalidSize, "Virtual Disk Size");
}

// --- BAT ---------------------------------------------------------------------------------------

TEST_F(VhdxCorrupt, BatEntryBeyondTheFile) {
  WriteBatEntry(path_, 1, MakeBatEntry(kPayloadFullyPresent, 900 * kMiB));
  ExpectOpenFails(path_, Code::kFileCorrupt, "BAT entry 1 (payload block 1)");
}

TEST_F(VhdxCorrupt, BatEntryOverlappingTheLog) {
  WriteBatEntry(path_, 1, MakeBatEntry(kPayloadFullyPresent, kLogOffset));
  ExpectOpenFails(path_, Code::kFileCorrupt, "overlaps the log");
}

TEST_F(VhdxCorrupt, BatEntryOverlappingTheMetadataRegion) {
  WriteBatEntry(path_, 1, MakeBatEntry(kPayloadFullyPresent, kMetadataOffset));
  ExpectOpenFails(path_, Code::kFileCorrupt, "overlaps the metadata region");
}

TEST_F(VhdxCorrupt, BatEntryInTheHeaderSection) {
  WriteBatEntry(path_, 1, MakeBatEntry(kPayloadFullyPresent, 0));
  ExpectOpenFails(path_, Code::kFileCorrupt, "header section");
}

TEST_F(VhdxCorrupt, MisalignedBatEntry) {
  WriteBatEntry(path_, 0, ReadBatEntry(path_, 0) | (1u << 12));
  ExpectOpenFails(path_, Code::kFileCorrupt, "not 1 MiB aligned");
}

TEST_F(VhdxCorrupt, TwoBatEntriesSharingABlock) {
  WriteBatEntry(path_, 2, ReadBatEntry(path_, 0));
  ExpectOpenFails(path_, Code::kFileCorrupt, "overlaps another");
}

TEST_F(VhdxCorrupt, ReservedBatState) {
  WriteBatEntry(path_, 3, 4);
  ExpectOpenFails(path_, Code::kFileCorrupt, "state 4 is reserved");
}

TEST_F(VhdxCorrupt, PartiallyPresentBlockInADynamicDisk) {
  WriteBatEntry(path_, 0, (ReadBatEntry(path_, 0) & ~kBatStateMask) | kPayloadPartiallyPresent);
  ExpectOpenFails(path_, Code::kFileCorrupt, "partially present");
}

TEST_F(VhdxCorrupt, PartiallyPresentBlockWithoutItsSectorBitmap) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(Create(dir / "base.vhdx", 64 * kMiB, kMiB, 0, {}, 0));
  const fs::path child = dir / "child.avhdx";
  ASSERT_NO_FATAL_FAILURE(Create(child, 0, kMiB, 0, dir / "base.vhdx", 1));
  ASSERT_EQ(BatState(ReadBatEntry(child, 0)), kPayloadPartiallyPresent);
  // Chunk ratio 4096 (1 MiB blocks, 512-byte sectors): chunk 0's bitmap entry is index 4096.
  ASSERT_EQ(BatState(ReadBatEntry(child, 4096)), kBitmapPresent);
  WriteBatEntry(child, 4096, 0);
  ExpectOpenFails(child, Code::kFileCorrupt, "sector bitmap block 0");
}

TEST_F(VhdxCorrupt, ZeroStateBlocksReadAsZerosEvenInADifferencingDisk) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(Create(dir / "base.vhdx", 64 * kMiB, kMiB, 0, {}, 4));
  const fs::path child = dir / "child.avhdx";
  ASSERT_NO_FATAL_FAILURE(Create(child, 0, kMiB, 0, dir / "base.vhdx", 0));
  // §2.5.1.1: ZERO, UNMAPPED and UNDEFINED never fall through to the parent.
  WriteBatEntry(child, 0, kPayloadZero);
  WriteBatEntry(child, 5, kPayloadUnmapped);
  WriteBatEntry(child, 10, kPayloadUndefined);
  DiskOpenRequest request;
  request.path = child;
  auto disk = VirtualDisk::Open(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  std::vector<std::byte> data(4096);
  for (std::uint64_t block : {0, 5, 10}) {
    ASSERT_TRUE((*disk)->Read(block * kMiB, data).ok());
    EXPECT_EQ(data[0], std::byte{0}) << "block " << block << " fell through to the parent";
  }
  ASSERT_TRUE((*disk)->Read(15 * kMiB, data).ok());  // NOT_PRESENT: reads the parent
  EXPECT_EQ(data[0], std::byte{0xC5});
}

// --- log ---------------------------------------------------------------------------------------

TEST_F(VhdxCorrupt, LogGuidWithoutAnyLogEntry) {
  EditBothHeaders(path_, [](Header& h) { h.log_guid = Guid::Random(); });
  ExpectOpenFails(path_, Code::kFileCorrupt, "no valid log sequence");
}

TEST_F(VhdxCorrupt, CorruptLogEntryThatMustBeReplayed) {
  const Guid log_guid = Guid::Random();
  auto entry = BuildLogEntry(
      log_guid, 1, 0,
      std::vector<LogUpdate>{LogUpdate::Data(kBatOffset, std::vector<std::byte>(4096))}, 4 * kMiB,
      4 * kMiB);
  entry[200] = std::byte{0x42};  // inside the descriptor sector, covered by the CRC
  WriteFileBytes(path_, kLogOffset, entry);
  EditBothHeaders(path_, [&](Header& h) { h.log_guid = log_guid; });
  ExpectOpenFails(path_, Code::kFileCorrupt, "log entry at log offset 0: CRC-32C mismatch");
}

TEST_F(VhdxCorrupt, LogEntryThatWouldOverwriteTheHeaders) {
  const Guid log_guid = Guid::Random();
  const auto entry = BuildLogEntry(
      log_guid, 1, 0,
      std::vector<LogUpdate>{LogUpdate::Data(kHeader1Offset, std::vector<std::byte>(4096))},
      4 * kMiB, 4 * kMiB);
  WriteFileBytes(path_, kLogOffset, entry);
  EditBothHeaders(path_, [&](Header& h) { h.log_guid = log_guid; });
  ExpectOpenFails(path_, Code::kFileCorrupt, "would overwrite the file identifier or the headers");
}

TEST_F(VhdxCorrupt, LogOfATruncatedFile) {
  const Guid log_guid = Guid::Random();
  const auto entry = BuildLogEntry(
      log_guid, 1, 0,
      std::vector<LogUpdate>{LogUpdate::Data(kBatOffset, ReadFileBytes(path_, kBatOffset, 4096))},
      1024 * kMiB, 1024 * kMiB);
  WriteFileBytes(path_, kLogOffset, entry);
  EditBothHeaders(path_, [&](Header& h) { h.log_guid = log_guid; });
  ExpectOpenFails(path_, Code::kFileCorrupt, "truncated");
}

// --- parents -----------------------------------------------------------------------------------

class VhdxCorruptChain : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(Create(base_, 64 * kMiB, kMiB, 0, {}, 3));
    ASSERT_NO_FATAL_FAILURE(Create(child_, 0, kMiB, 0, base_, 1));
  }
  // Rewrites the child's parent locator item with `locator`.
  void SetLocator(const ParentLocator& locator) {
    const auto bytes = SerializeParentLocator(locator);
    EditMetadata(child_, [&](auto& r) {
      auto& e = Item(r, FindItem(r, kParentLocatorGuid));
      e.length.set(static_cast<std::uint32_t>(bytes.size()));
      std::memcpy(r.data() + e.offset.get(), bytes.data(), bytes.size());
    });
  }
  ParentLocator Locator() {
    auto region = ReadFileBytes(child_, kMetadataOffset, kMiB);
    auto parsed = ParseParentLocator(ItemData(region, kParentLocatorGuid));
    EXPECT_TRUE(parsed.ok());
    return parsed.ok() ? *parsed : ParentLocator{};
  }
  Result<std::unique_ptr<VirtualDisk>> OpenChain() {
    DiskOpenRequest request;
    request.path = child_;
    return VirtualDisk::Open(Registry(), request);
  }
  TempDir dir_;
  fs::path base_ = dir_ / "base.vhdx";
  fs::path child_ = dir_ / "child.avhdx";
};

TEST_F(VhdxCorruptChain, ParentLocatorWithoutLinkage) {
  ParentLocator locator = Locator();
  std::erase_if(locator.entries, [](const auto& kv) { return kv.first == "parent_linkage"; });
  locator.Set("parent_linkage_x", "{00000000-0000-0000-0000-000000000000}");
  SetLocator(locator);
  ExpectOpenFails(child_, Code::kFileCorrupt, "parent_linkage missing");
}

TEST_F(VhdxCorruptChain, ParentLocatorWithALinkageThatIsNoGuid) {
  ParentLocator locator = Locator();
  locator.Set("parent_linkage", "not-a-guid");
  SetLocator(locator);
  ExpectOpenFails(child_, Code::kFileCorrupt, "Parent Locator");
}

TEST_F(VhdxCorruptChain, ParentLocatorOfAnUnknownType) {
  ParentLocator locator = Locator();
  locator.type = Guid::Random();
  SetLocator(locator);
  ExpectOpenFails(child_, Code::kNotSupported, "locator type");
}

TEST_F(VhdxCorruptChain, DifferencingDiskWithoutParentLocator) {
  EditMetadata(child_, [](auto& r) { RemoveItem(r, kParentLocatorGuid); });
  ExpectOpenFails(child_, Code::kFileCorrupt, "Parent Locator missing");
}

TEST_F(VhdxCorruptChain, ParentLocatorWithoutAUsablePath) {
  ParentLocator locator = Locator();
  std::erase_if(locator.entries, [](const auto& kv) { return kv.first != "parent_linkage"; });
  SetLocator(locator);
  auto disk = OpenChain();
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kVhdParentNotFound) << disk.status().message();
  EXPECT_NE(disk.status().message().find("no locator"), std::string_view::npos);
  // The child alone still opens.
  DiskOpenRequest alone;
  alone.path = child_;
  alone.no_parents = true;
  EXPECT_TRUE(VirtualDisk::Open(Registry(), alone).ok());
}

TEST_F(VhdxCorruptChain, ParentIdentifierMismatch) {
  ParentLocator locator = Locator();
  locator.Set("parent_linkage", "{0f0e0d0c-0b0a-0908-0706-050403020100}");
  SetLocator(locator);
  auto disk = OpenChain();
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kVhdChildParentIdMismatch) << disk.status().message();
  EXPECT_NE(disk.status().message().find("parent_linkage"), std::string_view::npos);
}

TEST_F(VhdxCorruptChain, SecondLinkageMatches) {
  ParentLocator locator = Locator();
  const std::string real = *locator.Find("parent_linkage");
  locator.Set("parent_linkage", "{0f0e0d0c-0b0a-0908-0706-050403020100}");
  locator.Set("parent_linkage2", real);
  SetLocator(locator);
  auto disk = OpenChain();
  EXPECT_TRUE(disk.ok()) << disk.status().message();
}

TEST_F(VhdxCorruptChain, MissingParent) {
  fs::remove(base_);
  auto disk = OpenChain();
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kVhdParentNotFound) << disk.status().message();
  EXPECT_NE(disk.status().message().find("base.vhdx"), std::string_view::npos);
}

TEST_F(VhdxCorruptChain, ParentOfAnotherSize) {
  EditMetadata(child_, [](auto& r) {
    Le64 v;
    v.set(32 * kMiB);
    Put(ItemData(r, kVirtualDiskSizeGuid), 0, v);
  });
  auto disk = OpenChain();
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kVhdChildParentSizeMismatch) << disk.status().message();
}

TEST_F(VhdxCorruptChain, VhdParentIsAMismatch) {
  // A VHD at the parent's path: a VHDX child needs a VHDX parent.
  fs::remove(base_);
  DiskCreateRequest vhd;
  vhd.path = dir_ / "base.vhd";
  vhd.format = DiskFormat::kVhd;
  vhd.options.virtual_size = 64 * kMiB;
  ASSERT_TRUE(VirtualDisk::Create(Registry(), vhd).ok());
  fs::rename(dir_ / "base.vhd", base_);
  auto disk = OpenChain();
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kVhdChildParentIdMismatch) << disk.status().message();
}

}  // namespace
}  // namespace vdisk
