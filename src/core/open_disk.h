// OpenDisk: the one in-process object behind every handle to the same virtual disk file.
//
// Two OpenVirtualDisk calls on the same file share an OpenDisk, so every write, whichever
// handle it comes through, takes the same path: OpenDisk::Write, which a running mirror
// intercepts (WriteFanout) to feed its target, and which BreakMirrorVirtualDisk redirects to the
// mirror (Activate). The table holds weak references: the disk closes with its last handle.
//
// A disk can be handed over to another process, the attach host of a PERMANENT_LIFETIME
// attachment (src/attach/attach_host.h), which then owns the image file and its lock. Meanwhile
// this object keeps a read-only view of the images opened without the lock: it answers
// questions about the disk (sizes, identifiers, the differencing chain), but its data belongs
// to the host, so Read and Write fail with kSharingViolation (the data is reached through the
// host's export) until TakeBack reopens the images as the original request asked.
//
// Thread safety: all methods may be called concurrently. Read/Write/Flush hold a shared lock on
// the I/O path; SetWriteFanout, Activate, HandOver and TakeBack take it exclusively, so they wait
// for every request in flight and no request sees half a switch.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>

#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "platform/shared_mutex.h"

namespace vdisk {

// Installed by a running mirror: performs each guest write on the active disk and on whatever
// else it feeds.
class WriteFanout {
 public:
  virtual ~WriteFanout() = default;
  // REQUIRES: the range is valid for `active` (checked by the caller).
  virtual Status Write(VirtualDisk& active, std::uint64_t offset,
                       std::span<const std::byte> data) = 0;
};

// What surfaces an attached disk beyond raw I/O on its handles (an NBD export, src/attach).
class Surface {
 public:
  virtual ~Surface() = default;
  // Where clients reach the disk (GetVirtualDiskPhysicalPath).
  virtual std::string uri() const = 0;
  // Ends the surfacing: clients are disconnected and the disk flushed.
  virtual Status Stop() = 0;
};

class OpenDisk {
 public:
  // `unshared`: a disk only its own handle uses (GetInfoOnly, NO_PARENTS), not in the table of
  // shared disks.
  OpenDisk(std::shared_ptr<VirtualDisk> disk, std::filesystem::path key, bool unshared);
  ~OpenDisk();

  // Opens `request.path`, or shares the disk another handle already has open. A request for
  // write access to a disk open read-only elsewhere in the process fails with kSharingViolation.
  static Result<std::shared_ptr<OpenDisk>> Open(const ProviderRegistry& registry,
                                                const DiskOpenRequest& request,
                                                bool get_info_only = false);
  // Wraps a disk just created (never shared before). Without `registry` it cannot be handed
  // over (HandOver reopens through it).
  static Result<std::shared_ptr<OpenDisk>> Adopt(std::unique_ptr<VirtualDisk> disk,
                                                 const ProviderRegistry* registry = nullptr);
  // The view of a disk that another process serves (see above), for a handle that asked for
  // `request`; handed_over() is true, and TakeBack opens it as `request` asks once the other
  // process is done. Shares an OpenDisk this process already has for the file.
  static Result<std::shared_ptr<OpenDisk>> OpenHandedOver(const ProviderRegistry& registry,
                                                          const DiskOpenRequest& request,
                                                          bool get_info_only = false);
  // The key under which a file's OpenDisk is shared: its canonical absolute path. Processes
  // agree on it, so it also names the disk in the attach registry.
  static std::filesystem::path KeyOf(const std::filesystem::path& path);

  // The active disk. Holders keep it alive across a switch; new requests see the new one.
  std::shared_ptr<VirtualDisk> disk() const;
  std::filesystem::path key() const;
  // How the images were opened (for a created disk: its path and format, read-write).
  DiskOpenRequest request() const;
  // Ok if the disk's data can be served (attached, read raw): kVhdInvalidState for a
  // differencing disk opened without its parents (OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS), whose
  // handle exists to inspect and repair the parent link, not to read ranges the parent holds.
  Status CheckDataAvailable() const;

  Status Read(std::uint64_t offset, std::span<std::byte> out);
  Status Write(std::uint64_t offset, std::span<const std::byte> data);
  Status Flush();

  // Routes writes through `fanout` (nullptr: straight to the active disk). Waits for the writes
  // in flight. Fails with kVhdInvalidState if another fan-out is installed.
  Status SetWriteFanout(std::shared_ptr<WriteFanout> fanout);
  void ClearWriteFanout();
  // Whether a fan-out (a running mirror) is installed.
  bool mirroring() const;
  // Makes `disk` the active disk of every handle (mirror break) and removes the fan-out. Runs
  // `before_switch` with the I/O path drained (nothing in flight), and switches only if it
  // succeeds.
  Status Activate(std::shared_ptr<VirtualDisk> disk,
                  const std::function<Status()>& before_switch);

  // Runs `action` with the I/O path drained (nothing in flight, nothing starting).
  Status Drained(const std::function<Status()>& action);
  // Held by a query that reads the images' layout outside Read/Write (GetVirtualDiskInformation),
  // so that it never sees one that Drained's action (a resize) is changing.
  std::shared_lock<platform::SharedMutex> QueryLock() const;

  // Closes the disk's images and makes `open`'s disk the active one (an operation that needs
  // images of the chain open for writing, core/merge.h). With the I/O path drained; fails,
  // changing nothing, with kDiskAlreadyOwned if the disk is attached or handed over,
  // kVhdInvalidState while a mirror runs, kSharingViolation if another holder still uses the
  // disk. If `open` fails the disk is reopened as request() asks and `open`'s error returned.
  Status Reopen(const std::function<Result<std::unique_ptr<VirtualDisk>>()>& open);
  // Reopens the disk as `request` asks (Reopen's checks) and keeps `request` as request().
  Status ReopenAs(const ProviderRegistry& registry, const DiskOpenRequest& request);

  // Raw-I/O attachment (ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST).
  Status AttachRaw(bool read_only);
  // An attachment surfaced by `make_surface` (called with the attach lock held, only if the disk
  // is not attached yet: kDiskAlreadyOwned otherwise).
  Status AttachSurfaced(bool read_only,
                        const std::function<Result<std::unique_ptr<Surface>>()>& make_surface);
  // Ends either kind of attachment (stopping the surface first); kNotVirtualDisk if none.
  Status Detach();
  bool attached() const;
  bool attached_read_only() const;
  // The surface's URI, or "" if the disk is not surfaced.
  std::string surface_uri() const;

  // Flushes and closes the images, releasing their lock, and keeps the lock-free view (see
  // above). Fails, leaving the disk as it was, with kDiskAlreadyOwned if it is attached or
  // already handed over, kVhdInvalidState while a mirror runs, kSharingViolation if an operation
  // still holds the images (they could not close), or the view's open error.
  Status HandOver();
  // Reopens the images as request() asks. Ok at once if the disk is not handed over.
  Status TakeBack();
  bool handed_over() const;

 private:
  // Open and OpenHandedOver: a disk of its own when `unshared`, else the one the table holds for
  // the file (`reuse` decides what a handle gets of it), else a new one, opened as `request`
  // asks or, `handed_over`, as the view of a disk another process serves.
  using Reuse =
      std::function<Result<std::shared_ptr<OpenDisk>>(const std::shared_ptr<OpenDisk>& existing)>;
  static Result<std::shared_ptr<OpenDisk>> OpenInTable(const ProviderRegistry& registry,
                                                       const DiskOpenRequest& request,
                                                       bool unshared, bool handed_over,
                                                       const Reuse& reuse);
  mutable platform::SharedMutex io_mutex_;  // shared: I/O; exclusive: fan-out change, switch
  std::shared_ptr<VirtualDisk> disk_;
  std::shared_ptr<WriteFanout> fanout_;
  std::filesystem::path key_;
  const bool unshared_;
  const ProviderRegistry* providers_ = nullptr;  // for HandOver and TakeBack
  DiskOpenRequest request_;                       // guarded by io_mutex_
  std::atomic<bool> handed_over_{false};          // changed with io_mutex_ held exclusively

  mutable std::mutex attach_mutex_;  // serialises attach and detach; the flags are read without it
  std::atomic<bool> attached_{false};
  std::atomic<bool> attached_read_only_{false};
  std::unique_ptr<Surface> surface_;  // guarded by attach_mutex_
};

}  // namespace vdisk
