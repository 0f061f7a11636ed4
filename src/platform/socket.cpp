// The parts of Socket that are the same on every OS (platform/socket.h), and name resolution
// for the TCP listeners and clients of posix/socket_posix.cpp and win32/socket_win32.cpp.
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <netdb.h>
#include <sys/socket.h>
#endif

#include <string>

#include "platform/socket.h"
#include "platform/socket_common.h"

namespace vdisk::platform {
namespace {

// freeaddrinfo is WSAAPI (__stdcall) on 32-bit Windows: the deleter calls it from a function of
// the default calling convention.
void FreeAddresses(addrinfo* list) { freeaddrinfo(list); }

}  // namespace

Socket::~Socket() { Close(); }

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    Close();
    native_ = other.native_;
    other.native_ = kInvalidNativeSocket;
  }
  return *this;
}

Status Socket::ReceiveAll(std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    VDISK_ASSIGN_OR_RETURN(const std::size_t n, ReceiveSome(out.subspan(done)));
    if (n == 0) {
      return Status(Code::kIoError, "socket: connection closed by the peer after " +
                                        std::to_string(done) + " of " + std::to_string(out.size()) +
                                        " bytes");
    }
    done += n;
  }
  return Status::Ok();
}

Status ListenerCommon::Aborted() const {
  return Status(Code::kOperationAborted, Where() + ": the listener was shut down");
}

std::string ListenerCommon::Where() const {
  return tcp_ ? "TCP port " + std::to_string(port_) : unix_path_.string();
}

Result<AddressList> ResolveTcp(std::string_view host, std::uint16_t port, bool passive,
                               const std::string& where) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* found = nullptr;
  const std::string host_string(host);
  // A listener given no host listens on every address.
  const char* node = passive && host_string.empty() ? nullptr : host_string.c_str();
  const int rc = getaddrinfo(node, std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) {
#ifdef _WIN32
    const std::string reason = "error " + std::to_string(rc);
#else
    const std::string reason = gai_strerror(rc);
#endif
    return Status(Code::kInvalidParameter, where + ": cannot resolve: " + reason, rc);
  }
  return AddressList(found, &FreeAddresses);
}

}  // namespace vdisk::platform
