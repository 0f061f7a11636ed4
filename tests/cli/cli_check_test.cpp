// vdisk check on good images (exit 0) and on each kind of damage of the bad-input tables of
// tests/unit/vhd_corrupt_test.cpp and vhdx_corrupt_test.cpp (exit 2, the problem named), leaked
// space (exit 3), and --repair. The images are qemu-img's, damaged here byte by byte.
#include <gtest/gtest.h>

#include <functional>

#include "cli_support.h"

namespace cli_test {
namespace {

constexpr std::uint64_t kKiB = 1024, kMiB = 1024 * 1024;

std::uint64_t Le(const std::vector<std::uint8_t>& b, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}
std::uint64_t Be(const std::vector<std::uint8_t>& b, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}
void PutLe(std::vector<std::uint8_t>& b, std::size_t at, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
}
void PutBe(std::vector<std::uint8_t>& b, std::size_t at, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b[at + static_cast<std::size_t>(bytes - 1 - i)] = static_cast<std::uint8_t>(v >> (8 * i));
}
void FlipByte(const fs::path& path, std::uint64_t offset) {
  auto b = ReadBytes(path, offset, 1);
  b[0] ^= 0xFF;
  WriteBytes(path, offset, b);
}

// VHDX (MS-VHDX §2.2.3): the file offset of a region by the first bytes of its GUID.
std::uint64_t VhdxRegion(const fs::path& path, std::uint32_t guid_data1) {
  const auto table = ReadBytes(path, 192 * kKiB, 64 * kKiB);
  for (std::uint64_t i = 0; i < Le(table, 8, 4); ++i) {
    const std::size_t at = 16 + i * 32;
    if (Le(table, at, 4) == guid_data1) return Le(table, at + 16, 8);
  }
  return 0;
}
constexpr std::uint32_t kBatGuid = 0x2DC27766, kMetadataGuid = 0x8B7CA206;

// Rewrites the 4 KiB VHDX header at `offset` through `change`, with a correct checksum.
void EditVhdxHeader(const fs::path& path, std::uint64_t offset,
                    const std::function<void(std::vector<std::uint8_t>&)>& change) {
  auto header = ReadBytes(path, offset, 4096);
  change(header);
  PutLe(header, 4, 0, 4);
  PutLe(header, 4, Crc32c(header), 4);
  WriteBytes(path, offset, header);
}

struct Damage {
  const char* name;
  const char* format;  // "vhdx" or "vpc"
  std::function<void(const fs::path&)> apply;
  const char* named;   // what the message must name
};

// GoogleTest prints a parameter in the test's CTest name: its name, not its bytes.
void PrintTo(const Damage& damage, std::ostream* out) { *out << damage.name; }

class VdiskCheckDamage : public ::testing::TestWithParam<Damage> {};

const Damage kDamages[] = {
    {"VhdxHeader1BadChecksum", "vhdx", [](const fs::path& p) { FlipByte(p, 64 * kKiB + 1000); }, "header 1"},
    {"VhdxBothHeadersBadChecksums", "vhdx",
     [](const fs::path& p) { FlipByte(p, 64 * kKiB + 1000); FlipByte(p, 128 * kKiB + 1000); }, "header"},
    {"VhdxRegionTable2BadChecksum", "vhdx", [](const fs::path& p) { FlipByte(p, 256 * kKiB + 60000); }, "region table 2"},
    {"VhdxBothRegionTablesBad", "vhdx",
     [](const fs::path& p) { FlipByte(p, 192 * kKiB + 60000); FlipByte(p, 256 * kKiB + 60000); }, "region table"},
    {"VhdxLogGuidWithoutAnyLogEntry", "vhdx",
     [](const fs::path& p) {
       for (const std::uint64_t at : {64 * kKiB, 128 * kKiB})
         EditVhdxHeader(p, at, [](std::vector<std::uint8_t>& h) { h[48] = 0x5A; });
     },
     "log"},
    {"VhdxBatEntryBeyondTheFile", "vhdx",
     [](const fs::path& p) {
       std::vector<std::uint8_t> entry(8);
       PutLe(entry, 0, (std::uint64_t{1} << 40) | 6, 8);  // 1 TiB, FULLY_PRESENT
       WriteBytes(p, VhdxRegion(p, kBatGuid) + 8, entry);
     },
     "BAT"},
    {"VhdxTwoBatEntriesSharingABlock", "vhdx",
     [](const fs::path& p) {
       const auto bat = VhdxRegion(p, kBatGuid);
       WriteBytes(p, bat + 8, ReadBytes(p, bat, 8));
     },
     "block"},
    {"VhdxMetadataTableWithoutSignature", "vhdx",
     [](const fs::path& p) { FlipByte(p, VhdxRegion(p, kMetadataGuid)); }, "metadata"},
    {"VhdxBlockSizeNotAPowerOfTwo", "vhdx",
     [](const fs::path& p) {
       const auto region = VhdxRegion(p, kMetadataGuid);
       const auto table = ReadBytes(p, region, 64 * kKiB);
       for (std::size_t i = 0; i < Le(table, 10, 2); ++i) {
         const std::size_t at = 32 + i * 32;
         if (Le(table, at, 4) != 0xCAA16737) continue;  // file parameters (§2.6.2.1)
         std::vector<std::uint8_t> size(4);
         PutLe(size, 0, 3 * kMiB, 4);
         WriteBytes(p, region + Le(table, at + 16, 4), size);
       }
     },
     "block size"},
    {"VhdFooterBadChecksum", "vpc",
     [](const fs::path& p) { FlipByte(p, fs::file_size(p) - 512 + 200); }, "footer"},
    {"VhdFooterCopyBadChecksum", "vpc", [](const fs::path& p) { FlipByte(p, 200); }, "footer copy"},
    {"VhdDynamicHeaderBadChecksum", "vpc", [](const fs::path& p) { FlipByte(p, 512 + 900); }, "header"},
    {"VhdBatEntryPastTheEndOfTheFile", "vpc",
     [](const fs::path& p) {
       const auto header = ReadBytes(p, 512, 1024);
       std::vector<std::uint8_t> entry(4);
       PutBe(entry, 0, 0x00FFFFFF, 4);
       WriteBytes(p, Be(header, 16, 8) + 4, entry);
     },
     "block"},
    {"VhdBlocksThatOverlap", "vpc",
     [](const fs::path& p) {
       const auto header = ReadBytes(p, 512, 1024);
       const auto table = Be(header, 16, 8);
       WriteBytes(p, table + 4, ReadBytes(p, table, 4));
     },
     "overlap"},
};

TEST_P(VdiskCheckDamage, ExitsTwoNamingTheProblem) {
  const Damage& damage = GetParam();
  TempDir dir;
  const fs::path image = dir / (std::string("d.") + (damage.format == std::string("vpc") ? "vhd" : "vhdx"));
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", damage.format, image.string(), "64M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", damage.format, "-c", "write -P 0x61 0 3M", image.string()}).exit_code, 0);
  const Result clean = Vdisk({"check", image.string()});
  ASSERT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  damage.apply(image);
  const Result r = Vdisk({"check", image.string()});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.out.find("ERROR: " + image.string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(damage.named), std::string::npos) << r.out;
  const Result json = Vdisk({"check", "--output=json", image.string()});
  EXPECT_EQ(json.exit_code, 2);
  EXPECT_NE(json.out.find("\"kind\": \"corruption\""), std::string::npos) << json.out;
}

INSTANTIATE_TEST_SUITE_P(BadInputs, VdiskCheckDamage, ::testing::ValuesIn(kDamages),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(VdiskCheck, GoodImagesOfEveryKindAreClean) {
  TempDir dir;
  const auto q_vhd = (dir / "q.vhd").string(), q_vhdx = (dir / "q.vhdx").string(),
             fixed_vhd = (dir / "f.vhd").string(), fixed_vhdx = (dir / "f.vhdx").string(),
             child = (dir / "c.vhdx").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vpc", q_vhd, "64M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", q_vhdx, "64M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", fixed_vhd, "--size", "16M", "--fixed"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", fixed_vhdx, "--size", "16M", "--fixed"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", child, "--parent", q_vhdx}).exit_code, 0);
  ASSERT_EQ(Vdisk({"write", child, "--offset", "1M", "--length", "4K", "--pattern", "1"}).exit_code, 0);
  for (const auto& path : {q_vhd, q_vhdx, fixed_vhd, fixed_vhdx, child}) {
    const Result r = Vdisk({"check", path});
    EXPECT_EQ(r.exit_code, 0) << path << "\n" << r.out << r.err;
    EXPECT_NE(r.out.find("no errors were found"), std::string::npos) << r.out;
  }
}

TEST(VdiskCheck, ABrokenParentLinkIsCorruption) {
  TempDir dir;
  const auto parent = (dir / "p.vhdx").string(), child = (dir / "c.vhdx").string();
  ASSERT_EQ(Vdisk({"create", parent, "--size", "16M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", child, "--parent", parent}).exit_code, 0);
  fs::remove(parent);
  const Result r = Vdisk({"check", child});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("parent link: "), std::string::npos) << r.out;
}

TEST(VdiskCheck, SpaceNoStructureUsesIsALeak) {
  TempDir dir;
  // A VHD whose data area is longer than its blocks: the footer moved 1 MiB further.
  const fs::path vhd = dir / "l.vhd";
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vpc", vhd.string(), "64M"}).exit_code, 0);
  const auto size = fs::file_size(vhd);
  const auto footer = ReadBytes(vhd, size - 512, 512);
  fs::resize_file(vhd, size - 512 + kMiB);
  WriteBytes(vhd, size - 512 + kMiB, footer);
  const Result v = Vdisk({"check", vhd.string()});
  EXPECT_EQ(v.exit_code, 3) << v.out << v.err;
  EXPECT_NE(v.out.find("Leaked: "), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("1 MiB of leaked space"), std::string::npos) << v.out;
  // Only a leak: the data reads as before (libvhdi, the referee, opens it).
  EXPECT_EQ(Exec({"vhdiinfo", vhd.string()}).exit_code, 0);

  // The space a VHDX keeps after its last block is room for new blocks, not a leak.
  const fs::path vhdx = dir / "l.vhdx";
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", vhdx.string(), "64M"}).exit_code, 0);
  fs::resize_file(vhdx, fs::file_size(vhdx) + 4 * kMiB);
  const Result r = Vdisk({"check", vhdx.string()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("not in use yet"), std::string::npos) << r.out;
}

TEST(VdiskCheck, RepairRewritesADamagedHeaderAndFooterCopy) {
  TempDir dir;
  const fs::path vhdx = dir / "r.vhdx", vhd = dir / "r.vhd";
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", vhdx.string(), "64M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vpc", vhd.string(), "64M"}).exit_code, 0);
  FlipByte(vhdx, 64 * kKiB + 1000);
  FlipByte(vhd, 200);
  for (const auto& path : {vhdx, vhd}) {
    ASSERT_EQ(Vdisk({"check", path.string()}).exit_code, 2);
    const Result r = Vdisk({"check", "--repair", path.string()});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(Vdisk({"check", path.string()}).exit_code, 0);
  }
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", vhdx.string()}).exit_code, 0);
  EXPECT_EQ(Exec({"vhdiinfo", vhd.string()}).exit_code, 0);  // qemu-img has no VHD check
}

TEST(VdiskCheck, AMissingFileIsNotChecked) {
  TempDir dir;
  const Result r = Vdisk({"check", (dir / "none.vhdx").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("none.vhdx: ERROR_FILE_NOT_FOUND"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cli_test
