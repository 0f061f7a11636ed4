// ISO 9660 / UDF volume recognition and sizing on images synthesised here, byte by byte, from
// ECMA-119 and ECMA-167, so that every damaged case can be built exactly.
#include "test_support.h"
#include "formats/iso/iso_volume.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "formats/iso/iso_structures.h"
#include "platform/file.h"
#include "support/file_bytes.h"

namespace vdisk::iso {
namespace {

constexpr std::size_t kSector = kSectorSize;

// --- Scratch files -------------------------------------------------------------------------------

using vdisk_unit::TempDir;

// Writes `bytes` to a file and reads its volume geometry back.
Result<VolumeGeometry> GeometryOf(const std::vector<std::byte>& bytes) {
  TempDir dir;
  const auto path = dir.path() / "image.iso";
  vdisk_testing::ReplaceFileBytes(path, bytes);
  auto file = platform::OpenFile(path, platform::FileAccess::kRead);
  if (!file.ok()) return file.status();
  return ReadVolumeGeometry(**file);
}

// Asserts that the geometry read fails with kFileCorrupt and a message containing `words`.
void ExpectCorrupt(const std::vector<std::byte>& bytes, const std::string& words) {
  const auto geometry = GeometryOf(bytes);
  ASSERT_FALSE(geometry.ok()) << "expected kFileCorrupt, got a volume of " << geometry->size
                              << " bytes";
  EXPECT_EQ(geometry.status().code(), Code::kFileCorrupt)
      << "expected kFileCorrupt, got " << static_cast<int>(geometry.status().code()) << ": "
      << geometry.status().message();
  EXPECT_NE(geometry.status().message().find(words), std::string_view::npos)
      << "message should mention '" << words << "': " << geometry.status().message();
}

// --- Byte poking ---------------------------------------------------------------------------------

void PutU8(std::vector<std::byte>& b, std::size_t at, unsigned v) {
  b.at(at) = static_cast<std::byte>(v & 0xff);
}
void PutLe16(std::vector<std::byte>& b, std::size_t at, unsigned v) {
  PutU8(b, at, v);
  PutU8(b, at + 1, v >> 8);
}
void PutBe16(std::vector<std::byte>& b, std::size_t at, unsigned v) {
  PutU8(b, at, v >> 8);
  PutU8(b, at + 1, v);
}
void PutLe32(std::vector<std::byte>& b, std::size_t at, std::uint32_t v) {
  PutLe16(b, at, v & 0xffff);
  PutLe16(b, at + 2, v >> 16);
}
void PutBe32(std::vector<std::byte>& b, std::size_t at, std::uint32_t v) {
  PutBe16(b, at, v >> 16);
  PutBe16(b, at + 2, v & 0xffff);
}
void PutText(std::vector<std::byte>& b, std::size_t at, std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i)
    PutU8(b, at + i, static_cast<unsigned char>(text[i]));
}
void FillSector(std::vector<std::byte>& b, std::size_t sector, std::byte value) {
  std::fill_n(b.begin() + static_cast<std::ptrdiff_t>(sector * kSector), kSector, value);
}

// ECMA-119 8.1 / ECMA-167 2/9.1: type, identifier, version.
void PutStructureDescriptor(std::vector<std::byte>& b, std::size_t sector, unsigned type,
                            std::string_view id, unsigned version = 1) {
  PutU8(b, sector * kSector, type);
  PutText(b, sector * kSector + 1, id);
  PutU8(b, sector * kSector + 6, version);
}

// ECMA-119 8.4: a primary volume descriptor with the given both-endian copies.
void PutPrimary(std::vector<std::byte>& b, std::size_t sector, std::uint32_t space_le,
                std::uint32_t space_be, unsigned block_le, unsigned block_be) {
  const std::size_t at = sector * kSector;
  PutStructureDescriptor(b, sector, 1, "CD001");
  PutText(b, at + 8, "LINUX");
  PutText(b, at + 40, "SYNTHETIC");
  PutLe32(b, at + 80, space_le);
  PutBe32(b, at + 84, space_be);
  PutLe16(b, at + 120, 1);  // volume set size
  PutBe16(b, at + 122, 1);
  PutLe16(b, at + 124, 1);  // volume sequence number
  PutBe16(b, at + 126, 1);
  PutLe16(b, at + 128, block_le);
  PutBe16(b, at + 130, block_be);
  PutU8(b, at + 881, 1);  // file structure version
}

// A minimal ISO 9660 volume: system area, primary volume descriptor at 16, terminator at 17,
// data sectors filled with their own number so reads can be checked.
std::vector<std::byte> MakeIso(std::uint32_t blocks, unsigned block_size = 2048) {
  const std::uint64_t bytes = std::uint64_t{blocks} * block_size;
  std::vector<std::byte> b((bytes + kSector - 1) / kSector * kSector);
  for (std::size_t s = 18; s < b.size() / kSector; ++s) FillSector(b, s, std::byte(s % 251));
  PutPrimary(b, 16, blocks, blocks, block_size, block_size);
  PutStructureDescriptor(b, 17, 255, "CD001");
  return b;
}

// ECMA-167 3/7.2: fills in a tag's checksum and CRC; the body must already be in place.
void SealTag(std::vector<std::byte>& b, std::size_t sector, unsigned identifier,
             std::uint32_t location, std::size_t descriptor_size = 512) {
  const std::size_t at = sector * kSector;
  PutLe16(b, at + 0, identifier);
  PutLe16(b, at + 2, 3);
  PutLe16(b, at + 6, 1);
  const std::size_t crc_length = descriptor_size - 16;
  PutLe16(b, at + 10, static_cast<unsigned>(crc_length));
  PutLe32(b, at + 12, location);
  PutLe16(b, at + 8, UdfCrc(std::span(b).subspan(at + 16, crc_length)));
  PutU8(b, at + 4, UdfTagChecksum(std::span(b).subspan(at).first<16>()));
}

constexpr std::size_t kMainSequence = 32;     // 16 sectors
constexpr std::size_t kReserveSequence = 48;  // 16 sectors
constexpr std::uint32_t kPartitionStart = 257;

void PutAnchor(std::vector<std::byte>& b, std::size_t sector) {
  const std::size_t at = sector * kSector;
  PutLe32(b, at + 16, 16 * kSector);
  PutLe32(b, at + 20, kMainSequence);
  PutLe32(b, at + 24, 16 * kSector);
  PutLe32(b, at + 28, kReserveSequence);
  SealTag(b, sector, 2, static_cast<std::uint32_t>(sector));
}

void PutPartition(std::vector<std::byte>& b, std::size_t sector, std::uint32_t start,
                  std::uint32_t length) {
  const std::size_t at = sector * kSector;
  PutLe32(b, at + 16, 1);         // volume descriptor sequence number
  PutLe16(b, at + 20, 1);         // flags: allocated
  PutLe16(b, at + 22, 0);         // partition number
  PutText(b, at + 25, "+NSR03");  // partition contents
  PutLe32(b, at + 184, 1);        // access type: read-only
  PutLe32(b, at + 188, start);
  PutLe32(b, at + 192, length);
  SealTag(b, sector, 5, static_cast<std::uint32_t>(sector));
}

void PutSequence(std::vector<std::byte>& b, std::size_t first, std::uint32_t partition_length) {
  PutPartition(b, first, kPartitionStart, partition_length);
  SealTag(b, first + 1, 8, static_cast<std::uint32_t>(first + 1));
}

// A minimal UDF-only volume of `sectors` sectors: VRS at 16..18, anchors at 256 and N, main and
// reserve volume descriptor sequences with one partition from 257 to just before N.
std::vector<std::byte> MakeUdf(std::size_t sectors = 400) {
  std::vector<std::byte> b(sectors * kSector);
  PutStructureDescriptor(b, 16, 0, "BEA01");
  PutStructureDescriptor(b, 17, 0, "NSR03");
  PutStructureDescriptor(b, 18, 0, "TEA01");
  const auto partition_length = static_cast<std::uint32_t>(sectors - 1 - kPartitionStart);
  PutSequence(b, kMainSequence, partition_length);
  PutSequence(b, kReserveSequence, partition_length);
  PutAnchor(b, 256);
  PutAnchor(b, sectors - 1);
  return b;
}

std::vector<std::byte> Truncated(std::vector<std::byte> b, std::size_t size) {
  b.resize(size);
  return b;
}

// --- CRC -----------------------------------------------------------------------------------------

TEST(UdfCrc, MatchesEcma167Example) {
  // ECMA-167 1/7.2.6: the CRC of the bytes 70 6A 77 is 3299 (hex).
  const std::array<std::byte, 3> bytes = {std::byte{0x70}, std::byte{0x6a}, std::byte{0x77}};
  EXPECT_EQ(UdfCrc(bytes), 0x3299);
  EXPECT_EQ(UdfCrc({}), 0);
}

// --- Volume recognition sequence -----------------------------------------------------------------

TEST(IsoVolumeRecognition, FindsPrimaryAndTerminator) {
  const auto b = MakeIso(100);
  const auto vrs = ScanVolumeRecognition(std::span(b).subspan(16 * kSector));
  EXPECT_TRUE(vrs.is_iso9660());
  EXPECT_FALSE(vrs.is_udf());
  EXPECT_EQ(vrs.iso_descriptors, 2u);
  EXPECT_EQ(vrs.primary, 0u);
  EXPECT_EQ(vrs.iso_terminator, 1u);
  EXPECT_EQ(vrs.length, 2u) << "sector 18 holds no descriptor";
  EXPECT_FALSE(vrs.data_ended);
}

TEST(IsoVolumeRecognition, FindsUdfExtendedAreaAfterIso9660Set) {
  auto b = MakeIso(100);
  PutStructureDescriptor(b, 18, 0, "BEA01");
  PutStructureDescriptor(b, 19, 0, "NSR02");
  PutStructureDescriptor(b, 20, 0, "TEA01");
  const auto vrs = ScanVolumeRecognition(std::span(b).subspan(16 * kSector));
  EXPECT_TRUE(vrs.is_iso9660());
  EXPECT_TRUE(vrs.is_udf());
  EXPECT_TRUE(vrs.extended_area_terminated);
  EXPECT_EQ(vrs.length, 5u);
}

TEST(IsoVolumeRecognition, IgnoresNsrOutsideExtendedArea) {
  std::vector<std::byte> b(40 * kSector);
  PutStructureDescriptor(b, 16, 0, "NSR03");
  PutStructureDescriptor(b, 17, 0, "BEA01");
  PutStructureDescriptor(b, 18, 0, "TEA01");
  EXPECT_FALSE(ScanVolumeRecognition(std::span(b).subspan(16 * kSector)).is_udf());
}

TEST(IsoVolumeRecognition, ReportsWhereTheDataEnded) {
  const auto b = MakeIso(100);
  const auto vrs = ScanVolumeRecognition(std::span(b).subspan(16 * kSector, kSector + 100));
  EXPECT_EQ(vrs.length, 1u);
  EXPECT_TRUE(vrs.data_ended);
  EXPECT_FALSE(vrs.iso_terminator.has_value());
}

// --- ISO 9660 ------------------------------------------------------------------------------------

TEST(IsoGeometry, ReadsSizeFromPrimaryVolumeDescriptor) {
  const auto geometry = GeometryOf(MakeIso(100));
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->kind, VolumeKind::kIso9660);
  EXPECT_EQ(geometry->size, 100u * 2048);
}

TEST(IsoGeometry, IgnoresPaddingPastTheVolumeSpace) {
  auto b = MakeIso(100);
  b.resize(b.size() + 150 * kSector + 77);
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 100u * 2048);
}

TEST(IsoGeometry, Accepts512And1024ByteLogicalBlocks) {
  for (const unsigned block_size : {512u, 1024u}) {
    const auto geometry = GeometryOf(MakeIso(400, block_size));
    ASSERT_TRUE(geometry.ok()) << block_size << ": " << geometry.status().message();
    EXPECT_EQ(geometry->size, 400u * block_size);
  }
}

TEST(IsoGeometry, RoundsPartialLastSectorUpToWholeSector) {
  // 401 blocks of 512 bytes end a quarter of the way into sector 100.
  const auto geometry = GeometryOf(MakeIso(401, 512));
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 101u * 2048);
}

TEST(IsoGeometry, UsesTheFirstPrimaryOfSeveral) {
  auto b = MakeIso(100);
  PutPrimary(b, 17, 50, 50, 2048, 2048);  // a later copy that disagrees is not read
  PutStructureDescriptor(b, 18, 255, "CD001");
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 100u * 2048);
}

TEST(IsoGeometry, AcceptsBootRecordAndSupplementaryDescriptors) {
  auto b = MakeIso(100);
  PutStructureDescriptor(b, 16, 0, "CD001");  // El Torito boot record first
  PutPrimary(b, 17, 100, 100, 2048, 2048);
  PutStructureDescriptor(b, 18, 2, "CD001");     // Joliet
  PutStructureDescriptor(b, 19, 2, "CD001", 2);  // ISO 9660:1999 enhanced descriptor
  PutStructureDescriptor(b, 20, 255, "CD001");
  PutStructureDescriptor(b, 21, 255, "CD001");  // "one or more" terminators
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 100u * 2048);
}

TEST(IsoGeometry, RejectsFileShorterThanPrimaryVolumeDescriptor) {
  const auto b = MakeIso(100);
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{100}, 16 * kSector, 16 * kSector + 1000, 17 * kSector - 1}) {
    SCOPED_TRACE("truncated to " + std::to_string(size));
    ExpectCorrupt(Truncated(b, size), "too short");
  }
}

TEST(IsoGeometry, RejectsFileEndingBeforeTerminator) {
  ExpectCorrupt(Truncated(MakeIso(100), 17 * kSector), "before its terminator");
  ExpectCorrupt(Truncated(MakeIso(100), 18 * kSector - 1), "before its terminator");
}

TEST(IsoGeometry, RejectsFileShorterThanVolumeSpace) {
  const auto b = MakeIso(100);
  for (const std::size_t size : {18 * kSector, 50 * kSector + 3, 99 * kSector, 100 * kSector - 1}) {
    SCOPED_TRACE("truncated to " + std::to_string(size));
    ExpectCorrupt(Truncated(b, size), "shorter than the volume");
  }
  // A volume of 401 blocks of 512 bytes needs its whole last sector.
  ExpectCorrupt(Truncated(MakeIso(401, 512), 401 * 512), "shorter than the volume");
}

TEST(IsoGeometry, RejectsGarbage) {
  std::vector<std::byte> b(1 << 20);
  std::mt19937 random(42);
  for (auto& byte : b) byte = static_cast<std::byte>(random());
  ExpectCorrupt(b, "no ISO 9660 volume descriptor");
  ExpectCorrupt(std::vector<std::byte>(1 << 20), "no ISO 9660 volume descriptor");
}

TEST(IsoGeometry, RejectsInconsistentVolumeSpaceSize) {
  auto b = MakeIso(100);
  PutBe32(b, 16 * kSector + 84, 101);
  ExpectCorrupt(b, "volume space size is 100 little-endian but 101 big-endian");
}

TEST(IsoGeometry, RejectsInconsistentLogicalBlockSize) {
  auto b = MakeIso(100);
  PutBe16(b, 16 * kSector + 130, 512);
  ExpectCorrupt(b, "logical block size is 2048 little-endian but 512 big-endian");
}

TEST(IsoGeometry, RejectsZeroLogicalBlockSize) {
  auto b = MakeIso(100);
  PutPrimary(b, 16, 100, 100, 0, 0);
  ExpectCorrupt(b, "logical block size 0");
}

TEST(IsoGeometry, RejectsLogicalBlockSizeOtherThan512To2048) {
  for (const unsigned block_size : {256u, 1000u, 4096u, 65535u}) {
    SCOPED_TRACE(block_size);
    auto b = MakeIso(100);
    PutPrimary(b, 16, 100, 100, block_size, block_size);
    ExpectCorrupt(b, "logical block size " + std::to_string(block_size));
  }
}

TEST(IsoGeometry, RejectsZeroVolumeSpaceSize) {
  auto b = MakeIso(100);
  PutPrimary(b, 16, 0, 0, 2048, 2048);
  ExpectCorrupt(b, "volume space size is 0");
}

TEST(IsoGeometry, RejectsVolumeSpaceEndingInsideDescriptorSet) {
  auto b = MakeIso(100);
  PutPrimary(b, 16, 17, 17, 2048, 2048);
  ExpectCorrupt(b, "ends before the volume descriptor set");
}

TEST(IsoGeometry, RejectsMissingTerminator) {
  auto b = MakeIso(100);
  FillSector(b, 17, std::byte{0});
  ExpectCorrupt(b, "no terminator: sector 17");
}

TEST(IsoGeometry, RejectsTerminatorBeyondScanLimit) {
  auto b = MakeIso(400);
  for (std::size_t s = 17; s < 16 + kMaxRecognitionSectors + 1; ++s) {
    FillSector(b, s, std::byte{0});
    PutStructureDescriptor(b, s, 2, "CD001");
  }
  ExpectCorrupt(b, "no ISO 9660 volume descriptor set terminator in sectors 16..255");
}

TEST(IsoGeometry, RejectsSetWithoutPrimary) {
  auto b = MakeIso(100);
  PutU8(b, 16 * kSector, 2);  // the primary becomes a supplementary descriptor
  ExpectCorrupt(b, "no primary volume descriptor");
}

TEST(IsoGeometry, RejectsPrimaryWithWrongVersion) {
  auto b = MakeIso(100);
  PutU8(b, 16 * kSector + 6, 2);
  ExpectCorrupt(b, "primary volume descriptor (sector 16): version 2");
}

// --- UDF -----------------------------------------------------------------------------------------

TEST(UdfGeometry, SizesUdfOnlyVolumeByTheFile) {
  const auto geometry = GeometryOf(MakeUdf(400));
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->kind, VolumeKind::kUdf);
  EXPECT_EQ(geometry->size, 400u * 2048);
}

TEST(UdfGeometry, RoundsPartialLastSectorDown) {
  auto b = MakeUdf(400);
  b.resize(b.size() + 1000);
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 400u * 2048);
}

TEST(UdfGeometry, PrefersIso9660SizeOnBridgeVolume) {
  auto b = MakeUdf(400);
  PutPrimary(b, 16, 300, 300, 2048, 2048);
  PutStructureDescriptor(b, 17, 255, "CD001");
  PutStructureDescriptor(b, 18, 0, "BEA01");
  PutStructureDescriptor(b, 19, 0, "NSR03");
  PutStructureDescriptor(b, 20, 0, "TEA01");
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->kind, VolumeKind::kIso9660);
  EXPECT_EQ(geometry->size, 300u * 2048);
}

TEST(UdfGeometry, FallsBackToAnchorAtLastSector) {
  auto b = MakeUdf(400);
  FillSector(b, 256, std::byte{0});
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 400u * 2048);
}

TEST(UdfGeometry, FallsBackToAnchorAtLastSectorMinus256) {
  auto b = MakeUdf(800);
  FillSector(b, 256, std::byte{0});
  FillSector(b, 799, std::byte{0});
  PutAnchor(b, 799 - 256);
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 800u * 2048);
}

TEST(UdfGeometry, RejectsMissingAnchors) {
  auto b = MakeUdf(400);
  FillSector(b, 256, std::byte{0});
  FillSector(b, 399, std::byte{0});
  ExpectCorrupt(b, "no valid UDF anchor volume descriptor pointer");
}

TEST(UdfGeometry, RejectsAnchorWithBadChecksum) {
  auto b = MakeUdf(400);
  PutU8(b, 256 * kSector + 4, std::to_integer<unsigned>(b[256 * kSector + 4]) + 1);
  FillSector(b, 399, std::byte{0});
  ExpectCorrupt(b, "checksum");
}

TEST(UdfGeometry, RejectsAnchorWithBadCrc) {
  auto b = MakeUdf(400);
  PutU8(b, 256 * kSector + 100, 0x5a);  // inside the CRC'd body, checksum still right
  FillSector(b, 399, std::byte{0});
  ExpectCorrupt(b, "descriptor CRC");
}

TEST(UdfGeometry, RejectsAnchorRecordedForAnotherSector) {
  auto b = MakeUdf(400);
  PutLe32(b, 256 * kSector + 12, 257);
  SealTag(b, 256, 2, 257);
  FillSector(b, 399, std::byte{0});
  ExpectCorrupt(b, "records location 257");
}

TEST(UdfGeometry, AcceptsAnchorWithoutCrc) {
  auto b = MakeUdf(400);
  const std::size_t at = 256 * kSector;
  PutLe16(b, at + 8, 0);
  PutLe16(b, at + 10, 0);  // CRC length 0: nothing to check (ECMA-167 3/7.2.7)
  PutU8(b, at + 4, UdfTagChecksum(std::span(b).subspan(at).first<16>()));
  FillSector(b, 399, std::byte{0});
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
}

TEST(UdfGeometry, RejectsAnchorWithCrcLengthPastSector) {
  auto b = MakeUdf(400);
  const std::size_t at = 256 * kSector;
  PutLe16(b, at + 10, 4000);
  PutU8(b, at + 4, UdfTagChecksum(std::span(b).subspan(at).first<16>()));
  FillSector(b, 399, std::byte{0});
  ExpectCorrupt(b, "CRC length 4000");
}

TEST(UdfGeometry, UsesReserveSequenceWhenMainIsDamaged) {
  auto b = MakeUdf(400);
  PutU8(b, kMainSequence * kSector + 200, 0xff);  // partition descriptor CRC now wrong
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 400u * 2048);
}

TEST(UdfGeometry, RejectsDamagedMainAndReserveSequences) {
  auto b = MakeUdf(400);
  PutU8(b, kMainSequence * kSector + 200, 0xff);
  PutU8(b, kReserveSequence * kSector + 200, 0xff);
  ExpectCorrupt(b, "main volume descriptor sequence: descriptor tag in sector 32: descriptor CRC");
}

TEST(UdfGeometry, RejectsSequencesWithoutPartition) {
  auto b = MakeUdf(400);
  FillSector(b, kMainSequence, std::byte{0});
  FillSector(b, kReserveSequence, std::byte{0});
  ExpectCorrupt(b, "no partition descriptor");
}

TEST(UdfGeometry, FollowsVolumeDescriptorPointer) {
  auto b = MakeUdf(400);
  // The main sequence is only a pointer to sectors 64..79, where its partition descriptor now
  // lives; the reserve sequence is blank, so only the pointer leads to a partition.
  const std::size_t at = kMainSequence * kSector;
  std::fill_n(b.begin() + static_cast<std::ptrdiff_t>(at), 2 * kSector, std::byte{0});
  PutLe32(b, at + 16, 1);
  PutLe32(b, at + 20, 16 * kSector);
  PutLe32(b, at + 24, 64);
  SealTag(b, kMainSequence, 3, kMainSequence);
  PutSequence(b, 64, 400 - 1 - kPartitionStart);
  FillSector(b, kReserveSequence, std::byte{0});
  const auto geometry = GeometryOf(b);
  ASSERT_TRUE(geometry.ok()) << geometry.status().message();
  EXPECT_EQ(geometry->size, 400u * 2048);
  // The same with a partition one sector too long shows that the pointer was followed.
  PutSequence(b, 64, 400 - kPartitionStart + 1);
  ExpectCorrupt(b, "UDF partition 0 (sectors 257..400) lies past the end of the file");
}

TEST(UdfGeometry, RejectsLoopingVolumeDescriptorPointers) {
  auto b = MakeUdf(400);
  for (const std::size_t first : {kMainSequence, kReserveSequence}) {
    const std::size_t at = first * kSector;
    std::fill_n(b.begin() + static_cast<std::ptrdiff_t>(at), 2 * kSector, std::byte{0});
    PutLe32(b, at + 20, 16 * kSector);
    PutLe32(b, at + 24, static_cast<std::uint32_t>(first));  // points to itself
    SealTag(b, first, 3, static_cast<std::uint32_t>(first));
  }
  ExpectCorrupt(b, "a loop of volume descriptor pointers");
}

TEST(UdfGeometry, RejectsTruncatedVolume) {
  const auto b = MakeUdf(400);
  // Cut inside the partition: the reserve sequence is still there, the partition is not.
  ExpectCorrupt(Truncated(b, 300 * kSector), "UDF partition 0 (sectors 257..398)");
  // Cut before the anchor at 256.
  ExpectCorrupt(Truncated(b, 256 * kSector), "ends before the UDF anchor");
  ExpectCorrupt(Truncated(b, 20 * kSector), "ends before the UDF anchor");
}

TEST(UdfGeometry, RejectsSequenceExtentPastEndOfFile) {
  auto b = MakeUdf(400);
  PutLe32(b, 256 * kSector + 28, 390);  // reserve sequence at 390..405
  SealTag(b, 256, 2, 256);
  FillSector(b, 399, std::byte{0});
  ExpectCorrupt(b, "reserve volume descriptor sequence (sectors 390..405) lies past the end");
}

TEST(UdfGeometry, RejectsRecognitionSequenceWithoutTea) {
  auto b = MakeUdf(400);
  FillSector(b, 18, std::byte{0});
  ExpectCorrupt(b, "no TEA01");
}

}  // namespace
}  // namespace vdisk::iso
