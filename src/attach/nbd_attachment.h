// NbdAttachment: an opened disk surfaced over NBD and recorded in the attach registry. This is
// what AttachVirtualDisk does without ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, in the calling
// process (src/api/attach.cpp) or, for PERMANENT_LIFETIME, in an attach host (attach_host.h).
//
// The export listens on a Unix socket in the registry directory (mode 0600, or 0666 when the
// security descriptor grants other users), or on TCP loopback. Its name is the disk file's name;
// its description the full path. On TCP, unless the security descriptor grants other users, the
// export admits only holders of a per-attachment secret (docs/attach-security.md): TLS with a
// 256-bit pre-shared key in <registry>/<stem>-<pid>-<n>.tls/keys.psk (mode 0600, in a 0700
// directory; the URI names the file), or, in a build without TLS (Windows), a 256-bit random
// export name that NBD_OPT_LIST does not reveal (the URI carries it). One disk has at most one attachment among all processes of the
// user: Start fails with kDiskAlreadyOwned while a live record for the disk exists.
//
// Thread safety: uri() may be called from any thread; Stop, StopServing and Unregister from one
// thread at a time.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "attach/attach_registry.h"
#include "attach/disk_export_target.h"
#include "attach/nbd_server.h"
#include "core/open_disk.h"

namespace vdisk::attach {

struct NbdAttachOptions {
  bool read_only = false;      // ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY: the export refuses writes
  bool grants_others = false;  // the socket admits every local user (0666), not the owner only
  bool tcp = false;            // TCP on 127.0.0.1 instead of a Unix socket
  std::optional<DiskExportOptions::Range> range;  // ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE
  bool permanent = false;                         // recorded as a PERMANENT_LIFETIME attachment
  std::filesystem::path control_path;  // the attach host's control socket (permanent only)
};

class NbdAttachment final : public Surface {
 private:
  struct Passkey {
    explicit Passkey() = default;
  };

 public:
  // Starts the export of `disk` and records it, with this process as its server.
  static Result<std::unique_ptr<NbdAttachment>> Start(const std::shared_ptr<OpenDisk>& disk,
                                                      AttachRegistry registry,
                                                      const NbdAttachOptions& options);
  NbdAttachment(Passkey, std::unique_ptr<NbdServer> server, AttachRegistry registry,
                std::filesystem::path disk_path, std::filesystem::path secret_dir);
  // Stop().
  ~NbdAttachment() override;

  std::string uri() const override { return uri_; }
  // StopServing, then Unregister; the first failure.
  Status Stop() override;
  // Disconnects every client cleanly, flushes the disk, removes the export's socket and drops
  // the server, and with it the export's reference to the disk (so that the disk can close
  // before Unregister).
  Status StopServing();
  // Removes the registry record (only if this process is still the one it names).
  Status Unregister();

 private:
  std::unique_ptr<NbdServer> server_;
  const std::string uri_;
  AttachRegistry registry_;
  std::filesystem::path disk_path_;
  std::filesystem::path secret_dir_;  // the TLS key's directory, removed by StopServing
  bool unregistered_ = false;
};

}  // namespace vdisk::attach
