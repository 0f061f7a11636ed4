// Records what real NBD clients send, as seeds for nbd_fuzz.
//
// usage: nbd_capture SCRATCH_DIR OUT_DIR
// Starts nbd_fixture.h's server on SCRATCH_DIR/server.sock and a proxy in front of it on
// SCRATCH_DIR/proxy.sock, prints the proxy's URI (nbd+unix:///fuzz?socket=...) and serves until
// its standard input closes. Each client connection through the proxy is forwarded both ways,
// and what the client sent is written to OUT_DIR/capture-N.nbd when it disconnects.
// capture_nbd_seeds.sh drives it with nbdinfo, qemu-io, qemu-img and nbdcopy.
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nbd_fixture.h"
#include "platform/socket.h"

namespace fs = std::filesystem;
using vdisk::platform::Socket;

namespace {

// Copies `from` to `to` until `from` ends; appends what passed to `record` if given.
void Pump(Socket& from, Socket& to, std::vector<std::byte>* record) {
  std::vector<std::byte> buffer(64 * 1024);
  for (;;) {
    auto n = from.ReceiveSome(buffer);
    if (!n.ok() || *n == 0) break;
    const auto piece = std::span(buffer).first(*n);
    if (record != nullptr) record->insert(record->end(), piece.begin(), piece.end());
    if (!to.SendAll(piece).ok()) break;
  }
  to.Shutdown();
  from.Shutdown();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SCRATCH_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path scratch = argv[1];
  const fs::path out = argv[2];
  fs::create_directories(out);
  const fs::path server_path = scratch / "server.sock";
  const fs::path proxy_path = scratch / "proxy.sock";
  auto server = vdisk::fuzz::StartNbdServer(scratch, server_path);
  if (!server.ok()) {
    std::fprintf(stderr, "server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  auto listener = vdisk::platform::ListenUnix(proxy_path, 0600);
  if (!listener.ok()) {
    std::fprintf(stderr, "proxy: %s\n", std::string(listener.status().message()).c_str());
    return 1;
  }
  std::printf("nbd+unix:///fuzz?socket=%s\n", proxy_path.c_str());
  std::fflush(stdout);
  std::atomic<int> count{0};
  std::thread acceptor([&] {
    std::vector<std::thread> sessions;
    for (;;) {
      auto client = (*listener)->Accept();
      if (!client.ok()) break;
      sessions.emplace_back([&, c = std::make_shared<Socket>(std::move(*client))] {
        auto upstream = vdisk::platform::ConnectUnix(server_path);
        if (!upstream.ok()) return;
        std::vector<std::byte> sent;
        std::thread back([&] { Pump(*upstream, *c, nullptr); });
        Pump(*c, *upstream, &sent);
        back.join();
        const fs::path file = out / ("capture-" + std::to_string(++count) + ".nbd");
        std::ofstream(file, std::ios::binary)
            .write(reinterpret_cast<const char*>(sent.data()),
                   static_cast<std::streamsize>(sent.size()));
      });
    }
    for (auto& t : sessions) t.join();
  });
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  (*listener)->Shutdown();
  acceptor.join();
  (void)(*server)->Stop();
  std::printf("%d connections recorded in %s\n", count.load(), out.c_str());
  return 0;
}
