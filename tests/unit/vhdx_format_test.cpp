// VHDX building blocks: CRC-32C, GUIDs, on-disk layouts, BAT geometry, log entries, metadata
// serialisation; and VHDX images over the in-memory File with injected faults.
#include "formats/vhdx/vhdx_format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "formats/vhdx/vhdx_create.h"
#include "formats/vhdx/vhdx_image.h"
#include "formats/vhdx/vhdx_log.h"
#include "formats/vhdx/vhdx_metadata.h"
#include "formats/vhdx/vhdx_provider.h"
#include "platform/memory_file.h"

namespace vdisk::vhdx {
namespace {

std::span<const std::byte> Bytes(std::string_view text) { return std::as_bytes(std::span(text)); }

TEST(VhdxCrc32c, MatchesKnownVectors) {
  // RFC 3720 B.4 and the common "123456789" check value.
  EXPECT_EQ(Crc32c(Bytes("123456789")), 0xE3069283u);
  std::vector<std::byte> zeros(32);
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);
  std::vector<std::byte> ones(32, std::byte{0xFF});
  EXPECT_EQ(Crc32c(ones), 0x62A8AB43u);
  std::vector<std::byte> ascending(32);
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<std::byte>(i);
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c({}), 0u);
}

TEST(VhdxCrc32c, IncrementalAndZeroedFieldAgree) {
  std::vector<std::byte> data(10000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 31 + 7);
  const std::uint32_t whole = Crc32c(data);
  std::uint32_t crc = kCrc32cInit;
  crc = Crc32cUpdate(crc, std::span(data).first(3));
  crc = Crc32cUpdate(crc, std::span(data).subspan(3, 4000));
  crc = Crc32cUpdate(crc, std::span(data).subspan(4003));
  EXPECT_EQ(~crc, whole);
  auto copy = data;
  std::memset(copy.data() + 100, 0, 4);
  EXPECT_EQ(Crc32cWithZeroedField(data, 100), Crc32c(copy));
}

TEST(VhdxGuid, ParsesWhatItPrints) {
  for (int i = 0; i < 20; ++i) {
    const Guid g = Guid::Random();
    EXPECT_EQ(ParseGuid(g.ToString()), g);
    std::string lower = g.ToString();
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(ParseGuid(lower), g);
    EXPECT_EQ(ParseGuid(lower.substr(1, 36)), g);
  }
  EXPECT_EQ(kBatRegionGuid.ToString(), "{2DC27766-F623-4200-9D64-115E9BFD4A08}");
  EXPECT_EQ(ParseGuid("{2dc27766-f623-4200-9d64-115e9bfd4a08}"), kBatRegionGuid);
  EXPECT_EQ(kVhdxParentLocatorType.ToString(), "{B04AEFB7-D19E-4A81-B789-25B8E9445913}");
  EXPECT_FALSE(ParseGuid("{2dc27766-f623-4200-9d64-115e9bfd4a0}").has_value());
  EXPECT_FALSE(ParseGuid("2dc27766xf623-4200-9d64-115e9bfd4a08").has_value());
  EXPECT_FALSE(ParseGuid("{2dc27766-f623-4200-9d64-115e9bfd4a0g}").has_value());
  EXPECT_FALSE(ParseGuid("").has_value());
}

TEST(VhdxLayout, SignaturesAreTheSpecsStrings) {
  Header h{};
  h.signature.set(kHeaderSignature);
  EXPECT_EQ(std::memcmp(&h, "head", 4), 0);
  Le64 file;
  file.set(kFileSignature);
  EXPECT_EQ(std::memcmp(&file, "vhdxfile", 8), 0);
  Le64 metadata;
  metadata.set(kMetadataSignature);
  EXPECT_EQ(std::memcmp(&metadata, "metadata", 8), 0);
  for (auto [value, text] :
       {std::pair{kRegionTableSignature, "regi"}, std::pair{kLogEntrySignature, "loge"},
        std::pair{kZeroDescriptorSignature, "zero"}, std::pair{kDataDescriptorSignature, "desc"},
        std::pair{kDataSectorSignature, "data"}}) {
    Le32 v;
    v.set(value);
    EXPECT_EQ(std::memcmp(&v, text, 4), 0) << text;
  }
}

TEST(VhdxBat, EntriesAndGeometry) {
  const std::uint64_t e = MakeBatEntry(kPayloadFullyPresent, 37 * kMiB);
  EXPECT_EQ(BatState(e), kPayloadFullyPresent);
  EXPECT_EQ(BatFileOffset(e), 37 * kMiB);
  EXPECT_EQ(e & kBatReservedMask, 0u);
  // §2.4: 512-byte sectors and 32 MiB blocks: 128 payload blocks per chunk.
  const auto g = BatGeometry::Compute(64 * kTiB, 32 * kMiB, 512, false);
  EXPECT_EQ(g.chunk_ratio, 128u);
  EXPECT_EQ(g.payload_blocks, 2097152u);
  EXPECT_EQ(g.PayloadIndex(0), 0u);
  EXPECT_EQ(g.PayloadIndex(127), 127u);
  EXPECT_EQ(g.PayloadIndex(128), 129u);  // the sector bitmap entry of chunk 0 is at 128
  EXPECT_EQ(g.BitmapIndex(0), 128u);
  EXPECT_EQ(g.entry_count, 2097152u + 16383u);
  const auto d = BatGeometry::Compute(64 * kTiB, 32 * kMiB, 512, true);
  EXPECT_EQ(d.entry_count, 16384u * 129u);
  const auto big = BatGeometry::Compute(10 * kMiB, 256 * kMiB, 4096, true);
  EXPECT_EQ(big.chunk_ratio, 128u);  // 2^23 * 4096 / 256 MiB
  EXPECT_EQ(big.payload_blocks, 1u);
  EXPECT_EQ(big.entry_count, 129u);
  EXPECT_EQ(BatGeometry::Compute(kMiB, kMiB, 4096, false).chunk_ratio, 32768u);
}

TEST(VhdxLogEntry, BuildsWhatTheScanReads) {
  const Guid guid = Guid::Random();
  std::vector<std::byte> sector(kLogSectorSize);
  for (std::size_t i = 0; i < sector.size(); ++i) sector[i] = static_cast<std::byte>(i * 13);
  std::vector<LogUpdate> updates;
  for (int i = 0; i < 130; ++i)
    updates.push_back(LogUpdate::Data((8 + i) * kLogSectorSize, sector));
  updates.push_back(LogUpdate::Zero(kMiB, 3 * kLogSectorSize));
  const auto entry = BuildLogEntry(guid, 0x100000005ull, 0, updates, 5 * kMiB, 6 * kMiB);
  // 131 descriptors need two descriptor sectors; 130 data sectors follow.
  EXPECT_EQ(entry.size(), (2 + 130) * kLogSectorSize);
  EXPECT_EQ(entry.size(), LogEntryLength(130, 1));
  std::vector<std::byte> log(kMiB);
  std::copy(entry.begin(), entry.end(), log.begin());
  const LogScan scan = FindActiveSequence(log, guid);
  ASSERT_TRUE(scan.active.has_value()) << scan.first_problem;
  ASSERT_EQ(scan.active->updates.size(), updates.size());
  EXPECT_EQ(scan.active->updates[5].data, sector);
  EXPECT_EQ(scan.active->updates[5].file_offset, 13 * kLogSectorSize);
  EXPECT_EQ(scan.active->updates.back().zero_length, 3 * kLogSectorSize);
  EXPECT_EQ(scan.active->flushed_file_offset, 5 * kMiB);
  EXPECT_EQ(scan.active->last_file_offset, 6 * kMiB);
  EXPECT_EQ(scan.active->head_sequence_number, 0x100000005ull);
  // Another LogGuid: nothing to replay, and the reason says so.
  const LogScan other = FindActiveSequence(log, Guid::Random());
  EXPECT_FALSE(other.active.has_value());
  EXPECT_NE(other.first_problem.find("LogGuid"), std::string::npos);
}

TEST(VhdxLogOverlay, LaterUpdatesWin) {
  LogOverlay overlay;
  overlay.Apply(LogUpdate::Data(8192, std::vector<std::byte>(4096, std::byte{1})));
  overlay.Apply(LogUpdate::Zero(4096, 3 * 4096));  // covers and removes the data at 8192
  overlay.Apply(LogUpdate::Data(12288, std::vector<std::byte>(4096, std::byte{2})));
  overlay.Apply(LogUpdate::Zero(16384, 4096));  // merges with the first range
  std::vector<std::byte> out(6 * 4096, std::byte{9});
  overlay.Patch(0, out);
  EXPECT_EQ(out[0], std::byte{9});
  EXPECT_EQ(out[4096], std::byte{0});
  EXPECT_EQ(out[8192], std::byte{0});
  EXPECT_EQ(out[12288], std::byte{2});
  EXPECT_EQ(out[16384], std::byte{0});
  EXPECT_EQ(out[20480], std::byte{9});
  EXPECT_TRUE(overlay.Touches(16000, 1000));
  EXPECT_FALSE(overlay.Touches(20480, 4096));
  std::vector<std::byte> middle(100, std::byte{9});
  overlay.Patch(12300, middle);
  EXPECT_EQ(middle[0], std::byte{2});
}

TEST(VhdxMetadataItems, ParentLocatorRoundTripAndSpace) {
  ParentLocator locator;
  locator.Set("parent_linkage", "{83ed0ec3-24c8-49a6-a959-5e4bf1288bfb}");
  locator.Set("relative_path", "..\\..\\path2\\sub3\\parent.vhdx");
  locator.Set("absolute_win32_path", "\\\\?\\d:\\path2\\sub3\\parent.vhdx");
  const auto bytes = SerializeParentLocator(locator);
  auto parsed = ParseParentLocator(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->entries, locator.entries);

  std::vector<MetadataItem> items = {{Guid::Random(), 65536, 100, 0},
                                     {Guid::Random(), 65536 + 200, 50, 0}};
  EXPECT_EQ(FindMetadataSpace(items, items.size(), 96, kMiB), 65536u + 104);  // 8-aligned gap
  EXPECT_EQ(FindMetadataSpace(items, items.size(), 97, kMiB), 65536u + 256);
  EXPECT_EQ(FindMetadataSpace(items, 0, 150, kMiB), 65536u);  // the ignored item's space
  EXPECT_FALSE(FindMetadataSpace(items, items.size(), kMiB, kMiB).has_value());
}

TEST(VhdxMakeParentLocator, WritesWindowsStylePaths) {
  const Guid id = ParseGuid("{83ED0EC3-24C8-49A6-A959-5E4BF1288BFB}").value();
  auto same_dir = MakeParentLocator("/a/b/child.avhdx", "/a/b/parent.vhdx", id);
  ASSERT_TRUE(same_dir.ok());
  EXPECT_EQ(*same_dir->Find("parent_linkage"), "{83ed0ec3-24c8-49a6-a959-5e4bf1288bfb}");
  EXPECT_EQ(*same_dir->Find("relative_path"), ".\\parent.vhdx");
#ifndef _WIN32
  EXPECT_EQ(*same_dir->Find("absolute_win32_path"), "\\a\\b\\parent.vhdx");
#endif
  auto up = MakeParentLocator("/a/b/child.avhdx", "/a/c/d/parent.vhdx", id);
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(*up->Find("relative_path"), "..\\c\\d\\parent.vhdx");
}

// --- over the in-memory file -------------------------------------------------------------------

std::unique_ptr<Image> OpenMemory(std::shared_ptr<std::vector<std::byte>> bytes, bool read_only,
                                  platform::MemoryFileFaults faults,
                                  platform::MemoryFile** file_out = nullptr) {
  auto file = std::make_unique<platform::MemoryFile>(*bytes);
  file->set_faults(faults);
  if (file_out) *file_out = file.get();
  OpenOptions options;
  options.read_only = read_only;
  auto provider = MakeVhdxProvider();
  auto image = provider->Open(std::move(file), options);
  EXPECT_TRUE(image.ok()) << image.status().message();
  return image.ok() ? std::move(image).value() : nullptr;
}

// A small dynamic VHDX made by our writer, as bytes.
std::shared_ptr<std::vector<std::byte>> SmallImage() {
  const auto path = std::filesystem::temp_directory_path() /
                    ("vhdx_format_test_" + Guid::Random().ToString() + ".vhdx");
  CreateOptions options;
  options.virtual_size = 16 * kMiB;
  options.block_size = kMiB;
  auto image = CreateVhdxImage(path, options);
  EXPECT_TRUE(image.ok()) << image.status().message();
  image = Status();  // close
  std::vector<std::byte> bytes(std::filesystem::file_size(path));
  auto file = platform::OpenOsFile(path, platform::FileAccess::kRead,
                                   platform::FileDisposition::kOpenExisting);
  EXPECT_TRUE(file.ok());
  EXPECT_TRUE((*file)->ReadAt(0, bytes).ok());
  file = Status();
  std::filesystem::remove(path);
  return std::make_shared<std::vector<std::byte>>(std::move(bytes));
}

TEST(VhdxMemoryFile, NoSpaceForANewBlockIsDiskFull) {
  auto bytes = SmallImage();
  platform::MemoryFileFaults faults;
  faults.capacity = bytes->size() + 512 * 1024;  // not room for one more 1 MiB block
  platform::MemoryFile* file = nullptr;
  auto image = OpenMemory(bytes, false, faults, &file);
  ASSERT_NE(image, nullptr);
  std::vector<std::byte> data(4096, std::byte{3});
  const Status status = image->Write(0, data);
  EXPECT_EQ(status.code(), Code::kDiskFull) << status.message();
  // Nothing was referenced: the image still reads zeros there and opens cleanly.
  auto extent = image->Map(0, 4096);
  ASSERT_TRUE(extent.ok());
  EXPECT_EQ(extent->kind, Extent::Kind::kZero);
  image.reset();
  EXPECT_NE(OpenMemory(bytes, true, {}), nullptr);
}

TEST(VhdxMemoryFile, EveryFailedWriteLeavesAnImageThatOpens) {
  auto bytes = SmallImage();
  std::vector<std::byte> data(64 * 1024, std::byte{0x4D});
  for (std::uint64_t n = 1; n < 60; ++n) {
    SCOPED_TRACE("write " + std::to_string(n) + " fails");
    auto file = std::make_unique<platform::MemoryFile>(*bytes);
    platform::MemoryFileFaults faults;
    faults.fail_write_number = n;
    file->set_faults(faults);
    platform::MemoryFile* raw = file.get();
    OpenOptions options;
    options.read_only = false;
    auto provider = MakeVhdxProvider();
    std::vector<std::byte> after;
    {
      auto image = provider->Open(std::move(file), options);
      if (image.ok()) {
        for (std::uint64_t at : {std::uint64_t{0}, 3 * kMiB - 4096, 9 * kMiB}) {
          if (!(*image)->Write(at, data).ok()) break;
        }
        (void)(*image)->SetUserMetadata(kBatRegionGuid, data);
      }
      after = raw->contents();
    }
    auto reopened = provider->Open(std::make_unique<platform::MemoryFile>(after), OpenOptions{});
    ASSERT_TRUE(reopened.ok()) << reopened.status().message();
    auto extent = (*reopened)->Map(9 * kMiB, 4096);
    ASSERT_TRUE(extent.ok());
  }
}

}  // namespace
}  // namespace vdisk::vhdx
