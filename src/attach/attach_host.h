// The attach host: the process that serves a PERMANENT_LIFETIME attachment (docs/attach.md,
// "Permanent attachments").
//
// An attachment made with ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME outlives the handle and
// the process that made it, so it cannot live in that process. The attaching process hands the
// image over (OpenDisk::HandOver: flush, close, release the lock) and StartAttachHost starts the
// virtdisk-attach-host program (tools/attach-host, a thin main around RunAttachHost), which
//  1. becomes a daemon (platform::BecomeDaemon: its own session, nobody's child but init's,
//     stdio on /dev/null);
//  2. opens the disk itself, as the attaching handle had it open;
//  3. listens on a control socket (mode 0600; platform::ListenPrivate) in the attach
//     registry's directory;
//  4. exports the disk over NBD exactly as an in-process attachment does (NbdAttachment), and
//     records it in the registry as permanent, with its own pid and start time and the control
//     socket's path;
//  5. reports "ready <uri>" (or "failed ..." and exits) on its report pipe, which is what
//     StartAttachHost waits for.
// DetachThroughHost, from any process of the user, sends "detach" over the control socket. The
// host stops the export (NBD clients see a clean disconnect), flushes and closes the image,
// removes its record and both sockets, answers "detached", and exits; DetachThroughHost returns
// once the host process is gone. SIGTERM, SIGINT and SIGHUP detach the same way, without a
// requester. A host that dies (SIGKILL) leaves a stale record that the registry removes, with its
// sockets, at its next List or Find; the kernel releases the image's lock.
//
// Wire formats, one text line each:
//   report:  "ready <uri>" | "failed <code> <os error> <message>"
//   control: request "detach"; answer "detached" | "failed <code> <os error> <message>"
// <code> is the numeric vdisk::Code, so that the caller maps a host's failure to the Win32 error
// the same failure would have given in-process.
//
// Where the program is: $VIRTDISK_ATTACH_HOST if set, else kAttachHostProgram in the directory
// of the module this code is linked into (libvirtdisk.so's directory, where it is built and
// installed).
//
// On Windows the host is virtdisk-attach-host.exe, started detached (platform::StartDaemon),
// and the control channel is platform::ListenPrivate's TCP-with-a-secret endpoint, whose file
// takes the control socket's place; nothing else differs.
// Thread safety: all functions may be called from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "attach/attach_registry.h"
#include "attach/nbd_attachment.h"
#include "core/virtual_disk.h"

namespace vdisk::attach {

inline constexpr const char* kAttachHostProgram = "virtdisk-attach-host";

// What a host is asked to serve.
struct AttachHostRequest {
  std::filesystem::path registry_dir;  // the attach registry it records itself in
  DiskOpenRequest open;                // open.path: the disk's key (OpenDisk::KeyOf)
  NbdAttachOptions attach;             // `permanent` and `control_path` are the host's to set
};

// The command line that carries `request`, and back. Parse fails with kInvalidParameter.
std::vector<std::string> HostArguments(const AttachHostRequest& request);
Result<AttachHostRequest> ParseHostArguments(const std::vector<std::string>& arguments);

// The host program to start (see above); kFileNotFound if it is not there.
Result<std::filesystem::path> AttachHostProgram();

// Starts a host for `request` and waits for its report. Returns the export's URI, or the
// host's failure as the Status it had in the host.
// REQUIRES: no process holds the image in a conflicting mode (the caller has handed it over).
Result<std::string> StartAttachHost(const AttachHostRequest& request);

// Asks the host that serves `record` to detach and waits until it has exited. Fails with
// kNotVirtualDisk if the host is already gone, with the host's failure if it could not detach
// cleanly (it exits all the same).
// REQUIRES: record.control_path is not empty (a permanent attachment).
Status DetachThroughHost(const AttachmentRecord& record);

// The host program's main: the steps above, then serving the control socket until a detach
// request or a termination signal. Returns the process exit code.
int RunAttachHost(const std::vector<std::string>& arguments);

}  // namespace vdisk::attach
