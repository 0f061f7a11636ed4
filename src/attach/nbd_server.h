// NbdServer: serves one ExportTarget over the NBD protocol, on a Unix socket or TCP.
//
// This is how an attached disk is surfaced (docs/attach.md): standard clients
// (qemu-io, qemu-img, nbdinfo, nbdcopy, the kernel's nbd-client) connect to uri().
//
// Protocol (doc/proto.md of the NBD project): fixed newstyle handshake only, with
// NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES; options EXPORT_NAME, ABORT, LIST, INFO, GO,
// STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation); anything else is
// answered NBD_REP_ERR_UNSUP and the negotiation goes on. With tls_psk, NBD_OPT_STARTTLS and
// the "TLS required" mode (see NbdServerOptions). Commands READ (structured replies
// once negotiated), WRITE (FUA flushes), FLUSH, TRIM, CACHE (accepted, no effect),
// WRITE_ZEROES (NO_HOLE) and BLOCK_STATUS; DISC ends the connection. Requests longer than
// 32 MiB are refused with EINVAL (an oversized write's payload is read and dropped, never
// buffered); requests outside the export get EINVAL (ENOSPC for writes); writes to a read-only
// export EPERM. A client that breaks the framing (bad magic, unknown client flags, an export
// name that does not exist after NBD_OPT_EXPORT_NAME) is disconnected. The export has one name;
// the empty (default) name selects it too.
//
// Each connection is served by its own thread, one request at a time. A client must reach the
// transmission phase within handshake_timeout of connecting, or it is dropped; at most
// max_negotiating clients negotiate at once (a newcomer pushes out the longest-negotiating one)
// and at most max_connections are in the transmission phase (NBD_OPT_GO beyond it is answered
// NBD_REP_ERR_POLICY), so silent or half-open clients cannot lock the owner out. Memory per
// connection is bounded (at most 1 MiB of data buffer), whatever a client sends.
//
// Thread safety: all methods may be called from any thread. Stop (and so the destructor) must
// not be called from inside an ExportTarget method that this server is running.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "attach/export_target.h"
#include "attach/tls_psk.h"
#include "base/status.h"
#include "platform/socket.h"

namespace vdisk::attach {

struct NbdServerOptions {
  enum class Transport { kUnix, kTcp };
  Transport transport = Transport::kUnix;
  // kUnix: where the socket file is created, with permission bits `socket_mode` (POSIX).
  std::filesystem::path socket_path;
  std::uint32_t socket_mode = 0600;
  // kTcp: the address to listen on; port 0 picks a free one (see NbdServer::port()).
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  // The export's name (NBD_OPT_GO / NBD_OPT_EXPORT_NAME / NBD_OPT_LIST) and description.
  std::string export_name;
  std::string description;
  // Refuse writes even if the target takes them.
  bool read_only = false;
  // Who gets the export, beyond reaching the socket (docs/attach-security.md):
  //  - tls_psk: TLS is required, with this pre-shared key (tls_psk.h). Until NBD_OPT_STARTTLS
  //    every option is answered NBD_REP_ERR_TLS_REQD (NBD_OPT_EXPORT_NAME ends the connection);
  //    a client without the key fails the TLS handshake and is dropped. Start fails with
  //    kNotSupported in a build without TLS.
  //  - hidden_name: the export is reached by its exact name only: NBD_OPT_LIST lists nothing and
  //    the default (empty) name selects nothing. With an unguessable name, the name is the key.
  std::optional<TlsPsk> tls_psk;
  std::filesystem::path tls_psk_file;  // where clients find the key (named in uri())
  bool hidden_name = false;
  // A client that has not entered the transmission phase this long after it connected (TLS
  // handshake and option haggling included) is dropped.
  std::chrono::milliseconds handshake_timeout{5000};
  // Clients in the transmission phase; one more is refused when it asks to enter it.
  std::size_t max_connections = 64;
  // Clients still negotiating; a newcomer beyond it pushes out the one negotiating longest.
  std::size_t max_negotiating = 16;
};

class NbdServer {
 private:
  struct Passkey {
    explicit Passkey() = default;
  };

 public:
  // Listens and starts accepting clients on a background thread.
  // Fails with kInvalidParameter for an empty socket path, an export name or description longer
  // than 4096 bytes, or max_connections == 0; with the socket layer's error if it cannot listen.
  // REQUIRES: target != nullptr.
  static Result<std::unique_ptr<NbdServer>> Start(std::shared_ptr<ExportTarget> target,
                                                  NbdServerOptions options);
  // For Start only (Passkey is private).
  NbdServer(Passkey, std::shared_ptr<ExportTarget> target, NbdServerOptions options,
            std::unique_ptr<TlsPskServer> tls, std::unique_ptr<platform::Listener> listener);
  // Stop().
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // nbd+unix:///<export>?socket=<path> or nbd://<host>:<port>/<export>, percent-encoded; with
  // TLS nbds://<username>@<host>:<port>/<export>?tls-psk-file=<path> (nbd_connect_uri(3)).
  std::string uri() const;
  // The TCP port listened on (the chosen one if 0 was asked); 0 for a Unix socket.
  std::uint16_t port() const { return port_; }
  const NbdServerOptions& options() const { return options_; }
  // Connections being served now, and those of them still negotiating.
  std::size_t connection_count() const;
  std::size_t negotiating_count() const;

  // Stops accepting, lets each connection finish the request it is serving (requests that
  // arrive after this get ESHUTDOWN), disconnects every client, flushes the target and removes
  // the socket file. Returns the flush's status. A second call waits for the first to finish
  // and returns its status.
  Status Stop();

 private:
  struct Connection;
  void AcceptLoop();
  void Serve(Connection& connection);
  // Joins and removes connections whose thread has ended. REQUIRES: mutex_ held.
  void ReapFinished();
  // Connections negotiating and not dropped. REQUIRES: mutex_ held.
  std::size_t CountNegotiating() const;
  // Moves `connection` to the transmission phase; false if it was dropped meanwhile or
  // max_connections clients are there already.
  bool Establish(Connection& connection);
  // Drops connections that pass their negotiation deadline, until Stop.
  void WatchdogLoop();

  const std::shared_ptr<ExportTarget> target_;
  const NbdServerOptions options_;
  const std::unique_ptr<TlsPskServer> tls_;
  std::unique_ptr<platform::Listener> listener_;
  std::uint16_t port_ = 0;
  std::thread accept_thread_;
  std::thread watchdog_thread_;

  mutable std::mutex mutex_;  // guards connections_ and stopping_
  std::condition_variable connection_ended_;
  std::condition_variable watchdog_wake_;
  std::list<std::unique_ptr<Connection>> connections_;
  std::atomic<bool> stopping_{false};

  std::mutex stop_mutex_;  // serialises Stop
  bool stopped_ = false;
  Status stop_status_;
};

}  // namespace vdisk::attach
