// ISO images made by genisoimage (plain ISO 9660, Joliet + Rock Ridge, ISO 9660 + UDF), with
// isoinfo as the oracle for the volume size and the file extents:
//  - they open read-only, by extension (type UNKNOWN/UNKNOWN) and as DEVICE_ISO, with V1 and V2
//    parameters, and report VirtualSize = volume space size x logical block size;
//  - any request for write access is ERROR_ACCESS_DENIED, as on Windows;
//  - raw reads (attach READ_ONLY|NO_LOCAL_HOST + ReadFile) return the file's bytes, and a file
//    stored in the image is found at the extent isoinfo lists; WriteFile fails;
//  - truncated and garbage .iso files are ERROR_FILE_CORRUPT.
#include <gtest/gtest.h>

#include <cstdlib>
#include <ostream>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "interop_support.h"

namespace vdisk_interop {
namespace {

#define ASSERT_OK(expr) ASSERT_EQ(static_cast<DWORD>(expr), static_cast<DWORD>(ERROR_SUCCESS))
#define EXPECT_OK(expr) EXPECT_EQ(static_cast<DWORD>(expr), static_cast<DWORD>(ERROR_SUCCESS))

constexpr std::size_t kPayloadSize = 300000;  // not a multiple of 2048 on purpose

struct IsoFlavor {
  const char* name;
  std::vector<std::string> options;
};
void PrintTo(const IsoFlavor& f, std::ostream* os) { *os << f.name; }

struct IsoVolume {
  std::uint64_t block_size = 0;
  std::uint64_t blocks = 0;
  std::uint64_t payload_extent = 0;  // LBA of PAYLOAD.BIN, from isoinfo -l
};

// Parses `isoinfo -d` (volume size, logical block size) and `isoinfo -l` (the extent of the
// payload file) for `iso`.
std::optional<IsoVolume> InspectWithIsoinfo(const std::filesystem::path& iso, std::string* error) {
  IsoVolume v;
  const auto d = RunTool({"isoinfo", "-d", "-i", iso.string()});
  std::smatch m;
  static const std::regex size_re("Volume size is: ([0-9]+)");
  static const std::regex block_re("Logical block size is: ([0-9]+)");
  if (d.exit_code != 0 || !std::regex_search(d.out, m, size_re)) {
    *error = d.Describe();
    return std::nullopt;
  }
  v.blocks = std::stoull(m[1]);
  if (!std::regex_search(d.out, m, block_re)) {
    *error = d.Describe();
    return std::nullopt;
  }
  v.block_size = std::stoull(m[1]);
  const auto l = RunTool({"isoinfo", "-l", "-i", iso.string()});
  static const std::regex extent_re(
      "\\[ *([0-9]+) +[0-9]+\\] +PAYLOAD\\.BIN;1");
  if (l.exit_code != 0 || !std::regex_search(l.out, m, extent_re)) {
    *error = l.Describe();
    return std::nullopt;
  }
  v.payload_extent = std::stoull(m[1]);
  return v;
}

class GenisoimageIso : public ::testing::TestWithParam<IsoFlavor> {
 protected:
  void SetUp() override {
    INTEROP_REQUIRE_TOOL("genisoimage");
    INTEROP_REQUIRE_TOOL("isoinfo");
    const auto tree = dir_ / "tree";
    std::filesystem::create_directories(tree / "sub" / "deeper");
    payload_.resize(kPayloadSize);
    FillPattern(0x150150, payload_);
    WriteWholeFile(tree / "payload.bin", payload_);
    const std::string text = "a small text file\n";
    WriteWholeFile(tree / "sub" / "readme.txt",
                   std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
    Bytes more(70000);
    FillPattern(77, more);
    WriteWholeFile(tree / "sub" / "deeper" / "more.bin", more);

    iso_ = dir_ / "image.iso";
    std::vector<std::string> argv = {"genisoimage", "-quiet", "-V", "VIRTDISK"};
    argv.insert(argv.end(), GetParam().options.begin(), GetParam().options.end());
    argv.insert(argv.end(), {"-o", iso_.string(), tree.string()});
    const auto r = RunTool(argv);
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    std::string error;
    const auto volume = InspectWithIsoinfo(iso_, &error);
    ASSERT_TRUE(volume.has_value()) << error;
    volume_ = *volume;
    expected_size_ = volume_.blocks * volume_.block_size;
    file_ = ReadWholeFile(iso_);
    ASSERT_GE(file_.size(), expected_size_);
  }

  ScratchDir dir_;
  std::filesystem::path iso_;
  Bytes payload_;
  Bytes file_;
  IsoVolume volume_;
  std::uint64_t expected_size_ = 0;
};

TEST_P(GenisoimageIso, OpensReadOnlyWithTheVolumeSizeIsoinfoReports) {
  struct OpenCase {
    const char* what;
    VIRTUAL_STORAGE_TYPE type;
    bool v2;
  };
  const OpenCase cases[] = {
      {"UNKNOWN/UNKNOWN (by extension), V1 ACCESS_READ",
       StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false), false},
      {"UNKNOWN/UNKNOWN (by extension), V2 ReadOnly",
       StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false), true},
      {"ISO/MICROSOFT, V1 ACCESS_READ", StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_ISO, true), false},
      {"ISO/MICROSOFT, V2 ReadOnly", StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_ISO, true), true},
  };
  for (const OpenCase& c : cases) {
    SCOPED_TRACE(c.what);
    Handle h;
    ASSERT_OK(c.v2 ? OpenV2(iso_, c.type, true, h) : OpenV1(iso_, c.type, VIRTUAL_DISK_ACCESS_READ, h));
    DWORD e = 0;
    const auto size = QuerySize(h.get(), &e);
    ASSERT_TRUE(size.has_value()) << "GetVirtualDiskInformation(SIZE) failed with " << e;
    EXPECT_EQ(size->virtual_size, expected_size_)
        << "isoinfo: " << volume_.blocks << " blocks of " << volume_.block_size;
    EXPECT_EQ(size->sector_size, 2048u);
    const auto type = QueryStorageType(h.get(), &e);
    ASSERT_TRUE(type.has_value()) << e;
    EXPECT_EQ(type->DeviceId, static_cast<ULONG>(VIRTUAL_STORAGE_TYPE_DEVICE_ISO));
  }
}

TEST_P(GenisoimageIso, RefusesWriteAccessWithAccessDenied) {
  for (const bool microsoft_iso : {false, true}) {
    const VIRTUAL_STORAGE_TYPE type =
        microsoft_iso ? StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_ISO, true)
                      : StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
    SCOPED_TRACE(microsoft_iso ? "ISO/MICROSOFT" : "UNKNOWN/UNKNOWN");
    for (const VIRTUAL_DISK_ACCESS_MASK mask :
         {VIRTUAL_DISK_ACCESS_ATTACH_RW, VIRTUAL_DISK_ACCESS_ALL, VIRTUAL_DISK_ACCESS_METAOPS}) {
      Handle h;
      EXPECT_EQ(OpenV1(iso_, type, mask, h), static_cast<DWORD>(ERROR_ACCESS_DENIED))
          << "V1 mask 0x" << std::hex << mask;
      EXPECT_FALSE(h) << "no handle on failure";
    }
    Handle h;
    EXPECT_EQ(OpenV2(iso_, type, false, h), static_cast<DWORD>(ERROR_ACCESS_DENIED))
        << "V2 ReadOnly=FALSE";
    EXPECT_FALSE(h);
  }
  EXPECT_EQ(CompareBytes(ReadWholeFile(iso_), file_), "equal") << "the file was not touched";
}

TEST_P(GenisoimageIso, RawReadsReturnTheFileBytes) {
  Handle h;
  ASSERT_OK(OpenV2(iso_, StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false), true, h));
  // Windows requires ISOs to be attached read-only.
  EXPECT_EQ(AttachRaw(h.get(), false), static_cast<DWORD>(ERROR_ACCESS_DENIED));
  ASSERT_OK(AttachRaw(h.get(), true));

  DWORD e = 0;
  const auto whole = ReadAll(h.get(), expected_size_, &e);
  ASSERT_TRUE(whole.has_value()) << "ReadFile failed with " << e;
  EXPECT_EQ(CompareBytes(*whole, std::span(file_).first(expected_size_)), "equal");

  // The payload is where isoinfo says its extent is.
  Bytes payload(((kPayloadSize + 2047) / 2048) * 2048);
  ASSERT_OK(ReadSync(h.get(), volume_.payload_extent * 2048, payload));
  EXPECT_EQ(CompareBytes(std::span(payload).first(kPayloadSize), payload_), "equal")
      << "PAYLOAD.BIN at LBA " << volume_.payload_extent;

  // Random sector runs, synchronously and overlapped.
  std::mt19937_64 rng(0x150);
  const std::uint64_t sectors = expected_size_ / 2048;
  for (int i = 0; i < 24; ++i) {
    const std::uint64_t count =
        std::uniform_int_distribution<std::uint64_t>(1, std::min<std::uint64_t>(64, sectors))(rng);
    const std::uint64_t first =
        std::uniform_int_distribution<std::uint64_t>(0, sectors - count)(rng);
    Bytes buffer(count * 2048);
    ASSERT_OK(i % 2 == 0 ? ReadSync(h.get(), first * 2048, buffer)
                         : ReadAt(h.get(), first * 2048, buffer));
    EXPECT_EQ(CompareBytes(buffer, std::span(file_).subspan(first * 2048, buffer.size())),
              "equal")
        << count << " sectors at sector " << first;
  }
}

TEST_P(GenisoimageIso, WriteFileFailsAndLeavesTheFileAlone) {
  Handle h;
  ASSERT_OK(OpenV1(iso_, StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_ISO, true),
                   VIRTUAL_DISK_ACCESS_READ, h));
  ASSERT_OK(AttachRaw(h.get(), true));
  Bytes data(4096, 0xAB);
  EXPECT_EQ(WriteAt(h.get(), 0, data), static_cast<DWORD>(ERROR_WRITE_PROTECT))
      << "overlapped WriteFile";
  EXPECT_EQ(WriteSync(h.get(), volume_.payload_extent * 2048, data),
            static_cast<DWORD>(ERROR_WRITE_PROTECT))
      << "synchronous WriteFile";
  ASSERT_TRUE(h.Close());
  EXPECT_EQ(CompareBytes(ReadWholeFile(iso_), file_), "equal") << "the file was not touched";
}

INSTANTIATE_TEST_SUITE_P(
    Genisoimage, GenisoimageIso,
    ::testing::Values(IsoFlavor{"Plain", {}}, IsoFlavor{"JolietRockRidge", {"-J", "-R"}},
                      IsoFlavor{"Udf", {"-udf"}}, IsoFlavor{"UdfJoliet", {"-udf", "-J"}}),
    [](const auto& info) { return std::string(info.param.name); });

// --- malformed images ----------------------------------------------------------------------------

enum class Damage { kGarbage, kZeros, kTruncatedBeforeDescriptors, kTruncatedAfterDescriptors,
                    kTruncatedHalf, kVolumeSizeEndianMismatch, kNoTerminator };

struct DamageCase {
  const char* name;
  Damage damage;
};
void PrintTo(const DamageCase& c, std::ostream* os) { *os << c.name; }

class DamagedIso : public ::testing::TestWithParam<DamageCase> {};

TEST_P(DamagedIso, OpensWithFileCorrupt) {
  INTEROP_REQUIRE_TOOL("genisoimage");
  ScratchDir dir;
  const auto tree = dir / "tree";
  std::filesystem::create_directories(tree);
  Bytes payload(200000);
  FillPattern(5, payload);
  WriteWholeFile(tree / "payload.bin", payload);
  const auto good = dir / "good.iso";
  const auto r = RunTool({"genisoimage", "-quiet", "-J", "-R", "-o", good.string(), tree.string()});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  Bytes image = ReadWholeFile(good);
  ASSERT_GT(image.size(), 64u * 1024);

  constexpr std::size_t kPvd = 16 * 2048;
  switch (GetParam().damage) {
    case Damage::kGarbage:
      image.resize(1 << 20);
      FillPattern(0xBAD, image);
      break;
    case Damage::kZeros:
      image.assign(1 << 20, 0);
      break;
    case Damage::kTruncatedBeforeDescriptors:
      image.resize(20000);
      break;
    case Damage::kTruncatedAfterDescriptors:
      // Sectors 16.. hold the PVD, the Joliet SVD and the terminator; the rest is gone.
      image.resize(kPvd + 3 * 2048);
      break;
    case Damage::kTruncatedHalf:
      image.resize(image.size() / 2 / 2048 * 2048);
      break;
    case Damage::kVolumeSizeEndianMismatch:
      // ECMA-119 8.4.8: volume space size, both-endian at PVD offset 80 (LE) and 84 (BE).
      image[kPvd + 80] ^= 0x01;
      break;
    case Damage::kNoTerminator:
      // Every descriptor after the PVD becomes unrecognisable: no terminator is found.
      for (std::size_t s = 17; s < 24; ++s) image[s * 2048 + 1] = 'X';
      break;
  }
  const auto bad = dir / "bad.iso";
  WriteWholeFile(bad, image);

  for (const bool microsoft_iso : {false, true}) {
    const VIRTUAL_STORAGE_TYPE type =
        microsoft_iso ? StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_ISO, true)
                      : StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
    SCOPED_TRACE(microsoft_iso ? "ISO/MICROSOFT" : "UNKNOWN/UNKNOWN");
    Handle h;
    EXPECT_EQ(OpenV2(bad, type, true, h), static_cast<DWORD>(ERROR_FILE_CORRUPT)) << "V2 ReadOnly";
    EXPECT_FALSE(h);
    EXPECT_EQ(OpenV1(bad, type, VIRTUAL_DISK_ACCESS_READ, h),
              static_cast<DWORD>(ERROR_FILE_CORRUPT))
        << "V1 ACCESS_READ";
    EXPECT_FALSE(h);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Iso, DamagedIso,
    ::testing::Values(DamageCase{"Garbage", Damage::kGarbage}, DamageCase{"Zeros", Damage::kZeros},
                      DamageCase{"TruncatedBeforeDescriptors", Damage::kTruncatedBeforeDescriptors},
                      DamageCase{"TruncatedAfterDescriptors", Damage::kTruncatedAfterDescriptors},
                      DamageCase{"TruncatedHalf", Damage::kTruncatedHalf},
                      DamageCase{"VolumeSizeEndianMismatch", Damage::kVolumeSizeEndianMismatch},
                      DamageCase{"NoTerminator", Damage::kNoTerminator}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace vdisk_interop
