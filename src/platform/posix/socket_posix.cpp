// Sockets over POSIX: Unix-domain and TCP stream sockets, close-on-exec, sends with MSG_NOSIGNAL,
// and a listener whose Accept waits in poll() on the socket and a wake-up pipe, so Shutdown from
// another thread never has to close a descriptor a blocked thread is using.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "platform/socket.h"
#include "platform/socket_common.h"

namespace vdisk::platform {
namespace {

#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_NOSIGNAL;
#else
constexpr int kSendFlags = 0;
#endif

Status SocketError(int os_error, std::string_view operation, std::string_view where) {
  Code code = Code::kIoError;
  switch (os_error) {
    case ENOENT:
      code = Code::kFileNotFound;
      break;
    case ENOTDIR:
      code = Code::kPathNotFound;
      break;
    case EACCES:
    case EPERM:
      code = Code::kAccessDenied;
      break;
    case EEXIST:
    case EADDRINUSE:
      code = Code::kFileExists;
      break;
    case ENOMEM:
    case ENOBUFS:
      code = Code::kNotEnoughMemory;
      break;
    case EINVAL:
    case ENAMETOOLONG:
      code = Code::kInvalidParameter;
      break;
    default:
      break;
  }
  std::string message(where);
  message += ": ";
  message += operation;
  message += ": ";
  message += std::strerror(os_error);
  return Status(code, std::move(message), os_error);
}

int NewSocket(int family) { return ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0); }

void SetNoDelay(int fd) {
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Result<sockaddr_un> UnixAddress(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string& native = path.native();
  if (native.empty() || native.size() >= sizeof address.sun_path) {
    return Status(Code::kInvalidParameter, path.string() + ": a Unix socket path must be 1 to " +
                                               std::to_string(sizeof address.sun_path - 1) +
                                               " bytes long");
  }
  std::memcpy(address.sun_path, native.c_str(), native.size() + 1);
  return address;
}

class PosixListener final : public ListenerCommon {
 public:
  PosixListener(int fd, int wake_read, int wake_write, bool tcp, std::uint16_t port,
                std::filesystem::path unix_path, dev_t dev, ino_t ino)
      : ListenerCommon(tcp, port, std::move(unix_path)),
        fd_(fd),
        wake_read_(wake_read),
        wake_write_(wake_write),
        dev_(dev),
        ino_(ino) {}

  ~PosixListener() override {
    ::close(fd_);
    ::close(wake_read_);
    ::close(wake_write_);
    if (!unix_path_.empty()) {
      // Remove the file only if it is still ours: another server may have replaced it.
      struct stat st {};
      if (::lstat(unix_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
          st.st_ino == ino_) {
        ::unlink(unix_path_.c_str());
      }
    }
  }
  PosixListener(const PosixListener&) = delete;
  PosixListener& operator=(const PosixListener&) = delete;

  Result<Socket> Accept() override {
    for (;;) {
      if (shut_down()) return Aborted();
      pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return SocketError(errno, "poll", Where());
      }
      if (shut_down() || fds[1].revents != 0) return Aborted();
      if ((fds[0].revents & POLLIN) == 0) continue;
      const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        const int err = errno;
        // The client gave up between poll and accept, or a signal arrived: wait again.
        if (err == EINTR || err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED ||
            err == EPROTO) {
          continue;
        }
        return SocketError(err, "accept", Where());
      }
      if (tcp_) SetNoDelay(client);
      return Socket(client);
    }
  }

  void Shutdown() noexcept override {
    MarkShutDown();
    const char byte = 1;
    // The pipe is non-blocking: if it is full, a wake-up is pending anyway.
    (void)!::write(wake_write_, &byte, 1);
  }

 private:
  const int fd_;
  const int wake_read_;
  const int wake_write_;
  const dev_t dev_;
  const ino_t ino_;
};

// Creates the wake-up pipe and the listener object around a bound, listening socket.
Result<std::unique_ptr<Listener>> MakeListener(int fd, bool tcp, std::uint16_t port,
                                               std::filesystem::path unix_path, dev_t dev,
                                               ino_t ino) {
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    const int err = errno;
    ::close(fd);
    return SocketError(err, "pipe", tcp ? "listener" : unix_path.string());
  }
  return std::unique_ptr<Listener>(std::make_unique<PosixListener>(fd, wake[0], wake[1], tcp, port,
                                                                   std::move(unix_path), dev, ino));
}

// Whether a server is listening on the Unix socket at `address`.
bool SomeoneListens(const sockaddr_un& address) {
  const int fd = NewSocket(AF_UNIX);
  if (fd < 0) return true;  // cannot tell: leave the file alone
  const bool listening =
      ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0 ||
      errno != ECONNREFUSED;
  ::close(fd);
  return listening;
}

}  // namespace

Status Socket::SendAll(std::span<const std::byte> data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(native_, data.data() + done, data.size() - done, kSendFlags);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SocketError(errno, "send", "socket");
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

Result<std::size_t> Socket::ReceiveSome(std::span<std::byte> out) {
  if (out.empty()) return std::size_t{0};
  for (;;) {
    const ssize_t n = ::recv(native_, out.data(), out.size(), 0);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    return SocketError(errno, "recv", "socket");
  }
}

void Socket::ShutdownReceive() noexcept {
  if (valid()) ::shutdown(native_, SHUT_RD);
}

void Socket::Shutdown() noexcept {
  if (valid()) ::shutdown(native_, SHUT_RDWR);
}

void Socket::Close() noexcept {
  if (valid()) {
    ::close(native_);
    native_ = kInvalidNativeSocket;
  }
}

Status Socket::SetReceiveTimeout(std::uint32_t milliseconds) {
  timeval timeout{};
  timeout.tv_sec = static_cast<time_t>(milliseconds / 1000);
  timeout.tv_usec = static_cast<suseconds_t>((milliseconds % 1000) * 1000);
  if (::setsockopt(native_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0) {
    return SocketError(errno, "setsockopt(SO_RCVTIMEO)", "socket");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Listener>> ListenUnix(const std::filesystem::path& path,
                                             std::uint32_t mode) {
  VDISK_ASSIGN_OR_RETURN(const sockaddr_un address, UnixAddress(path));
  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode) || SomeoneListens(address)) {
      return Status(Code::kFileExists, path.string() + ": exists (and is not a stale socket)");
    }
    ::unlink(path.c_str());
  }
  const int fd = NewSocket(AF_UNIX);
  if (fd < 0) return SocketError(errno, "socket", path.string());
  // Binding creates the file; listening comes only after its mode is set, so no client can
  // connect while the permissions are wider than asked.
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int err = errno;
    ::close(fd);
    return SocketError(err, "bind", path.string());
  }
  struct stat st {};
  if (::chmod(path.c_str(), static_cast<mode_t>(mode & 07777)) != 0 ||
      ::lstat(path.c_str(), &st) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return SocketError(err, "listen", path.string());
  }
  return MakeListener(fd, false, 0, path, st.st_dev, st.st_ino);
}

Result<std::unique_ptr<Listener>> ListenTcp(std::string_view host, std::uint16_t port) {
  const std::string where = std::string(host) + ":" + std::to_string(port);
  VDISK_ASSIGN_OR_RETURN(const AddressList found, ResolveTcp(host, port, true, where));
  Status last(Code::kInvalidParameter, where + ": no address to listen on");
  for (const addrinfo* ai = found.get(); ai != nullptr; ai = ai->ai_next) {
    const int fd = NewSocket(ai->ai_family);
    if (fd < 0) {
      last = SocketError(errno, "socket", where);
      continue;
    }
    const int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      last = SocketError(errno, "bind/listen", where);
      ::close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    std::uint16_t bound_port = port;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0) {
      if (bound.ss_family == AF_INET) {
        bound_port = ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
      } else if (bound.ss_family == AF_INET6) {
        bound_port = ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
      }
    }
    return MakeListener(fd, true, bound_port, {}, 0, 0);
  }
  return last;
}

Result<Socket> ConnectUnix(const std::filesystem::path& path) {
  VDISK_ASSIGN_OR_RETURN(const sockaddr_un address, UnixAddress(path));
  const int fd = NewSocket(AF_UNIX);
  if (fd < 0) return SocketError(errno, "socket", path.string());
  Socket socket(fd);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return SocketError(errno, "connect", path.string());
  }
  return socket;
}

Result<Socket> ConnectTcp(std::string_view host, std::uint16_t port) {
  const std::string where = std::string(host) + ":" + std::to_string(port);
  VDISK_ASSIGN_OR_RETURN(const AddressList found, ResolveTcp(host, port, false, where));
  Status last(Code::kInvalidParameter, where + ": no address to connect to");
  for (const addrinfo* ai = found.get(); ai != nullptr; ai = ai->ai_next) {
    const int fd = NewSocket(ai->ai_family);
    if (fd < 0) {
      last = SocketError(errno, "socket", where);
      continue;
    }
    Socket socket(fd);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last = SocketError(errno, "connect", where);
      continue;
    }
    SetNoDelay(fd);
    return socket;
  }
  return last;
}

Result<std::unique_ptr<Listener>> ListenPrivate(const std::filesystem::path& path) {
  return ListenUnix(path, 0600);
}

Result<Socket> ConnectPrivate(const std::filesystem::path& path) { return ConnectUnix(path); }

}  // namespace vdisk::platform
