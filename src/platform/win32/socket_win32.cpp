// Sockets over Winsock 2: TCP, and AF_UNIX where Windows has it (Windows 10 1803 and later).
// The listener waits for FD_ACCEPT on an event alongside a stop event, so Shutdown from another
// thread never closes a socket a blocked thread is using (and re-asks accept() now and then, for
// a notification Wine can lose: Win32Listener::Accept). A blocked receive is woken by
// cancelling the socket's pending I/O (CancelIoEx), as shutdown(SD_RECEIVE) alone does not.
// The permission mode of a Unix socket file has no meaning here and is ignored.
// Order matters: winsock2.h before everything else, afunix.h after it.
#include <winsock2.h>

#include <ws2tcpip.h>

#include <afunix.h>

#include <windows.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <mutex>
#include <random>
#include <sstream>
#include <string>

#include "platform/file.h"
#include "platform/socket.h"
#include "platform/socket_common.h"

namespace vdisk::platform {
namespace {

SOCKET Native(NativeSocket s) { return static_cast<SOCKET>(s); }

Status SocketError(int os_error, std::string_view operation, std::string_view where) {
  Code code = Code::kIoError;
  switch (os_error) {
    case WSAEACCES:
      code = Code::kAccessDenied;
      break;
    case WSAEADDRINUSE:
      code = Code::kFileExists;
      break;
    case WSAENOBUFS:
      code = Code::kNotEnoughMemory;
      break;
    case WSAEINVAL:
      code = Code::kInvalidParameter;
      break;
    default:
      break;
  }
  return Status(code,
                std::string(where) + ": " + std::string(operation) + " failed (Winsock error " +
                    std::to_string(os_error) + ")",
                os_error);
}

// Winsock is started once per process and never stopped: sockets may outlive static
// destructors of other translation units.
Status EnsureWinsock() {
  static const int result = [] {
    WSADATA data;
    return WSAStartup(MAKEWORD(2, 2), &data);
  }();
  if (result != 0) return SocketError(result, "WSAStartup", "winsock");
  return Status::Ok();
}

void SetNoDelay(SOCKET s) {
  const BOOL one = TRUE;
  (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&one), sizeof one);
}

Result<sockaddr_un> UnixAddress(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string narrow = path.string();
  if (narrow.empty() || narrow.size() >= sizeof address.sun_path) {
    return Status(Code::kInvalidParameter, narrow + ": a Unix socket path must be 1 to " +
                                               std::to_string(sizeof address.sun_path - 1) +
                                               " bytes long");
  }
  std::copy(narrow.begin(), narrow.end(), address.sun_path);
  return address;
}

class Win32Listener final : public ListenerCommon {
 public:
  Win32Listener(SOCKET s, HANDLE accept_event, HANDLE stop_event, bool tcp, std::uint16_t port,
                std::filesystem::path unix_path)
      : ListenerCommon(tcp, port, std::move(unix_path)),
        socket_(s),
        accept_event_(accept_event),
        stop_event_(stop_event) {}

  ~Win32Listener() override {
    closesocket(socket_);
    CloseHandle(accept_event_);
    CloseHandle(stop_event_);
    if (!unix_path_.empty()) DeleteFileW(unix_path_.c_str());
  }
  Win32Listener(const Win32Listener&) = delete;
  Win32Listener& operator=(const Win32Listener&) = delete;

  Result<Socket> Accept() override {
    constexpr DWORD kAcceptRecheckMs = 250;
    for (;;) {
      if (shut_down()) return Aborted();
      const SOCKET client = accept(socket_, nullptr, nullptr);
      if (client != INVALID_SOCKET) {
        // An accepted socket inherits the listener's event selection and non-blocking mode.
        WSAEventSelect(client, nullptr, 0);
        u_long blocking = 0;
        ioctlsocket(client, FIONBIO, &blocking);
        if (tcp_) SetNoDelay(client);
        return Socket(static_cast<NativeSocket>(client));
      }
      const int err = WSAGetLastError();
      if (err == WSAECONNRESET || err == WSAEINTR) continue;
      if (err != WSAEWOULDBLOCK) return SocketError(err, "accept", Where());
      // The wait is bounded: after kAcceptRecheckMs without FD_ACCEPT the loop asks accept()
      // again. Under Wine (8.0, AF_UNIX) a connection that arrives right after the previous
      // accept() can stay pending with the event never set (NbdServerTest hung in its next
      // client's greeting in 2 of 15 runs of the suite), which would leave that client waiting
      // forever; on Windows the event comes first and the bound is never reached.
      HANDLE handles[2] = {accept_event_, stop_event_};
      const DWORD which = WaitForMultipleObjects(2, handles, FALSE, kAcceptRecheckMs);
      if (which == WAIT_TIMEOUT) continue;
      if (which != WAIT_OBJECT_0) return Aborted();
      WSANETWORKEVENTS events;
      WSAEnumNetworkEvents(socket_, accept_event_, &events);  // resets the event
    }
  }

  void Shutdown() noexcept override {
    MarkShutDown();
    SetEvent(stop_event_);
  }

 private:
  const SOCKET socket_;
  const HANDLE accept_event_;
  const HANDLE stop_event_;
};

Result<std::unique_ptr<Listener>> MakeListener(SOCKET s, bool tcp, std::uint16_t port,
                                               std::filesystem::path unix_path,
                                               std::string_view where) {
  HANDLE accept_event = WSACreateEvent();
  HANDLE stop_event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  if (accept_event == WSA_INVALID_EVENT || stop_event == nullptr ||
      WSAEventSelect(s, accept_event, FD_ACCEPT) != 0) {
    const int err = WSAGetLastError();
    if (accept_event != WSA_INVALID_EVENT) CloseHandle(accept_event);
    if (stop_event != nullptr) CloseHandle(stop_event);
    closesocket(s);
    if (!unix_path.empty()) DeleteFileW(unix_path.c_str());
    return SocketError(err, "WSAEventSelect", where);
  }
  return std::unique_ptr<Listener>(std::make_unique<Win32Listener>(s, accept_event, stop_event, tcp,
                                                                   port, std::move(unix_path)));
}

std::uint16_t BoundPort(SOCKET s, std::uint16_t fallback) {
  sockaddr_storage bound{};
  int length = sizeof bound;
  if (getsockname(s, reinterpret_cast<sockaddr*>(&bound), &length) != 0) return fallback;
  if (bound.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  }
  if (bound.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
  }
  return fallback;
}

}  // namespace

Status Socket::SendAll(std::span<const std::byte> data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const int want = static_cast<int>(std::min<std::size_t>(data.size() - done, INT_MAX));
    const int n = send(Native(native_), reinterpret_cast<const char*>(data.data() + done), want, 0);
    if (n == SOCKET_ERROR) return SocketError(WSAGetLastError(), "send", "socket");
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

Result<std::size_t> Socket::ReceiveSome(std::span<std::byte> out) {
  if (out.empty()) return std::size_t{0};
  const int want = static_cast<int>(std::min<std::size_t>(out.size(), INT_MAX));
  const int n = recv(Native(native_), reinterpret_cast<char*>(out.data()), want, 0);
  if (n == SOCKET_ERROR) {
    const int err = WSAGetLastError();
    // A receive cancelled by ShutdownReceive, or a receive after it, ends the stream.
    if (err == WSAESHUTDOWN || err == WSAEINTR || err == WSA_OPERATION_ABORTED) {
      return std::size_t{0};
    }
    return SocketError(err, "recv", "socket");
  }
  return static_cast<std::size_t>(n);
}

void Socket::ShutdownReceive() noexcept {
  if (!valid()) return;
  shutdown(Native(native_), SD_RECEIVE);
  CancelIoEx(reinterpret_cast<HANDLE>(native_), nullptr);
}

void Socket::Shutdown() noexcept {
  if (!valid()) return;
  shutdown(Native(native_), SD_BOTH);
  CancelIoEx(reinterpret_cast<HANDLE>(native_), nullptr);
}

void Socket::Close() noexcept {
  if (valid()) {
    closesocket(Native(native_));
    native_ = kInvalidNativeSocket;
  }
}

Status Socket::SetReceiveTimeout(std::uint32_t milliseconds) {
  const DWORD timeout = milliseconds;
  if (setsockopt(Native(native_), SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char*>(&timeout),
                 sizeof timeout) != 0) {
    return SocketError(WSAGetLastError(), "setsockopt(SO_RCVTIMEO)", "socket");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Listener>> ListenUnix(const std::filesystem::path& path,
                                             std::uint32_t mode) {
  (void)mode;
  VDISK_RETURN_IF_ERROR(EnsureWinsock());
  VDISK_ASSIGN_OR_RETURN(const sockaddr_un address, UnixAddress(path));
  if (GetFileAttributesW(path.c_str()) != INVALID_FILE_ATTRIBUTES) {
    // A stale socket file (nobody accepts on it) is replaced; anything else is kept.
    auto probe = ConnectUnix(path);
    if (probe.ok()) {
      return Status(Code::kFileExists, path.string() + ": a server is listening there");
    }
    if (!DeleteFileW(path.c_str())) {
      return Status(Code::kFileExists, path.string() + ": exists and cannot be replaced");
    }
  }
  const SOCKET s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s == INVALID_SOCKET) return SocketError(WSAGetLastError(), "socket", path.string());
  if (bind(s, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      listen(s, SOMAXCONN) != 0) {
    const int err = WSAGetLastError();
    closesocket(s);
    return SocketError(err, "bind/listen", path.string());
  }
  return MakeListener(s, false, 0, path, path.string());
}

Result<std::unique_ptr<Listener>> ListenTcp(std::string_view host, std::uint16_t port) {
  VDISK_RETURN_IF_ERROR(EnsureWinsock());
  const std::string where = std::string(host) + ":" + std::to_string(port);
  VDISK_ASSIGN_OR_RETURN(const AddressList found, ResolveTcp(host, port, true, where));
  Status last(Code::kInvalidParameter, where + ": no address to listen on");
  for (const addrinfo* ai = found.get(); ai != nullptr; ai = ai->ai_next) {
    const SOCKET s = socket(ai->ai_family, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET) {
      last = SocketError(WSAGetLastError(), "socket", where);
      continue;
    }
    // Windows' SO_REUSEADDR would let another process steal the port; take it exclusively.
    const BOOL one = TRUE;
    (void)setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, reinterpret_cast<const char*>(&one),
                     sizeof one);
    if (bind(s, ai->ai_addr, static_cast<int>(ai->ai_addrlen)) != 0 || listen(s, SOMAXCONN) != 0) {
      last = SocketError(WSAGetLastError(), "bind/listen", where);
      closesocket(s);
      continue;
    }
    const std::uint16_t bound_port = BoundPort(s, port);
    return MakeListener(s, true, bound_port, {}, where);
  }
  return last;
}

Result<Socket> ConnectUnix(const std::filesystem::path& path) {
  VDISK_RETURN_IF_ERROR(EnsureWinsock());
  VDISK_ASSIGN_OR_RETURN(const sockaddr_un address, UnixAddress(path));
  const SOCKET s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s == INVALID_SOCKET) return SocketError(WSAGetLastError(), "socket", path.string());
  Socket socket(static_cast<NativeSocket>(s));
  if (connect(s, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return SocketError(WSAGetLastError(), "connect", path.string());
  }
  return socket;
}

Result<Socket> ConnectTcp(std::string_view host, std::uint16_t port) {
  VDISK_RETURN_IF_ERROR(EnsureWinsock());
  const std::string where = std::string(host) + ":" + std::to_string(port);
  VDISK_ASSIGN_OR_RETURN(const AddressList found, ResolveTcp(host, port, false, where));
  Status last(Code::kInvalidParameter, where + ": no address to connect to");
  for (const addrinfo* ai = found.get(); ai != nullptr; ai = ai->ai_next) {
    const SOCKET s = socket(ai->ai_family, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET) {
      last = SocketError(WSAGetLastError(), "socket", where);
      continue;
    }
    Socket socket(static_cast<NativeSocket>(s));
    if (connect(s, ai->ai_addr, static_cast<int>(ai->ai_addrlen)) != 0) {
      last = SocketError(WSAGetLastError(), "connect", where);
      continue;
    }
    SetNoDelay(s);
    return socket;
  }
  return last;
}

// --- private endpoints: TCP on 127.0.0.1 behind a secret kept in a file (see socket.h) ---------

namespace {

constexpr std::uint32_t kSecretWait = 5000;  // ms a client has to send the secret
constexpr std::size_t kSecretBytes = 32;

std::string NewSecret() {
  std::random_device random;  // rand_s: the system's cryptographic generator
  static constexpr char kHex[] = "0123456789abcdef";
  std::string secret;
  for (std::size_t i = 0; i < kSecretBytes; ++i) {
    const unsigned byte = random() & 0xFF;
    secret.push_back(kHex[byte >> 4]);
    secret.push_back(kHex[byte & 0xF]);
  }
  return secret;
}

// Reads one line of at most `limit` bytes (without its newline); "" on anything else.
std::string ReceiveLine(Socket& socket, std::size_t limit) {
  std::string line;
  std::byte c{};
  while (line.size() <= limit) {
    auto n = socket.ReceiveSome(std::span(&c, 1));
    if (!n.ok() || *n == 0) return "";
    if (static_cast<char>(c) == '\n') return line;
    line.push_back(static_cast<char>(c));
  }
  return "";
}

// Compares without stopping at the first difference, so timing tells nothing of the secret.
bool SameSecret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (std::size_t i = 0; i < a.size(); ++i) difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  return difference == 0;
}

class PrivateListener final : public Listener {
 public:
  PrivateListener(std::unique_ptr<Listener> tcp, std::string secret, std::filesystem::path file)
      : tcp_(std::move(tcp)), secret_(std::move(secret)), file_(std::move(file)) {}
  ~PrivateListener() override { DeleteFileW(file_.c_str()); }

  Result<Socket> Accept() override {
    for (;;) {
      VDISK_ASSIGN_OR_RETURN(Socket client, tcp_->Accept());
      if (!client.SetReceiveTimeout(kSecretWait).ok()) continue;
      if (!SameSecret(ReceiveLine(client, secret_.size()), secret_)) continue;  // closes it
      if (!client.SetReceiveTimeout(0).ok()) continue;
      return client;
    }
  }
  void Shutdown() noexcept override { tcp_->Shutdown(); }
  std::uint16_t port() const override { return 0; }

 private:
  std::unique_ptr<Listener> tcp_;
  const std::string secret_;
  const std::filesystem::path file_;
};

}  // namespace

Result<std::unique_ptr<Listener>> ListenPrivate(const std::filesystem::path& path) {
  VDISK_ASSIGN_OR_RETURN(auto tcp, ListenTcp("127.0.0.1", 0));
  const std::string secret = NewSecret();
  const std::string text =
      "tcp 127.0.0.1 " + std::to_string(tcp->port()) + " " + secret + "\n";
  // Written under a temporary name and renamed, so that a reader never sees half a file.
  const std::filesystem::path temporary = path.wstring() + L".tmp";
  HANDLE file = CreateFileW(temporary.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_ALWAYS,
                            FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file == INVALID_HANDLE_VALUE) {
    return OsError(static_cast<int>(GetLastError()), "create", temporary);
  }
  DWORD written = 0;
  const BOOL ok = WriteFile(file, text.data(), static_cast<DWORD>(text.size()), &written, nullptr);
  const DWORD write_error = GetLastError();
  CloseHandle(file);
  if (!ok || written != text.size()) {
    DeleteFileW(temporary.c_str());
    return OsError(static_cast<int>(write_error), "write", temporary);
  }
  if (!MoveFileExW(temporary.c_str(), path.c_str(), MOVEFILE_REPLACE_EXISTING)) {
    const DWORD error = GetLastError();
    DeleteFileW(temporary.c_str());
    return OsError(static_cast<int>(error), "rename to", path);
  }
  return std::unique_ptr<Listener>(
      std::make_unique<PrivateListener>(std::move(tcp), secret, path));
}

Result<Socket> ConnectPrivate(const std::filesystem::path& path) {
  HANDLE file = CreateFileW(path.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE,
                            nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file == INVALID_HANDLE_VALUE) return OsError(static_cast<int>(GetLastError()), "open", path);
  char buffer[256] = {};
  DWORD n = 0;
  const BOOL ok = ReadFile(file, buffer, sizeof buffer - 1, &n, nullptr);
  CloseHandle(file);
  if (!ok) return OsError(static_cast<int>(GetLastError()), "read", path);
  std::istringstream in(std::string(buffer, n));
  std::string kind, host, secret;
  unsigned port = 0;
  in >> kind >> host >> port >> secret;
  if (kind != "tcp" || port == 0 || port > 65535 || secret.size() != 2 * kSecretBytes) {
    return Status(Code::kFileCorrupt, path.string() + ": not a private endpoint file");
  }
  VDISK_ASSIGN_OR_RETURN(Socket socket, ConnectTcp(host, static_cast<std::uint16_t>(port)));
  const std::string line = secret + "\n";
  VDISK_RETURN_IF_ERROR(socket.SendAll(std::as_bytes(std::span(line.data(), line.size()))));
  return socket;
}

}  // namespace vdisk::platform
