// AttachRegistry: the per-user list of attached virtual disks, shared by every process of the
// user.
//
// Windows keeps attachments in the kernel, so any process can find and detach them. This
// library keeps one small record file per attachment in a per-user directory instead:
//   $VIRTDISK_RUNTIME_DIR, else $XDG_RUNTIME_DIR/virtdisk, else <temp>/virtdisk-<uid>
// (on Windows %LOCALAPPDATA%\virtdisk). The two automatic ones are created mode 0700 and used
// only as this user's own 0700 directory, never through a symbolic link; one named by
// VIRTDISK_RUNTIME_DIR must be this user's and writable by no one else (see
// platform::EnsureUserDirectory). Records are files of mode 0600. A record
// names the disk file, the NBD URI and socket of its export, and the process serving it (pid and
// start time, so that a recycled pid is not taken for the server). Records whose process has died (a crash, a
// SIGKILL) are stale: List and Find remove them, and the sockets they name, as they meet them.
//
// Records are written to a temporary name and renamed into place, so a reader never sees half a
// record. One disk has at most one record: Add fails with kDiskAlreadyOwned while a live record
// for the same file exists.
//
// Thread safety: an AttachRegistry has no mutable state of its own; concurrent use from threads
// and processes is safe as far as the file system's rename and create-exclusive are atomic.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace vdisk::attach {

struct ProcessId {
  std::int64_t pid = 0;
  // Start time of the process as the OS reports it (Linux: /proc/<pid>/stat field 22), or 0.
  std::uint64_t start_time = 0;

  static ProcessId Current();
  // Whether this process still runs (and is the same process, where start times are known).
  bool Alive() const;
};

struct AttachmentRecord {
  std::filesystem::path disk_path;     // canonical path of the disk's top image
  std::string uri;                     // nbd+unix:///...?socket=... or nbd://host:port/...
  std::filesystem::path socket_path;   // the export's Unix socket, if any
  std::filesystem::path control_path;  // the host's control socket; empty: in-process attachment
  std::filesystem::path secret_path;   // the directory of the export's TLS key, if any
  ProcessId server;                    // the process serving the export
  bool permanent = false;              // ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME
  bool read_only = false;
};

class AttachRegistry {
 public:
  // The current user's registry (directory created on first use).
  static Result<AttachRegistry> ForCurrentUser();
  explicit AttachRegistry(std::filesystem::path dir) : dir_(std::move(dir)) {}

  const std::filesystem::path& dir() const { return dir_; }
  // A fresh path in the registry directory for a socket: <dir>/<stem>-<pid>-<n>.sock.
  std::filesystem::path NewSocketPath(const std::string& stem) const;

  // Records an attachment. kDiskAlreadyOwned if a live record for the same disk exists.
  Status Add(const AttachmentRecord& record) const;
  // Removes the record of `disk_path` if `server` is the process it names. Missing: Ok.
  Status Remove(const std::filesystem::path& disk_path, const ProcessId& server) const;
  // Every live record (stale ones are removed on the way), ordered by disk path.
  Result<std::vector<AttachmentRecord>> List() const;
  // The live record of `disk_path` (canonicalised by the caller), if any.
  Result<std::optional<AttachmentRecord>> Find(const std::filesystem::path& disk_path) const;

  // The record file of a disk (exposed for tests).
  std::filesystem::path RecordPath(const std::filesystem::path& disk_path) const;

 private:
  std::filesystem::path dir_;
};

// Text form of a record (one key=value per line), exposed for tests.
std::string FormatRecord(const AttachmentRecord& record);
Result<AttachmentRecord> ParseRecord(const std::string& text);

}  // namespace vdisk::attach
