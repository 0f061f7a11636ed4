// libFuzzer target for the NBD server (src/attach/nbd_server.cpp, nbd_session.cpp): the input is
// everything one client sends on one connection, handshake and requests alike.
//
// One server runs for the whole process, on a Unix socket in a temporary directory, exporting
// nbd_fixture.h's 1 MiB dynamic VHD held in memory (through DiskExportTarget, as an attached
// disk is served; its file is capped, so writes cannot grow it without bound). For each input the harness
// connects, sends the bytes while draining the replies (poll, so that neither side blocks on a
// full socket), closes its sending side, and reads until the server hangs up. The server must
// end the connection once the client's stream ends: a connection still open after kHangMs of
// silence is reported as a hang (trap). Memory is bounded by libFuzzer's -rss_limit_mb and
// -malloc_limit_mb.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "nbd_fixture.h"

namespace {

namespace fs = std::filesystem;

constexpr int kHangMs = 20000;

struct Fixture {
  std::string dir;
  std::unique_ptr<vdisk::attach::NbdServer> server;
  fs::path socket_path;
};

Fixture& Server() {
  static Fixture* fixture = [] {
    auto* f = new Fixture;
    f->dir = (fs::temp_directory_path() / "nbd_fuzz.XXXXXX").string();
    if (::mkdtemp(f->dir.data()) == nullptr) std::abort();
    f->socket_path = fs::path(f->dir) / "nbd.sock";
    auto server = vdisk::fuzz::StartNbdServer(f->dir, f->socket_path);
    if (!server.ok()) std::abort();
    f->server = std::move(server).value();
    std::atexit([] {
      Fixture& s = Server();
      (void)s.server->Stop();
      s.server.reset();
      std::error_code ec;
      fs::remove_all(s.dir, ec);
    });
    return f;
  }();
  return *fixture;
}

int Connect(const fs::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.size() >= sizeof address.sun_path) std::abort();
  std::memcpy(address.sun_path, p.c_str(), p.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) std::abort();
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) std::abort();
  if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) std::abort();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fixture& f = Server();
  const int fd = Connect(f.socket_path);
  std::size_t sent = 0;
  bool sending = true;
  if (size == 0) {
    ::shutdown(fd, SHUT_WR);
    sending = false;
  }
  std::vector<char> sink(64 * 1024);
  for (;;) {
    pollfd p{fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
    const int ready = ::poll(&p, 1, kHangMs);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) __builtin_trap();  // the server neither reads nor answers nor hangs up
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t n = ::recv(fd, sink.data(), sink.size(), 0);
      if (n == 0) break;  // the server hung up
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;  // reset: hung up too
    }
    if (sending && (p.revents & POLLOUT) != 0) {
      const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<std::size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || sent == size) {
        ::shutdown(fd, SHUT_WR);
        sending = false;
      }
    }
  }
  ::close(fd);
  return 0;
}
