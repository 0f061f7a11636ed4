// TLS with a pre-shared key (RFC 4279; TLS 1.3 PSK) for the NBD server's "TLS required" mode
// (nbd_server.h; the NBD protocol document, "TLS support"), over GnuTLS.
//
// This is how an export on TCP admits only its owner (docs/attach-security.md): the key is 256
// random bits, known to the server and kept in a file only the owner reads, in the psktool format
// that libnbd (tls-psk-file), qemu (tls-creds-psk) and nbdkit read: "<username>:<hex key>".
// A client that does not hold the key cannot finish the handshake, and before the handshake the
// server answers nothing but NBD_OPT_STARTTLS.
//
// Built only with GnuTLS (Linux); elsewhere TlsPskServer::Create fails with kNotSupported and
// callers use an unguessable export name instead (nbd_attachment.cpp).
//
// Thread safety: a TlsPskServer is immutable after Create and shared by every connection; a
// ByteStream belongs to its connection's thread (Shutdown of its socket may come from any thread).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"
#include "platform/socket.h"

namespace vdisk::attach {

// What a connection's protocol reads and writes: the socket itself, or TLS over it.
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  virtual Status SendAll(std::span<const std::byte> data) = 0;
  // Exactly out.size() bytes; the end of the stream first is an error.
  virtual Status ReceiveAll(std::span<std::byte> out) = 0;
};

// The plain socket.
class SocketStream final : public ByteStream {
 public:
  explicit SocketStream(platform::Socket& socket) : socket_(socket) {}
  Status SendAll(std::span<const std::byte> data) override { return socket_.SendAll(data); }
  Status ReceiveAll(std::span<std::byte> out) override { return socket_.ReceiveAll(out); }

 private:
  platform::Socket& socket_;
};

struct TlsPsk {
  std::string username;  // the PSK identity a client must present
  std::string hex_key;   // the key, as hex digits (what the psktool file holds)
};

// The psktool file line for `psk`: "<username>:<hex key>\n".
std::string PskFileLine(const TlsPsk& psk);

// Whether this build has TLS (GnuTLS).
bool TlsSupported();

class TlsPskServer {
 public:
  // kNotSupported without GnuTLS; kInvalidParameter for an empty username or a key that is not
  // an even number of hex digits.
  static Result<std::unique_ptr<TlsPskServer>> Create(const TlsPsk& psk);
  virtual ~TlsPskServer() = default;
  // The server side of the TLS handshake on `socket` (which must outlive the stream). Fails
  // (kAccessDenied) when the client does not present this key under this username, or breaks
  // off; the caller then drops the connection.
  virtual Result<std::unique_ptr<ByteStream>> Handshake(platform::Socket& socket) const = 0;
};

}  // namespace vdisk::attach
