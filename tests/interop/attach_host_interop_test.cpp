// Attachments across processes, with real NBD clients (qemu-io, nbdinfo, qemu-img) as oracles:
//  - Microsoft's storage sample as three processes: attach_client attaches a VHDX with
//    PERMANENT_LIFETIME and exits; this process finds the export, and qemu-io and nbdinfo use
//    it; a second attach_client opens the file and detaches it; afterwards the export is gone
//    and qemu reads the file itself, which checks clean, with what was written through NBD.
//  - A non-permanent attachment ends with its process, even a SIGKILLed one.
//  - An attach host killed with SIGKILL leaves a stale record that the next listing removes,
//    and a file that opens and checks clean.
//  - A mirror of an attached disk copies what NBD clients write while it runs.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "interop_support.h"
#include "support/attached_disks.h"
#include "support/process.h"
#include "support/wait.h"

namespace vdisk_interop {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kDiskSize = 64 * kMiB;

using vdisk_testing::AllAttached;
using vdisk_testing::PhysicalPath;

std::string SocketOf(const std::string& uri) {
  const auto at = uri.find("socket=");
  return at == std::string::npos ? "" : uri.substr(at + 7);
}

bool Exists(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// The records of the attach registry directory, as key=value maps.
std::vector<std::map<std::string, std::string>> Records(const fs::path& dir) {
  std::vector<std::map<std::string, std::string>> records;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".attach") continue;
    std::ifstream in(it->path());
    std::map<std::string, std::string> record;
    for (std::string line; std::getline(in, line);) {
      const auto eq = line.find('=');
      if (eq != std::string::npos) record[line.substr(0, eq)] = line.substr(eq + 1);
    }
    records.push_back(record);
  }
  return records;
}

// Whether the process has ended, and waiting for it to (on a pidfd).
bool Ended(pid_t pid) { return vdisk_testing::ProcessEnded(pid); }
bool WaitEnded(pid_t pid) { return vdisk_testing::WaitProcessEnded(pid); }

// qemu-io on an NBD URI (raw) or an image file; the result, with pattern mismatches as failures.
CommandResult QemuIo(const std::string& target, const std::vector<std::string>& commands,
                     const std::string& format = "raw", bool read_only = false) {
  std::vector<std::string> argv = {"qemu-io", "-f", format};
  if (read_only) argv.push_back("-r");
  for (const auto& c : commands) {
    argv.push_back("-c");
    argv.push_back(c);
  }
  argv.push_back(target);
  CommandResult r = RunTool(argv);
  if (r.exit_code == 0 && r.out.find("Pattern verification failed") != std::string::npos) {
    r.exit_code = 1;
  }
  return r;
}

DWORD CreateVhdx(const fs::path& path, std::uint64_t size, Handle& handle) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, true);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  params.Version2.MaximumSize = size;
  params.Version2.BlockSizeInBytes = 1 << 20;
  const WString wide = Wide(path);
  return CreateVirtualDisk(&type, wide.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                           CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &params, nullptr, handle.out());
}

class AttachHostInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    run_ = dir_ / "run";
    ::setenv("VIRTDISK_RUNTIME_DIR", run_.c_str(), 1);
    disk_ = dir_ / "disk.vhdx";
    Handle h;
    ASSERT_EQ(CreateVhdx(disk_, kDiskSize, h), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h.get(), false), ERROR_SUCCESS);
    ASSERT_EQ(WriteAt(h.get(), 0, kInitial), ERROR_SUCCESS);
  }
  void TearDown() override {
    // A failed test may leave a host or a client behind: neither may outlive it.
    for (auto& record : Records(run_)) {
      const pid_t pid = static_cast<pid_t>(std::atol(record["pid"].c_str()));
      if (record["permanent"] == "1" && pid > 0) ::kill(pid, SIGKILL);
    }
    ::unsetenv("VIRTDISK_RUNTIME_DIR");
  }

  // Runs attach_client; its output's first line.
  CommandResult Client(const std::string& command) {
    return RunTool({VIRTDISK_ATTACH_CLIENT, command, disk_.string()});
  }

  ScratchDir dir_;
  fs::path run_;
  fs::path disk_;
  const Bytes kInitial = [] {
    Bytes b(kMiB);
    FillPattern(11, b);
    return b;
  }();
};

TEST_F(AttachHostInterop, PermanentAttachmentServesOtherProcessesUntilAThirdDetachesIt) {
  INTEROP_REQUIRE_TOOL("qemu-io");
  INTEROP_REQUIRE_TOOL("nbdinfo");
  INTEROP_REQUIRE_TOOL("qemu-img");

  // Process 1: attach with PERMANENT_LIFETIME, close the handle, exit.
  const CommandResult attached = Client("attach-permanent");
  ASSERT_EQ(attached.exit_code, 0) << attached.Describe();
  ASSERT_EQ(attached.out.rfind("attached ", 0), 0u) << attached.Describe();
  const std::string uri = attached.out.substr(9, attached.out.find('\n') - 9);

  // Process 2 (this one): the attachment outlived process 1.
  ASSERT_EQ(AllAttached(), std::vector<std::string>{uri});
  const auto records = Records(run_);
  ASSERT_EQ(records.size(), 1u);
  auto record = records[0];
  EXPECT_EQ(record["permanent"], "1");
  const pid_t host = static_cast<pid_t>(std::atol(record["pid"].c_str()));
  ASSERT_GT(host, 0);
  EXPECT_FALSE(Ended(host));
  const fs::path socket = SocketOf(uri);
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0) << socket;
  EXPECT_EQ(st.st_mode & 0777, 0666u) << "(A;;GA;;;WD) lets every local user connect";

  const CommandResult size = RunTool({"nbdinfo", "--size", uri});
  ASSERT_EQ(size.exit_code, 0) << size.Describe();
  EXPECT_EQ(std::stoull(size.out), kDiskSize);
  const CommandResult map = RunTool({"nbdinfo", "--map", uri});
  EXPECT_EQ(map.exit_code, 0) << map.Describe();
  CommandResult io = QemuIo(uri, {"write -P 0xa5 4M 1M", "write -P 0x3c 12345 1000"});
  ASSERT_EQ(io.exit_code, 0) << io.Describe();
  io = QemuIo(uri, {"read -P 0xa5 4M 1M", "read -P 0x3c 12345 1000"});
  EXPECT_EQ(io.exit_code, 0) << io.Describe();

  // Process 3: open the file (held by the host) and detach.
  const CommandResult detached = Client("detach");
  ASSERT_EQ(detached.exit_code, 0) << detached.Describe();
  EXPECT_EQ(detached.out, "detached\n");

  EXPECT_TRUE(Ended(host)) << "DetachVirtualDisk returned before the host exited";
  EXPECT_FALSE(Exists(socket)) << "the export's socket must be gone";
  EXPECT_FALSE(Exists(record["control"])) << "the host's control socket must be gone";
  EXPECT_TRUE(AllAttached().empty());
  EXPECT_TRUE(Records(run_).empty());
  const CommandResult check = RunTool({"qemu-img", "check", "-f", "vhdx", disk_.string()});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();
  io = QemuIo(disk_.string(), {"read -P 0xa5 4M 1M", "read -P 0x3c 12345 1000"}, "vhdx", true);
  EXPECT_EQ(io.exit_code, 0) << "qemu must read from the file what went through NBD: "
                             << io.Describe();
}

TEST_F(AttachHostInterop, NonPermanentAttachmentEndsWhenItsProcessIsKilled) {
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::execl(VIRTDISK_ATTACH_CLIENT, VIRTDISK_ATTACH_CLIENT, "attach-and-wait", disk_.c_str(),
            nullptr);
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  char c = 0;
  while (::read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  ::close(out[0]);
  ASSERT_EQ(line.rfind("attached ", 0), 0u) << "the client said: " << line;
  const std::string uri = line.substr(9);
  EXPECT_EQ(AllAttached(), std::vector<std::string>{uri});
  const fs::path socket = SocketOf(uri);
  ASSERT_TRUE(Exists(socket));

  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;

  EXPECT_TRUE(AllAttached().empty()) << "the dead process's attachment must not be listed";
  EXPECT_FALSE(Exists(socket)) << "its socket must be removed with its record";
  EXPECT_TRUE(Records(run_).empty());
  Handle h;
  ASSERT_EQ(OpenV2(disk_, VIRTUAL_STORAGE_TYPE{}, false, h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h.get(), true), ERROR_SUCCESS);
  Bytes back(kInitial.size());
  ASSERT_EQ(ReadAt(h.get(), 0, back), ERROR_SUCCESS);
  EXPECT_EQ(back, kInitial);
}

TEST_F(AttachHostInterop, KilledHostIsCleanedFromTheRegistryAndLeavesACleanFile) {
  const CommandResult attached = Client("attach-permanent");
  ASSERT_EQ(attached.exit_code, 0) << attached.Describe();
  const std::string uri = attached.out.substr(9, attached.out.find('\n') - 9);
  auto records = Records(run_);
  ASSERT_EQ(records.size(), 1u);
  const pid_t host = static_cast<pid_t>(std::atol(records[0]["pid"].c_str()));
  const fs::path control = records[0]["control"];
  ASSERT_GT(host, 0);
  const bool have_qemu = HaveTool("qemu-io") && HaveTool("qemu-img");
  if (have_qemu) {
    // Writes that allocate blocks, so the VHDX has a log in use when the host dies.
    const CommandResult io = QemuIo(uri, {"write -P 0x77 8M 3M", "write -P 0x78 40M 64k"});
    ASSERT_EQ(io.exit_code, 0) << io.Describe();
  }

  ASSERT_EQ(::kill(host, SIGKILL), 0);
  ASSERT_TRUE(WaitEnded(host)) << "the host did not die";
  // The record names a dead process: the next listing removes it and its sockets.
  EXPECT_EQ(Records(run_).size(), 1u);
  EXPECT_TRUE(AllAttached().empty());
  EXPECT_TRUE(Records(run_).empty());
  EXPECT_FALSE(Exists(SocketOf(uri)));
  EXPECT_FALSE(Exists(control));

  // The kernel released the host's lock: the file opens read-write (replaying the VHDX log).
  {
    Handle h;
    ASSERT_EQ(OpenV2(disk_, VIRTUAL_STORAGE_TYPE{}, false, h), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h.get(), true), ERROR_SUCCESS);
    Bytes back(kInitial.size());
    ASSERT_EQ(ReadAt(h.get(), 0, back), ERROR_SUCCESS);
    EXPECT_EQ(back, kInitial);
    if (have_qemu) {
      Bytes written(3 * kMiB);
      ASSERT_EQ(ReadAt(h.get(), 8 * kMiB, written), ERROR_SUCCESS);
      EXPECT_EQ(written, Bytes(3 * kMiB, 0x77)) << "acknowledged NBD writes survive the kill";
    }
  }
  if (have_qemu) {
    const CommandResult check = RunTool({"qemu-img", "check", "-f", "vhdx", disk_.string()});
    EXPECT_EQ(check.exit_code, 0) << check.Describe();
    const CommandResult io = QemuIo(disk_.string(), {"read -P 0x78 40M 64k"}, "vhdx", true);
    EXPECT_EQ(io.exit_code, 0) << io.Describe();
  }
}

TEST_F(AttachHostInterop, MirrorOfAnAttachedDiskCopiesWhatNbdClientsWrite) {
  INTEROP_REQUIRE_TOOL("qemu-io");
  INTEROP_REQUIRE_TOOL("qemu-img");
  // A source with data all over, so that the copy takes a while.
  {
    Handle h;
    ASSERT_EQ(OpenV2(disk_, VIRTUAL_STORAGE_TYPE{}, false, h), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h.get(), false), ERROR_SUCCESS);
    std::mt19937_64 rng(5);
    Bytes data(256 * 1024);
    for (std::uint64_t at = 2 * kMiB; at < kDiskSize; at += kMiB) {
      FillPattern(rng(), data);
      ASSERT_EQ(WriteAt(h.get(), at, data), ERROR_SUCCESS);
    }
  }
  const fs::path target = dir_ / "mirror.vhdx";
  Handle h;
  ASSERT_EQ(OpenV2(disk_, VIRTUAL_STORAGE_TYPE{}, false, h), ERROR_SUCCESS);
  ATTACH_VIRTUAL_DISK_PARAMETERS attach{};
  attach.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ASSERT_EQ(AttachVirtualDisk(h.get(), nullptr, ATTACH_VIRTUAL_DISK_FLAG_NONE, 0, &attach, nullptr),
            ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h.get());
  ASSERT_FALSE(uri.empty());

  const WString wtarget = Wide(target);
  MIRROR_VIRTUAL_DISK_PARAMETERS mirror{};
  mirror.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  mirror.Version1.MirrorVirtualDiskPath = wtarget.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(h.get(), MIRROR_VIRTUAL_DISK_FLAG_NONE, &mirror, &ov),
            static_cast<DWORD>(ERROR_IO_PENDING));
  // While the mirror copies: an NBD client writes, aligned and not, over copied and uncopied
  // ranges alike.
  const std::vector<std::string> during = {"write -P 0x11 1M 1M", "write -P 0x12 20M 3M",
                                           "write -P 0x13 63M 1M", "write -P 0x14 12345 777",
                                           "write -P 0x15 33M 4k"};
  CommandResult io = QemuIo(uri, during);
  ASSERT_EQ(io.exit_code, 0) << io.Describe();
  // Ready: announced only through the progress, which a client polls.
  VIRTUAL_DISK_PROGRESS progress{};
  DWORD query = ERROR_SUCCESS;
  vdisk_testing::WaitUntil([&] {
    query = GetVirtualDiskOperationProgress(h.get(), &ov, &progress);
    return query != ERROR_SUCCESS || progress.OperationStatus != ERROR_IO_PENDING ||
           progress.CurrentValue == progress.CompletionValue;
  });
  ASSERT_EQ(query, static_cast<DWORD>(ERROR_SUCCESS));
  ASSERT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_IO_PENDING));
  ASSERT_EQ(progress.CurrentValue, progress.CompletionValue);
  // Mirrored: every write goes to both disks.
  const std::vector<std::string> mirrored = {"write -P 0x21 5M 2M", "write -P 0x22 20M 64k",
                                             "write -P 0x23 99999 3000"};
  io = QemuIo(uri, mirrored);
  ASSERT_EQ(io.exit_code, 0) << io.Describe();
  ASSERT_EQ(BreakMirrorVirtualDisk(h.get()), ERROR_SUCCESS);
  ASSERT_EQ(WaitForSingleObject(ov.hEvent, INFINITE), WAIT_OBJECT_0);
  ASSERT_EQ(GetVirtualDiskOperationProgress(h.get(), &ov, &progress), ERROR_SUCCESS);
  EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_SUCCESS));
  ASSERT_EQ(DetachVirtualDisk(h.get(), DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  ASSERT_TRUE(h.Close());
  CloseHandle(ov.hEvent);

  const CommandResult compare =
      RunTool({"qemu-img", "compare", "-f", "vhdx", "-F", "vhdx", disk_.string(), target.string()});
  EXPECT_EQ(compare.exit_code, 0) << compare.Describe();
  const CommandResult check = RunTool({"qemu-img", "check", "-f", "vhdx", target.string()});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();
  // The later write wins where two overlap (20M..20M+64k).
  io = QemuIo(target.string(),
              {"read -P 0x11 1M 1M", "read -P 0x22 20M 64k", "read -P 0x12 21M 2M",
               "read -P 0x13 63M 1M", "read -P 0x14 12345 777", "read -P 0x15 33M 4k",
               "read -P 0x21 5M 2M", "read -P 0x23 99999 3000"},
              "vhdx", true);
  EXPECT_EQ(io.exit_code, 0) << "the mirror must hold every write made through the export: "
                             << io.Describe();
}

}  // namespace
}  // namespace vdisk_interop
