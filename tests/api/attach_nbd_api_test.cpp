// AttachVirtualDisk without NO_LOCAL_HOST: the disk is exported over NBD, its URI is the
// physical path, and the per-user attach registry lists it. Real NBD clients (nbdinfo, qemu-io
// from Debian's libnbd-bin and qemu-utils) are the oracle; tests whose tool is missing skip.
// On Windows the export is a TCP port on 127.0.0.1 (no socket file), the Linux tools cannot run
// under Wine, and a small NBD client written from the protocol document (NbdConnection below)
// takes their place.
#include <gtest/gtest.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "../unit/host_shell.h"
#include "api_test_support.h"

namespace vdisk_test {
namespace {

#ifdef _WIN32
int RunTool(const std::string&, std::string* = nullptr) { return -1; }
bool Have(const char*) { return false; }  // nbdinfo, qemu-io: Linux programs
#else

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
#endif

#ifndef _WIN32
std::string SocketOf(const std::string& uri) {
  const auto at = uri.find("socket=");
  return at == std::string::npos ? "" : uri.substr(at + 7);
}
#endif

#ifdef _WIN32
// A minimal NBD client: fixed newstyle handshake, NBD_OPT_EXPORT_NAME, simple replies (NBD
// protocol document, "Newstyle negotiation" and "Transmission"). Enough to check what a real
// client would see: the size, the read-only flag, reads, writes and their errors.
class NbdConnection {
 public:
  explicit NbdConnection(const std::string& uri) {
    static const bool started = [] {
      WSADATA data;
      return WSAStartup(MAKEWORD(2, 2), &data) == 0;
    }();
    if (!started) return;
    std::string host, port, name;
    if (!Split(uri, &host, &port, &name)) return;
    socket_ = Connect(host, port);
    if (socket_ == INVALID_SOCKET) return;
    unsigned char hello[18];
    if (!Receive(hello, sizeof hello) || std::memcmp(hello, "NBDMAGIC", 8) != 0 ||
        std::memcmp(hello + 8, "IHAVEOPT", 8) != 0)
      return;
    const unsigned server_flags = hello[17];  // bit 0 fixed newstyle, bit 1 no zeroes
    const bool no_zeroes = (server_flags & 2) != 0;
    std::vector<unsigned char> out;
    Put(out, 4, 1u | (no_zeroes ? 2u : 0u));
    out.insert(out.end(), {'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T'});
    Put(out, 4, 1);  // NBD_OPT_EXPORT_NAME
    Put(out, 4, name.size());
    out.insert(out.end(), name.begin(), name.end());
    if (!Send(out.data(), out.size())) return;
    unsigned char info[10];
    if (!Receive(info, sizeof info)) return;
    size_ = Get(info, 8);
    flags_ = static_cast<unsigned>(Get(info + 8, 2));
    if (!no_zeroes) {
      unsigned char zeroes[124];
      if (!Receive(zeroes, sizeof zeroes)) return;
    }
    ok_ = true;
  }
  ~NbdConnection() {
    if (ok_) (void)Command(2, 0, nullptr, 0);  // NBD_CMD_DISC
    if (socket_ != INVALID_SOCKET) closesocket(socket_);
  }
  bool ok() const { return ok_; }
  std::uint64_t size() const { return size_; }
  bool read_only() const { return (flags_ & 2) != 0; }  // NBD_FLAG_READ_ONLY
  // The command's NBD error (0: success); ~0u if the connection failed.
  std::uint32_t Read(std::uint64_t offset, void* data, std::uint32_t length) {
    return Command(0, offset, data, length);
  }
  std::uint32_t Write(std::uint64_t offset, const void* data, std::uint32_t length) {
    return Command(1, offset, const_cast<void*>(data), length);
  }

 private:
  static bool Split(const std::string& uri, std::string* host, std::string* port,
                    std::string* name) {
    const std::string scheme = "nbd://";
    if (uri.rfind(scheme, 0) != 0) return false;
    const auto colon = uri.find(':', scheme.size());
    const auto slash = uri.find('/', scheme.size());
    if (colon == std::string::npos || slash == std::string::npos || colon > slash) return false;
    *host = uri.substr(scheme.size(), colon - scheme.size());
    *port = uri.substr(colon + 1, slash - colon - 1);
    *name = uri.substr(slash + 1);
    return true;
  }
  static SOCKET Connect(const std::string& host, const std::string& port) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return INVALID_SOCKET;
    SOCKET s = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
    if (s != INVALID_SOCKET && connect(s, found->ai_addr, static_cast<int>(found->ai_addrlen)) != 0) {
      closesocket(s);
      s = INVALID_SOCKET;
    }
    freeaddrinfo(found);
    return s;
  }
  static void Put(std::vector<unsigned char>& out, int bytes, std::uint64_t value) {
    for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<unsigned char>(value >> (8 * i)));
  }
  static std::uint64_t Get(const unsigned char* in, int bytes) {
    std::uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) value = (value << 8) | in[i];
    return value;
  }
  bool Send(const void* data, std::size_t length) {
    const char* p = static_cast<const char*>(data);
    while (length > 0) {
      const int n = send(socket_, p, static_cast<int>(length), 0);
      if (n <= 0) return false;
      p += n;
      length -= static_cast<std::size_t>(n);
    }
    return true;
  }
  bool Receive(void* data, std::size_t length) {
    char* p = static_cast<char*>(data);
    while (length > 0) {
      const int n = recv(socket_, p, static_cast<int>(length), 0);
      if (n <= 0) return false;
      p += n;
      length -= static_cast<std::size_t>(n);
    }
    return true;
  }
  std::uint32_t Command(unsigned type, std::uint64_t offset, void* data, std::uint32_t length) {
    std::vector<unsigned char> out;
    Put(out, 4, 0x25609513);  // NBD_REQUEST_MAGIC
    Put(out, 2, 0);
    Put(out, 2, type);
    Put(out, 8, ++cookie_);
    Put(out, 8, offset);
    Put(out, 4, length);
    if (type == 1) out.insert(out.end(), static_cast<unsigned char*>(data),
                              static_cast<unsigned char*>(data) + length);
    if (!Send(out.data(), out.size())) return ~0u;
    if (type == 2) return 0;  // no reply to a disconnect
    unsigned char reply[16];
    if (!Receive(reply, sizeof reply) || Get(reply, 4) != 0x67446698 || Get(reply + 8, 8) != cookie_)
      return ~0u;
    const auto error = static_cast<std::uint32_t>(Get(reply + 4, 4));
    if (type == 0 && error == 0 && !Receive(data, length)) return ~0u;
    return error;
  }

  SOCKET socket_ = INVALID_SOCKET;
  bool ok_ = false;
  std::uint64_t size_ = 0;
  unsigned flags_ = 0;
  std::uint64_t cookie_ = 0;
};

// Whether an NBD server still answers at the URI.
bool Served(const std::string& uri) { return NbdConnection(uri).ok(); }
#endif

class AttachNbdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetEnv("VIRTDISK_RUNTIME_DIR", (dir_.path() / "run").string());
    path_ = dir_.Wide("disk.vhdx");
    HANDLE h = nullptr;
    ASSERT_EQ(CreateVhd(path_, kSize, false, &h, 0, WString(), VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
              ERROR_SUCCESS);
    CloseHandle(h);
  }
  void TearDown() override { UnsetEnv("VIRTDISK_RUNTIME_DIR"); }

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
#ifdef _WIN32
  ASSERT_EQ(uri.rfind("nbd://127.0.0.1:", 0), 0u) << uri;
#else
  ASSERT_EQ(uri.rfind("nbd+unix:///", 0), 0u) << uri;
  const std::string socket = SocketOf(uri);
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0) << socket;
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "a NULL security descriptor: the owner only";
#endif
  EXPECT_EQ(AllAttached(), std::vector<std::string>{uri});

  bool wrote = false;
#ifdef _WIN32
  {
    NbdConnection nbd(uri);
    ASSERT_TRUE(nbd.ok()) << uri;
    EXPECT_EQ(nbd.size(), kSize);
    EXPECT_FALSE(nbd.read_only());
    const std::vector<unsigned char> pattern(64 << 10, 0x5a);
    ASSERT_EQ(nbd.Write(1 << 20, pattern.data(), 64 << 10), 0u);
    std::vector<unsigned char> back(64 << 10);
    ASSERT_EQ(nbd.Read(1 << 20, back.data(), 64 << 10), 0u);
    EXPECT_EQ(back, pattern);
    wrote = true;
  }
#else
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
    wrote = true;
  }
#endif
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_TRUE(AllAttached().empty());
#ifdef _WIN32
  EXPECT_FALSE(Served(uri)) << "the port must be closed after detach";
#else
  EXPECT_NE(::stat(socket.c_str(), &st), 0) << "the socket must be gone after detach";
#endif
  DWORD error = 0;
  EXPECT_EQ(PhysicalPath(h, &error), "");
  EXPECT_EQ(error, static_cast<DWORD>(ERROR_VIRTDISK_NOT_VIRTUAL_DISK));
  if (wrote) {
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
  const std::string uri = PhysicalPath(h);
#ifdef _WIN32
  ASSERT_TRUE(Served(uri)) << uri;
#else
  const std::string socket = SocketOf(uri);
  ASSERT_FALSE(socket.empty());
#endif
  ASSERT_EQ(AllAttached().size(), 1u);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_TRUE(AllAttached().empty());
#ifdef _WIN32
  EXPECT_FALSE(Served(uri)) << "the port must be closed with the handle";
#else
  struct stat st {};
  EXPECT_NE(::stat(socket.c_str(), &st), 0);
#endif
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
#ifdef _WIN32
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY), ERROR_SUCCESS);
  NbdConnection nbd(PhysicalPath(h));
  ASSERT_TRUE(nbd.ok());
  EXPECT_TRUE(nbd.read_only());
  std::vector<unsigned char> data(4096, 0x11);
  EXPECT_NE(nbd.Write(0, data.data(), 4096), 0u) << "a write to a read-only export must fail";
  ASSERT_EQ(nbd.Read(0, data.data(), 4096), 0u);
  EXPECT_EQ(data, std::vector<unsigned char>(4096, 0));
#else
  if (!Have("qemu-io")) GTEST_SKIP() << "qemu-io not installed";
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  std::string out;
  EXPECT_NE(RunTool("qemu-io -f raw -c 'write -P 0x11 0 4k' '" + uri + "'", &out), 0) << out;
  EXPECT_EQ(RunTool("qemu-io -f raw -r -c 'read -P 0 0 4k' '" + uri + "'", &out), 0) << out;
#endif
  CloseHandle(h);
}

TEST_F(AttachNbdTest, RestrictedRangeExportsOnlyTheWindow) {
#ifndef _WIN32
  if (!Have("nbdinfo")) GTEST_SKIP() << "nbdinfo not installed";
#endif
  HANDLE h = Open();
  ATTACH_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = ATTACH_VIRTUAL_DISK_VERSION_2;
  params.Version2.RestrictedOffset = 8 << 20;
  params.Version2.RestrictedLength = 4 << 20;
  ASSERT_EQ(AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE, 0, &params,
                              nullptr),
            ERROR_SUCCESS);
#ifdef _WIN32
  NbdConnection nbd(PhysicalPath(h));
  ASSERT_TRUE(nbd.ok());
  EXPECT_EQ(nbd.size(), 4ull << 20);
#else
  std::string out;
  ASSERT_EQ(RunTool("nbdinfo --size '" + PhysicalPath(h) + "'", &out), 0) << out;
  EXPECT_EQ(std::stoull(out), 4ull << 20);
#endif
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
#ifdef _WIN32
  CloseHandle(h);
  GTEST_SKIP() << "on Windows the export is a TCP port on 127.0.0.1: there is no socket file "
                  "whose mode the descriptor could set (the attach itself succeeded)";
#else
  struct stat st {};
  ASSERT_EQ(::stat(SocketOf(PhysicalPath(h)).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);
  CloseHandle(h);
#endif
}

// --- who gets an attached disk (docs/attach-security.md) ------------------------------------------

// The TCP port of an nbd:// or nbds:// URI.
unsigned PortOf(const std::string& uri) {
  const auto host = uri.find("127.0.0.1:");
  return host == std::string::npos ? 0u
                                   : static_cast<unsigned>(std::stoul(uri.substr(host + 10)));
}

// Clients that connect to 127.0.0.1:`port` and never send a byte.
class IdleClients {
 public:
  IdleClients(unsigned port, int count) {
#ifdef _WIN32
    WSADATA data;
    WSAStartup(MAKEWORD(2, 2), &data);
#endif
    for (int i = 0; i < count; ++i) {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<unsigned short>(port));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const auto s = socket(AF_INET, SOCK_STREAM, 0);
      if (connect(s, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) ++connected_;
      sockets_.push_back(s);
    }
  }
  ~IdleClients() {
#ifdef _WIN32
    for (auto s : sockets_) closesocket(s);
#else
    for (auto s : sockets_) ::close(s);
#endif
  }
  int connected() const { return connected_; }

 private:
#ifdef _WIN32
  std::vector<SOCKET> sockets_;
#else
  std::vector<int> sockets_;
#endif
  int connected_ = 0;
};

#ifndef _WIN32
// The other local user: `nobody`, through runuser (these tests run as root, as CI does).
bool CanActAsAnotherUser() { return ::geteuid() == 0 && Have("runuser") && Have("nbdinfo"); }
std::string AsNobody(const std::string& command) { return "runuser -u nobody -- " + command; }

std::string KeyFileOf(const std::string& uri) {
  const auto at = uri.find("tls-psk-file=");
  return at == std::string::npos ? "" : uri.substr(at + 13);
}

class AttachSecurityTest : public AttachNbdTest {
 protected:
  void SetUp() override {
    if (!CanActAsAnotherUser() || !Have("nbdcopy")) {
      GTEST_SKIP() << "needs root, runuser, nbdinfo and nbdcopy to act as another local user";
    }
    AttachNbdTest::SetUp();
    // Others may pass through the test's directory (not list it), as through a home directory:
    // what keeps them out must be the attachment's own files.
    std::filesystem::permissions(dir_.path(), std::filesystem::perms(0711));
    pattern_file_ = (dir_ / "pattern.raw").string();
    std::ofstream(pattern_file_, std::ios::binary) << std::string(1 << 20, '\x5a');
    std::filesystem::permissions(pattern_file_, std::filesystem::perms(0644));
  }
  void TearDown() override {
    UnsetEnv("VIRTDISK_ATTACH_TRANSPORT");
    AttachNbdTest::TearDown();
  }

  // What another user gets: nothing, whatever they try with what they can know (the port, the
  // URI as a process listing shows it, guessed names).
  void ExpectOtherUserShutOut(const std::string& uri) {
    std::string out;
    const unsigned port = PortOf(uri);
    if (port != 0) {
      const std::string endpoint = "nbd://127.0.0.1:" + std::to_string(port);
      EXPECT_NE(RunTool(AsNobody("nbdinfo --list '" + endpoint + "'"), &out), 0) << out;
      EXPECT_EQ(out.find("disk.vhdx"), std::string::npos) << "the export's name leaked: " << out;
      EXPECT_NE(RunTool(AsNobody("nbdinfo --size '" + endpoint + "/disk.vhdx'"), &out), 0) << out;
      EXPECT_NE(RunTool(AsNobody("nbdcopy " + pattern_file_ + " '" + endpoint + "/'"), &out), 0)
          << out;
    }
    EXPECT_NE(RunTool(AsNobody("nbdinfo --size '" + uri + "'"), &out), 0) << out;
    EXPECT_NE(RunTool(AsNobody("nbdcopy " + pattern_file_ + " '" + uri + "'"), &out), 0) << out;
  }

  // The owner's clients, with the URI as returned: a write of 1 MiB of 0x5a at 0 and a read.
  void ExpectOwnerServed(const std::string& uri) {
    std::string out;
    ASSERT_EQ(RunTool("nbdinfo --size '" + uri + "'", &out), 0) << out;
    EXPECT_EQ(std::stoull(out), kSize);
    ASSERT_EQ(RunTool("nbdcopy " + pattern_file_ + " '" + uri + "'", &out), 0) << out;
    const std::string back = (dir_ / "back.raw").string();
    ASSERT_EQ(RunTool("nbdcopy '" + uri + "' " + back, &out), 0) << out;
    std::ifstream in(back, std::ios::binary);
    std::string head(1 << 20, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    EXPECT_EQ(head, std::string(1 << 20, '\x5a')) << "the owner reads back what it wrote";
  }

  // After detach: the owner's 0x5a megabyte is in the image and nothing else was written.
  void ExpectImageHoldsOnlyTheOwnersWrite(HANDLE h) {
    ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
    std::vector<unsigned char> back(2 << 20);
    ASSERT_EQ(ReadAt(h, 0, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
    EXPECT_EQ(std::vector<unsigned char>(back.begin(), back.begin() + (1 << 20)),
              std::vector<unsigned char>(1 << 20, 0x5a));
    EXPECT_EQ(std::vector<unsigned char>(back.begin() + (1 << 20), back.end()),
              std::vector<unsigned char>(1 << 20, 0));
  }

  std::string pattern_file_;
};

TEST_F(AttachSecurityTest, TcpExportAdmitsOnlyTheHolderOfItsKey) {
  SetEnv("VIRTDISK_ATTACH_TRANSPORT", "tcp");
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  ASSERT_EQ(uri.rfind("nbds://virtdisk@127.0.0.1:", 0), 0u) << uri;
  const std::filesystem::path key = KeyFileOf(uri);
  ASSERT_FALSE(key.empty()) << uri;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0) << key;
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the key file is the owner's only";
  ASSERT_EQ(::stat(key.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::string line;
  std::getline(std::ifstream(key), line);
  EXPECT_EQ(line.size(), std::string("virtdisk:").size() + 64) << "psktool format, 256 bits";
  EXPECT_EQ(line.rfind("virtdisk:", 0), 0u);

  ExpectOtherUserShutOut(uri);
  ExpectOwnerServed(uri);
  ExpectOtherUserShutOut(uri);
  if (Have("qemu-io")) {
    // qemu's client: a tls-creds-psk object over the key's directory (it reads keys.psk there),
    // as docs/attach-security.md gives the command.
    std::string out;
    const std::string qemu =
        "qemu-io --object tls-creds-psk,id=tls0,endpoint=client,username=virtdisk,dir=" +
        key.parent_path().string() +
        " --image-opts driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=" +
        std::to_string(PortOf(uri)) + ",export=disk.vhdx,tls-creds=tls0 -c 'read -P 0x5a 0 1M'";
    EXPECT_EQ(RunTool(qemu, &out), 0) << out;
    EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;
    EXPECT_NE(RunTool(AsNobody(qemu), &out), 0) << "nobody cannot read the key: " << out;
  }
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  EXPECT_FALSE(std::filesystem::exists(key.parent_path())) << "the key goes with the attachment";
  ExpectImageHoldsOnlyTheOwnersWrite(h);
  CloseHandle(h);
}

TEST_F(AttachSecurityTest, UnixSocketExportAdmitsOnlyTheOwner) {
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  ASSERT_EQ(uri.rfind("nbd+unix:///", 0), 0u) << uri;
  ExpectOtherUserShutOut(uri);
  ExpectOwnerServed(uri);
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  ExpectImageHoldsOnlyTheOwnersWrite(h);
  CloseHandle(h);
}

TEST_F(AttachSecurityTest, TcpExportOfADescriptorGrantingEveryoneAdmitsOtherUsers) {
  SetEnv("VIRTDISK_ATTACH_TRANSPORT", "tcp");
  HANDLE h = Open();
  auto sd = EveryoneDescriptor();
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE, sd.data()), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  ASSERT_EQ(uri.rfind("nbd://127.0.0.1:", 0), 0u) << uri;
  std::string out;
  EXPECT_EQ(RunTool(AsNobody("nbdinfo --size '" + uri + "'"), &out), 0) << out;
  CloseHandle(h);
}
#endif

TEST_F(AttachNbdTest, IdleTcpClientsDoNotKeepTheOwnerOut) {
#ifndef _WIN32
  if (!Have("nbdcopy")) GTEST_SKIP() << "nbdcopy not installed";
  SetEnv("VIRTDISK_ATTACH_TRANSPORT", "tcp");
#endif
  HANDLE h = Open();
  ASSERT_EQ(AttachRaw(h, false), ERROR_SUCCESS);
  const std::vector<unsigned char> pattern(64 << 10, 0xa7);
  ASSERT_EQ(WriteAt(h, 3 << 20, pattern.data(), static_cast<DWORD>(pattern.size())),
            ERROR_SUCCESS);
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  ASSERT_EQ(Attach(h, ATTACH_VIRTUAL_DISK_FLAG_NONE), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  ASSERT_NE(PortOf(uri), 0u) << uri;
  IdleClients idle(PortOf(uri), 80);
  EXPECT_EQ(idle.connected(), 80);
  // The owner's client connects after all 80 and reads what the handle wrote. The bound is only
  // a guard against hanging; what is asserted is that it gets in while they stay connected.
  const auto start = std::chrono::steady_clock::now();
#ifdef _WIN32
  NbdConnection nbd(uri);
  ASSERT_TRUE(nbd.ok()) << uri;
  std::vector<unsigned char> back(pattern.size());
  ASSERT_EQ(nbd.Read(3 << 20, back.data(), static_cast<std::uint32_t>(back.size())), 0u);
  EXPECT_EQ(back, pattern);
#else
  std::string out;
  const std::string copy = (dir_ / "copy.raw").string();
  ASSERT_EQ(RunTool("timeout 60 nbdcopy '" + uri + "' " + copy, &out), 0) << out;
  std::ifstream in(copy, std::ios::binary);
  in.seekg(3 << 20);
  std::vector<unsigned char> back(pattern.size());
  in.read(reinterpret_cast<char*>(back.data()), static_cast<std::streamsize>(back.size()));
  EXPECT_EQ(back, pattern);
#endif
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  CloseHandle(h);
}

#ifdef _WIN32
// Under Wine the other local user is a Linux process of another uid (nobody, through runuser on
// the host shell; the tests run as root): it reaches the export's port but not its name.
class AttachNbdSecurityTest : public AttachNbdTest,
                              public ::testing::WithParamInterface<ATTACH_VIRTUAL_DISK_FLAG> {};

// For an attachment in this process and for a PERMANENT_LIFETIME one, served by
// virtdisk-attach-host.exe after the handle has gone.
TEST_P(AttachNbdSecurityTest, AnotherLocalUserCannotFindOrUseTheTcpExport) {
  if (!vdisk_unit::HostShellAvailable() || vdisk_unit::HostTool("runuser").empty() ||
      vdisk_unit::HostTool("nbdinfo").empty() || vdisk_unit::HostTool("nbdcopy").empty()) {
    VDISK_ORACLE_MISSING("needs the host shell with runuser, nbdinfo and nbdcopy");
  }
  std::string out;
  if (vdisk_unit::HostShell("test \"$(id -u)\" = 0", &out) != 0) GTEST_SKIP() << "not root";
  const bool permanent = GetParam() == ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME;
  HANDLE h = Open();
  ASSERT_EQ(Attach(h, GetParam()), ERROR_SUCCESS);
  const std::string uri = PhysicalPath(h);
  // A permanent attachment is detached however the test ends: its host must not outlive it.
  struct AtExit {
    std::function<void()> run;
    ~AtExit() {
      if (run) run();
    }
  } detach;
  if (permanent) {
    ASSERT_TRUE(CloseHandle(h)) << "the host serves the disk from here on";
    detach.run = [this] {
      HANDLE other = Open();
      EXPECT_EQ(DetachVirtualDisk(other, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
                static_cast<DWORD>(ERROR_SUCCESS));
      CloseHandle(other);
    };
  }
  const std::string name = uri.substr(uri.rfind('/') + 1);
  ASSERT_EQ(name.size(), 64u) << "a 256-bit hex export name: " << uri;
  // The attach directory is a Linux directory made with the umask under Wine: private, as
  // docs/attach-security.md asks of a Wine prefix.
  ASSERT_EQ(vdisk_unit::HostShell("chmod 0700 " + vdisk_unit::ShellQuote(dir_.path() / "run"), &out),
            0) << out;
  const std::string endpoint = "nbd://127.0.0.1:" + std::to_string(PortOf(uri));
  const std::string nobody = "runuser -u nobody -- ";
  ASSERT_EQ(vdisk_unit::HostShell("head -c 1048576 /dev/zero | tr '\\000' '\\132' > /tmp/vdisk-"
                                  "nobody-pattern.raw && chmod 0644 /tmp/vdisk-nobody-pattern.raw",
                                  &out), 0) << out;
  vdisk_unit::HostShell(nobody + "nbdinfo --list '" + endpoint + "'", &out);
  EXPECT_EQ(out.find(name), std::string::npos) << "NBD_OPT_LIST revealed the name: " << out;
  EXPECT_EQ(out.find("disk.vhdx"), std::string::npos) << out;
  for (const std::string& target : {endpoint, endpoint + "/", endpoint + "/disk.vhdx"}) {
    EXPECT_NE(vdisk_unit::HostShell(nobody + "nbdinfo --size '" + target + "'", &out), 0)
        << target << ": " << out;
    EXPECT_NE(vdisk_unit::HostShell(nobody + "nbdcopy /tmp/vdisk-nobody-pattern.raw '" + target +
                                        "'", &out), 0)
        << target << ": " << out;
  }
  EXPECT_NE(vdisk_unit::HostShell(nobody + "cat " + vdisk_unit::ShellQuote(dir_.path() / "run") +
                                      "/*.attach", &out), 0)
      << "the record (and the name in it) is the owner's only: " << out;
  // The owner: a Linux client with the URI as returned, and this process's own client.
  ASSERT_EQ(vdisk_unit::HostShell("nbdcopy /tmp/vdisk-nobody-pattern.raw '" + uri + "'", &out), 0)
      << out;
  vdisk_unit::HostShell("rm -f /tmp/vdisk-nobody-pattern.raw");
  {
    NbdConnection nbd(uri);
    ASSERT_TRUE(nbd.ok()) << uri;
    std::vector<unsigned char> back(1 << 20);
    ASSERT_EQ(nbd.Read(0, back.data(), static_cast<std::uint32_t>(back.size())), 0u);
    EXPECT_EQ(back, std::vector<unsigned char>(back.size(), 0x5a)) << "only the owner's write";
    std::vector<unsigned char> after(1 << 20);
    ASSERT_EQ(nbd.Read(1 << 20, after.data(), static_cast<std::uint32_t>(after.size())), 0u);
    EXPECT_EQ(after, std::vector<unsigned char>(after.size(), 0));
  }
  if (!permanent) CloseHandle(h);
}

INSTANTIATE_TEST_SUITE_P(InProcessAndPermanent, AttachNbdSecurityTest,
                         ::testing::Values(ATTACH_VIRTUAL_DISK_FLAG_NONE,
                                           ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME));
#endif

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
