// ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME through the C API: the attachment moves to an
// attach host process (virtdisk-attach-host, found next to libvirtdisk.so), outlives the handle,
// is found by OpenVirtualDisk and DetachVirtualDisk on other handles, and the attaching handle
// gets its image back after the detach. The three-process version with real NBD clients is in
// tests/interop/attach_host_interop_test.cpp.
// On Windows the host is virtdisk-attach-host.exe beside VirtDisk.dll, its export a TCP port on
// 127.0.0.1, and its control channel the private endpoint of src/platform/socket.h.
#include <gtest/gtest.h>
#ifndef _WIN32
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "api_test_support.h"
#include "support/process.h"

namespace vdisk_test {
namespace {

namespace fs = std::filesystem;

// One record of the attach registry, read from its file (key=value lines).
struct Record {
  std::int64_t pid = 0;
  bool permanent = false;
  std::string socket;
  std::string control;
};

std::vector<Record> Records(const fs::path& dir) {
  std::vector<Record> records;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".attach") continue;
    std::ifstream in(it->path());
    Record r;
    for (std::string line; std::getline(in, line);) {
      const auto eq = line.find('=');
      if (eq == std::string::npos) continue;
      const std::string key = line.substr(0, eq);
      const std::string value = line.substr(eq + 1);
      if (key == "pid") r.pid = std::stoll(value);
      if (key == "permanent") r.permanent = value == "1";
      if (key == "socket") r.socket = value;
      if (key == "control") r.control = value;
    }
    records.push_back(r);
  }
  return records;
}

#ifdef _WIN32
bool Kill(std::int64_t pid) {
  HANDLE process = OpenProcess(PROCESS_TERMINATE, FALSE, static_cast<DWORD>(pid));
  if (process == nullptr) return false;
  const bool killed = TerminateProcess(process, 137);
  CloseHandle(process);
  return killed;
}

std::int64_t ThisProcess() { return GetCurrentProcessId(); }
constexpr const char* kUriPrefix = "nbd://127.0.0.1:";
#else
bool Kill(std::int64_t pid) { return ::kill(static_cast<pid_t>(pid), SIGKILL) == 0; }
std::int64_t ThisProcess() { return ::getpid(); }
constexpr const char* kUriPrefix = "nbd+unix:///";
#endif

using vdisk_testing::ProcessEnded;
using vdisk_testing::WaitProcessEnded;

bool Exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(fs::path(path), ec);
}

class AttachHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_ = dir_.path() / "run";
    SetEnv("VIRTDISK_RUNTIME_DIR", run_.string());
    path_ = dir_.Wide("disk.vhdx");
    HANDLE h = nullptr;
    ASSERT_EQ(CreateVhd(path_, kSize, false, &h, 0, WString(), VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
              ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
    ASSERT_EQ(WriteAt(h, kDataOffset, kData.data(), static_cast<DWORD>(kData.size())),
              ERROR_SUCCESS);
    CloseHandle(h);
  }
  void TearDown() override {
    // A failed test may leave a host behind: it must not outlive the test.
    for (const Record& r : Records(run_)) {
      if (r.permanent && r.pid > 0) Kill(r.pid);
    }
    UnsetEnv("VIRTDISK_RUNTIME_DIR");
    UnsetEnv("VIRTDISK_ATTACH_HOST");
  }

  HANDLE Open(bool read_only = false) {
    HANDLE h = nullptr;
    EXPECT_EQ(OpenV2(path_, read_only, &h), ERROR_SUCCESS);
    return h;
  }
  static DWORD Attach(HANDLE h, ATTACH_VIRTUAL_DISK_FLAG flags) {
    ATTACH_VIRTUAL_DISK_PARAMETERS params{};
    params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
    return AttachVirtualDisk(h, nullptr, flags, 0, &params, nullptr);
  }
  static DWORD AttachPermanent(HANDLE h) {
    return Attach(h, ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME);
  }
  // The handle reads the disk itself (it holds the image, not a view).
  void ExpectDataThroughHandle(HANDLE h) {
    ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
    std::vector<unsigned char> back(kData.size());
    ASSERT_EQ(ReadAt(h, kDataOffset, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
    EXPECT_EQ(back, kData);
    EXPECT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  }

  static constexpr ULONGLONG kSize = 32ull << 20;
  static constexpr std::uint64_t kDataOffset = 3 << 20;
  const std::vector<unsigned char> kData = Pattern(64 << 10, 7);
  TempDir dir_;
  fs::path run_;
  WString path_;
};

TEST_F(AttachHostTest, PermanentAttachmentOutlivesItsHandleUntilDetached) {
  HANDLE h = Open();
  ASSERT_EQ(AttachPermanent(h), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  ASSERT_EQ(uri.rfind(kUriPrefix, 0), 0u) << uri;
  ASSERT_TRUE(CloseHandle(h));

  EXPECT_EQ(AllAttached(), std::vector<std::string>{uri}) << "closing the handle must not detach";
  const auto records = Records(run_);
  ASSERT_EQ(records.size(), 1u);
  const Record host = records[0];
  EXPECT_TRUE(host.permanent);
  EXPECT_NE(host.pid, ThisProcess()) << "the export must live in a host process";
  EXPECT_FALSE(ProcessEnded(host.pid));
#ifndef _WIN32
  struct stat st {};
  ASSERT_EQ(::stat(host.socket.c_str(), &st), 0) << host.socket;
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "a NULL security descriptor: the owner only";
#endif
  ASSERT_TRUE(Exists(host.control)) << host.control;

  // Another handle opens the file the host holds, sees the attachment, and detaches it.
  HANDLE other = Open();
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(PhysicalPath(other), uri);
  EXPECT_EQ(VirtualSize(other), kSize);
  ASSERT_EQ(DetachVirtualDisk(other, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_TRUE(ProcessEnded(host.pid)) << "DetachVirtualDisk returns once the host has exited";
  EXPECT_TRUE(AllAttached().empty());
  if (!host.socket.empty()) EXPECT_FALSE(Exists(host.socket));
  EXPECT_FALSE(Exists(host.control));
  DWORD error = 0;
  EXPECT_EQ(PhysicalPath(other, &error), "");
  EXPECT_EQ(error, static_cast<DWORD>(ERROR_VIRTDISK_NOT_VIRTUAL_DISK));
  // The handle now holds the image itself.
  ExpectDataThroughHandle(other);
  CloseHandle(other);
}

#ifndef _WIN32
// Runs a shell command; its exit status, and its output in `out`.
int Shell(const std::string& command, std::string* out = nullptr) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string text;
  char chunk[4096];
  for (std::size_t n; (n = std::fread(chunk, 1, sizeof chunk, pipe)) > 0;) text.append(chunk, n);
  const int status = ::pclose(pipe);
  if (out != nullptr) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A PERMANENT_LIFETIME attachment on TCP: the host makes its own TLS key, in the owner's attach
// directory; another local user (nobody, through runuser: the tests run as root) gets nothing,
// the owner's nbdinfo and nbdcopy use the URI as returned.
TEST_F(AttachHostTest, PermanentTcpExportAdmitsOnlyTheHolderOfItsKey) {
  if (::geteuid() != 0 || Shell("command -v runuser nbdinfo nbdcopy") != 0) {
    GTEST_SKIP() << "needs root, runuser, nbdinfo and nbdcopy to act as another local user";
  }
  // Others may pass through (not list) the test's directories: only the attachment's own files
  // keep them out.
  fs::permissions(dir_.path(), fs::perms(0711));
  SetEnv("VIRTDISK_ATTACH_TRANSPORT", "tcp");
  HANDLE h = Open();
  ASSERT_EQ(AttachPermanent(h), ERROR_SUCCESS);
  UnsetEnv("VIRTDISK_ATTACH_TRANSPORT");
  const std::string uri = PhysicalPath(h);
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(uri.rfind("nbds://virtdisk@127.0.0.1:", 0), 0u) << uri;
  const auto records = Records(run_);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_NE(records[0].pid, ThisProcess());
  const fs::path key = uri.substr(uri.find("tls-psk-file=") + 13);
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0) << key;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string port = uri.substr(uri.find("127.0.0.1:") + 10, uri.find('/', 26) - uri.find("127.0.0.1:") - 10);
  const std::string plain = "nbd://127.0.0.1:" + port;
  const fs::path pattern = dir_.path() / "pattern.raw";
  std::ofstream(pattern, std::ios::binary) << std::string(1 << 20, '\x5a');
  fs::permissions(pattern, fs::perms(0644));
  std::string out;
  for (const std::string& command :
       {"nbdinfo --list '" + plain + "'", "nbdinfo --size '" + plain + "/disk.vhdx'",
        "nbdinfo --size '" + uri + "'", "nbdcopy " + pattern.string() + " '" + uri + "'"}) {
    EXPECT_NE(Shell("runuser -u nobody -- " + command, &out), 0) << command << ": " << out;
    EXPECT_EQ(out.find("disk.vhdx\n"), std::string::npos) << out;
  }
  ASSERT_EQ(Shell("nbdinfo --size '" + uri + "'", &out), 0) << out;
  EXPECT_EQ(std::stoull(out), kSize);
  // The owner reads the data written before attaching, and writes a megabyte at 0.
  const fs::path copy = dir_.path() / "copy.raw";
  ASSERT_EQ(Shell("nbdcopy '" + uri + "' " + copy.string(), &out), 0) << out;
  std::ifstream in(copy, std::ios::binary);
  in.seekg(kDataOffset);
  std::vector<unsigned char> back(kData.size());
  in.read(reinterpret_cast<char*>(back.data()), static_cast<std::streamsize>(back.size()));
  EXPECT_EQ(back, kData);
  ASSERT_EQ(Shell("nbdcopy " + pattern.string() + " '" + uri + "'", &out), 0) << out;

  HANDLE other = Open();
  ASSERT_EQ(DetachVirtualDisk(other, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_FALSE(Exists(key.parent_path().string())) << "the key goes with the attachment";
  ASSERT_EQ(AttachRaw(other), ERROR_SUCCESS);
  std::vector<unsigned char> head(1 << 20);
  ASSERT_EQ(ReadAt(other, 0, head.data(), static_cast<DWORD>(head.size())), ERROR_SUCCESS);
  EXPECT_EQ(head, std::vector<unsigned char>(head.size(), 0x5a)) << "the owner's write is in the image";
  CloseHandle(other);
}

// The same with the default transport, a Unix socket: the host's socket is 0600 in the owner's
// 0700 attach directory, so another local user can neither reach nor use it; the owner's
// clients use the URI as returned.
TEST_F(AttachHostTest, PermanentUnixSocketExportAdmitsOnlyItsOwner) {
  if (::geteuid() != 0 || Shell("command -v runuser nbdinfo nbdcopy") != 0) {
    GTEST_SKIP() << "needs root, runuser, nbdinfo and nbdcopy to act as another local user";
  }
  fs::permissions(dir_.path(), fs::perms(0711));
  HANDLE h = Open();
  ASSERT_EQ(AttachPermanent(h), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(uri.rfind(kUriPrefix, 0), 0u) << uri;
  const auto records = Records(run_);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_NE(records[0].pid, ThisProcess()) << "served by the host";
  const fs::path socket = uri.substr(uri.find("socket=") + 7);
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0) << socket;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(run_.c_str(), &st), 0) << run_;
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const fs::path pattern = dir_.path() / "pattern.raw";
  std::ofstream(pattern, std::ios::binary) << std::string(1 << 20, '\x5a');
  fs::permissions(pattern, fs::perms(0644));
  std::string out;
  for (const std::string& command :
       {"nbdinfo --size '" + uri + "'", "nbdcopy " + pattern.string() + " '" + uri + "'"}) {
    EXPECT_NE(Shell("runuser -u nobody -- " + command, &out), 0) << command << ": " << out;
  }
  ASSERT_EQ(Shell("nbdinfo --size '" + uri + "'", &out), 0) << out;
  EXPECT_EQ(std::stoull(out), kSize);
  ASSERT_EQ(Shell("nbdcopy " + pattern.string() + " '" + uri + "'", &out), 0) << out;

  HANDLE other = Open();
  ASSERT_EQ(DetachVirtualDisk(other, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(other), ERROR_SUCCESS);
  std::vector<unsigned char> head(1 << 20);
  ASSERT_EQ(ReadAt(other, 0, head.data(), static_cast<DWORD>(head.size())), ERROR_SUCCESS);
  EXPECT_EQ(head, std::vector<unsigned char>(head.size(), 0x5a)) << "only the owner's write";
  CloseHandle(other);
}
#endif

// The first line a program printed, without its line end.
std::string FirstLine(const std::string& output) {
  std::string line = output.substr(0, output.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

// Microsoft's storage sample as separate processes: one attaches with PERMANENT_LIFETIME and
// exits, this one sees the attachment, another opens the file and detaches it.
TEST_F(AttachHostTest, AttachInOneProcessAndDetachInAnother) {
  const fs::path client = ProgramBeside("attach_client");
  const std::string disk = (dir_.path() / "disk.vhdx").string();
  const ProgramResult attached = RunProgram(client, {"attach-permanent", disk});
  ASSERT_EQ(attached.exit_code, 0) << attached.output;
  const std::string line = FirstLine(attached.output);
  const std::string uri = line.substr(line.find(' ') + 1);
  ASSERT_EQ(line, "attached " + uri);
  ASSERT_EQ(uri.rfind(kUriPrefix, 0), 0u) << uri;

  const auto records = Records(run_);
  ASSERT_EQ(records.size(), 1u);
  const Record host = records[0];
  EXPECT_TRUE(host.permanent);
  EXPECT_FALSE(ProcessEnded(host.pid)) << "the attachment outlives the process that made it";
  EXPECT_EQ(AllAttached(), std::vector<std::string>{uri});
  HANDLE h = Open();
  EXPECT_EQ(PhysicalPath(h), uri);
  EXPECT_EQ(VirtualSize(h), kSize);
  CloseHandle(h);

  const ProgramResult detached = RunProgram(client, {"detach", disk});
  ASSERT_EQ(detached.exit_code, 0) << detached.output;
  EXPECT_EQ(FirstLine(detached.output), "detached");
  EXPECT_TRUE(WaitProcessEnded(host.pid));
  EXPECT_TRUE(AllAttached().empty());
  h = Open();
  ExpectDataThroughHandle(h);
  CloseHandle(h);
  // Detaching again, from yet another process, finds nothing attached.
  const ProgramResult again = RunProgram(client, {"detach", disk});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(FirstLine(again.output),
            "error " + std::to_string(static_cast<DWORD>(ERROR_VIRTDISK_NOT_VIRTUAL_DISK)) + " detach");
}

TEST_F(AttachHostTest, AttachingHandleIsHandedOverUntilItDetaches) {
  HANDLE h = Open();
  ASSERT_EQ(AttachPermanent(h), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  EXPECT_EQ(AttachRaw(h), static_cast<DWORD>(ERROR_VIRTDISK_DISK_ALREADY_OWNED));
  EXPECT_EQ(AttachPermanent(h), static_cast<DWORD>(ERROR_VIRTDISK_DISK_ALREADY_OWNED));
  EXPECT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE),
            static_cast<DWORD>(ERROR_VIRTDISK_DISK_ALREADY_OWNED));
  std::vector<unsigned char> buffer(4096);
  EXPECT_EQ(ReadAt(h, 0, buffer.data(), static_cast<DWORD>(buffer.size())),
            static_cast<DWORD>(ERROR_NOT_READY))
      << "raw I/O needs an attachment in this process";
  EXPECT_EQ(VirtualSize(h), kSize) << "information still comes from the view";
  EXPECT_EQ(AllAttached(), std::vector<std::string>{uri});
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_TRUE(AllAttached().empty());
  ExpectDataThroughHandle(h);
  CloseHandle(h);
}

TEST_F(AttachHostTest, HandedOverHandleTakesTheImageBackOnceAnotherHandleDetached) {
  HANDLE h = Open();
  ASSERT_EQ(AttachPermanent(h), ERROR_SUCCESS);
  HANDLE other = Open();
  ASSERT_EQ(DetachVirtualDisk(other, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  CloseHandle(other);
  // Both handles shared one disk object in this process, so `h` got the image back with the
  // detach; a handle in another process gets it back at its next attach or detach.
  ExpectDataThroughHandle(h);
  CloseHandle(h);
}

TEST_F(AttachHostTest, HandedOverHandleTakesTheImageBackWhenItsHostDies) {
  HANDLE h = Open();
  ASSERT_EQ(AttachPermanent(h), ERROR_SUCCESS);
  const auto records = Records(run_);
  ASSERT_EQ(records.size(), 1u);
  ASSERT_TRUE(Kill(records[0].pid));
  ASSERT_TRUE(WaitProcessEnded(records[0].pid));
  EXPECT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
            static_cast<DWORD>(ERROR_VIRTDISK_NOT_VIRTUAL_DISK))
      << "a dead host's attachment is gone";
  EXPECT_TRUE(Records(run_).empty());
  ExpectDataThroughHandle(h);
  CloseHandle(h);
}

TEST_F(AttachHostTest, HandleWithOnlyDetachAccessDetachesAHostedDisk) {
  HANDLE h = Open();
  ASSERT_EQ(AttachPermanent(h), ERROR_SUCCESS);
  CloseHandle(h);
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHDX);
  HANDLE detacher = nullptr;
  ASSERT_EQ(OpenVirtualDisk(&type, path_.c_str(), VIRTUAL_DISK_ACCESS_DETACH,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, nullptr, &detacher),
            ERROR_SUCCESS);
  ASSERT_EQ(AllAttached().size(), 1u);
  EXPECT_EQ(DetachVirtualDisk(detacher, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_TRUE(AllAttached().empty());
  CloseHandle(detacher);
}

TEST_F(AttachHostTest, ReadOnlyHandleDetachesAReadOnlyPermanentAttachment) {
  HANDLE h = Open();
  ASSERT_EQ(
      Attach(h, static_cast<ATTACH_VIRTUAL_DISK_FLAG>(ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME |
                                                      ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY)),
      ERROR_SUCCESS);
  CloseHandle(h);
  // The host holds the image read-only, so a read-only open takes it as usual.
  HANDLE reader = Open(/*read_only=*/true);
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(AllAttached().size(), 1u);
  ASSERT_EQ(DetachVirtualDisk(reader, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_TRUE(AllAttached().empty());
  CloseHandle(reader);
}

TEST_F(AttachHostTest, DetachOfADiskThatIsNotAttachedKeepsItsError) {
  HANDLE h = Open();
  EXPECT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
            static_cast<DWORD>(ERROR_VIRTDISK_NOT_VIRTUAL_DISK));
  ASSERT_EQ(AttachPermanent(h), ERROR_SUCCESS);
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
            static_cast<DWORD>(ERROR_VIRTDISK_NOT_VIRTUAL_DISK));
  CloseHandle(h);
}

TEST_F(AttachHostTest, MissingHostProgramFailsAndTheHandleKeepsItsImage) {
  SetEnv("VIRTDISK_ATTACH_HOST", (dir_.path() / "no-such-host").string());
  HANDLE h = Open();
  EXPECT_EQ(AttachPermanent(h), static_cast<DWORD>(ERROR_FILE_NOT_FOUND));
  EXPECT_TRUE(AllAttached().empty());
  ExpectDataThroughHandle(h);
  CloseHandle(h);
}

TEST_F(AttachHostTest, HostThatEndsWithoutReportingFails) {
#ifdef _WIN32
  // A program that exits at once and knows nothing of the report handle.
  SetEnv("VIRTDISK_ATTACH_HOST", "C:\\windows\\system32\\hostname.exe");
#else
  SetEnv("VIRTDISK_ATTACH_HOST", "/bin/true");
#endif
  HANDLE h = Open();
  EXPECT_EQ(AttachPermanent(h), static_cast<DWORD>(ERROR_IO_DEVICE));
  EXPECT_TRUE(AllAttached().empty());
  ExpectDataThroughHandle(h);
  CloseHandle(h);
}

TEST_F(AttachHostTest, HostFailureComesBackAsItsWin32Error) {
  // Only the host checks the restricted range (when it builds the export): its failure must
  // reach the caller as the error an in-process attachment gives.
  HANDLE h = Open();
  ATTACH_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = ATTACH_VIRTUAL_DISK_VERSION_2;
  params.Version2.RestrictedOffset = 0;
  params.Version2.RestrictedLength = 2 * kSize;
  const auto flags = static_cast<ATTACH_VIRTUAL_DISK_FLAG>(
      ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME | ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE);
  EXPECT_EQ(AttachVirtualDisk(h, nullptr, flags, 0, &params, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(
      AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE, 0, &params, nullptr),
      static_cast<DWORD>(ERROR_INVALID_PARAMETER))
      << "the in-process attachment refuses the same range";
  EXPECT_TRUE(AllAttached().empty());
  EXPECT_TRUE(Records(run_).empty());
  ExpectDataThroughHandle(h);
  CloseHandle(h);
}

}  // namespace
}  // namespace vdisk_test
