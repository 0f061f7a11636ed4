// The NBD export against real NBD clients: libnbd's nbdinfo, nbdcopy and nbdsh, and qemu's
// qemu-io and qemu-img (both speak NBD through qemu's own client). A VHDX or VHD made and
// written by the library is served with NbdServer over a Unix socket, and each client is an
// independent oracle: nbdinfo must see its size and read-only flag, qemu-io's writes must land
// where the library then reads them, nbdcopy's copy of the export must equal qemu-img's own
// reading of the image file, and the allocation qemu-img maps over NBD must be the blocks that
// were written, and (for VHD, whose allocation qemu can map) the one qemu-img maps from the image
// file. Tests whose tool is missing skip themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "attach/disk_export_target.h"
#include "attach/nbd_server.h"
#include "core/open_disk.h"
#include "formats/registry/registry.h"
#include "interop_support.h"

namespace vdisk_interop {
namespace {

namespace fs = std::filesystem;
using vdisk::attach::DiskExportOptions;
using vdisk::attach::DiskExportTarget;
using vdisk::attach::NbdServer;
using vdisk::attach::NbdServerOptions;

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kDiskSize = 64 * kMiB;

// What the test writes before serving: (offset, length, seed).
struct Write {
  std::uint64_t offset;
  std::size_t length;
  std::uint64_t seed;
};
const std::vector<Write> kInitialWrites = {
    {3 * kMiB, kMiB, 1},               // a whole block
    {10 * kMiB + 4096, 64 * 1024, 2},  // part of a block
    {11 * kMiB - 512, 1024, 3},        // across two blocks
    {40 * kMiB, 2 * kMiB, 4},          // two whole blocks
    {kDiskSize - 4096, 4096, 5},       // the end of the disk
};

Bytes PatternBytes(std::size_t n, std::uint64_t seed) {
  Bytes out(n);
  FillPattern(seed, out);
  return out;
}

std::span<const std::byte> AsStdBytes(std::span<const std::uint8_t> b) { return std::as_bytes(b); }

// A disk made by the library and served over NBD; Close releases both.
class ServedDisk {
 public:
  ServedDisk(const fs::path& image, vdisk::DiskFormat format, const fs::path& socket,
             bool read_only = false)
      : image_(image), socket_(socket) {
    vdisk::DiskCreateRequest request;
    request.path = image;
    request.format = format;
    request.options.virtual_size = kDiskSize;
    request.options.block_size = format == vdisk::DiskFormat::kVhdx ? kMiB : 0;
    auto created = vdisk::VirtualDisk::Create(vdisk::BuiltinProviders(), request);
    if (!created.ok()) {
      error_ = "create: " + std::string(created.status().message());
      return;
    }
    for (const Write& w : kInitialWrites) {
      const Bytes data = PatternBytes(w.length, w.seed);
      if (!(*created)->Write(w.offset, AsStdBytes(data)).ok()) error_ = "initial write";
    }
    if (!(*created)->Flush().ok()) error_ = "flush";
    auto open = vdisk::OpenDisk::Adopt(std::move(created).value());
    if (!open.ok()) {
      error_ = "adopt: " + std::string(open.status().message());
      return;
    }
    disk_ = *open;
    Serve(read_only);
  }
  ~ServedDisk() { Close(); }

  // Serves the disk (again), with a new server.
  void Serve(bool read_only) {
    server_.reset();
    DiskExportOptions export_options;
    export_options.read_only = read_only;
    auto target = DiskExportTarget::Create(disk_, export_options);
    if (!target.ok()) {
      error_ = "target: " + std::string(target.status().message());
      return;
    }
    NbdServerOptions options;
    options.socket_path = socket_;
    auto server = NbdServer::Start(std::move(target).value(), options);
    if (!server.ok()) {
      error_ = "server: " + std::string(server.status().message());
      return;
    }
    server_ = std::move(*server);
  }

  // Stops serving and closes the image, so other programs may open it.
  void Close() {
    if (server_) {
      EXPECT_TRUE(server_->Stop().ok());
    }
    server_.reset();
    disk_.reset();
  }

  Bytes Read(std::uint64_t offset, std::size_t n) {
    Bytes out(n);
    const vdisk::Status s = disk_->Read(offset, std::as_writable_bytes(std::span(out)));
    EXPECT_TRUE(s.ok()) << s.message();
    return out;
  }

  std::string uri() const { return server_ ? server_->uri() : std::string(); }
  const std::string& error() const { return error_; }
  const fs::path& image() const { return image_; }

 private:
  fs::path image_;
  fs::path socket_;
  std::shared_ptr<vdisk::OpenDisk> disk_;
  std::unique_ptr<NbdServer> server_;
  std::string error_;
};

// [start, end) ranges qemu-img map reports as data, merged.
using Ranges = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

std::optional<Ranges> QemuDataRanges(const std::vector<std::string>& argv, std::string* error) {
  const CommandResult r = RunTool(argv);
  if (r.exit_code != 0) {
    *error = r.Describe();
    return std::nullopt;
  }
  static const std::regex kEntry(
      R"re(\{\s*"start":\s*(\d+),\s*"length":\s*(\d+),[^}]*"data":\s*(true|false))re");
  Ranges ranges;
  for (std::sregex_iterator it(r.out.begin(), r.out.end(), kEntry), end; it != end; ++it) {
    if ((*it)[3] != "true") continue;
    const std::uint64_t start = std::stoull((*it)[1]);
    const std::uint64_t length = std::stoull((*it)[2]);
    if (!ranges.empty() && ranges.back().second == start) {
      ranges.back().second += length;
    } else {
      ranges.emplace_back(start, start + length);
    }
  }
  if (ranges.empty() && r.out.find("\"data\"") == std::string::npos) {
    *error = "no map entries in: " + r.out;
    return std::nullopt;
  }
  return ranges;
}

std::string Describe(const Ranges& ranges) {
  std::string s;
  for (const auto& [a, b] : ranges) s += "[" + std::to_string(a) + "," + std::to_string(b) + ") ";
  return s.empty() ? "(none)" : s;
}

class NbdInterop : public ::testing::Test {
 protected:
  std::unique_ptr<ServedDisk> Serve(vdisk::DiskFormat format = vdisk::DiskFormat::kVhdx,
                                    bool read_only = false) {
    const char* name = format == vdisk::DiskFormat::kVhdx ? "disk.vhdx" : "disk.vhd";
    auto served = std::make_unique<ServedDisk>(dir_ / name, format, dir_ / "nbd.sock", read_only);
    EXPECT_EQ(served->error(), "");
    return served;
  }
  ScratchDir dir_;
};

TEST_F(NbdInterop, NbdinfoSeesTheSizeAndTheReadOnlyFlag) {
  INTEROP_REQUIRE_TOOL("nbdinfo");
  auto served = Serve();
  ASSERT_EQ(served->error(), "");
  const CommandResult size = RunTool({"nbdinfo", "--size", served->uri()});
  ASSERT_EQ(size.exit_code, 0) << size.Describe();
  EXPECT_EQ(std::stoull(size.out), kDiskSize) << size.Describe();
  // `nbdinfo --is read-only` exits 0 for true and 2 for false.
  const CommandResult writable = RunTool({"nbdinfo", "--is", "read-only", served->uri()});
  EXPECT_EQ(writable.exit_code, 2) << writable.Describe();
  const CommandResult json = RunTool({"nbdinfo", "--json", served->uri()});
  ASSERT_EQ(json.exit_code, 0) << json.Describe();
  EXPECT_NE(json.out.find("\"export-size\": " + std::to_string(kDiskSize)), std::string::npos)
      << json.out;
  EXPECT_NE(json.out.find("base:allocation"), std::string::npos) << json.out;

  served->Serve(/*read_only=*/true);
  const CommandResult read_only = RunTool({"nbdinfo", "--is", "read-only", served->uri()});
  EXPECT_EQ(read_only.exit_code, 0) << read_only.Describe();
}

TEST_F(NbdInterop, QemuIoWritesLandWhereTheLibraryReadsThem) {
  INTEROP_REQUIRE_TOOL("qemu-io");
  auto served = Serve();
  ASSERT_EQ(served->error(), "");
  const CommandResult io = RunTool({"qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 64k", "-c",
                                    "write -P 0xcd 3000 5000",  // unaligned both ends
                                    "-c", "write -z 40M 512k",  // write-zeroes
                                    "-c", "flush", "-c", "read -P 0xab 1M 64k", "-c",
                                    "read -P 0xcd 3000 5000", served->uri()});
  ASSERT_EQ(io.exit_code, 0) << io.Describe();
  EXPECT_EQ(io.out.find("Pattern verification failed"), std::string::npos) << io.Describe();
  EXPECT_TRUE(served->Read(kMiB, 64 * 1024) == Bytes(64 * 1024, 0xab));
  const Bytes around = served->Read(0, 8192);
  for (std::size_t i = 0; i < around.size(); ++i) {
    ASSERT_EQ(around[i], i >= 3000 && i < 8000 ? 0xcd : 0) << "byte " << i;
  }
  EXPECT_TRUE(served->Read(40 * kMiB, 512 * 1024) == Bytes(512 * 1024, 0));
  const Bytes rest = served->Read(40 * kMiB + 512 * 1024, 4096);
  const Bytes expected = PatternBytes(2 * kMiB, 4);
  EXPECT_TRUE(std::equal(rest.begin(), rest.end(), expected.begin() + 512 * 1024))
      << "write-zeroes stays inside its range";
}

TEST_F(NbdInterop, NbdcopyOfTheExportEqualsQemuImgConvertOfTheImage) {
  INTEROP_REQUIRE_TOOL("nbdcopy");
  INTEROP_REQUIRE_TOOL("qemu-img");
  for (const auto format : {vdisk::DiskFormat::kVhdx, vdisk::DiskFormat::kVhd}) {
    const std::string qemu_format = format == vdisk::DiskFormat::kVhdx ? "vhdx" : "vpc";
    auto served = Serve(format);
    ASSERT_EQ(served->error(), "");
    const fs::path copy = dir_ / ("nbdcopy-" + qemu_format + ".raw");
    const CommandResult nbdcopy = RunTool({"nbdcopy", served->uri(), copy.string()});
    ASSERT_EQ(nbdcopy.exit_code, 0) << nbdcopy.Describe();
    served->Close();
    std::string error;
    const auto qemu = QemuReadAll(served->image(), qemu_format, dir_.path(), &error);
    ASSERT_TRUE(qemu.has_value()) << error;
    const Bytes copied = ReadWholeFile(copy);
    EXPECT_EQ(CompareBytes(copied, *qemu), "equal") << qemu_format;
    for (const Write& w : kInitialWrites) {
      const Bytes data = PatternBytes(w.length, w.seed);
      EXPECT_TRUE(std::equal(data.begin(), data.end(), copied.begin() + w.offset))
          << qemu_format << ": " << w.length << " bytes at " << w.offset;
    }
    fs::remove(served->image());
  }
}

// The blocks the initial writes touched, merged: what a dynamic image allocates for them.
Ranges WrittenBlocks(std::uint64_t block_size) {
  std::vector<bool> touched(kDiskSize / block_size);
  for (const Write& w : kInitialWrites) {
    for (std::uint64_t b = w.offset / block_size; b * block_size < w.offset + w.length; ++b) {
      touched[b] = true;
    }
  }
  Ranges ranges;
  for (std::uint64_t b = 0; b < touched.size(); ++b) {
    if (!touched[b]) continue;
    if (!ranges.empty() && ranges.back().second == b * block_size) {
      ranges.back().second += block_size;
    } else {
      ranges.emplace_back(b * block_size, (b + 1) * block_size);
    }
  }
  return ranges;
}

TEST_F(NbdInterop, QemuImgMapOverNbdMatchesTheImagesAllocation) {
  INTEROP_REQUIRE_TOOL("qemu-img");
  for (const auto format : {vdisk::DiskFormat::kVhdx, vdisk::DiskFormat::kVhd}) {
    const bool vhdx = format == vdisk::DiskFormat::kVhdx;
    const std::string qemu_format = vhdx ? "vhdx" : "vpc";
    auto served = Serve(format);
    ASSERT_EQ(served->error(), "");
    std::string error;
    const auto over_nbd =
        QemuDataRanges({"qemu-img", "map", "--output=json", "-f", "raw", served->uri()}, &error);
    ASSERT_TRUE(over_nbd.has_value()) << error;
    // Exactly the blocks written hold data (VHDX blocks of 1 MiB here, VHD's default 2 MiB).
    const Ranges written = WrittenBlocks(vhdx ? kMiB : 2 * kMiB);
    EXPECT_EQ(*over_nbd, written) << qemu_format << ": over NBD " << Describe(*over_nbd)
                                  << "; blocks written " << Describe(written);
    served->Close();
    // qemu's own reading of the file, where it can map one: qemu 7.2's vhdx driver has no
    // block-status support and reports the whole disk as data, so only VHD is compared.
    if (!vhdx) {
      const auto from_file = QemuDataRanges(
          {"qemu-img", "map", "--output=json", "-f", qemu_format, served->image().string()},
          &error);
      ASSERT_TRUE(from_file.has_value()) << error;
      EXPECT_EQ(*over_nbd, *from_file) << qemu_format << ": over NBD " << Describe(*over_nbd)
                                       << "; from the file " << Describe(*from_file);
    }
    fs::remove(served->image());
  }
}

TEST_F(NbdInterop, NbdinfoMapAgreesWithQemuImgMap) {
  INTEROP_REQUIRE_TOOL("nbdinfo");
  INTEROP_REQUIRE_TOOL("qemu-img");
  auto served = Serve();
  ASSERT_EQ(served->error(), "");
  std::string error;
  const auto qemu =
      QemuDataRanges({"qemu-img", "map", "--output=json", "-f", "raw", served->uri()}, &error);
  ASSERT_TRUE(qemu.has_value()) << error;
  const CommandResult map = RunTool({"nbdinfo", "--map", served->uri()});
  ASSERT_EQ(map.exit_code, 0) << map.Describe();
  // Lines: offset, length, type (0 data, 3 hole+zero), description.
  Ranges ranges;
  std::istringstream lines(map.out);
  std::uint64_t offset = 0, length = 0;
  unsigned type = 0;
  std::string description;
  while (lines >> offset >> length >> type && std::getline(lines, description)) {
    if ((type & 1) != 0) continue;  // a hole
    if (!ranges.empty() && ranges.back().second == offset) {
      ranges.back().second += length;
    } else {
      ranges.emplace_back(offset, offset + length);
    }
  }
  EXPECT_EQ(ranges, *qemu) << "nbdinfo " << Describe(ranges) << "; qemu-img " << Describe(*qemu);
}

TEST_F(NbdInterop, ReadOnlyExportRefusesAQemuIoWrite) {
  INTEROP_REQUIRE_TOOL("qemu-io");
  auto served = Serve(vdisk::DiskFormat::kVhdx, /*read_only=*/true);
  ASSERT_EQ(served->error(), "");
  const Bytes before = served->Read(3 * kMiB, 4096);
  const CommandResult io =
      RunTool({"qemu-io", "-f", "raw", "-c", "write -P 0x11 3M 4k", served->uri()});
  const bool refused = io.exit_code != 0 ||
                       io.out.find("Operation not permitted") != std::string::npos ||
                       io.err.find("read-only") != std::string::npos ||
                       io.out.find("read-only") != std::string::npos;
  EXPECT_TRUE(refused) << io.Describe();
  EXPECT_TRUE(served->Read(3 * kMiB, 4096) == before) << "the data is unchanged";
  // Reading still works.
  const CommandResult read =
      RunTool({"qemu-io", "-r", "-f", "raw", "-c", "read 3M 4k", served->uri()});
  EXPECT_EQ(read.exit_code, 0) << read.Describe();
}

TEST_F(NbdInterop, NbdshSeesTheExport) {
  INTEROP_REQUIRE_TOOL("nbdsh");
  auto served = Serve();
  ASSERT_EQ(served->error(), "");
  const CommandResult sh = RunTool(
      {"nbdsh", "-u", served->uri(), "-c",
       "print(h.get_size()); print(h.is_read_only()); print(h.can_meta_context('base:allocation'));"
       " h.pwrite(b'\\x5a' * 4096, 8192); print(h.pread(4096, 8192) == b'\\x5a' * 4096)"});
  ASSERT_EQ(sh.exit_code, 0) << sh.Describe();
  EXPECT_EQ(sh.out, std::to_string(kDiskSize) + "\nFalse\nTrue\nTrue\n") << sh.Describe();
  EXPECT_TRUE(served->Read(8192, 4096) == Bytes(4096, 0x5a));
}

}  // namespace
}  // namespace vdisk_interop
