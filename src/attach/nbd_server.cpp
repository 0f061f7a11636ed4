#include "attach/nbd_server.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <gsl/gsl>

#include "attach/nbd_protocol.h"
#include "attach/nbd_session.h"

namespace vdisk::attach {
namespace {

// How long Stop lets connections finish the request they are serving before it cuts them off
// (a client that never reads its replies would otherwise hold Stop forever).
constexpr auto kStopGrace = std::chrono::seconds(10);

std::string PercentEncode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                            c == '~' || (keep_slash && c == '/');
    if (unreserved) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

struct NbdServer::Connection {
  platform::Socket socket;
  std::thread thread;
  // Guarded by NbdServer::mutex_:
  std::chrono::steady_clock::time_point deadline;  // to enter the transmission phase
  bool negotiating = true;  // has not entered the transmission phase
  bool dropped = false;     // its socket was shut down for the deadline or for a newcomer
  bool finished = false;
};

Result<std::unique_ptr<NbdServer>> NbdServer::Start(std::shared_ptr<ExportTarget> target,
                                                    NbdServerOptions options) {
  Expects(target != nullptr);
  if (options.export_name.size() > nbd::kMaxStringLength ||
      options.description.size() > nbd::kMaxStringLength) {
    return Status(Code::kInvalidParameter, "NBD export name or description longer than 4096 bytes");
  }
  if (options.max_connections == 0 || options.max_negotiating == 0) {
    return Status(Code::kInvalidParameter,
                  "an NBD server needs max_connections > 0 and max_negotiating > 0");
  }
  std::unique_ptr<TlsPskServer> tls;
  if (options.tls_psk) {
    VDISK_ASSIGN_OR_RETURN(tls, TlsPskServer::Create(*options.tls_psk));
  }
  std::unique_ptr<platform::Listener> listener;
  if (options.transport == NbdServerOptions::Transport::kUnix) {
    if (options.socket_path.empty()) {
      return Status(Code::kInvalidParameter, "an NBD server on a Unix socket needs a socket path");
    }
    VDISK_ASSIGN_OR_RETURN(listener,
                           platform::ListenUnix(options.socket_path, options.socket_mode));
  } else {
    VDISK_ASSIGN_OR_RETURN(listener, platform::ListenTcp(options.host, options.port));
  }
  auto server = std::make_unique<NbdServer>(Passkey{}, std::move(target), std::move(options),
                                            std::move(tls), std::move(listener));
  try {
    server->watchdog_thread_ = std::thread([s = server.get()] { s->WatchdogLoop(); });
    server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  } catch (const std::system_error& e) {
    return Status(Code::kNotEnoughMemory,
                  std::string("cannot start the NBD server's threads: ") + e.what());
  }
  return server;
}

NbdServer::NbdServer(Passkey, std::shared_ptr<ExportTarget> target, NbdServerOptions options,
                     std::unique_ptr<TlsPskServer> tls,
                     std::unique_ptr<platform::Listener> listener)
    : target_(std::move(target)),
      options_(std::move(options)),
      tls_(std::move(tls)),
      listener_(std::move(listener)),
      port_(listener_->port()) {}

NbdServer::~NbdServer() { (void)Stop(); }

std::string NbdServer::uri() const {
  const std::string name = PercentEncode(options_.export_name, false);
  if (options_.transport == NbdServerOptions::Transport::kUnix) {
    return "nbd+unix:///" + name +
           "?socket=" + PercentEncode(options_.socket_path.generic_string(), true);
  }
  std::string host = options_.host;
  // A server on every address is reached on the loopback one.
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  if (options_.tls_psk) {
    // The user part names the PSK identity (nbd_connect_uri(3): "nbds+unix://alice@/...").
    std::string uri = "nbds://" + PercentEncode(options_.tls_psk->username, false) + "@" + host +
                      ":" + std::to_string(port_) + "/" + name;
    if (!options_.tls_psk_file.empty()) {
      uri += "?tls-psk-file=" + PercentEncode(options_.tls_psk_file.generic_string(), true);
    }
    return uri;
  }
  return "nbd://" + host + ":" + std::to_string(port_) + "/" + name;
}

std::size_t NbdServer::connection_count() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(connections_.begin(), connections_.end(),
                                                [](const auto& c) { return !c->finished; }));
}

std::size_t NbdServer::negotiating_count() const {
  std::lock_guard lock(mutex_);
  return CountNegotiating();
}

std::size_t NbdServer::CountNegotiating() const {
  return static_cast<std::size_t>(
      std::count_if(connections_.begin(), connections_.end(), [](const auto& c) {
        return c->negotiating && !c->dropped && !c->finished;
      }));
}

bool NbdServer::Establish(Connection& connection) {
  std::lock_guard lock(mutex_);
  if (connection.dropped) return false;
  const auto established =
      std::count_if(connections_.begin(), connections_.end(), [](const auto& c) {
        return !c->negotiating && !c->finished;
      });
  if (static_cast<std::size_t>(established) >= options_.max_connections) return false;
  connection.negotiating = false;
  return true;
}

void NbdServer::WatchdogLoop() {
  std::unique_lock lock(mutex_);
  while (!stopping_.load(std::memory_order_acquire)) {
    const auto now = std::chrono::steady_clock::now();
    auto next = std::chrono::steady_clock::time_point::max();
    for (const auto& c : connections_) {
      if (!c->negotiating || c->dropped || c->finished) continue;
      if (c->deadline <= now) {
        // Too slow to negotiate (or not trying): its receive fails and its thread ends.
        c->dropped = true;
        c->socket.Shutdown();
      } else {
        next = std::min(next, c->deadline);
      }
    }
    if (next == std::chrono::steady_clock::time_point::max()) {
      watchdog_wake_.wait(lock);
    } else {
      watchdog_wake_.wait_until(lock, next);
    }
  }
}

void NbdServer::AcceptLoop() {
  for (;;) {
    auto accepted = listener_->Accept();
    std::unique_lock lock(mutex_);
    ReapFinished();
    if (stopping_.load(std::memory_order_acquire)) return;
    if (!accepted.ok()) {
      if (accepted.status().code() == Code::kOperationAborted) return;
      // Out of descriptors or memory: let connections end (or Stop come) before trying again.
      connection_ended_.wait_for(lock, std::chrono::milliseconds(100),
                                 [&] { return stopping_.load(std::memory_order_acquire); });
      continue;
    }
    // Clients that have not negotiated yet are limited apart from established ones, and a
    // newcomer pushes out the one that has been negotiating longest: clients that connect and
    // stay silent cannot keep everyone else out (they would otherwise only go at their deadline).
    if (CountNegotiating() >= options_.max_negotiating) {
      Connection* oldest = nullptr;
      for (const auto& c : connections_) {
        if (c->negotiating && !c->dropped && !c->finished &&
            (oldest == nullptr || c->deadline < oldest->deadline)) {
          oldest = c.get();
        }
      }
      if (oldest != nullptr) {
        oldest->dropped = true;
        oldest->socket.Shutdown();
      }
    }
    auto connection = std::make_unique<Connection>();
    connection->socket = std::move(*accepted);
    connection->deadline = std::chrono::steady_clock::now() + options_.handshake_timeout;
    Connection& c = *connection;
    connections_.push_back(std::move(connection));
    try {
      c.thread = std::thread([this, &c] { Serve(c); });
    } catch (const std::system_error&) {
      connections_.pop_back();
      continue;
    }
    watchdog_wake_.notify_all();
  }
}

void NbdServer::Serve(Connection& connection) {
  try {
    RunNbdSession(connection.socket, *target_, options_, tls_.get(), stopping_,
                  [this, &connection] { return Establish(connection); });
  } catch (...) {
    // Out of memory in the middle of a request: this connection ends, the server goes on.
  }
  // Finished before the client sees the disconnect, so a client that reconnects after seeing
  // it finds its old connection no longer counted against max_connections. (A reaper that
  // joins this thread in between waits for the shutdown below; the socket outlives it.)
  {
    std::lock_guard lock(mutex_);
    connection.finished = true;
  }
  connection_ended_.notify_all();
  connection.socket.Shutdown();
}

void NbdServer::ReapFinished() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->finished) {
      (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

Status NbdServer::Stop() {
  std::lock_guard stop_lock(stop_mutex_);
  if (stopped_) return stop_status_;
  stopping_.store(true, std::memory_order_release);
  listener_->Shutdown();
  if (accept_thread_.joinable()) accept_thread_.join();
  {
    std::lock_guard lock(mutex_);  // so that the watchdog cannot miss the wake-up
  }
  watchdog_wake_.notify_all();
  if (watchdog_thread_.joinable()) watchdog_thread_.join();
  {
    std::unique_lock lock(mutex_);
    // Each connection reads what its client has already sent, answers (ESHUTDOWN from now on)
    // and then sees the end of the stream.
    for (const auto& c : connections_) c->socket.ShutdownReceive();
    const bool all_ended = connection_ended_.wait_for(lock, kStopGrace, [&] {
      return std::all_of(connections_.begin(), connections_.end(),
                         [](const auto& c) { return c->finished; });
    });
    if (!all_ended) {
      for (const auto& c : connections_) c->socket.Shutdown();
    }
  }
  // The accept thread is gone, so nothing else changes the list now.
  for (const auto& c : connections_) c->thread.join();
  {
    std::lock_guard lock(mutex_);
    connections_.clear();
  }
  stop_status_ = target_->Flush();
  listener_.reset();  // removes the socket file
  stopped_ = true;
  return stop_status_;
}

}  // namespace vdisk::attach
