// AttachVirtualDisk without NO_LOCAL_HOST: the disk is exported over NBD, its URI is the
// physical path, and the per-user attach registry lists it. Real NBD clients (nbdinfo, qemu-io
// from Debian's libnbd-bin and qemu-utils) are the oracle; tests whose tool is missing skip.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

// Runs a shell command; returns its exit status and stdout.
int RunTool(const std::string& command, std::string* out = nullptr) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> chunk;
  std::string text;
  while (std::fgets(chunk.data(), chunk.size(), pipe) != nullptr) text += chunk.data();
  const int status = ::pclose(pipe);
  if (out != nullptr) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Have(const char* tool) { return RunTool(std::string("command -v ") + tool) == 0; }

std::string SocketOf(const std::string& uri) {
  const auto at = uri.find("socket=");
  return at == std::string::npos ? "" : uri.substr(at + 7);
}

class AttachNbdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("VIRTDISK_RUNTIME_DIR", (dir_.path() / "run").c_str(), 1);
    path_ = dir_.Wide("disk.vhdx");
    HANDLE h = nullptr;
    ASSERT_EQ(CreateVhd(path_, kSize, false, &h, 0, WString(), VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
              ERROR_SUCCESS);
    CloseHandle(h);
  }
  void TearDown() override { ::unsetenv("VIRTDISK_RUNTIME_DIR"); }

  HANDLE Open(bool read_only = false) {
    HANDLE h = nullptr;
    EXPECT_EQ(OpenV2(path_, read_only, &h), ERROR_SUCCESS);
    return h;
  }
  static DWORD Attach(HANDLE h, ATTACH_VIRTUAL_DISK_FLAG flags, PSECURITY_DESCRIPTOR sd = nullptr) {
    ATTACH_VIRTUAL_DISK_PARAMETERS params{};
    params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
    return AttachVirtualDisk(h, sd, flags, 0, &params, nullptr);
  }

  static constexpr ULONGLONG kSize = 64ull << 20;
  TempDir dir_;
  WString path_;
};

TEST_F(AttachNbdTest, ExportIsListedServedAndGoneAfterDetach) {
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  ASSERT_EQ(uri.rfind("nbd+unix:///", 0), 0u) << uri;
  const std::string socket = SocketOf(uri);
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0) << socket;
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "a NULL security descriptor: the owner only";
  EXPECT_EQ(AllAttached(), std::vector<std::string>{uri});

  if (Have("nbdinfo")) {
    std::string out;
    ASSERT_EQ(RunTool("nbdinfo --size '" + uri + "'", &out), 0) << out;
    EXPECT_EQ(std::stoull(out), kSize);
  }
  if (Have("qemu-io")) {
    std::string out;
    ASSERT_EQ(RunTool("qemu-io -f raw -c 'write -P 0x5a 1M 64k' '" + uri + "'", &out), 0) << out;
    ASSERT_EQ(RunTool("qemu-io -f raw -c 'read -P 0x5a 1M 64k' '" + uri + "'", &out), 0) << out;
    EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;
  }
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_TRUE(AllAttached().empty());
  EXPECT_NE(::stat(socket.c_str(), &st), 0) << "the socket must be gone after detach";
  DWORD error = 0;
  EXPECT_EQ(PhysicalPath(h, &error), "");
  EXPECT_EQ(error, static_cast<DWORD>(ERROR_VIRTDISK_NOT_VIRTUAL_DISK));
  if (Have("qemu-io")) {
    // What the NBD client wrote is in the file.
    ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
    std::vector<unsigned char> back(64 << 10);
    ASSERT_EQ(ReadAt(h, 1 << 20, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
    EXPECT_EQ(back, std::vector<unsigned char>(back.size(), 0x5a));
  }
  CloseHandle(h);
}

TEST_F(AttachNbdTest, ClosingTheHandleEndsTheAttachment) {
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE), ERROR_SUCCESS);
  const std::string socket = SocketOf(PhysicalPath(h));
  ASSERT_FALSE(socket.empty());
  ASSERT_EQ(AllAttached().size(), 1u);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_TRUE(AllAttached().empty());
  struct stat st {};
  EXPECT_NE(::stat(socket.c_str(), &st), 0);
}

TEST_F(AttachNbdTest, AttachingAnAttachedDiskIsRefused) {
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE), ERROR_SUCCESS);
  EXPECT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE),
            static_cast<DWORD>(ERROR_VIRTDISK_DISK_ALREADY_OWNED));
  EXPECT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST),
            static_cast<DWORD>(ERROR_VIRTDISK_DISK_ALREADY_OWNED));
  EXPECT_EQ(AllAttached().size(), 1u);
  CloseHandle(h);
}

TEST_F(AttachNbdTest, ReadOnlyAttachmentRefusesWrites) {
  if (!Have("qemu-io")) GTEST_SKIP() << "qemu-io not installed";
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  std::string out;
  EXPECT_NE(RunTool("qemu-io -f raw -c 'write -P 0x11 0 4k' '" + uri + "'", &out), 0) << out;
  EXPECT_EQ(RunTool("qemu-io -f raw -r -c 'read -P 0 0 4k' '" + uri + "'", &out), 0) << out;
  CloseHandle(h);
}

TEST_F(AttachNbdTest, RestrictedRangeExportsOnlyTheWindow) {
  if (!Have("nbdinfo")) GTEST_SKIP() << "nbdinfo not installed";
  HANDLE h = Open();
  ATTACH_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = ATTACH_VIRTUAL_DISK_VERSION_2;
  params.Version2.RestrictedOffset = 8 << 20;
  params.Version2.RestrictedLength = 4 << 20;
  ASSERT_EQ(AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE, 0, &params,
                              nullptr),
            ERROR_SUCCESS);
  std::string out;
  ASSERT_EQ(RunTool("nbdinfo --size '" + PhysicalPath(h) + "'", &out), 0) << out;
  EXPECT_EQ(std::stoull(out), 4ull << 20);
  CloseHandle(h);
}

// A self-relative SECURITY_DESCRIPTOR whose DACL allows Everyone (S-1-1-0) GENERIC_ALL, as
// "D:(A;;GA;;;WD)" builds it (MS-DTYP 2.4.6).
std::vector<unsigned char> EveryoneDescriptor() {
  std::vector<unsigned char> sd = {1, 0, 0x04, 0x80,  // revision, sbz1, SE_DACL_PRESENT|SELF_RELATIVE
                                   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // owner, group, sacl
                                   20, 0, 0, 0};                         // dacl at 20
  const std::vector<unsigned char> acl = {2, 0, 28, 0, 1, 0, 0, 0,        // ACL: rev 2, size 28, 1 ACE
                                          0, 0, 20, 0,                    // ACCESS_ALLOWED, size 20
                                          0, 0, 0, 0x10,                  // GENERIC_ALL
                                          1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};  // S-1-1-0
  sd.insert(sd.end(), acl.begin(), acl.end());
  return sd;
}

TEST_F(AttachNbdTest, DescriptorGrantingEveryoneOpensTheSocketToOtherUsers) {
  HANDLE h = Open();
  auto sd = EveryoneDescriptor();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE, sd.data()), ERROR_SUCCESS);
  struct stat st {};
  ASSERT_EQ(::stat(SocketOf(PhysicalPath(h)).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);
  CloseHandle(h);
}

TEST_F(AttachNbdTest, MalformedDescriptorIsRefused) {
  HANDLE h = Open();
  std::vector<unsigned char> sd = {7, 0, 0x04, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE, sd.data()),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_TRUE(AllAttached().empty());
  CloseHandle(h);
}

TEST_F(AttachNbdTest, PathQueriesFollowTheSizeProtocol) {
  EXPECT_EQ(GetAllAttachedVirtualDiskPhysicalPaths(nullptr, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  ULONG size = 0;
  ASSERT_EQ(GetAllAttachedVirtualDiskPhysicalPaths(&size, nullptr),
            static_cast<DWORD>(ERROR_INSUFFICIENT_BUFFER));
  EXPECT_EQ(size, 2 * sizeof(WCHAR)) << "an empty list is two NULs";
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE), ERROR_SUCCESS);
  size = 4;
  WCHAR small[2];
  EXPECT_EQ(GetVirtualDiskPhysicalPath(h, &size, small),
            static_cast<DWORD>(ERROR_INSUFFICIENT_BUFFER));
  EXPECT_EQ(size, (PhysicalPath(h).size() + 1) * sizeof(WCHAR));
  EXPECT_EQ(GetVirtualDiskPhysicalPath(nullptr, &size, small),
            static_cast<DWORD>(ERROR_INVALID_HANDLE));
  CloseHandle(h);
}

}  // namespace
}  // namespace vdisk_test
