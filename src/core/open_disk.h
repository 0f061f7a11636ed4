// OpenDisk: the one in-process object behind every handle to the same virtual disk file.
//
// Two OpenVirtualDisk calls on the same file share an OpenDisk, so that every write, whichever
// handle or export it comes through, goes through the same VirtualDisk (and, later, the same
// mirror). The table holds weak references: the disk closes with its last handle.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>

#include "core/virtual_disk.h"

namespace vdisk {

class OpenDisk {
 public:
  OpenDisk(std::unique_ptr<VirtualDisk> disk, std::filesystem::path key, bool get_info_only);
  ~OpenDisk();

  // Opens `request.path`, or shares the disk another handle already has open. A request for
  // write access to a disk open read-only elsewhere in the process fails with kSharingViolation.
  static Result<std::shared_ptr<OpenDisk>> Open(const ProviderRegistry& registry,
                                                const DiskOpenRequest& request,
                                                bool get_info_only = false);
  // Wraps a disk just created (never shared before).
  static Result<std::shared_ptr<OpenDisk>> Adopt(std::unique_ptr<VirtualDisk> disk);

  VirtualDisk& disk() const { return *disk_; }
  const std::filesystem::path& key() const { return key_; }

  // Raw-I/O attachment (ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST).
  Status AttachRaw(bool read_only);
  Status Detach();
  bool attached() const;
  bool attached_read_only() const;

 private:
  std::unique_ptr<VirtualDisk> disk_;
  std::filesystem::path key_;
  bool get_info_only_;
  mutable std::mutex mutex_;
  bool attached_ = false;
  bool attached_read_only_ = false;
};

}  // namespace vdisk
