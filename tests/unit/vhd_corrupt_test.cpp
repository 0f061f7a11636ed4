// VHD open on damaged or hostile input: each case asserts the specific error code. Also the
// recoveries that Open performs (footer copy at offset 0, old 511-byte footers) and broken
// differencing chains (missing parent, loops, wrong parent).
#include <gtest/gtest.h>

#include <algorithm>
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
#include "support/file_bytes.h"
#include "support/provider_registry.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
using vhd::DynamicHeader;
using vhd::Footer;
constexpr std::uint32_t kMiB = 1024 * 1024;
constexpr std::uint64_t kHeaderOffset = 512;  // where Create puts the dynamic header
constexpr std::uint64_t kTableOffset = 1536;  // and the BAT

using vdisk_unit::TempDir;

const ProviderRegistry& Registry() { return vdisk_testing::RegistryOf<MakeVhdProvider>(); }

// Creates an image and closes it; returns its unique id.
Guid CreateImage(const fs::path& path, DiskSubtype subtype, std::uint64_t size,
                 std::uint32_t block_size = 0, const fs::path& parent = {},
                 const std::vector<std::uint64_t>& write_offsets = {}) {
  DiskCreateRequest request;
  request.path = path;
  request.options.subtype = subtype;
  request.options.virtual_size = size;
  request.options.block_size = block_size;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(Registry(), request);
  if (!disk.ok()) {
    ADD_FAILURE() << "create " << path << ": " << disk.status().message();
    return {};
  }
  std::vector<std::byte> data(4096, std::byte{0xC5});
  for (std::uint64_t offset : write_offsets) {
    const Status status = (*disk)->Write(offset, data);
    EXPECT_TRUE(status.ok()) << status.message();
  }
  return (*disk)->top().unique_id();
}

Result<std::unique_ptr<VirtualDisk>> Open(const fs::path& path, bool read_only = true) {
  DiskOpenRequest request;
  request.path = path;
  request.options.read_only = read_only;
  return VirtualDisk::Open(Registry(), request);
}

void ExpectOpenFails(const fs::path& path, Code expected) {
  auto disk = Open(path);
  ASSERT_FALSE(disk.ok()) << path << " opened, expected code " << static_cast<int>(expected);
  EXPECT_EQ(disk.status().code(), expected)
      << "expected code " << static_cast<int>(expected) << ", got "
      << static_cast<int>(disk.status().code()) << ": " << disk.status().message();
  EXPECT_FALSE(disk.status().message().empty());
}

using vdisk_testing::ReadFileBytes;
using vdisk_testing::WriteFileBytes;

template <typename T>
void FixChecksum(T& value, std::size_t checksum_offset) {
  std::vector<std::byte> bytes(sizeof(T));
  std::memcpy(bytes.data(), &value, sizeof(T));
  const std::uint32_t sum = vhd::ComputeChecksum(bytes, checksum_offset);
  vhd::Be32 field;
  field.set(sum);
  std::memcpy(reinterpret_cast<std::byte*>(&value) + checksum_offset, &field, 4);
}

// Edits the end footer (and the copy at offset 0 of a dynamic image), keeping the checksum
// valid unless `fix_checksum` is false.
void PatchFooter(const fs::path& path, const std::function<void(Footer&)>& edit,
                 bool fix_checksum = true) {
  const std::uint64_t size = fs::file_size(path);
  auto footer = vdisk_testing::ReadFileStruct<Footer>(path, size - 512);
  const bool dynamic = footer.disk_type.get() != 2;
  edit(footer);
  if (fix_checksum) FixChecksum(footer, vhd::kFooterChecksumOffset);
  vdisk_testing::WriteFileStruct(path, size - 512, footer);
  if (dynamic) vdisk_testing::WriteFileStruct(path, 0, footer);
}

void PatchHeader(const fs::path& path, const std::function<void(DynamicHeader&)>& edit,
                 bool fix_checksum = true) {
  auto header = vdisk_testing::ReadFileStruct<DynamicHeader>(path, kHeaderOffset);
  edit(header);
  if (fix_checksum) FixChecksum(header, vhd::kDynamicHeaderChecksumOffset);
  vdisk_testing::WriteFileStruct(path, kHeaderOffset, header);
}

std::uint32_t BatEntry(const fs::path& path, std::uint32_t index) {
  return vdisk_testing::ReadFileStruct<vhd::Be32>(path, kTableOffset + 4 * index).get();
}

void SetBatEntry(const fs::path& path, std::uint32_t index, std::uint32_t value) {
  vhd::Be32 entry;
  entry.set(value);
  vdisk_testing::WriteFileStruct(path, kTableOffset + 4 * index, entry);
}

// Replaces every UTF-16 (both byte orders) occurrence of `from` with `to` (same length) in the
// metadata of a differencing image and makes it expect `parent_id`.
void RepointParent(const fs::path& path, const std::string& from, const std::string& to,
                   const Guid& parent_id) {
  ASSERT_EQ(from.size(), to.size());
  const std::size_t metadata =
      static_cast<std::size_t>(std::min<std::uintmax_t>(fs::file_size(path), 64 * 1024));
  auto bytes = ReadFileBytes(path, 0, metadata);
  int replaced = 0;
  for (bool big_endian : {false, true}) {
    const auto f = vhd::Utf8ToUtf16(from, big_endian);
    const auto t = vhd::Utf8ToUtf16(to, big_endian);
    for (auto it = bytes.begin();
         (it = std::search(it, bytes.end(), f.begin(), f.end())) != bytes.end();) {
      it = std::copy(t.begin(), t.end(), it);
      ++replaced;
    }
  }
  EXPECT_EQ(replaced, 3);  // W2ru, W2ku, parent name
  WriteFileBytes(path, 0, bytes);
  PatchHeader(path, [&](DynamicHeader& h) {
    std::memcpy(h.parent_unique_id.data(), parent_id.bytes.data(), 16);
  });
}

// --- footer ------------------------------------------------------------------------------

TEST(VhdOpen, RejectsFileTooSmallForAFooter) {
  TempDir dir;
  { std::ofstream(dir / "tiny.vhd") << "conectix but far too short"; }
  ExpectOpenFails(dir / "tiny.vhd", Code::kVhdFooterMissing);
}

TEST(VhdOpen, RejectsTruncatedFooter) {
  TempDir dir;
  CreateImage(dir / "t.vhd", DiskSubtype::kFixed, kMiB);
  fs::resize_file(dir / "t.vhd", kMiB + 412);
  ExpectOpenFails(dir / "t.vhd", Code::kVhdFooterMissing);
}

TEST(VhdOpen, RejectsFooterWithBadChecksum) {
  TempDir dir;
  CreateImage(dir / "c.vhd", DiskSubtype::kFixed, kMiB);
  PatchFooter(
      dir / "c.vhd", [](Footer& f) { f.unique_id[3] ^= 1; }, /*fix_checksum=*/false);
  ExpectOpenFails(dir / "c.vhd", Code::kVhdFooterChecksumMismatch);
}

TEST(VhdOpen, RejectsDynamicImageWhoseFooterCopiesBothHaveBadChecksums) {
  TempDir dir;
  CreateImage(dir / "c.vhd", DiskSubtype::kDynamic, kMiB);
  PatchFooter(
      dir / "c.vhd", [](Footer& f) { f.unique_id[3] ^= 1; }, /*fix_checksum=*/false);
  ExpectOpenFails(dir / "c.vhd", Code::kVhdFooterChecksumMismatch);
}

TEST(VhdOpen, RejectsFooterWithBadCookie) {
  TempDir dir;
  CreateImage(dir / "k.vhd", DiskSubtype::kFixed, kMiB);
  PatchFooter(dir / "k.vhd", [](Footer& f) { f.cookie[0] = 'x'; });
  ExpectOpenFails(dir / "k.vhd", Code::kVhdFooterMissing);
}

TEST(VhdOpen, RejectsUnsupportedFileFormatVersion) {
  TempDir dir;
  CreateImage(dir / "v.vhd", DiskSubtype::kDynamic, kMiB);
  PatchFooter(dir / "v.vhd", [](Footer& f) { f.file_format_version.set(0x00020000); });
  ExpectOpenFails(dir / "v.vhd", Code::kVhdUnsupportedVersion);
}

TEST(VhdOpen, RejectsUnknownDiskType) {
  TempDir dir;
  for (std::uint32_t type : {0u, 1u, 5u, 6u, 0x02000000u}) {
    const fs::path path = dir / ("type" + std::to_string(type) + ".vhd");
    CreateImage(path, DiskSubtype::kFixed, kMiB);
    PatchFooter(path, [type](Footer& f) { f.disk_type.set(type); });
    SCOPED_TRACE("disk type " + std::to_string(type));
    ExpectOpenFails(path, Code::kVhdInvalidType);
  }
}

TEST(VhdOpen, RejectsSizeThatIsNotAMultipleOf512) {
  TempDir dir;
  CreateImage(dir / "s.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  PatchFooter(dir / "s.vhd", [](Footer& f) { f.current_size.set(4 * kMiB - 100); });
  ExpectOpenFails(dir / "s.vhd", Code::kVhdInvalidSize);
}

TEST(VhdOpen, RejectsSizeAbove2040GiB) {
  TempDir dir;
  CreateImage(dir / "s.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  PatchFooter(dir / "s.vhd", [](Footer& f) { f.current_size.set(2041ull << 30); });
  ExpectOpenFails(dir / "s.vhd", Code::kVhdInvalidSize);
}

TEST(VhdOpen, RejectsFixedFileShorterThanItsSize) {
  TempDir dir;
  CreateImage(dir / "f.vhd", DiskSubtype::kFixed, kMiB);
  PatchFooter(dir / "f.vhd", [](Footer& f) { f.current_size.set(kMiB + 512); });
  ExpectOpenFails(dir / "f.vhd", Code::kVhdInvalidFileSize);
}

// --- dynamic header ----------------------------------------------------------------------

TEST(VhdOpen, RejectsDynamicHeaderWithBadChecksum) {
  TempDir dir;
  CreateImage(dir / "h.vhd", DiskSubtype::kDynamic, kMiB);
  PatchHeader(
      dir / "h.vhd", [](DynamicHeader& h) { h.reserved2[7] = 1; }, false);
  ExpectOpenFails(dir / "h.vhd", Code::kVhdSparseHeaderChecksumMismatch);
}

TEST(VhdOpen, RejectsDynamicHeaderWithBadCookie) {
  TempDir dir;
  CreateImage(dir / "h.vhd", DiskSubtype::kDynamic, kMiB);
  PatchHeader(dir / "h.vhd", [](DynamicHeader& h) { h.cookie[2] = 'X'; });
  ExpectOpenFails(dir / "h.vhd", Code::kVhdSparseHeaderCorrupt);
}

TEST(VhdOpen, RejectsUnsupportedDynamicHeaderVersion) {
  TempDir dir;
  CreateImage(dir / "h.vhd", DiskSubtype::kDynamic, kMiB);
  PatchHeader(dir / "h.vhd", [](DynamicHeader& h) { h.header_version.set(0x00020000); });
  ExpectOpenFails(dir / "h.vhd", Code::kVhdSparseHeaderUnsupportedVersion);
}

TEST(VhdOpen, RejectsDataOffsetOutsideTheFile) {
  TempDir dir;
  CreateImage(dir / "o.vhd", DiskSubtype::kDynamic, kMiB);
  PatchFooter(dir / "o.vhd", [](Footer& f) { f.data_offset.set(1ull << 40); });
  ExpectOpenFails(dir / "o.vhd", Code::kVhdSparseHeaderCorrupt);
}

TEST(VhdOpen, RejectsBadBlockSizes) {
  TempDir dir;
  for (std::uint32_t block : {0u, 3u * kMiB, 256u, 512u * kMiB, 0x80000000u}) {
    const fs::path path = dir / ("b" + std::to_string(block) + ".vhd");
    CreateImage(path, DiskSubtype::kDynamic, 4 * kMiB);
    PatchHeader(path, [block](DynamicHeader& h) { h.block_size.set(block); });
    SCOPED_TRACE("block size " + std::to_string(block));
    ExpectOpenFails(path, Code::kVhdInvalidBlockSize);
  }
}

TEST(VhdOpen, RejectsBlocksTooSmallForTheDiskSize) {
  TempDir dir;
  // 2040 GiB in 4 KiB blocks: 535 million BAT entries, far past what any writer produces.
  CreateImage(dir / "b.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  PatchFooter(dir / "b.vhd", [](Footer& f) { f.current_size.set(2040ull << 30); });
  PatchHeader(dir / "b.vhd", [](DynamicHeader& h) { h.block_size.set(4096); });
  ExpectOpenFails(dir / "b.vhd", Code::kVhdInvalidBlockSize);
}

// --- BAT ---------------------------------------------------------------------------------

TEST(VhdOpen, RejectsBatPastTheEndOfTheFile) {
  TempDir dir;
  CreateImage(dir / "t.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  const auto size = fs::file_size(dir / "t.vhd");
  PatchHeader(dir / "t.vhd", [size](DynamicHeader& h) { h.table_offset.set(size - 256); });
  ExpectOpenFails(dir / "t.vhd", Code::kVhdBlockAllocationTableCorrupt);
}

TEST(VhdOpen, RejectsHugeMaxTableEntries) {
  TempDir dir;
  CreateImage(dir / "t.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  PatchHeader(dir / "t.vhd", [](DynamicHeader& h) { h.max_table_entries.set(0xFFFFFFF0); });
  ExpectOpenFails(dir / "t.vhd", Code::kVhdBlockAllocationTableCorrupt);
}

TEST(VhdOpen, RejectsTooFewTableEntriesForTheSize) {
  TempDir dir;
  CreateImage(dir / "t.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  PatchHeader(dir / "t.vhd", [](DynamicHeader& h) { h.max_table_entries.set(1); });
  ExpectOpenFails(dir / "t.vhd", Code::kVhdBlockAllocationTableCorrupt);
}

TEST(VhdOpen, AcceptsATableLongerThanNeededThatFitsInTheFile) {
  TempDir dir;
  CreateImage(dir / "t.vhd", DiskSubtype::kDynamic, 4 * kMiB);  // 2 entries, BAT padded to 512
  PatchHeader(dir / "t.vhd", [](DynamicHeader& h) { h.max_table_entries.set(128); });
  auto disk = Open(dir / "t.vhd");
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  EXPECT_EQ((*disk)->size(), 4 * kMiB);
}

TEST(VhdOpen, RejectsBatEntryPastTheEndOfTheFile) {
  TempDir dir;
  CreateImage(dir / "e.vhd", DiskSubtype::kDynamic, 4 * kMiB, 512 * 1024, {}, {0});
  SetBatEntry(dir / "e.vhd", 3, 0x00FFFFFF);
  ExpectOpenFails(dir / "e.vhd", Code::kVhdBlockAllocationTableCorrupt);
}

TEST(VhdOpen, RejectsBlockReachingIntoTheFooter) {
  TempDir dir;
  CreateImage(dir / "e.vhd", DiskSubtype::kDynamic, 4 * kMiB, 512 * 1024, {}, {0});
  const std::uint32_t first = BatEntry(dir / "e.vhd", 0);
  SetBatEntry(dir / "e.vhd", 0, first + 1);  // its last sector is now the footer
  ExpectOpenFails(dir / "e.vhd", Code::kVhdBlockAllocationTableCorrupt);
}

TEST(VhdOpen, RejectsBlocksThatOverlap) {
  TempDir dir;
  const auto path = dir / "ov.vhd";
  CreateImage(path, DiskSubtype::kDynamic, 4 * kMiB, 512 * 1024, {}, {0, 512 * 1024, kMiB});
  const std::uint32_t first = BatEntry(path, 0);
  ASSERT_NE(first, vhd::kUnallocated);
  SetBatEntry(path, 1, first);
  ExpectOpenFails(path, Code::kVhdBlockAllocationTableCorrupt);
  SetBatEntry(path, 1, first + 8);  // partial overlap
  ExpectOpenFails(path, Code::kVhdBlockAllocationTableCorrupt);
}

TEST(VhdOpen, RejectsBlockOverlappingTheMetadata) {
  TempDir dir;
  const auto path = dir / "m.vhd";
  CreateImage(path, DiskSubtype::kDynamic, 4 * kMiB, 512 * 1024, {}, {0});
  SetBatEntry(path, 2, kTableOffset / 512);  // on top of the BAT
  ExpectOpenFails(path, Code::kVhdBlockAllocationTableCorrupt);
  SetBatEntry(path, 2, 0);  // on top of the footer copy and the dynamic header
  ExpectOpenFails(path, Code::kVhdBlockAllocationTableCorrupt);
}

// --- recoveries --------------------------------------------------------------------------

std::vector<std::byte> ReadDisk(VirtualDisk& disk) {
  std::vector<std::byte> out(disk.size());
  EXPECT_TRUE(disk.Read(0, out).ok());
  return out;
}

TEST(VhdOpen, UsesTheFooterCopyWhenTheEndFooterIsDamagedAndRepairsItOnWrite) {
  TempDir dir;
  const auto path = dir / "r.vhd";
  CreateImage(path, DiskSubtype::kDynamic, 4 * kMiB, 512 * 1024, {}, {0, 3 * kMiB});
  std::vector<std::byte> expected;
  {
    auto disk = Open(path);
    ASSERT_TRUE(disk.ok());
    expected = ReadDisk(**disk);
  }
  const auto size = fs::file_size(path);
  const std::vector<std::byte> garbage(512, std::byte{0x66});
  WriteFileBytes(path, size - 512, garbage);
  {
    auto disk = Open(path);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    EXPECT_EQ(ReadDisk(**disk), expected);
  }
  EXPECT_EQ(ReadFileBytes(path, size - 512, 512), garbage) << "a read-only open changed the file";
  {
    auto disk = Open(path, /*read_only=*/false);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    std::vector<std::byte> data(512, std::byte{0x77});
    ASSERT_TRUE((*disk)->Write(2 * kMiB, data).ok());  // allocates a block
    std::copy(data.begin(), data.end(), expected.begin() + 2 * kMiB);
  }
  EXPECT_EQ(ReadFileBytes(path, fs::file_size(path) - 512, 512), ReadFileBytes(path, 0, 512));
  auto disk = Open(path);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  EXPECT_EQ(ReadDisk(**disk), expected);
}

TEST(VhdOpen, RecoversADynamicImageWithATruncatedEndFooter) {
  TempDir dir;
  const auto path = dir / "tr.vhd";
  CreateImage(path, DiskSubtype::kDynamic, 4 * kMiB, 512 * 1024, {}, {kMiB});
  const auto size = fs::file_size(path);
  fs::resize_file(path, size - 100);
  {
    auto disk = Open(path, /*read_only=*/false);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
  }
  EXPECT_EQ(fs::file_size(path), size);
  EXPECT_EQ(ReadFileBytes(path, size - 512, 512), ReadFileBytes(path, 0, 512));
  // With the footer gone entirely, the last block ends the file.
  fs::resize_file(path, size - 512);
  auto disk = Open(path);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  std::vector<std::byte> sector(512);
  ASSERT_TRUE((*disk)->Read(kMiB, sector).ok());
  EXPECT_EQ(sector[0], std::byte{0xC5});
}

TEST(VhdOpen, ReadWriteOpenRepairsADamagedFooterCopy) {
  TempDir dir;
  const auto path = dir / "h.vhd";
  CreateImage(path, DiskSubtype::kDynamic, 4 * kMiB);
  const std::vector<std::byte> zeros(512);
  WriteFileBytes(path, 0, zeros);
  { ASSERT_TRUE(Open(path).ok()); }
  EXPECT_EQ(ReadFileBytes(path, 0, 512), zeros);
  { ASSERT_TRUE(Open(path, /*read_only=*/false).ok()); }
  EXPECT_EQ(ReadFileBytes(path, 0, 512), ReadFileBytes(path, fs::file_size(path) - 512, 512));
}

TEST(VhdOpen, AcceptsTheOld511ByteFooter) {
  TempDir dir;
  for (DiskSubtype subtype : {DiskSubtype::kFixed, DiskSubtype::kDynamic}) {
    const auto path = dir / (subtype == DiskSubtype::kFixed ? "f.vhd" : "d.vhd");
    CreateImage(path, subtype, 2 * kMiB, 0, {}, {4096});
    fs::resize_file(path, fs::file_size(path) - 1);  // the last reserved byte
    {
      auto disk = Open(path, /*read_only=*/false);
      ASSERT_TRUE(disk.ok()) << disk.status().message();
      EXPECT_EQ((*disk)->size(), 2 * kMiB);
      std::vector<std::byte> sector(512);
      ASSERT_TRUE((*disk)->Read(4096, sector).ok());
      EXPECT_EQ(sector[0], std::byte{0xC5});
      if (subtype == DiskSubtype::kFixed) continue;
      // Dynamic: the image still grows correctly.
      std::vector<std::byte> data(512, std::byte{0x31});
      ASSERT_TRUE((*disk)->Write(0, data).ok());
    }
    auto disk = Open(path);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    std::vector<std::byte> sector(512);
    ASSERT_TRUE((*disk)->Read(4096, sector).ok());
    EXPECT_EQ(sector[0], std::byte{0xC5});
  }
}

// --- differencing chains -----------------------------------------------------------------

TEST(VhdDifferencing, RejectsAMissingParent) {
  TempDir dir;
  CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  CreateImage(dir / "a.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "x.vhd");
  fs::remove(dir / "x.vhd");
  ExpectOpenFails(dir / "a.vhd", Code::kVhdParentNotFound);
}

TEST(VhdDifferencing, RejectsAChildThatIsItsOwnParent) {
  TempDir dir;
  CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  const Guid a = CreateImage(dir / "a.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "x.vhd");
  RepointParent(dir / "a.vhd", "x.vhd", "a.vhd", a);
  ExpectOpenFails(dir / "a.vhd", Code::kVhdChainCycle);
}

TEST(VhdDifferencing, RejectsTwoImagesThatAreEachOthersParent) {
  TempDir dir;
  CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  CreateImage(dir / "a.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "x.vhd");
  const Guid b = CreateImage(dir / "b.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "a.vhd");
  RepointParent(dir / "a.vhd", "x.vhd", "b.vhd", b);
  ExpectOpenFails(dir / "b.vhd", Code::kVhdChainCycle);
  ExpectOpenFails(dir / "a.vhd", Code::kVhdChainCycle);
}

TEST(VhdDifferencing, RejectsAParentThatIsADirectory) {
  TempDir dir;
  CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  CreateImage(dir / "a.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "x.vhd");
  fs::remove(dir / "x.vhd");
  fs::create_directory(dir / "x.vhd");
  // Found, but no file: an error in the parent whose reason names it a directory.
  ExpectOpenFails(dir / "a.vhd", Code::kVhdChainErrorInParent);
}

TEST(VhdDifferencing, RejectsAParentWithAnotherId) {
  TempDir dir;
  CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  CreateImage(dir / "a.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "x.vhd");
  fs::remove(dir / "x.vhd");
  CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  ExpectOpenFails(dir / "a.vhd", Code::kVhdChildParentIdMismatch);
}

TEST(VhdDifferencing, RejectsAParentOfAnotherSize) {
  TempDir dir;
  CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  CreateImage(dir / "a.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "x.vhd");
  fs::remove(dir / "x.vhd");
  const Guid x = CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 8 * kMiB);
  PatchHeader(dir / "a.vhd", [&](DynamicHeader& h) {
    std::memcpy(h.parent_unique_id.data(), x.bytes.data(), 16);
  });
  ExpectOpenFails(dir / "a.vhd", Code::kVhdChildParentSizeMismatch);
}

TEST(VhdDifferencing, IgnoresLocatorsWhoseDataLiesOutsideTheFile) {
  TempDir dir;
  CreateImage(dir / "x.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  CreateImage(dir / "a.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "x.vhd");
  PatchHeader(dir / "a.vhd", [](DynamicHeader& h) {
    h.parent_locators[0].platform_data_offset.set(1ull << 40);  // W2ru
    h.parent_locators[1].platform_data_length.set(0xFFFFFFF0);  // W2ku
  });
  {
    auto disk = Open(dir / "a.vhd");  // found through the parent name field
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    EXPECT_EQ((*disk)->chain().size(), 2u);
  }
  PatchHeader(dir / "a.vhd", [](DynamicHeader& h) { h.parent_unicode_name.fill(0); });
  ExpectOpenFails(dir / "a.vhd", Code::kVhdParentNotFound);
}

// --- random damage ----------------------------------------------------------------------

// Flips random bytes of the metadata (footer copy, header, BAT, locators, bitmaps, end footer):
// every open must either fail cleanly or give a disk that reads and writes without crashing.
TEST(VhdOpen, SurvivesRandomMetadataDamage) {
  TempDir dir;
  CreateImage(dir / "p.vhd", DiskSubtype::kDynamic, 4 * kMiB, 512 * 1024, {}, {0, 3 * kMiB});
  CreateImage(dir / "good.vhd", DiskSubtype::kDifferencing, 0, 512 * 1024, dir / "p.vhd",
              {4096, 2 * kMiB + 512});
  const auto good = ReadFileBytes(dir / "good.vhd", 0, fs::file_size(dir / "good.vhd"));
  const std::size_t metadata = 4096;  // footer copy, header, BAT, locators
  std::mt19937_64 rng(77);
  int opened = 0;
  for (int round = 0; round < 300; ++round) {
    auto bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      const std::size_t at =
          rng() % 2 == 0 ? rng() % metadata : bytes.size() - 1 - rng() % (bytes.size() - metadata);
      bytes[at] = static_cast<std::byte>(rng());
    }
    const auto path = dir / "c.vhd";
    fs::remove(path);
    {
      std::ofstream out(path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(bytes.data()),
                static_cast<std::streamsize>(bytes.size()));
    }
    auto disk = Open(path, /*read_only=*/rng() % 2 == 0);
    if (!disk.ok()) continue;
    ++opened;
    std::vector<std::byte> all((*disk)->size());
    (void)(*disk)->Read(0, all);
    if (!(*disk)->read_only()) {
      std::vector<std::byte> data(8192, std::byte{1});
      (void)(*disk)->Write(kMiB - 4096, data);
    }
  }
  EXPECT_GT(opened, 0);
}

}  // namespace
}  // namespace vdisk
