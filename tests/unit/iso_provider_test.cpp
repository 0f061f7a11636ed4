// The ISO provider through its Provider interface, on images made at test time by real producers
// (genisoimage, xorriso, mkudffs) and checked against independent readers (isoinfo, udfinfo).
// Tests that need a producer skip when it is not installed (Debian: genisoimage, xorriso,
// udftools). Under Wine the producers run on the host (host_shell.h).
#include "host_shell.h"
#include "test_support.h"
#include "formats/iso/iso_provider.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "platform/file.h"
#include "support/file_bytes.h"

namespace vdisk {
namespace {

constexpr std::uint64_t kSector = 2048;

// --- Scratch files and external tools ------------------------------------------------------------

using vdisk_unit::TempDir;

std::vector<std::byte> RandomBytes(std::size_t size, unsigned seed) {
  std::vector<std::byte> bytes(size);
  std::mt19937 random(seed);
  for (auto& b : bytes) b = static_cast<std::byte>(random());
  return bytes;
}

std::vector<std::byte> ReadBytes(const std::filesystem::path& path) {
  return vdisk_unit::ReadWholeFile(path);
}

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The command that runs `name` on the host (see host_shell.h), or "" if it is not installed.
std::string FindTool(const std::string& name) { return vdisk_unit::HostTool(name); }

std::string Quote(const std::filesystem::path& path) { return vdisk_unit::ShellQuote(path); }

// Runs a shell command; returns its output, or fails the test. The output is also kept in `log`.
std::string RunCommand(const std::string& command, const std::filesystem::path& log) {
  std::string output;
  const int rc = vdisk_unit::HostShell(command, &output);
  std::ofstream(log, std::ios::binary) << output;
  EXPECT_EQ(rc, 0) << command << "\n" << output;
  return output;
}

std::optional<std::uint64_t> FindNumber(const std::string& text, const std::string& pattern) {
  std::smatch match;
  if (!std::regex_search(text, match, std::regex(pattern))) return std::nullopt;
  return std::stoull(match[1].str());
}

// The files the images are made from: one that does not end on a sector boundary, one that is
// shorter than a sector, one in a subdirectory.
struct SourceTree {
  std::filesystem::path root;
  std::vector<std::byte> big = RandomBytes(300001, 1);
  std::vector<std::byte> small = RandomBytes(700, 2);
};

SourceTree MakeSourceTree(const std::filesystem::path& root) {
  SourceTree tree;
  tree.root = root;
  std::filesystem::create_directories(root / "sub");
  vdisk_testing::ReplaceFileBytes(root / "big.bin", tree.big);
  vdisk_testing::ReplaceFileBytes(root / "sub" / "small.bin", tree.small);
  return tree;
}

// isoinfo -d: volume size x logical block size, the oracle for an ISO 9660 volume's size.
std::uint64_t IsoinfoVolumeBytes(const std::filesystem::path& image,
                                 const std::filesystem::path& log) {
  const std::string info = RunCommand("isoinfo -d -i " + Quote(image), log);
  const auto blocks = FindNumber(info, R"(Volume size is: (\d+))");
  const auto block_size = FindNumber(info, R"(Logical block size is: (\d+))");
  EXPECT_TRUE(blocks && block_size) << info;
  return blocks && block_size ? *blocks * *block_size : 0;
}

// isoinfo -l: the first logical block of `name` (ISO 9660 name without version, any case).
std::optional<std::uint64_t> IsoinfoExtent(const std::filesystem::path& image,
                                           const std::string& name,
                                           const std::filesystem::path& log) {
  const std::string listing = RunCommand("isoinfo -l -i " + Quote(image), log);
  const std::regex line(R"(\[\s*(\d+)\s+\d+\]\s+([^;\s]+))");
  for (auto it = std::sregex_iterator(listing.begin(), listing.end(), line);
       it != std::sregex_iterator(); ++it) {
    std::string found = (*it)[2].str();
    std::transform(found.begin(), found.end(), found.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (found == name) return std::stoull((*it)[1].str());
  }
  ADD_FAILURE() << name << " not in the listing:\n" << listing;
  return std::nullopt;
}

// --- Opening -------------------------------------------------------------------------------------

Result<std::unique_ptr<Image>> OpenIso(const std::filesystem::path& path, bool read_only = true) {
  ProviderRegistry registry;
  registry.Register(MakeIsoProvider());
  auto file = platform::OpenFile(
      path, read_only ? platform::FileAccess::kRead : platform::FileAccess::kReadWrite);
  if (!file.ok()) return file.status();
  OpenOptions options;
  options.read_only = read_only;
  return registry.Find(DiskFormat::kIso)->Open(std::move(file).value(), options);
}

// Reads [offset, offset + size) of the disk through Map and ReadData, as VirtualDisk does.
std::vector<std::byte> ReadThroughMap(Image& image, std::uint64_t offset, std::size_t size) {
  std::vector<std::byte> out(size);
  std::size_t done = 0;
  while (done < size) {
    auto extent = image.Map(offset + done, size - done);
    if (!extent.ok()) {
      ADD_FAILURE() << "Map at " << offset + done << ": " << extent.status().message();
      break;
    }
    EXPECT_EQ(extent->kind, Extent::Kind::kData);
    EXPECT_EQ(extent->file_offset, offset + done) << "the image is the disk, byte for byte";
    EXPECT_GT(extent->length, 0u);
    const auto length =
        static_cast<std::size_t>(std::min<std::uint64_t>(extent->length, size - done));
    const Status read = image.ReadData(extent->file_offset, std::span(out).subspan(done, length));
    if (!read.ok()) {
      ADD_FAILURE() << "ReadData at " << extent->file_offset << ": " << read.message();
      break;
    }
    done += length;
  }
  return out;
}

// A small valid ISO 9660 volume, for tests that do not need a producer.
std::vector<std::byte> MinimalIso(std::uint32_t sectors) {
  std::vector<std::byte> b(sectors * kSector);
  auto put = [&b](std::size_t at, unsigned value) { b[at] = static_cast<std::byte>(value); };
  for (const std::size_t sector : {16u, 17u}) {
    put(sector * kSector, sector == 16 ? 1 : 255);
    for (int i = 0; i < 5; ++i)
      put(sector * kSector + 1 + i, static_cast<unsigned char>("CD001"[i]));
    put(sector * kSector + 6, 1);
  }
  const std::size_t pvd = 16 * kSector;
  for (int i = 0; i < 4; ++i) {
    put(pvd + 80 + i, (sectors >> (8 * i)) & 0xff);  // volume space size, both-endian
    put(pvd + 87 - i, (sectors >> (8 * i)) & 0xff);
  }
  put(pvd + 128, 0x00);  // logical block size 2048, both-endian
  put(pvd + 129, 0x08);
  put(pvd + 130, 0x08);
  put(pvd + 131, 0x00);
  for (std::size_t i = 18 * kSector; i < b.size(); ++i) put(i, (i / kSector) % 251);
  return b;
}

void ExpectFixedReadOnly2048(const Image& image) {
  EXPECT_EQ(image.format(), DiskFormat::kIso);
  EXPECT_EQ(image.subtype(), DiskSubtype::kFixed);
  EXPECT_EQ(image.logical_sector_size(), 2048u);
  EXPECT_EQ(image.physical_sector_size(), 2048u);
  EXPECT_EQ(image.block_size(), 0u);
  EXPECT_TRUE(image.unique_id().is_zero());
  EXPECT_TRUE(image.read_only());
  EXPECT_FALSE(image.parent().has_value());
}

// --- Provider ------------------------------------------------------------------------------------

TEST(IsoProvider, DescribesItself) {
  const auto provider = MakeIsoProvider();
  EXPECT_EQ(provider->format(), DiskFormat::kIso);
  EXPECT_EQ(provider->name(), "ISO");
  ASSERT_EQ(provider->extensions().size(), 1u);
  EXPECT_EQ(provider->extensions()[0], ".iso");
}

TEST(IsoProvider, RefusesToCreateImages) {
  TempDir dir;
  const auto created = MakeIsoProvider()->Create(dir.path() / "new.iso", CreateOptions{});
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), Code::kNotSupported);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "new.iso"));
}

TEST(IsoProbe, RecognisesVolumeDescriptorAtSector16) {
  const auto b = MinimalIso(40);
  const ProbeData data{std::span(b).first(kProbeHeadBytes), std::span(b).last(kProbeTailBytes),
                       b.size()};
  EXPECT_GT(MakeIsoProvider()->Probe(data), 0);
}

TEST(IsoProbe, RecognisesUdfRecognitionSequence) {
  std::vector<std::byte> b(64 * 1024);
  const char* ids[] = {"BEA01", "NSR02", "TEA01"};
  for (std::size_t i = 0; i < 3; ++i) {
    const std::size_t at = (16 + i) * kSector;
    std::memcpy(&b[at + 1], ids[i], 5);
    b[at + 6] = std::byte{1};
  }
  EXPECT_GT(MakeIsoProvider()->Probe(ProbeData{b, {}, b.size()}), 0);
  std::memcpy(&b[17 * kSector + 1], "NSR04", 5);
  EXPECT_EQ(MakeIsoProvider()->Probe(ProbeData{b, {}, b.size()}), 0);
}

TEST(IsoProbe, RejectsOtherContent) {
  const auto provider = MakeIsoProvider();
  const auto random = RandomBytes(64 * 1024, 3);
  EXPECT_EQ(provider->Probe(ProbeData{random, {}, random.size()}), 0);
  const std::vector<std::byte> zeros(64 * 1024);
  EXPECT_EQ(provider->Probe(ProbeData{zeros, {}, zeros.size()}), 0);
  auto wrong_version = MinimalIso(40);
  wrong_version[16 * kSector + 6] = std::byte{2};
  EXPECT_EQ(provider->Probe(ProbeData{
                std::span(wrong_version).first(kProbeHeadBytes), {}, wrong_version.size()}),
            0);
}

TEST(IsoProbe, RejectsHeadEndingBeforeSector16) {
  const auto b = MinimalIso(40);
  EXPECT_EQ(MakeIsoProvider()->Probe(ProbeData{std::span(b).first(32768 + 6), {}, 32768 + 6}), 0);
  EXPECT_EQ(MakeIsoProvider()->Probe(ProbeData{std::span(b).first(1000), {}, 1000}), 0);
}

TEST(IsoOpen, RefusesReadWriteOpen) {
  TempDir dir;
  const auto path = dir.path() / "disk.iso";
  vdisk_testing::ReplaceFileBytes(path, MinimalIso(40));
  const auto opened = OpenIso(path, /*read_only=*/false);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kAccessDenied)
      << "expected kAccessDenied (ERROR_ACCESS_DENIED), got "
      << static_cast<int>(opened.status().code()) << ": " << opened.status().message();
  // Access is checked before content, as Windows does: garbage opened read-write is refused too.
  vdisk_testing::ReplaceFileBytes(path, RandomBytes(100000, 4));
  EXPECT_EQ(OpenIso(path, /*read_only=*/false).status().code(), Code::kAccessDenied);
}

TEST(IsoOpen, RejectsCorruptFileWithFileCorrupt) {
  TempDir dir;
  const auto path = dir.path() / "disk.iso";
  vdisk_testing::ReplaceFileBytes(path, RandomBytes(100000, 5));
  const auto opened = OpenIso(path);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kFileCorrupt)
      << "expected kFileCorrupt (ERROR_FILE_CORRUPT), got " << opened.status().message();
  EXPECT_NE(opened.status().message().find(path.string()), std::string_view::npos)
      << "the message names the file: " << opened.status().message();
}

TEST(IsoOpen, ReportsFixedReadOnlyDiskWith2048ByteSectors) {
  TempDir dir;
  const auto path = dir.path() / "disk.iso";
  vdisk_testing::ReplaceFileBytes(path, MinimalIso(40));
  auto opened = OpenIso(path);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  ExpectFixedReadOnly2048(**opened);
  EXPECT_EQ((*opened)->virtual_size(), 40u * kSector);
}

TEST(IsoImage, MapsRangesToTheSameFileOffsetAndClampsAtTheEnd) {
  TempDir dir;
  const auto path = dir.path() / "disk.iso";
  const auto bytes = MinimalIso(40);
  vdisk_testing::ReplaceFileBytes(path, bytes);
  auto opened = OpenIso(path);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  Image& image = **opened;

  auto whole = image.Map(0, 40 * kSector);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->kind, Extent::Kind::kData);
  EXPECT_EQ(whole->file_offset, 0u);
  EXPECT_EQ(whole->length, 40 * kSector);

  auto tail = image.Map(39 * kSector, 10 * kSector);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->file_offset, 39 * kSector);
  EXPECT_EQ(tail->length, kSector) << "clamped to the end of the disk";

  EXPECT_EQ(image.Map(40 * kSector, kSector).status().code(), Code::kInvalidParameter);
  EXPECT_EQ(image.Map(0, 0).status().code(), Code::kInvalidParameter);

  const auto read = ReadThroughMap(image, 20 * kSector, 3 * kSector);
  EXPECT_TRUE(std::equal(read.begin(), read.end(), bytes.begin() + 20 * kSector));
}

TEST(IsoImage, RefusesWritesAndFlushes) {
  TempDir dir;
  const auto path = dir.path() / "disk.iso";
  const auto bytes = MinimalIso(40);
  vdisk_testing::ReplaceFileBytes(path, bytes);
  auto opened = OpenIso(path);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  const std::vector<std::byte> data(kSector, std::byte{0xee});
  const Status write = (*opened)->Write(18 * kSector, data);
  EXPECT_EQ(write.code(), Code::kWriteProtect)
      << "expected kWriteProtect (ERROR_WRITE_PROTECT), got " << write.message();
  EXPECT_TRUE((*opened)->Flush().ok());
  opened = Status(Code::kInternal, "closed");
  EXPECT_EQ(ReadBytes(path), bytes) << "the file is unchanged";
}

TEST(IsoDetect, FindsIsoByContentUnderAnyName) {
  TempDir dir;
  ProviderRegistry registry;
  registry.Register(MakeIsoProvider());
  for (const char* name : {"disk.iso", "disk.img", "disk"}) {
    const auto path = dir.path() / name;
    vdisk_testing::ReplaceFileBytes(path, MinimalIso(40));
    auto file = platform::OpenFile(path, platform::FileAccess::kRead);
    ASSERT_TRUE(file.ok()) << file.status().message();
    const auto provider = registry.Detect(path, **file);
    ASSERT_TRUE(provider.ok()) << name << ": " << provider.status().message();
    EXPECT_EQ(provider.value()->format(), DiskFormat::kIso) << name;
  }
}

// --- Images from real producers ------------------------------------------------------------------

// Builds an image with `producer_args` (e.g. "genisoimage -J -R"), opens it, and checks its size
// against isoinfo and the bytes of both files against the source.
void CheckProducedIso(const std::string& producer_args, const std::string& extra_name = "") {
  TempDir dir;
  const SourceTree tree = MakeSourceTree(dir.path() / "src");
  const auto image_path = dir.path() / ("image" + extra_name + ".iso");
  const auto log = dir.path() / "log.txt";
  RunCommand(producer_args + " -o " + Quote(image_path) + " " + Quote(tree.root), log);
  const std::uint64_t expected_size = IsoinfoVolumeBytes(image_path, log);
  ASSERT_GT(expected_size, 0u);

  auto opened = OpenIso(image_path);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  Image& image = **opened;
  ExpectFixedReadOnly2048(image);
  EXPECT_EQ(image.virtual_size(), expected_size)
      << "isoinfo says " << expected_size << " bytes (volume size x logical block size)";
  EXPECT_LE(image.virtual_size(), std::filesystem::file_size(image_path));

  for (const auto& [name, content] : {std::pair{std::string("big.bin"), &tree.big},
                                      std::pair{std::string("small.bin"), &tree.small}}) {
    SCOPED_TRACE(name);
    const auto block = IsoinfoExtent(image_path, name, log);
    ASSERT_TRUE(block.has_value());
    const auto read = ReadThroughMap(image, *block * kSector, content->size());
    EXPECT_TRUE(read == *content) << name << " at block " << *block << " differs";
  }

  // The same through VirtualDisk, with the format detected from the content.
  DiskOpenRequest request;
  request.path = image_path;
  request.format = DiskFormat::kUnknown;
  ProviderRegistry registry;
  registry.Register(MakeIsoProvider());
  auto disk = VirtualDisk::Open(registry, request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  EXPECT_EQ((*disk)->size(), expected_size);
  const auto block = IsoinfoExtent(image_path, "big.bin", log);
  ASSERT_TRUE(block.has_value());
  std::vector<std::byte> sectors((tree.big.size() + kSector - 1) / kSector * kSector);
  ASSERT_TRUE((*disk)->Read(*block * kSector, sectors).ok());
  EXPECT_TRUE(std::equal(tree.big.begin(), tree.big.end(), sectors.begin()));
}

TEST(IsoOpen, ReadsSizeFromPrimaryVolumeDescriptor) {
  if (FindTool("genisoimage").empty() || FindTool("isoinfo").empty())
    VDISK_ORACLE_MISSING("genisoimage not installed");
  CheckProducedIso("genisoimage -quiet");
}

TEST(IsoOpen, ReadsJolietRockRidgeImage) {
  if (FindTool("genisoimage").empty() || FindTool("isoinfo").empty())
    VDISK_ORACLE_MISSING("genisoimage not installed");
  CheckProducedIso("genisoimage -quiet -J -R -V VOL");
}

TEST(IsoOpen, ReadsIsoUdfBridgeImageByItsPrimaryVolumeDescriptor) {
  if (FindTool("genisoimage").empty() || FindTool("isoinfo").empty())
    VDISK_ORACLE_MISSING("genisoimage not installed");
  CheckProducedIso("genisoimage -quiet -udf");
}

TEST(IsoOpen, ReadsXorrisoImage) {
  if (FindTool("xorriso").empty() || FindTool("isoinfo").empty())
    VDISK_ORACLE_MISSING("xorriso not installed");
  CheckProducedIso("xorriso -as mkisofs -quiet -R -J");
}

TEST(IsoOpen, RejectsDamagedGenisoimageImages) {
  if (FindTool("genisoimage").empty()) VDISK_ORACLE_MISSING("genisoimage not installed");
  TempDir dir;
  const SourceTree tree = MakeSourceTree(dir.path() / "src");
  const auto good = dir.path() / "good.iso";
  RunCommand("genisoimage -quiet -J -R -o " + Quote(good) + " " + Quote(tree.root),
             dir.path() / "log.txt");
  const auto bytes = ReadBytes(good);
  const std::uint64_t pvd = 16 * kSector;

  struct Case {
    std::string name;
    std::vector<std::byte> bytes;
  };
  std::vector<Case> cases;
  auto with = [&](std::string name, auto change) {
    auto copy = bytes;
    change(copy);
    cases.push_back({std::move(name), std::move(copy)});
  };
  with("big-endian volume space size off by one", [&](auto& b) {
    b[pvd + 87] = static_cast<std::byte>(std::to_integer<int>(b[pvd + 87]) + 1);
  });
  with("little-endian logical block size zeroed", [&](auto& b) { b[pvd + 129] = std::byte{0}; });
  with("zero logical block size", [&](auto& b) {
    for (int i = 128; i < 132; ++i) b[pvd + i] = std::byte{0};
  });
  with("terminator erased", [&](auto& b) {
    // genisoimage -J writes primary, Joliet supplementary, terminator.
    std::fill_n(b.begin() + 18 * kSector, kSector, std::byte{0});
  });
  with("cut after the primary volume descriptor", [&](auto& b) { b.resize(17 * kSector); });
  with("cut inside the primary volume descriptor", [&](auto& b) { b.resize(16 * kSector + 81); });
  with("cut one sector short", [&](auto& b) { b.resize(b.size() - kSector); });
  with("cut one byte short", [&](auto& b) { b.resize(b.size() - 1); });
  with("cut to 32 KiB", [&](auto& b) { b.resize(32 * 1024); });

  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = dir.path() / "damaged.iso";
    vdisk_testing::ReplaceFileBytes(path, c.bytes);
    const auto opened = OpenIso(path);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), Code::kFileCorrupt) << opened.status().message();
  }
}

// --- UDF without ISO 9660 ------------------------------------------------------------------------

class UdfOnlyImage : public testing::TestWithParam<const char*> {};

// mkudffs lays the volume out differently per medium (anchors at 256 and N or at 256 only,
// partition up to the end or not, reserve sequence early or late); udfinfo's block count is the
// oracle.
TEST_P(UdfOnlyImage, OpensWithTheSizeUdfinfoReports) {
  const std::string mkudffs = FindTool("mkudffs");
  const std::string udfinfo = FindTool("udfinfo");
  if (mkudffs.empty() || udfinfo.empty()) VDISK_ORACLE_MISSING("udftools not installed");
  TempDir dir;
  const auto path = dir.path() / "udf.iso";
  const auto log = dir.path() / "log.txt";
  { std::ofstream(path, std::ios::binary); }
  std::filesystem::resize_file(path, 8 << 20);
  RunCommand(mkudffs + " -b 2048 --media-type=" + GetParam() + " " + Quote(path), log);
  const std::string info = RunCommand(udfinfo + " " + Quote(path), log);
  const auto blocks = FindNumber(info, R"((?:^|\n)blocks=(\d+))");
  const auto block_size = FindNumber(info, R"((?:^|\n)blocksize=(\d+))");
  ASSERT_TRUE(blocks && block_size) << info;

  auto opened = OpenIso(path);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  ExpectFixedReadOnly2048(**opened);
  EXPECT_EQ((*opened)->virtual_size(), *blocks * *block_size) << info;

  // A padded copy: the volume is the whole file, as udfinfo sees it too. (The image is closed
  // first: on Windows a read-only open shares the file for reading only.)
  opened->reset();
  std::filesystem::resize_file(path, (8 << 20) + 5 * kSector);
  opened = OpenIso(path);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_EQ((*opened)->virtual_size(), (8u << 20) + 5 * kSector);

  // Cut short inside the volume.
  opened->reset();
  std::filesystem::resize_file(path, 2 << 20);
  opened = OpenIso(path);
  ASSERT_FALSE(opened.ok()) << "a cut volume opened with " << (*opened)->virtual_size();
  EXPECT_EQ(opened.status().code(), Code::kFileCorrupt) << opened.status().message();
}

// genisoimage -udf writes UDF 1.02 (NSR02, descriptor version 2) beside ISO 9660. With its
// CD001 descriptors overwritten by the UDF recognition sequence the image is UDF-only, and its
// anchor, sequences and partition are read as written by genisoimage.
TEST(IsoOpen, ReadsUdfStructuresWrittenByGenisoimage) {
  if (FindTool("genisoimage").empty()) VDISK_ORACLE_MISSING("genisoimage not installed");
  TempDir dir;
  const SourceTree tree = MakeSourceTree(dir.path() / "src");
  const auto path = dir.path() / "bridge.iso";
  RunCommand("genisoimage -quiet -udf -o " + Quote(path) + " " + Quote(tree.root),
             dir.path() / "log.txt");
  auto bytes = ReadBytes(path);
  ASSERT_EQ(std::memcmp(&bytes[18 * kSector + 1], "BEA01", 5), 0) << "layout changed";
  // Sectors 16..20: primary, terminator, BEA01, NSR02, TEA01 become BEA01, NSR02, TEA01.
  std::fill_n(bytes.begin() + 16 * kSector, 5 * kSector, std::byte{0});
  const char* ids[] = {"BEA01", "NSR02", "TEA01"};
  for (std::size_t i = 0; i < 3; ++i) {
    std::memcpy(&bytes[(16 + i) * kSector + 1], ids[i], 5);
    bytes[(16 + i) * kSector + 6] = std::byte{1};
  }
  vdisk_testing::ReplaceFileBytes(path, bytes);
  auto opened = OpenIso(path);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_EQ((*opened)->virtual_size(), bytes.size());
  opened->reset();
  // With the partition descriptors' CRCs broken in both sequences it is corrupt.
  for (const std::uint64_t sector : {32u, 48u}) {
    for (std::uint64_t s = sector; s < sector + 16; ++s) {
      if (bytes[s * kSector] == std::byte{5} && bytes[s * kSector + 1] == std::byte{0})
        bytes[s * kSector + 300] ^= std::byte{0xff};
    }
  }
  vdisk_testing::ReplaceFileBytes(path, bytes);
  const auto damaged = OpenIso(path);
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().code(), Code::kFileCorrupt) << damaged.status().message();
}

INSTANTIATE_TEST_SUITE_P(MediaTypes, UdfOnlyImage,
                         testing::Values("hd", "dvd", "dvdram", "dvdrw", "dvdr", "cdr", "cdrw",
                                         "bdr"));

}  // namespace
}  // namespace vdisk
