// VHDX against independent implementations: files that qemu-img/qemu-io create and write read
// identically here; files created and written here pass `qemu-img check`, compare equal to our
// raw reading with `qemu-img compare`, and read identically through libvhdi (through the
// libvhdi_dump program, so the unit tests need no link-time dependency). Tests whose tool is
// missing skip themselves. Under Wine the tools run on the host (host_shell.h).
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "host_shell.h"
#include "test_support.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhdx/vhdx_image.h"
#include "formats/vhdx/vhdx_provider.h"
#include "support/provider_registry.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
constexpr std::uint64_t kMiB = 1024 * 1024;

using vdisk_unit::TempDir;

const ProviderRegistry& Registry() { return vdisk_testing::RegistryOf<MakeVhdxProvider>(); }

bool HaveTool(const char* name) { return !vdisk_unit::HostTool(name).empty(); }

// Runs a shell command; returns its exit status and its output in `output` if given.
int Sh(const std::string& command, std::string* output = nullptr) {
  return vdisk_unit::HostShell(command, output);
}

std::string Q(const fs::path& path) { return vdisk_unit::ShellQuote(path); }

std::vector<std::byte> ReadFile(const fs::path& path) { return vdisk_unit::ReadWholeFile(path); }

std::vector<std::byte> OurRead(const fs::path& path) {
  DiskOpenRequest request;
  request.path = path;
  auto disk = VirtualDisk::Open(Registry(), request);
  EXPECT_TRUE(disk.ok()) << path << ": " << disk.status().message();
  if (!disk.ok()) return {};
  std::vector<std::byte> out((*disk)->size());
  const Status status = (*disk)->Read(0, out);
  EXPECT_TRUE(status.ok()) << status.message();
  return out;
}

void WriteRaw(const fs::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Our file must pass qemu-img check and read in qemu exactly as it reads here.
void QemuAgrees(const fs::path& image, TempDir& dir) {
  std::string output;
  EXPECT_EQ(Sh("qemu-img check -f vhdx " + Q(image), &output), 0) << output;
  const auto ours = OurRead(image);
  WriteRaw(dir / "ours.raw", ours);
  EXPECT_EQ(Sh("qemu-img compare -f vhdx -F raw " + Q(image) + " " + Q(dir / "ours.raw"), &output),
            0)
      << output;
}

std::vector<std::byte> Pattern(std::uint64_t seed, std::size_t size) {
  std::vector<std::byte> out(size);
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, size - i));
  }
  return out;
}

// --- libvhdi through libvhdi_dump ---------------------------------------------------------

// libvhdi reads the disks of a chain through tests/interop/libvhdi_dump, a Linux program named by
// VIRTDISK_LIBVHDI_DUMP in the environment of the shell that runs it (ctest sets it for this
// program on Linux, and for the host shell's server under Wine).
struct LibvhdiView {
  std::vector<std::byte> data;
  // Per file of the chain, top first: libvhdi's identifier and its parent identifier (hex).
  std::vector<std::pair<std::string, std::string>> identifiers;
};

bool HaveLibvhdiDump() {
  return vdisk_unit::HostShellAvailable() &&
         Sh("test -x \"${VIRTDISK_LIBVHDI_DUMP:-}\"") == 0;
}

// Reads `chain` (top first); fails the test with libvhdi's message if it cannot.
LibvhdiView LibvhdiRead(const std::vector<fs::path>& chain, const fs::path& out) {
  std::string command = "\"$VIRTDISK_LIBVHDI_DUMP\" " + Q(out);
  for (const auto& file : chain) command += " " + Q(file);
  std::string output;
  LibvhdiView view;
  if (Sh(command, &output) != 0) {
    ADD_FAILURE() << command << "\n" << output;
    return view;
  }
  view.data = ReadFile(out);
  std::istringstream lines(output);
  for (std::string id, parent; lines >> id >> parent;) view.identifiers.emplace_back(id, parent);
  if (view.identifiers.size() != chain.size()) ADD_FAILURE() << command << "\n" << output;
  return view;
}

// Our reading of a file's DataWriteGuid and the parent linkage it records (zero without one).
std::pair<Guid, Guid> Identifiers(const fs::path& path) {
  auto file = platform::OpenOsFile(path, platform::FileAccess::kReadShared,
                                   platform::FileDisposition::kOpenExisting);
  EXPECT_TRUE(file.ok()) << path << ": " << file.status().message();
  if (!file.ok()) return {};
  OpenOptions options;
  options.read_only = true;
  auto image = vhdx::VhdxImage::Open(std::move(*file), options);
  EXPECT_TRUE(image.ok()) << path << ": " << image.status().message();
  if (!image.ok()) return {};
  const auto parent = (*image)->parent();
  return {(*image)->data_write_guid(), parent ? parent->parent_id : Guid{}};
}

// A GUID as libvhdi_dump prints it: libvhdi gives GUIDs in their text order (the first three
// fields big-endian), so this is our "{XXXXXXXX-XXXX-...}" text without braces and dashes.
std::string TextOrderHex(const Guid& guid) {
  std::string out;
  for (const char c : guid.ToString()) {
    if (std::isxdigit(static_cast<unsigned char>(c)))
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

#define REQUIRE_TOOL(name) \
  if (!HaveTool(name)) VDISK_ORACLE_MISSING(std::string(name) + " is not installed")

// --- qemu writes, we read ----------------------------------------------------------------------

// Every combination of subformat, block size and block_state_zero natively; under Wine, where
// each qemu command is a round trip through the host shell, one block size per pair of the other
// two (the parsing is the same code on both; Windows adds its file layer).
bool ComboRuns([[maybe_unused]] int subformat, [[maybe_unused]] int block,
               [[maybe_unused]] int zero) {
#ifdef _WIN32
  return block == 2 * subformat + zero;
#else
  return true;
#endif
}

TEST(VhdxInterop, ReadsFilesThatQemuCreatedAndWrote) {
  REQUIRE_TOOL("qemu-img");
  REQUIRE_TOOL("qemu-io");
  TempDir dir;
  const char* const subformats[] = {"dynamic", "fixed"};
  const char* const blocks[] = {"1M", "8M", "32M", "256M"};
  const char* const zeros[] = {"off", "on"};
  for (int s = 0; s < 2; ++s) {
    for (int b = 0; b < 4; ++b) {
      for (int z = 0; z < 2; ++z) {
        if (!ComboRuns(s, b, z)) continue;
        const char* subformat = subformats[s];
        const char* block = blocks[b];
        const char* zero = zeros[z];
        SCOPED_TRACE(std::string(subformat) + ", block_size=" + block +
                     ", block_state_zero=" + zero);
        const fs::path image = dir / "qemu.vhdx";
        fs::remove(image);
        std::string output;
        ASSERT_EQ(
            Sh("qemu-img create -q -f vhdx -o subformat=" + std::string(subformat) +
                   ",block_size=" + block + ",block_state_zero=" + zero + " " + Q(image) + " 80M",
               &output),
            0)
            << output;
        ASSERT_EQ(Sh("qemu-io -f vhdx -c 'write -P 0x5a 1M 1536k' -c 'write -P 0xa5 7340544 9216' "
                     "-c 'write -P 0x33 40M 8M' -c 'write -P 0x11 80740352 4096' " +
                         Q(image),
                     &output),
                  0)
            << output;
        ASSERT_EQ(
            Sh("qemu-img convert -f vhdx -O raw " + Q(image) + " " + Q(dir / "qemu.raw"), &output),
            0)
            << output;
        const auto ours = OurRead(image);
        ASSERT_TRUE(ours == ReadFile(dir / "qemu.raw")) << "our reading differs from qemu's";
        // And our writes into qemu's file keep it valid for qemu.
        {
          DiskOpenRequest request;
          request.path = image;
          request.options.read_only = false;
          auto disk = VirtualDisk::Open(Registry(), request);
          ASSERT_TRUE(disk.ok()) << disk.status().message();
          ASSERT_TRUE((*disk)->Write(20 * kMiB - 4096, Pattern(1, 3 * kMiB)).ok());
          ASSERT_TRUE((*disk)->Write(kMiB, Pattern(2, 8192)).ok());
          ASSERT_TRUE((*disk)->top().SetUserMetadata(Guid::Random(), Pattern(3, 300)).ok());
        }
        ASSERT_NO_FATAL_FAILURE(QemuAgrees(image, dir));
      }
    }
  }
}

// --- we write, qemu and libvhdi read -----------------------------------------------------------

struct OurDisk {
  DiskSubtype subtype;
  std::uint32_t block_size;
  std::uint32_t logical;
};

void CreateAndWrite(const fs::path& path, const OurDisk& spec, std::uint64_t size,
                    const fs::path& parent, std::uint64_t seed) {
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhdx;
  request.options.subtype = spec.subtype;
  request.options.virtual_size = size;
  request.options.block_size = spec.block_size;
  request.options.logical_sector_size = spec.logical;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  std::mt19937_64 rng(seed);
  const std::uint64_t sector = (*disk)->sector_size();
  for (int i = 0; i < 25; ++i) {
    const std::uint64_t len = (rng() % 96 + 1) * sector * (i % 5 == 0 ? 64 : 1);
    const std::uint64_t offset = (rng() % (((*disk)->size() - len) / sector)) * sector;
    ASSERT_TRUE((*disk)->Write(offset, Pattern(rng(), len)).ok());
  }
}

TEST(VhdxInterop, QemuChecksAndReadsOurFiles) {
  REQUIRE_TOOL("qemu-img");
  TempDir dir;
  // qemu 7.2 refuses VHDX files with 4096-byte logical sectors ("Operation not supported"), so
  // those are checked with libvhdi only.
  const OurDisk disks[] = {
      {DiskSubtype::kDynamic, 1 * kMiB, 512},   {DiskSubtype::kDynamic, 32 * kMiB, 512},
      {DiskSubtype::kDynamic, 256 * kMiB, 512}, {DiskSubtype::kFixed, 8 * kMiB, 512},
      {DiskSubtype::kFixed, 1 * kMiB, 512},
  };
  for (const OurDisk& spec : disks) {
    SCOPED_TRACE("subtype " + std::to_string(static_cast<int>(spec.subtype)) + ", block " +
                 std::to_string(spec.block_size) + ", sector " + std::to_string(spec.logical));
    const fs::path image = dir / "ours.vhdx";
    fs::remove(image);
    ASSERT_NO_FATAL_FAILURE(CreateAndWrite(image, spec, 96 * kMiB + 8192, {}, spec.block_size));
    ASSERT_NO_FATAL_FAILURE(QemuAgrees(image, dir));
    std::string info;
    ASSERT_EQ(Sh("qemu-img info --output=json " + Q(image), &info), 0) << info;
    EXPECT_NE(info.find("\"virtual-size\": " + std::to_string(96 * kMiB + 8192)), std::string::npos)
        << info;
  }
}

TEST(VhdxInterop, LibvhdiReadsOurFilesAndChains) {
  if (!HaveLibvhdiDump()) {
    VDISK_ORACLE_MISSING(
        "no libvhdi_dump: VIRTDISK_LIBVHDI_DUMP does not name it (it is built with the Linux "
        "preset when libvhdi-dev is installed)");
  }
  TempDir dir;
  for (std::uint32_t logical : {512u, 4096u}) {
    SCOPED_TRACE("logical sector " + std::to_string(logical));
    const std::uint64_t size = 48 * kMiB;
    const fs::path fixed = dir / "fixed.vhdx";
    const fs::path base = dir / "base.vhdx";
    const fs::path mid = dir / "mid.avhdx";
    const fs::path top = dir / "top.avhdx";
    for (const auto& p : {fixed, base, mid, top}) fs::remove(p);
    ASSERT_NO_FATAL_FAILURE(
        CreateAndWrite(fixed, {DiskSubtype::kFixed, kMiB, logical}, size, {}, 1));
    ASSERT_NO_FATAL_FAILURE(
        CreateAndWrite(base, {DiskSubtype::kDynamic, 2 * kMiB, logical}, size, {}, 2));
    ASSERT_NO_FATAL_FAILURE(CreateAndWrite(mid, {DiskSubtype::kDifferencing, kMiB, 0}, 0, base, 3));
    ASSERT_NO_FATAL_FAILURE(
        CreateAndWrite(top, {DiskSubtype::kDifferencing, 4 * kMiB, 0}, 0, mid, 4));
    for (const auto& chain :
         std::vector<std::vector<fs::path>>{{fixed}, {base}, {mid, base}, {top, mid, base}}) {
      SCOPED_TRACE(chain.front().filename().string());
      const LibvhdiView theirs = LibvhdiRead(chain, dir / "libvhdi.raw");
      ASSERT_EQ(theirs.identifiers.size(), chain.size());
      EXPECT_TRUE(theirs.data == OurRead(chain.front())) << "libvhdi reads differently";
      // libvhdi finds each child's parent by the DataWriteGuid we recorded, and reads the
      // identifiers we wrote.
      for (std::size_t i = 0; i < chain.size(); ++i) {
        const auto ours = Identifiers(chain[i]);
        EXPECT_EQ(theirs.identifiers[i].first, TextOrderHex(ours.first)) << chain[i];
        EXPECT_EQ(theirs.identifiers[i].second, TextOrderHex(ours.second)) << chain[i];
        if (i + 1 < chain.size()) {
          EXPECT_EQ(theirs.identifiers[i].second, theirs.identifiers[i + 1].first) << chain[i];
        }
      }
    }
  }
}

}  // namespace
}  // namespace vdisk
