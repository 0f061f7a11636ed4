#include "core/open_disk.h"

#include <map>
#include <system_error>

namespace vdisk {
namespace {

struct OpenDiskTable {
  std::mutex mutex;
  std::map<std::filesystem::path, std::weak_ptr<OpenDisk>> disks;
};

OpenDiskTable& Table() {
  static auto* table = new OpenDiskTable;  // outlives static destructors that close handles
  return *table;
}

std::filesystem::path KeyFor(const std::filesystem::path& path) {
  std::error_code ec;
  auto key = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  return ec ? path : key;
}

}  // namespace

OpenDisk::OpenDisk(std::unique_ptr<VirtualDisk> disk, std::filesystem::path key,
                   bool get_info_only)
    : disk_(std::move(disk)), key_(std::move(key)), get_info_only_(get_info_only) {}

OpenDisk::~OpenDisk() {
  if (get_info_only_) return;
  auto& table = Table();
  std::lock_guard lock(table.mutex);
  auto it = table.disks.find(key_);
  if (it != table.disks.end() && it->second.expired()) table.disks.erase(it);
}

Result<std::shared_ptr<OpenDisk>> OpenDisk::Open(const ProviderRegistry& registry,
                                                 const DiskOpenRequest& request,
                                                 bool get_info_only) {
  const auto key = KeyFor(request.path);
  auto& table = Table();
  std::lock_guard lock(table.mutex);
  if (!get_info_only) {
    auto it = table.disks.find(key);
    if (it != table.disks.end()) {
      if (auto existing = it->second.lock()) {
        if (!request.options.read_only && existing->disk().read_only()) {
          return Status(Code::kSharingViolation,
                        request.path.string() +
                            ": open read-only by another handle; cannot open it for writing");
        }
        return existing;
      }
    }
  }
  VDISK_ASSIGN_OR_RETURN(auto disk, VirtualDisk::Open(registry, request));
  auto open = std::make_shared<OpenDisk>(std::move(disk), key, get_info_only);
  if (!get_info_only) table.disks[key] = open;
  return open;
}

Result<std::shared_ptr<OpenDisk>> OpenDisk::Adopt(std::unique_ptr<VirtualDisk> disk) {
  const auto key = KeyFor(disk->top().file().path());
  auto open = std::make_shared<OpenDisk>(std::move(disk), key, false);
  auto& table = Table();
  std::lock_guard lock(table.mutex);
  table.disks[key] = open;
  return open;
}

Status OpenDisk::AttachRaw(bool read_only) {
  std::lock_guard lock(mutex_);
  if (attached_) {
    return Status(Code::kDiskAlreadyOwned, key_.string() + ": already attached");
  }
  attached_ = true;
  attached_read_only_ = read_only || disk_->read_only();
  return Status::Ok();
}

Status OpenDisk::Detach() {
  std::lock_guard lock(mutex_);
  // Windows answers a detach of a disk that is not attached with ERROR_VIRTDISK_NOT_VIRTUAL_DISK
  // ("the specified disk is not a virtual disk"): no attached virtual disk has this file.
  if (!attached_) return Status(Code::kNotVirtualDisk, key_.string() + ": not attached");
  attached_ = false;
  VDISK_RETURN_IF_ERROR(disk_->Flush());
  return Status::Ok();
}

bool OpenDisk::attached() const {
  std::lock_guard lock(mutex_);
  return attached_;
}

bool OpenDisk::attached_read_only() const {
  std::lock_guard lock(mutex_);
  return attached_read_only_;
}

}  // namespace vdisk
