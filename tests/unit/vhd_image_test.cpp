// VHD images end to end through VirtualDisk: create, write, read back, reopen; differencing
// chains; concurrency; crash safety of block allocation.
#include "test_support.h"
#include "formats/vhd/vhd_image.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
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
#include "formats/vhd/vhd_format.h"
#include "formats/vhd/vhd_provider.h"
#include "platform/file.h"
#include "platform/memory_file.h"
#include "support/crashing_file.h"
#include "support/disk_calls.h"
#include "support/provider_registry.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
constexpr std::uint32_t kSector = 512;
constexpr std::uint32_t kKiB = 1024;
constexpr std::uint32_t kMiB = 1024 * 1024;

using vdisk_unit::FirstTornSector;
using vdisk_unit::TempDir;

const ProviderRegistry& Registry() { return vdisk_testing::RegistryOf<MakeVhdProvider>(); }

Result<std::unique_ptr<VirtualDisk>> Create(const fs::path& path, DiskSubtype subtype,
                                            std::uint64_t size, std::uint32_t block_size = 0,
                                            const fs::path& parent = {}) {
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhd;
  request.options.subtype = subtype;
  request.options.virtual_size = size;
  request.options.block_size = block_size;
  request.parent_path = parent;
  return VirtualDisk::Create(Registry(), request);
}

std::unique_ptr<VirtualDisk> MustCreate(const fs::path& path, DiskSubtype subtype,
                                        std::uint64_t size, std::uint32_t block_size = 0,
                                        const fs::path& parent = {}) {
  return vdisk_testing::Must(Create(path, subtype, size, block_size, parent), "create", path);
}

Result<std::unique_ptr<VirtualDisk>> Open(const fs::path& path, bool read_only = true,
                                          bool ignore_relative = false) {
  return vdisk_testing::OpenImage(Registry(), path, read_only, ignore_relative);
}

std::unique_ptr<VirtualDisk> MustOpen(const fs::path& path, bool read_only = true) {
  return vdisk_testing::Must(Open(path, read_only), "open", path);
}

std::vector<std::byte> ReadFileBytes(const fs::path& path, std::uint64_t offset, std::size_t size) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<std::byte> out(size);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(size));
  return out;
}

// The disk as it should read, with sectors whose content is unknown (a failed write) masked.
struct Reference {
  explicit Reference(std::uint64_t size) : data(size), known(size / kSector, true) {}
  void Write(std::uint64_t offset, std::span<const std::byte> bytes) {
    std::copy(bytes.begin(), bytes.end(), data.begin() + static_cast<std::ptrdiff_t>(offset));
  }
  void Forget(std::uint64_t offset, std::uint64_t length) {
    for (std::uint64_t s = offset / kSector; s < (offset + length) / kSector; ++s) known[s] = false;
  }
  std::vector<std::byte> data;
  std::vector<bool> known;
};

std::vector<std::byte> RandomBytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, n - i));
  }
  return out;
}

// A sector-aligned range inside a disk of `size` bytes, at most `max_sectors` long.
std::pair<std::uint64_t, std::uint64_t> RandomRange(std::mt19937_64& rng, std::uint64_t size,
                                                    std::uint64_t max_sectors) {
  const std::uint64_t sectors = size / kSector;
  const std::uint64_t first = rng() % sectors;
  const std::uint64_t count = 1 + rng() % std::min(max_sectors, sectors - first);
  return {first * kSector, count * kSector};
}

void RandomWrites(VirtualDisk& disk, Reference& ref, std::mt19937_64& rng, int count,
                  std::uint64_t max_sectors) {
  for (int i = 0; i < count; ++i) {
    const auto [offset, length] = RandomRange(rng, disk.size(), max_sectors);
    const auto bytes = RandomBytes(rng, length);
    const Status status = disk.Write(offset, bytes);
    ASSERT_TRUE(status.ok()) << "write of " << length << " at " << offset << ": "
                             << status.message();
    ref.Write(offset, bytes);
  }
}

// Compares `actual` (read at `offset`) against the reference, sector by sector.
void ExpectMatches(const Reference& ref, std::uint64_t offset, std::span<const std::byte> actual,
                   const std::string& what) {
  for (std::uint64_t pos = 0; pos < actual.size(); pos += kSector) {
    const std::uint64_t at = offset + pos;
    if (!ref.known[at / kSector]) continue;
    if (std::memcmp(actual.data() + pos, ref.data.data() + at, kSector) != 0) {
      ADD_FAILURE() << what << ": sector at " << at << " differs from the reference";
      return;
    }
  }
}

// Reads the whole disk, then `random_reads` ranges of up to 5000 sectors, against `ref`.
void VerifyDisk(VirtualDisk& disk, const Reference& ref, std::mt19937_64& rng,
                const std::string& what, int random_reads = 50) {
  ASSERT_EQ(disk.size(), ref.data.size()) << what;
  std::vector<std::byte> buffer(3 * kMiB + 512);
  for (std::uint64_t offset = 0; offset < disk.size(); offset += buffer.size()) {
    const auto n = std::min<std::uint64_t>(buffer.size(), disk.size() - offset);
    auto piece = std::span(buffer).first(n);
    const Status status = disk.Read(offset, piece);
    ASSERT_TRUE(status.ok()) << what << ": read at " << offset << ": " << status.message();
    ExpectMatches(ref, offset, piece, what);
  }
  for (int i = 0; i < random_reads; ++i) {
    const auto [offset, length] = RandomRange(rng, disk.size(), 5000);
    auto out = std::span(buffer).first(length);
    const Status status = disk.Read(offset, out);
    ASSERT_TRUE(status.ok()) << what << ": read at " << offset << ": " << status.message();
    ExpectMatches(ref, offset, out, what + " (random read)");
  }
}

// --- round trips -------------------------------------------------------------------------

TEST(VhdRoundTrip, FixedDiskKeepsRandomWrites) {
  TempDir dir;
  const std::uint64_t size = 8 * kMiB + 7 * kSector;
  std::mt19937_64 rng(1);
  Reference ref(size);
  {
    auto disk = MustCreate(dir / "fixed.vhd", DiskSubtype::kFixed, size);
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->size(), size);
    EXPECT_EQ(disk->top().subtype(), DiskSubtype::kFixed);
    EXPECT_EQ(disk->top().block_size(), 0u);
    RandomWrites(*disk, ref, rng, 100, 3000);
    VerifyDisk(*disk, ref, rng, "fixed, before reopen");
    ASSERT_TRUE(disk->Flush().ok());
  }
  EXPECT_EQ(fs::file_size(dir / "fixed.vhd"), size + 512);
  auto disk = MustOpen(dir / "fixed.vhd");
  ASSERT_NE(disk, nullptr);
  VerifyDisk(*disk, ref, rng, "fixed, after reopen");
}

void DynamicRoundTrip(std::uint32_t block_size, std::uint64_t size) {
  TempDir dir;
  std::mt19937_64 rng(block_size ^ size);
  Reference ref(size);
  {
    auto disk = MustCreate(dir / "dynamic.vhd", DiskSubtype::kDynamic, size, block_size);
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->top().subtype(), DiskSubtype::kDynamic);
    EXPECT_EQ(disk->top().block_size(), block_size);
    VerifyDisk(*disk, ref, rng, "empty dynamic disk");
    // Writes of up to 2.5 blocks: partial blocks, whole blocks and block-spanning writes.
    RandomWrites(*disk, ref, rng, 120, block_size * 5 / 2 / kSector);
    // The last sector and the partial last block.
    const auto tail = RandomBytes(rng, kSector);
    ASSERT_TRUE(disk->Write(size - kSector, tail).ok());
    ref.Write(size - kSector, tail);
    VerifyDisk(*disk, ref, rng, "dynamic, before reopen");
  }
  {
    DiskOpenRequest request;
    request.path = dir / "dynamic.vhd";
    request.options.read_only = false;
    request.options.no_write_hardening = true;
    auto disk = VirtualDisk::Open(Registry(), request);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    VerifyDisk(**disk, ref, rng, "dynamic, after reopen");
    RandomWrites(**disk, ref, rng, 40, block_size / kSector);
    ASSERT_TRUE((*disk)->Flush().ok());
  }
  auto disk = MustOpen(dir / "dynamic.vhd");
  ASSERT_NE(disk, nullptr);
  VerifyDisk(*disk, ref, rng, "dynamic, after second reopen");
  EXPECT_TRUE(disk->top().is_4k_aligned()) << "every block we allocate has 4 KiB-aligned data";
  // The file is compact: never more than header, BAT and the blocks written, plus a footer.
  // Each block takes its bitmap and at most the 4 KiB alignment pad before its data.
  const std::uint64_t blocks = (size + block_size - 1) / block_size;
  EXPECT_LE(fs::file_size(dir / "dynamic.vhd"),
            2048 + blocks * 4 + 512 + blocks * (block_size + 4096) + 512);
}

TEST(VhdRoundTrip, DynamicDiskWith2MiBBlocks) {
  DynamicRoundTrip(2 * kMiB, 21 * kMiB + 3 * kSector);
}
TEST(VhdRoundTrip, DynamicDiskWith512KiBBlocks) {
  DynamicRoundTrip(512 * kKiB, 9 * kMiB + 5 * kSector);
}

TEST(VhdRoundTrip, ThreeLevelDifferencingChain) {
  TempDir dir;
  const std::uint64_t size = 6 * kMiB + 17 * kSector;
  std::mt19937_64 rng(3);
  Reference base_ref(size);
  {
    auto base = MustCreate(dir / "base.vhd", DiskSubtype::kDynamic, size, 512 * kKiB);
    ASSERT_NE(base, nullptr);
    RandomWrites(*base, base_ref, rng, 60, 2000);
  }
  Reference mid_ref = base_ref;
  {
    auto mid =
        MustCreate(dir / "mid.vhd", DiskSubtype::kDifferencing, 0, 2 * kMiB, dir / "base.vhd");
    ASSERT_NE(mid, nullptr);
    EXPECT_EQ(mid->top().subtype(), DiskSubtype::kDifferencing);
    EXPECT_EQ(mid->chain().size(), 2u);
    VerifyDisk(*mid, mid_ref, rng, "new child reads as its parent");
    RandomWrites(*mid, mid_ref, rng, 60, 300);  // small writes: partially present blocks
    RandomWrites(*mid, mid_ref, rng, 10, 5000);
    VerifyDisk(*mid, mid_ref, rng, "mid, before reopen");
  }
  Reference top_ref = mid_ref;
  {
    auto top =
        MustCreate(dir / "top.vhd", DiskSubtype::kDifferencing, 0, 512 * kKiB, dir / "mid.vhd");
    ASSERT_NE(top, nullptr);
    EXPECT_EQ(top->chain().size(), 3u);
    RandomWrites(*top, top_ref, rng, 80, 700);
    VerifyDisk(*top, top_ref, rng, "top, before reopen");
  }
  {
    auto top = MustOpen(dir / "top.vhd", /*read_only=*/false);
    ASSERT_NE(top, nullptr);
    ASSERT_EQ(top->chain().size(), 3u);
    VerifyDisk(*top, top_ref, rng, "top, after reopen");
    RandomWrites(*top, top_ref, rng, 30, 100);
  }
  auto top = MustOpen(dir / "top.vhd");
  ASSERT_NE(top, nullptr);
  VerifyDisk(*top, top_ref, rng, "top, after second reopen");
  // Writes to a child never reach its parents.
  auto mid = MustOpen(dir / "mid.vhd");
  ASSERT_NE(mid, nullptr);
  VerifyDisk(*mid, mid_ref, rng, "mid alone");
  auto base = MustOpen(dir / "base.vhd");
  ASSERT_NE(base, nullptr);
  VerifyDisk(*base, base_ref, rng, "base alone");
}

// --- what Create writes ------------------------------------------------------------------

TEST(VhdCreate, WritesAFooterThatReadersTrust) {
  TempDir dir;
  const std::uint64_t size = 64 * kMiB;
  Guid id;
  for (std::size_t i = 0; i < 16; ++i) id.bytes[i] = static_cast<std::uint8_t>(i + 1);
  DiskCreateRequest request;
  request.path = dir / "d.vhd";
  request.options.subtype = DiskSubtype::kDynamic;
  request.options.virtual_size = size;
  request.options.unique_id = id;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  EXPECT_EQ((*disk)->top().unique_id(), id);

  const auto file_size = fs::file_size(dir / "d.vhd");
  const auto tail = ReadFileBytes(dir / "d.vhd", file_size - 512, 512);
  const auto head = ReadFileBytes(dir / "d.vhd", 0, 512);
  EXPECT_EQ(tail, head);
  vhd::Footer f;
  std::memcpy(&f, tail.data(), 512);
  EXPECT_EQ(std::string(f.cookie.data(), 8), "conectix");
  EXPECT_EQ(f.features.get(), 2u);
  EXPECT_EQ(f.file_format_version.get(), 0x00010000u);
  EXPECT_EQ(f.data_offset.get(), 512u);
  EXPECT_EQ(std::string(f.creator_application.data(), 4), "win ");
  EXPECT_EQ(f.creator_version.get(), 0x000a0000u);
  EXPECT_EQ(std::string(f.creator_host_os.data(), 4), "Wi2k");
  EXPECT_EQ(f.original_size.get(), size);
  EXPECT_EQ(f.current_size.get(), size);
  EXPECT_EQ(f.cylinders.get(), 963);
  EXPECT_EQ(f.heads, 8);
  EXPECT_EQ(f.sectors_per_track, 17);
  EXPECT_EQ(f.disk_type.get(), 3u);
  EXPECT_EQ(f.checksum.get(), vhd::ComputeChecksum(tail, vhd::kFooterChecksumOffset));
  EXPECT_EQ(std::memcmp(f.unique_id.data(), id.bytes.data(), 16), 0);
  EXPECT_EQ(f.saved_state, 0);
  // Seconds since 2000: more than 20 years' worth.
  EXPECT_GT(f.time_stamp.get(), 20u * 365 * 24 * 3600);
  EXPECT_EQ((*disk)->top().timestamp(), f.time_stamp.get());

  vhd::DynamicHeader h;
  const auto header = ReadFileBytes(dir / "d.vhd", 512, 1024);
  std::memcpy(&h, header.data(), 1024);
  EXPECT_EQ(std::string(h.cookie.data(), 8), "cxsparse");
  EXPECT_EQ(h.data_offset.get(), ~std::uint64_t{0});
  EXPECT_EQ(h.table_offset.get(), 1536u);
  EXPECT_EQ(h.header_version.get(), 0x00010000u);
  EXPECT_EQ(h.max_table_entries.get(), 32u);
  EXPECT_EQ(h.block_size.get(), 2 * kMiB);
  EXPECT_EQ(h.checksum.get(), vhd::ComputeChecksum(header, vhd::kDynamicHeaderChecksumOffset));
  // BAT of 32 entries, padded to a sector with 0xFF; then the footer.
  const auto bat = ReadFileBytes(dir / "d.vhd", 1536, 512);
  EXPECT_TRUE(
      std::all_of(bat.begin(), bat.end(), [](std::byte b) { return b == std::byte{0xFF}; }));
  EXPECT_EQ(file_size, 1536u + 512 + 512);
}

TEST(VhdCreate, FixedDiskHasAllOnesDataOffsetAndExactSize) {
  TempDir dir;
  auto disk = MustCreate(dir / "f.vhd", DiskSubtype::kFixed, 3 * kMiB);
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(fs::file_size(dir / "f.vhd"), 3 * kMiB + 512);
  vhd::Footer f;
  const auto tail = ReadFileBytes(dir / "f.vhd", 3 * kMiB, 512);
  std::memcpy(&f, tail.data(), 512);
  EXPECT_EQ(f.data_offset.get(), ~std::uint64_t{0});
  EXPECT_EQ(f.disk_type.get(), 2u);
  EXPECT_EQ(f.current_size.get(), 3 * kMiB);
}

TEST(VhdCreate, FullPhysicalAllocationReservesStorage) {
  TempDir dir;
  DiskCreateRequest request;
  request.path = dir / "full.vhd";
  request.options.subtype = DiskSubtype::kFixed;
  request.options.virtual_size = 4 * kMiB;
  request.options.full_physical_allocation = true;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  auto allocated = (*disk)->top().file().AllocatedBytes();
  ASSERT_TRUE(allocated.ok());
  EXPECT_GE(*allocated, 4 * kMiB);
}

TEST(VhdCreate, DifferencingRecordsParentIdentityAndLocators) {
  TempDir dir;
  auto base = MustCreate(dir / "base.vhd", DiskSubtype::kDynamic, 4 * kMiB);
  ASSERT_NE(base, nullptr);
  const Guid base_id = base->top().unique_id();
  const std::uint32_t base_time = base->top().timestamp();
  base.reset();
  auto child = MustCreate(dir / "child.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "base.vhd");
  ASSERT_NE(child, nullptr);
  const auto ref = child->top().parent();
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->parent_id, base_id);
  EXPECT_EQ(ref->parent_timestamp, base_time);
  ASSERT_FALSE(ref->candidates.empty());
  EXPECT_TRUE(fs::equivalent(ref->candidates.front(), dir / "base.vhd"));
  ASSERT_GE(ref->stored_locations.size(), 2u);
  EXPECT_EQ(ref->stored_locations[0], ".\\base.vhd");
  EXPECT_TRUE(ref->stored_locations[1].ends_with("\\base.vhd")) << ref->stored_locations[1];

  vhd::DynamicHeader h;
  const auto header = ReadFileBytes(dir / "child.vhd", 512, 1024);
  std::memcpy(&h, header.data(), 1024);
  EXPECT_EQ(h.parent_locators[0].platform_code.get(), vhd::kPlatformW2ru);
  EXPECT_EQ(h.parent_locators[1].platform_code.get(), vhd::kPlatformW2ku);
  for (int i = 0; i < 2; ++i) {
    const auto& e = h.parent_locators[i];
    EXPECT_EQ(e.platform_data_offset.get() % 512, 0u);
    EXPECT_EQ(e.platform_data_space.get() % 512, 0u);
    EXPECT_GE(e.platform_data_space.get(), e.platform_data_length.get());
  }
  const auto w2ru =
      ReadFileBytes(dir / "child.vhd", h.parent_locators[0].platform_data_offset.get(),
                    h.parent_locators[0].platform_data_length.get());
  EXPECT_EQ(vhd::Utf16ToUtf8(w2ru, false), ".\\base.vhd");
  const std::string name =
      vhd::Utf16ToUtf8(std::as_bytes(std::span(h.parent_unicode_name)), /*big_endian=*/true);
  EXPECT_TRUE(name.ends_with("\\base.vhd")) << name;
}

TEST(VhdCreate, RejectsInvalidParametersAndLeavesNoFile) {
  TempDir dir;
  struct Case {
    const char* what;
    DiskSubtype subtype;
    std::uint64_t size;
    std::uint32_t block;
    std::uint32_t logical;
    Code expected;
  };
  const Case cases[] = {
      {"zero size", DiskSubtype::kDynamic, 0, 0, 0, Code::kInvalidParameter},
      {"size not a multiple of 512", DiskSubtype::kDynamic, kMiB + 100, 0, 0,
       Code::kInvalidParameter},
      {"size above 2040 GiB", DiskSubtype::kDynamic, (2041ull << 30), 0, 0,
       Code::kInvalidParameter},
      {"fixed size above 2040 GiB", DiskSubtype::kFixed, (2041ull << 30), 0, 0,
       Code::kInvalidParameter},
      {"block size 1 MiB", DiskSubtype::kDynamic, 8 * kMiB, kMiB, 0, Code::kInvalidParameter},
      {"block size 3 MiB", DiskSubtype::kDynamic, 8 * kMiB, 3 * kMiB, 0, Code::kInvalidParameter},
      {"fixed block size 512 KiB", DiskSubtype::kFixed, 8 * kMiB, 512 * kKiB, 0,
       Code::kInvalidParameter},
      {"4096-byte sectors", DiskSubtype::kDynamic, 8 * kMiB, 0, 4096, Code::kUnsupportedSectorSize},
      {"1000-byte sectors", DiskSubtype::kDynamic, 8 * kMiB, 0, 1000, Code::kInvalidParameter},
  };
  for (const Case& c : cases) {
    DiskCreateRequest request;
    request.path = dir / "bad.vhd";
    request.options.subtype = c.subtype;
    request.options.virtual_size = c.size;
    request.options.block_size = c.block;
    request.options.logical_sector_size = c.logical;
    auto disk = VirtualDisk::Create(Registry(), request);
    ASSERT_FALSE(disk.ok()) << c.what;
    EXPECT_EQ(disk.status().code(), c.expected) << c.what << ": " << disk.status().message();
    EXPECT_FALSE(fs::exists(dir / "bad.vhd")) << c.what;
  }
  // Differencing without a parent.
  auto provider = MakeVhdProvider();
  CreateOptions options;
  options.subtype = DiskSubtype::kDifferencing;
  options.virtual_size = kMiB;
  auto image = provider->Create(dir / "orphan.vhd", options);
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), Code::kInvalidParameter);
  EXPECT_FALSE(fs::exists(dir / "orphan.vhd"));
}

TEST(VhdCreate, RefusesToOverwriteAnExistingFile) {
  TempDir dir;
  { std::ofstream(dir / "exists.vhd") << "keep me"; }
  auto disk = Create(dir / "exists.vhd", DiskSubtype::kDynamic, kMiB);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.status().code(), Code::kFileExists) << disk.status().message();
  EXPECT_EQ(fs::file_size(dir / "exists.vhd"), 7u);
}

TEST(VhdOpen, DetectsAVhdWithoutItsExtension) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "disk.img", DiskSubtype::kDynamic, kMiB), nullptr);
  ASSERT_NE(MustCreate(dir / "fixed", DiskSubtype::kFixed, kMiB), nullptr);
  for (const char* name : {"disk.img", "fixed"}) {
    auto disk = MustOpen(dir / name);
    ASSERT_NE(disk, nullptr) << name;
    EXPECT_EQ(disk->top().format(), DiskFormat::kVhd);
  }
}

TEST(VhdOpen, ReadOnlyOpenRejectsWrites) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "ro.vhd", DiskSubtype::kDynamic, kMiB), nullptr);
  auto disk = MustOpen(dir / "ro.vhd");
  ASSERT_NE(disk, nullptr);
  EXPECT_TRUE(disk->read_only());
  std::vector<std::byte> data(512);
  EXPECT_EQ(disk->Write(0, data).code(), Code::kWriteProtect);
  EXPECT_EQ(disk->top().Write(0, data).code(), Code::kWriteProtect);
}

// --- Map ---------------------------------------------------------------------------------

TEST(VhdMap, DynamicDiskMapsBlocksAsZeroOrData) {
  TempDir dir;
  auto disk = MustCreate(dir / "map.vhd", DiskSubtype::kDynamic, 4 * kMiB, 512 * kKiB);
  ASSERT_NE(disk, nullptr);
  Image& image = disk->top();
  auto e = image.Map(0, 4 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kZero);
  EXPECT_EQ(e->length, 512 * kKiB);  // one block at a time
  std::vector<std::byte> data(4096, std::byte{0x5A});
  ASSERT_TRUE(disk->Write(512 * kKiB + 8192, data).ok());
  e = image.Map(512 * kKiB, 4 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kData);  // the whole allocated block, bitmap not consulted
  EXPECT_EQ(e->length, 512 * kKiB);
  e = image.Map(512 * kKiB + 8192, 100 * kSector);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kData);
  EXPECT_EQ(e->length, 100 * kSector);
  std::vector<std::byte> back(4096);
  ASSERT_TRUE(image.ReadData(e->file_offset, back).ok());
  EXPECT_EQ(back, data);
}

TEST(VhdMap, DifferencingDiskMapsRunsOfTheSectorBitmap) {
  TempDir dir;
  ASSERT_NE(MustCreate(dir / "p.vhd", DiskSubtype::kDynamic, 4 * kMiB), nullptr);
  auto disk = MustCreate(dir / "c.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "p.vhd");
  ASSERT_NE(disk, nullptr);
  Image& image = disk->top();
  auto e = image.Map(0, 4 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kParent);
  EXPECT_EQ(e->length, 2 * kMiB);
  std::vector<std::byte> data(3 * kSector, std::byte{1});
  ASSERT_TRUE(disk->Write(10 * kSector, data).ok());
  ASSERT_TRUE(disk->Write(13 * kSector, data).ok());  // contiguous: sectors 10..15
  ASSERT_TRUE(disk->Write(40 * kSector, data).ok());
  e = image.Map(0, 4 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kParent);
  EXPECT_EQ(e->length, 10 * kSector);
  e = image.Map(10 * kSector, 4 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kData);
  EXPECT_EQ(e->length, 6 * kSector);
  e = image.Map(12 * kSector, 2 * kSector);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kData);
  EXPECT_EQ(e->length, 2 * kSector);
  e = image.Map(16 * kSector, 4 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kParent);
  EXPECT_EQ(e->length, 24 * kSector);
  e = image.Map(43 * kSector, 4 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kParent);
  EXPECT_EQ(e->length, 2 * kMiB - 43 * kSector);
}

// --- parents -----------------------------------------------------------------------------

TEST(VhdDifferencing, FindsItsParentThroughTheRelativeLocatorAfterAMove) {
  TempDir dir;
  fs::create_directories(dir / "a");
  std::mt19937_64 rng(5);
  Reference ref(2 * kMiB);
  {
    auto base = MustCreate(dir / "a/base.vhd", DiskSubtype::kDynamic, 2 * kMiB);
    ASSERT_NE(base, nullptr);
    RandomWrites(*base, ref, rng, 10, 100);
    base.reset();
    auto child =
        MustCreate(dir / "a/child.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "a/base.vhd");
    ASSERT_NE(child, nullptr);
    RandomWrites(*child, ref, rng, 10, 100);
  }
  fs::rename(dir / "a", dir / "b");  // the absolute locator now names a missing file
  auto disk = MustOpen(dir / "b/child.vhd");
  ASSERT_NE(disk, nullptr);
  ASSERT_EQ(disk->chain().size(), 2u);
  VerifyDisk(*disk, ref, rng, "moved chain");

  auto ignored = Open(dir / "b/child.vhd", true, /*ignore_relative=*/true);
  ASSERT_FALSE(ignored.ok());
  EXPECT_EQ(ignored.status().code(), Code::kVhdParentNotFound) << ignored.status().message();
}

TEST(VhdDifferencing, ParentWithoutRelativeLocatorIsFoundByAbsolutePath) {
  TempDir dir;
  fs::create_directories(dir / "p");
  fs::create_directories(dir / "c");
  ASSERT_NE(MustCreate(dir / "p/base.vhd", DiskSubtype::kDynamic, kMiB), nullptr);
  ASSERT_NE(MustCreate(dir / "c/child.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "p/base.vhd"),
            nullptr);
  auto disk = Open(dir / "c/child.vhd", true, /*ignore_relative=*/true);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  EXPECT_EQ((*disk)->chain().size(), 2u);
  const auto ref = (*disk)->top().parent();
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->stored_locations[0], "..\\p\\base.vhd");
}

// --- concurrency -------------------------------------------------------------------------

std::vector<std::byte> ChunkPattern(std::uint64_t index, std::size_t size) {
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; ++i)
    out[i] = static_cast<std::byte>((index * 131 + i / 512 * 7 + i) & 0xFF);
  return out;
}

// `threads` writers, writer t taking chunks t, t+threads, ...: neighbours race for the same
// block allocation and (differencing) the same bitmap sector. A reader checks meanwhile that
// every sector of every chunk reads wholly as before or wholly as after its write, as on a disk:
// never data from anywhere else (a block mapped before its data was written, or to the wrong
// place), and never a sector part old and part new (torn). Every other read is of a chunk a
// writer has under way, so reads overlap writes in flight on every run.
void ParallelWriters(VirtualDisk& disk, const Reference& before, std::size_t chunk, int threads) {
  constexpr std::uint64_t kIdle = ~std::uint64_t{0};
  const std::uint64_t chunks = disk.size() / chunk;
  std::mutex mutex;
  std::string failure;  // the first one
  const auto fail = [&](const std::string& what) {
    std::lock_guard lock(mutex);
    if (failure.empty()) failure = what;
  };
  std::atomic<bool> done{false};
  std::vector<std::atomic<std::uint64_t>> writing(threads);  // the chunk each writer writes
  for (auto& w : writing) w = kIdle;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (std::uint64_t i = t; i < chunks; i += threads) {
        const auto pattern = ChunkPattern(i, chunk);
        writing[t] = i;
        const Status status = disk.Write(i * chunk, pattern);
        if (!status.ok()) fail("write of chunk " + std::to_string(i) + ": " + std::string(status.message()));
      }
      writing[t] = kIdle;
    });
  }
  std::thread reader([&] {
    std::mt19937_64 rng(9);
    std::vector<std::byte> buffer(chunk);
    for (std::uint64_t n = 0; !done; ++n) {
      std::uint64_t i = n % 2 == 0 ? kIdle : writing[n / 2 % threads].load();
      if (i == kIdle) i = rng() % chunks;
      const Status status = disk.Read(i * chunk, buffer);
      if (!status.ok()) fail("read of chunk " + std::to_string(i) + ": " + std::string(status.message()));
      const auto after = ChunkPattern(i, chunk);
      const std::string torn = FirstTornSector(
          buffer, std::span(before.data).subspan(i * chunk, chunk), after, i * chunk, kSector);
      if (!torn.empty()) fail("chunk " + std::to_string(i) + ": " + torn);
    }
  });
  for (auto& w : workers) w.join();
  done = true;
  reader.join();
  EXPECT_EQ(failure, "");
}

TEST(VhdConcurrency, ParallelWritersOnADynamicDisk) {
  TempDir dir;
  const std::uint64_t size = 16 * kMiB;
  const std::size_t chunk = 64 * kKiB;
  {
    auto disk = MustCreate(dir / "mt.vhd", DiskSubtype::kDynamic, size, 512 * kKiB);
    ASSERT_NE(disk, nullptr);
    ParallelWriters(*disk, Reference(size), chunk, 4);
  }
  Reference ref(size);
  for (std::uint64_t i = 0; i < size / chunk; ++i) ref.Write(i * chunk, ChunkPattern(i, chunk));
  auto disk = MustOpen(dir / "mt.vhd");
  ASSERT_NE(disk, nullptr);
  std::mt19937_64 rng(1);
  VerifyDisk(*disk, ref, rng, "after parallel writes");
  EXPECT_LE(fs::file_size(dir / "mt.vhd"), 2048 + 512 + 32 * (512 * kKiB + 4096) + 512);
}

TEST(VhdConcurrency, ParallelWritersOnADifferencingDisk) {
  TempDir dir;
  const std::uint64_t size = 8 * kMiB;
  const std::size_t chunk = 4 * kKiB;
  std::mt19937_64 rng(11);
  Reference base(size);
  {
    auto disk = MustCreate(dir / "base.vhd", DiskSubtype::kDynamic, size);
    ASSERT_NE(disk, nullptr);
    RandomWrites(*disk, base, rng, 30, 4000);
  }
  {
    auto disk = MustCreate(dir / "child.vhd", DiskSubtype::kDifferencing, 0, 0, dir / "base.vhd");
    ASSERT_NE(disk, nullptr);
    ParallelWriters(*disk, base, chunk, 4);
  }
  Reference ref(size);
  for (std::uint64_t i = 0; i < size / chunk; ++i) ref.Write(i * chunk, ChunkPattern(i, chunk));
  auto disk = MustOpen(dir / "child.vhd");
  ASSERT_NE(disk, nullptr);
  VerifyDisk(*disk, ref, rng, "after parallel writes");
}

// --- crash safety ------------------------------------------------------------------------

using vdisk_testing::CrashingOpener;

// Kills the "process" after every possible number of file writes while a series of writes
// allocates blocks, then checks that the image opens, holds every write that returned success,
// is repaired by a read-write open, and takes new writes.
// `from_file`: the series goes through Image::WriteFromFile (from a memory file, so the data
// step is the CopyFrom fall-back's WriteAt, which the crashing file counts) instead of Write.
// Each check after a crash reads the whole disk, then a few random ranges (the full read
// compares every byte; the crash points, not the reads, are what this sweep multiplies).
constexpr int kCrashRandomReads = 8;

void CrashAfterEveryWrite(bool differencing, bool from_file = false) {
  const std::uint64_t size = 3 * kMiB;
  for (int budget = 0;; ++budget) {
    SCOPED_TRACE("crash after " + std::to_string(budget) + " file writes");
    TempDir dir;
    std::mt19937_64 rng(21);
    Reference ref(size);
    fs::path path = dir / "disk.vhd";
    {
      auto base = MustCreate(dir / "base.vhd", DiskSubtype::kDynamic, size, 512 * kKiB);
      ASSERT_NE(base, nullptr);
      RandomWrites(*base, ref, rng, 3, 2000);
    }
    if (differencing) {
      ASSERT_NE(MustCreate(path, DiskSubtype::kDifferencing, 0, 512 * kKiB, dir / "base.vhd"),
                nullptr);
    } else {
      path = dir / "base.vhd";
    }
    bool crashed = false;
    {
      CrashingOpener opener(budget);
      auto disk = MustOpen(path, /*read_only=*/false);
      ASSERT_NE(disk, nullptr);
      for (int i = 0; i < 12; ++i) {
        const auto [offset, length] = RandomRange(rng, size, 1500);
        const auto bytes = RandomBytes(rng, length);
        Status status;
        if (from_file) {
          platform::MemoryFile staging(bytes);
          auto copied = disk->top().WriteFromFile(offset, length, staging, 0);
          if (!copied.ok()) status = copied.status();
        } else {
          status = disk->Write(offset, bytes);
        }
        if (!status.ok()) {
          ref.Forget(offset, length);  // may hold old, new or torn data
          break;
        }
        ref.Write(offset, bytes);
      }
      crashed = opener.crashed();
    }
    {
      auto disk = Open(path, /*read_only=*/true);
      ASSERT_TRUE(disk.ok()) << disk.status().message();
      VerifyDisk(**disk, ref, rng, "read-only after the crash", kCrashRandomReads);
    }
    {
      auto disk = MustOpen(path, /*read_only=*/false);
      ASSERT_NE(disk, nullptr);
      VerifyDisk(*disk, ref, rng, "read-write after the crash", kCrashRandomReads);
      ref.known.assign(ref.known.size(), true);
      std::vector<std::byte> everything(size);
      ASSERT_TRUE(disk->Read(0, everything).ok());
      ref.Write(0, everything);
      RandomWrites(*disk, ref, rng, 6, 1500);
    }
    {
      auto disk = MustOpen(path);
      ASSERT_NE(disk, nullptr);
      VerifyDisk(*disk, ref, rng, "after writes following the crash", kCrashRandomReads);
      // The end footer is intact again.
      const auto file_size = fs::file_size(path);
      const auto tail = ReadFileBytes(path, file_size - 512, 8);
      EXPECT_EQ(std::memcmp(tail.data(), "conectix", 8), 0);
    }
    if (!crashed || ::testing::Test::HasFailure()) {
      // Sanity: the series really did allocate blocks, so the crash points covered allocation.
      EXPECT_GT(budget, 15);
      break;
    }
  }
}

TEST(VhdCrashSafety, DynamicDiskSurvivesACrashAtAnyWrite) { CrashAfterEveryWrite(false); }
TEST(VhdCrashSafety, DifferencingDiskSurvivesACrashAtAnyWrite) { CrashAfterEveryWrite(true); }
TEST(VhdCrashSafety, WriteFromFileOnADynamicDiskSurvivesACrashAtAnyWrite) {
  CrashAfterEveryWrite(false, /*from_file=*/true);
}
TEST(VhdCrashSafety, WriteFromFileOnADifferencingDiskSurvivesACrashAtAnyWrite) {
  CrashAfterEveryWrite(true, /*from_file=*/true);
}

// --- WriteFromFile -------------------------------------------------------------------------

TEST(VhdWriteFromFile, StoresWhatWriteWouldStoreCopyingInTheKernel) {
  for (const DiskSubtype subtype :
       {DiskSubtype::kFixed, DiskSubtype::kDynamic, DiskSubtype::kDifferencing}) {
    SCOPED_TRACE("subtype " + std::to_string(static_cast<int>(subtype)));
    TempDir dir;
    const std::uint64_t size = 6 * kMiB;
    std::mt19937_64 rng(5);
    Reference ref(size);
    {
      auto base = MustCreate(dir / "base.vhd", DiskSubtype::kDynamic, size, 512 * kKiB);
      ASSERT_NE(base, nullptr);
      RandomWrites(*base, ref, rng, 4, 3000);
    }
    fs::path path = dir / "base.vhd";
    if (subtype == DiskSubtype::kDifferencing) {
      path = dir / "child.vhd";
      ASSERT_NE(MustCreate(path, subtype, 0, 512 * kKiB, dir / "base.vhd"), nullptr);
    } else if (subtype == DiskSubtype::kFixed) {
      path = dir / "fixed.vhd";
      ref = Reference(size);
      ASSERT_NE(MustCreate(path, subtype, size), nullptr);
    }
    // The bytes to store, in a plain file beside the image, at an offset of their own.
    const auto bytes = RandomBytes(rng, 3 * kMiB);
    auto staging = platform::OpenOsFile(dir / "staging", platform::FileAccess::kReadWrite,
                                        platform::FileDisposition::kCreateNew);
    ASSERT_TRUE(staging.ok());
    ASSERT_TRUE((*staging)->WriteAt(4096, bytes).ok());
    {
      auto disk = MustOpen(path, /*read_only=*/false);
      ASSERT_NE(disk, nullptr);
      // Inside one block, across blocks, and into allocated and unallocated ones.
      const std::pair<std::uint64_t, std::uint64_t> ranges[] = {
          {512 * kKiB + 7 * kSector, 9 * kSector}, {kMiB - 4096, 1600 * kKiB}, {5 * kMiB, kMiB}};
      std::uint64_t from = 4096;
      for (const auto& [offset, length] : ranges) {
        auto method = disk->top().WriteFromFile(offset, length, **staging, from);
        ASSERT_TRUE(method.ok()) << method.status().message();
#ifdef __linux__
        EXPECT_EQ(*method, platform::CopyMethod::kKernel);
#endif
        ref.Write(offset, std::span(bytes).subspan(from - 4096, length));
        from += length;
      }
    }
    auto disk = MustOpen(path);
    ASSERT_NE(disk, nullptr);
    VerifyDisk(*disk, ref, rng, "after WriteFromFile");
  }
}

}  // namespace
}  // namespace vdisk
