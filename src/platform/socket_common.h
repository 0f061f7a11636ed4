// What the OS socket implementations (posix/socket_posix.cpp, win32/socket_win32.cpp) share:
// the common part of their listeners and name resolution (platform/socket.cpp). Internal to
// src/platform: it names the OS's addrinfo, declared by <netdb.h> or <ws2tcpip.h>.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "platform/socket.h"

struct addrinfo;

namespace vdisk::platform {

// A listener on a TCP port or a Unix socket file: its name in errors, its port, and the flag
// Shutdown sets before it wakes a blocked Accept.
class ListenerCommon : public Listener {
 public:
  ListenerCommon(bool tcp, std::uint16_t port, std::filesystem::path unix_path)
      : tcp_(tcp), port_(port), unix_path_(std::move(unix_path)) {}
  std::uint16_t port() const override { return port_; }

 protected:
  // kOperationAborted: what Accept returns once Shutdown was called.
  Status Aborted() const;
  // "TCP port N" or the socket file's path.
  std::string Where() const;
  bool shut_down() const { return shut_down_.load(std::memory_order_acquire); }
  void MarkShutDown() { shut_down_.store(true, std::memory_order_release); }

  const bool tcp_;
  const std::uint16_t port_;
  const std::filesystem::path unix_path_;

 private:
  std::atomic<bool> shut_down_{false};
};

// getaddrinfo's list, freed with freeaddrinfo.
using AddressList = std::unique_ptr<addrinfo, void (*)(addrinfo*)>;

// The stream-socket addresses of `host`:`port` (numeric port), for listening (`passive`: an
// empty host means every address) or connecting. kInvalidParameter naming `where` when the name
// does not resolve. On Windows, Winsock must be started first.
Result<AddressList> ResolveTcp(std::string_view host, std::uint16_t port, bool passive,
                               const std::string& where);

}  // namespace vdisk::platform
