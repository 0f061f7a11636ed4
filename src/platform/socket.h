// Stream sockets: what the NBD server (src/attach/nbd_server.h) listens and talks on.
//
// Unix-domain sockets (the default transport of an attached disk) and TCP, behind one small
// interface so that socket headers appear only in src/platform/{posix,win32}/socket_*.cpp.
// Sends never raise SIGPIPE (MSG_NOSIGNAL): a vanished peer is an error Status, not a signal.
//
// Thread safety: one thread may send while another receives on the same Socket, and
// ShutdownReceive/Shutdown may be called from any thread at any time (that is how a thread
// blocked in a receive is woken). Destroying a Socket or Listener must not race with any other
// call on it. Listener::Shutdown may be called from any thread; it wakes a blocked Accept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace vdisk::platform {

#ifdef _WIN32
using NativeSocket = std::uintptr_t;  // SOCKET
inline constexpr NativeSocket kInvalidNativeSocket = ~NativeSocket{0};
#else
using NativeSocket = int;
inline constexpr NativeSocket kInvalidNativeSocket = -1;
#endif

// A connected stream socket; closes it at destruction.
class Socket {
 public:
  Socket() noexcept = default;
  explicit Socket(NativeSocket native) noexcept : native_(native) {}
  ~Socket();
  Socket(Socket&& other) noexcept : native_(other.native_) { other.native_ = kInvalidNativeSocket; }
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  bool valid() const noexcept { return native_ != kInvalidNativeSocket; }
  // The OS socket, for a layer that talks on it directly (TLS: src/attach/tls_psk.cpp).
  NativeSocket native() const noexcept { return native_; }

  // Sends all of `data`. Fails with kIoError (and the OS error) if the peer is gone.
  Status SendAll(std::span<const std::byte> data);
  // Receives exactly out.size() bytes. A peer that closes first: kIoError "connection closed".
  Status ReceiveAll(std::span<std::byte> out);
  // Receives what is there, at most out.size() bytes; 0 means the peer closed its side.
  Result<std::size_t> ReceiveSome(std::span<std::byte> out);

  // Ends the receiving side: a receive blocked now, or started later, returns end-of-stream once
  // the data already queued is read. Sending still works.
  void ShutdownReceive() noexcept;
  // Ends both sides: the peer sees end-of-stream, and blocked sends and receives here fail.
  void Shutdown() noexcept;
  void Close() noexcept;
  // Makes a receive that waits longer than `milliseconds` fail (0: wait for ever).
  Status SetReceiveTimeout(std::uint32_t milliseconds);

 private:
  NativeSocket native_ = kInvalidNativeSocket;
};

// A listening socket.
class Listener {
 public:
  virtual ~Listener() = default;
  // Blocks until a client connects. Fails with kOperationAborted once Shutdown has been called,
  // other errors (e.g. out of file descriptors) with the OS error.
  virtual Result<Socket> Accept() = 0;
  // Makes a blocked Accept (and every later one) return kOperationAborted.
  virtual void Shutdown() noexcept = 0;
  // The bound TCP port; 0 for a Unix socket.
  virtual std::uint16_t port() const = 0;
};

// Listens on a Unix-domain socket at `path` whose file gets permission bits `mode` (POSIX; the
// mode is applied before the socket accepts connections, so no client ever sees a wider one).
// A stale socket file nobody listens on is replaced; any other existing file: kFileExists.
// The file is removed when the Listener is destroyed (if it is still the one created here).
// REQUIRES: the path fits in sockaddr_un (about 107 bytes), otherwise kInvalidParameter.
Result<std::unique_ptr<Listener>> ListenUnix(const std::filesystem::path& path, std::uint32_t mode);
// Listens on TCP `host`:`port` (a numeric address or a name; port 0 picks a free one).
Result<std::unique_ptr<Listener>> ListenTcp(std::string_view host, std::uint16_t port);

Result<Socket> ConnectUnix(const std::filesystem::path& path);

// A private endpoint: one that only processes of this user reach, named by a file at `path`
// (in a directory of the user's). What an attach host's control channel listens on.
//  - POSIX: a Unix socket with mode 0600 at `path`.
//  - Windows: Wine has no AF_UNIX, so a TCP listener on 127.0.0.1 and, at `path`, a file with its
//    port and a random secret ("tcp 127.0.0.1 <port> <secret>"); the file's ACL is its
//    directory's. ConnectPrivate sends the secret as its first line, and Accept returns only
//    connections that sent it within a few seconds (others are closed).
// The file is removed when the Listener is destroyed.
Result<std::unique_ptr<Listener>> ListenPrivate(const std::filesystem::path& path);
Result<Socket> ConnectPrivate(const std::filesystem::path& path);
Result<Socket> ConnectTcp(std::string_view host, std::uint16_t port);

}  // namespace vdisk::platform
