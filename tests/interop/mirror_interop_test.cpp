// The mirror against independent oracles: qemu-img compares a mirror with its source, qemu-img
// check validates VHDX targets, libvhdi reads differencing mirrors, and a process killed while
// mirroring leaves a source that opens and checks clean.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "interop_support.h"

namespace vdisk_interop {
namespace {

namespace fs = std::filesystem;

DWORD CreateDisk(const fs::path& path, ULONG device, ULONGLONG size, const fs::path& parent = {}) {
  VIRTUAL_STORAGE_TYPE type = StorageType(device, true);
  CREATE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  const WString wpath = Wide(path);
  const WString wparent = Wide(parent);
  p.Version2.MaximumSize = parent.empty() ? size : 0;
  p.Version2.BlockSizeInBytes = device == VIRTUAL_STORAGE_TYPE_DEVICE_VHDX ? (1 << 20) : 0;
  p.Version2.ParentPath = parent.empty() ? nullptr : wparent.c_str();
  HANDLE h = nullptr;
  DWORD e = CreateVirtualDisk(&type, wpath.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                              CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &p, nullptr, &h);
  if (e != ERROR_SUCCESS) return e;
  e = AttachRaw(h, false);
  std::mt19937_64 rng(path.filename().string().size() * 7919);
  std::vector<std::uint8_t> data(64 << 10);
  for (int i = 0; i < 40 && e == ERROR_SUCCESS; ++i) {
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const std::uint64_t offset = (rng() % ((size - data.size()) / 4096)) * 4096;
    e = WriteAt(h, offset, data);
  }
  CloseHandle(h);
  return e;
}

// Microsoft's sample sequence; returns the final OperationStatus.
DWORD Mirror(const fs::path& source, const fs::path& target) {
  VIRTUAL_STORAGE_TYPE type{};
  OPEN_VIRTUAL_DISK_PARAMETERS open{};
  open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  const WString wsource = Wide(source);
  const WString wtarget = Wide(target);
  HANDLE h = nullptr;
  DWORD e = OpenVirtualDisk(&type, wsource.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, &open, &h);
  if (e != ERROR_SUCCESS) return e;
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = wtarget.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  e = MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov);
  VIRTUAL_DISK_PROGRESS progress{};
  if (e == ERROR_IO_PENDING) {
    do {
      e = GetVirtualDiskOperationProgress(h, &ov, &progress);
    } while (e == ERROR_SUCCESS && progress.OperationStatus == ERROR_IO_PENDING &&
             progress.CurrentValue != progress.CompletionValue);
    if (e == ERROR_SUCCESS) e = BreakMirrorVirtualDisk(h);
    while (e == ERROR_SUCCESS) {
      e = GetVirtualDiskOperationProgress(h, &ov, &progress);
      if (progress.OperationStatus != ERROR_IO_PENDING) {
        e = progress.OperationStatus;
        break;
      }
    }
  }
  CloseHandle(ov.hEvent);
  CloseHandle(h);
  return e;
}

class MirrorInterop : public ::testing::TestWithParam<ULONG> {
 protected:
  void SetUp() override {
    if (!HaveTool("qemu-img")) GTEST_SKIP() << "qemu-img not installed";
    dir_ = fs::temp_directory_path() / ("mirror_interop_" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  bool vhdx() const { return GetParam() == VIRTUAL_STORAGE_TYPE_DEVICE_VHDX; }
  std::string ext() const { return vhdx() ? ".vhdx" : ".vhd"; }
  std::string qemu_format() const { return vhdx() ? "vhdx" : "vpc"; }
  fs::path dir_;
};

TEST_P(MirrorInterop, QemuImgFindsTheMirrorIdenticalToTheSource) {
  const fs::path source = dir_ / ("source" + ext());
  const fs::path target = dir_ / ("mirror" + ext());
  ASSERT_EQ(CreateDisk(source, GetParam(), 48 << 20), ERROR_SUCCESS);
  ASSERT_EQ(Mirror(source, target), ERROR_SUCCESS);
  const auto compare = RunTool({"qemu-img", "compare", "-f", qemu_format(), "-F", qemu_format(),
                                source.string(), target.string()});
  EXPECT_EQ(compare.exit_code, 0) << compare.Describe();
  if (vhdx()) {
    const auto check = RunTool({"qemu-img", "check", "-f", "vhdx", target.string()});
    EXPECT_EQ(check.exit_code, 0) << check.Describe();
  }
}

TEST_P(MirrorInterop, LibvhdiReadsADifferencingMirrorLikeItsSource) {
  if (!HaveLibvhdi()) GTEST_SKIP() << "libvhdi not available";
  const fs::path base = dir_ / ("base" + ext());
  const fs::path child = dir_ / ("child" + ext());
  const fs::path target = dir_ / ("child-mirror" + ext());
  ASSERT_EQ(CreateDisk(base, GetParam(), 32 << 20), ERROR_SUCCESS);
  ASSERT_EQ(CreateDisk(child, GetParam(), 32 << 20, base), ERROR_SUCCESS);
  ASSERT_EQ(Mirror(child, target), ERROR_SUCCESS);
  std::string error;
  std::uint64_t size = 0;
  const auto expected = LibvhdiReadAll({child, base}, &size, &error);
  ASSERT_TRUE(expected) << error;
  const auto actual = LibvhdiReadAll({target, base}, &size, &error);
  ASSERT_TRUE(actual) << error;
  EXPECT_TRUE(*actual == *expected) << CompareBytes(*actual, *expected);
}

TEST_P(MirrorInterop, KilledMirrorLeavesASourceThatChecksClean) {
  const fs::path source = dir_ / ("source" + ext());
  ASSERT_EQ(CreateDisk(source, GetParam(), 64 << 20), ERROR_SUCCESS);
  std::mt19937 rng(99);
  for (int trial = 0; trial < 8; ++trial) {
    const fs::path target = dir_ / ("mirror-" + std::to_string(trial) + ext());
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], 1);
      ::execl(VIRTDISK_MIRROR_WRITER, VIRTDISK_MIRROR_WRITER, source.c_str(), target.c_str(),
              std::to_string(trial).c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    // The writer prints "mirroring" once the mirror runs, then a line per write it has
    // completed: it is killed once it has reported a random number of writes (0 to 47), while
    // the copy and its writes run. The pipe stays open until it is dead.
    const unsigned writes = static_cast<unsigned>(rng() % 48);
    FILE* lines = ::fdopen(out[0], "r");
    ASSERT_NE(lines, nullptr);
    char line[64] = {};
    ASSERT_NE(std::fgets(line, sizeof line, lines), nullptr) << "the writer did not start";
    for (unsigned i = 0; i < writes; ++i) {
      ASSERT_NE(std::fgets(line, sizeof line, lines), nullptr) << "the writer stopped writing";
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::fclose(lines);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended by itself: " << status;
    std::string error;
    EXPECT_TRUE(ReadImageThroughApi(source, &error)) << "trial " << trial << ": " << error;
    if (vhdx()) {
      // A VHDX killed mid-update may hold a log to replay; a read-write open replays it (qemu
      // refuses read-only opens of such files), then qemu checks the result.
      {
        Handle h;
        ASSERT_EQ(OpenV2(source, VIRTUAL_STORAGE_TYPE{}, false, h), ERROR_SUCCESS);
      }
      const auto check = RunTool({"qemu-img", "check", "-f", "vhdx", source.string()});
      EXPECT_EQ(check.exit_code, 0) << "trial " << trial << ": " << check.Describe();
    } else {
      const auto info = QemuVirtualSize(source, "vpc");
      EXPECT_EQ(info, std::optional<std::uint64_t>(64 << 20)) << "trial " << trial;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, MirrorInterop,
                         ::testing::Values(VIRTUAL_STORAGE_TYPE_DEVICE_VHD,
                                           VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
                         [](const auto& info) {
                           return info.param == VIRTUAL_STORAGE_TYPE_DEVICE_VHD ? "Vhd" : "Vhdx";
                         });

}  // namespace
}  // namespace vdisk_interop
