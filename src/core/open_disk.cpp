#include "core/open_disk.h"

#include <functional>
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

Status HandedOverError(const std::filesystem::path& key) {
  return Status(Code::kSharingViolation,
                key.string() +
                    ": served by an attach host process (PERMANENT_LIFETIME); its data is "
                    "reached through the host's export until the disk is detached");
}

// The lock-free, read-only view of a disk another process serves.
DiskOpenRequest ViewOf(DiskOpenRequest request) {
  request.options.read_only = true;
  request.without_lock = true;
  return request;
}

}  // namespace

std::filesystem::path OpenDisk::KeyOf(const std::filesystem::path& path) { return KeyFor(path); }

OpenDisk::OpenDisk(std::shared_ptr<VirtualDisk> disk, std::filesystem::path key,
                   bool unshared)
    : disk_(std::move(disk)), key_(std::move(key)), unshared_(unshared) {}

OpenDisk::~OpenDisk() {
  if (unshared_) return;
  auto& table = Table();
  std::lock_guard lock(table.mutex);
  auto it = table.disks.find(key_);
  if (it != table.disks.end() && it->second.expired()) table.disks.erase(it);
}

Result<std::shared_ptr<OpenDisk>> OpenDisk::OpenInTable(const ProviderRegistry& registry,
                                                        const DiskOpenRequest& request,
                                                        bool unshared, bool handed_over,
                                                        const Reuse& reuse) {
  const auto key = KeyFor(request.path);
  // Declared before the lock: a disk that dies here (a failed step below) unregisters itself
  // under that lock in its destructor, which must run after the lock is released.
  std::shared_ptr<OpenDisk> open;
  std::shared_ptr<OpenDisk> existing;
  auto& table = Table();
  std::lock_guard lock(table.mutex);
  if (!unshared) {
    auto it = table.disks.find(key);
    if (it != table.disks.end() && (existing = it->second.lock())) return reuse(existing);
  }
  VDISK_ASSIGN_OR_RETURN(auto disk,
                         VirtualDisk::Open(registry, handed_over ? ViewOf(request) : request));
  open = std::make_shared<OpenDisk>(std::shared_ptr<VirtualDisk>(std::move(disk)), key, unshared);
  open->providers_ = &registry;
  open->request_ = request;
  open->handed_over_ = handed_over;
  if (!unshared) table.disks[key] = open;
  return open;
}

Result<std::shared_ptr<OpenDisk>> OpenDisk::Open(const ProviderRegistry& registry,
                                                 const DiskOpenRequest& request,
                                                 bool get_info_only) {
  // A handle that asked for only part of the chain (or only information) gets a disk of its own:
  // another handle's full disk must not be handed a partial one, nor the other way round.
  const bool unshared = get_info_only || request.no_parents || request.custom_chain;
  return OpenInTable(
      registry, request, unshared, /*handed_over=*/false,
      [&request](const std::shared_ptr<OpenDisk>& existing) -> Result<std::shared_ptr<OpenDisk>> {
        if (existing->handed_over()) {
          std::unique_lock io(existing->io_mutex_);
          // Taken back later for writing if any handle asked for it.
          if (!request.options.read_only) existing->request_.options.read_only = false;
          return existing;
        }
        if (!request.options.read_only && existing->disk()->read_only()) {
          return Status(Code::kSharingViolation,
                        request.path.string() +
                            ": open read-only by another handle; cannot open it for writing");
        }
        return existing;
      });
}

Result<std::shared_ptr<OpenDisk>> OpenDisk::OpenHandedOver(const ProviderRegistry& registry,
                                                           const DiskOpenRequest& request,
                                                           bool get_info_only) {
  // As in Open; a custom chain shares the view, which serves the whole chain.
  const bool unshared = get_info_only || request.no_parents;
  return OpenInTable(registry, request, unshared, /*handed_over=*/true,
                     [](const std::shared_ptr<OpenDisk>& existing) { return existing; });
}

Result<std::shared_ptr<OpenDisk>> OpenDisk::Adopt(std::unique_ptr<VirtualDisk> disk,
                                                  const ProviderRegistry* registry) {
  const auto key = KeyFor(disk->top().file().path());
  DiskOpenRequest request;
  request.path = disk->top().file().path();
  request.format = disk->top().format();
  request.options.read_only = disk->read_only();
  auto open = std::make_shared<OpenDisk>(std::shared_ptr<VirtualDisk>(std::move(disk)), key,
                                         false);
  open->providers_ = registry;
  open->request_ = request;
  auto& table = Table();
  std::lock_guard lock(table.mutex);
  table.disks[key] = open;
  return open;
}

std::shared_ptr<VirtualDisk> OpenDisk::disk() const {
  std::shared_lock lock(io_mutex_);
  return disk_;
}

std::filesystem::path OpenDisk::key() const {
  std::shared_lock lock(io_mutex_);
  return key_;
}

DiskOpenRequest OpenDisk::request() const {
  std::shared_lock lock(io_mutex_);
  return request_;
}

Status OpenDisk::Read(std::uint64_t offset, std::span<std::byte> out) {
  std::shared_lock lock(io_mutex_);
  if (handed_over_) return HandedOverError(key_);
  return disk_->Read(offset, out);
}

Status OpenDisk::Write(std::uint64_t offset, std::span<const std::byte> data) {
  std::shared_lock lock(io_mutex_);
  if (handed_over_) return HandedOverError(key_);
  if (fanout_) {
    // The range checks of VirtualDisk::Write apply before the fan-out sees the request.
    if (disk_->read_only()) {
      return Status(Code::kWriteProtect, disk_->top().file().path().string() + ": read-only");
    }
    VDISK_RETURN_IF_ERROR(disk_->CheckRange(offset, data.size()));
    return fanout_->Write(*disk_, offset, data);
  }
  return disk_->Write(offset, data);
}

Status OpenDisk::Flush() {
  std::shared_lock lock(io_mutex_);
  if (handed_over_) return Status::Ok();  // the host flushes what it wrote
  return disk_->Flush();
}

Status OpenDisk::SetWriteFanout(std::shared_ptr<WriteFanout> fanout) {
  std::unique_lock lock(io_mutex_);
  if (fanout_ && fanout) {
    return Status(Code::kVhdInvalidState,
                  key_.string() + ": a mirror or a compaction is already running");
  }
  fanout_ = std::move(fanout);
  return Status::Ok();
}

void OpenDisk::ClearWriteFanout() {
  std::unique_lock lock(io_mutex_);
  fanout_.reset();
}

bool OpenDisk::mirroring() const {
  std::shared_lock lock(io_mutex_);
  return fanout_ != nullptr;
}

Status OpenDisk::Activate(std::shared_ptr<VirtualDisk> disk,
                          const std::function<Status()>& before_switch) {
  std::filesystem::path old_key;
  std::filesystem::path new_key;
  {
    std::unique_lock lock(io_mutex_);
    VDISK_RETURN_IF_ERROR(before_switch());
    old_key = key_;
    new_key = KeyFor(disk->top().file().path());
    // A later reopen (TakeBack) opens the disk that is active now.
    request_.path = disk->top().file().path();
    request_.format = disk->top().format();
    disk_ = std::move(disk);
    fanout_.reset();
    key_ = new_key;
  }
  if (unshared_) return Status::Ok();
  auto& table = Table();
  std::lock_guard lock(table.mutex);
  auto it = table.disks.find(old_key);
  std::weak_ptr<OpenDisk> self;
  if (it != table.disks.end()) {
    self = it->second;
    table.disks.erase(it);
  }
  if (!self.expired()) table.disks[new_key] = self;
  return Status::Ok();
}

std::shared_lock<platform::SharedMutex> OpenDisk::QueryLock() const {
  return std::shared_lock(io_mutex_);
}

Status OpenDisk::Drained(const std::function<Status()>& action) {
  std::unique_lock lock(io_mutex_);
  return action();
}

Status OpenDisk::Reopen(const std::function<Result<std::unique_ptr<VirtualDisk>>()>& open) {
  std::lock_guard attach_lock(attach_mutex_);
  std::unique_lock lock(io_mutex_);
  if (attached_ || handed_over_) {
    return Status(Code::kDiskAlreadyOwned, key_.string() + ": attached; detach it first");
  }
  if (fanout_) return Status(Code::kVhdInvalidState, key_.string() + ": a mirror is running");
  if (providers_ == nullptr) {
    return Status(Code::kNotSupported, key_.string() + ": this disk cannot be reopened");
  }
  if (disk_.use_count() != 1) {
    return Status(Code::kSharingViolation,
                  key_.string() + ": an operation in progress still uses the disk");
  }
  VDISK_RETURN_IF_ERROR(disk_->Flush());
  disk_.reset();  // the images close (and release their lock) here
  auto opened = open();
  if (opened.ok()) {
    disk_ = std::shared_ptr<VirtualDisk>(std::move(opened).value());
    return Status::Ok();
  }
  auto restored = VirtualDisk::Open(*providers_, request_);
  // Last resort, so that the handles keep a disk to answer about: the read-only view.
  if (!restored.ok()) restored = VirtualDisk::Open(*providers_, ViewOf(request_));
  if (!restored.ok()) {
    return Status(opened.status().code(),
                  std::string(opened.status().message()) + "; reopening " + key_.string() +
                      " failed too: " + std::string(restored.status().message()));
  }
  disk_ = std::shared_ptr<VirtualDisk>(std::move(restored).value());
  return opened.status();
}

Status OpenDisk::ReopenAs(const ProviderRegistry& registry, const DiskOpenRequest& request) {
  VDISK_RETURN_IF_ERROR(Reopen([&]() { return VirtualDisk::Open(registry, request); }));
  std::unique_lock lock(io_mutex_);
  request_ = request;
  return Status::Ok();
}

Status OpenDisk::CheckDataAvailable() const {
  const auto active = disk();
  const auto asked = request();
  if (asked.custom_chain && active->chain().back()->parent()) {
    return Status(Code::kVhdInvalidState,
                  active->top().file().path().string() +
                      ": opened with OPEN_VIRTUAL_DISK_FLAG_CUSTOM_DIFF_CHAIN and its chain is not "
                      "complete: add the parent of " +
                      active->chain().back()->file().path().string() +
                      " with AddVirtualDiskParent first");
  }
  if (asked.no_parents && active->chain().size() == 1 && active->top().parent()) {
    return Status(Code::kVhdInvalidState,
                  active->top().file().path().string() +
                      ": opened without its parents (OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS): such a "
                      "handle can query and repair the parent link, not attach or read the disk");
  }
  return Status::Ok();
}

Status OpenDisk::AttachRaw(bool read_only) {
  std::lock_guard lock(attach_mutex_);
  if (attached_ || handed_over_) {
    return Status(Code::kDiskAlreadyOwned, key().string() + ": already attached");
  }
  attached_read_only_ = read_only || disk()->read_only();
  attached_ = true;
  return Status::Ok();
}

Status OpenDisk::AttachSurfaced(
    bool read_only, const std::function<Result<std::unique_ptr<Surface>>()>& make_surface) {
  std::lock_guard lock(attach_mutex_);
  if (attached_ || handed_over_) {
    return Status(Code::kDiskAlreadyOwned, key().string() + ": already attached");
  }
  VDISK_ASSIGN_OR_RETURN(surface_, make_surface());
  attached_read_only_ = read_only || disk()->read_only();
  attached_ = true;
  return Status::Ok();
}

Status OpenDisk::Detach() {
  std::unique_ptr<Surface> surface;
  {
    std::lock_guard lock(attach_mutex_);
    // Windows answers a detach of a disk that is not attached with
    // ERROR_VIRTDISK_NOT_VIRTUAL_DISK ("the specified disk is not a virtual disk"): no attached
    // virtual disk has this file.
    if (!attached_) return Status(Code::kNotVirtualDisk, key().string() + ": not attached");
    attached_ = false;
    surface = std::move(surface_);
  }
  // Stopped outside the lock: the surface's last requests go through this disk.
  Status status = surface ? surface->Stop() : Status::Ok();
  const Status flushed = Flush();
  return status.ok() ? flushed : status;
}

std::string OpenDisk::surface_uri() const {
  std::lock_guard lock(attach_mutex_);
  return surface_ ? surface_->uri() : std::string();
}

Status OpenDisk::HandOver() {
  std::lock_guard attach_lock(attach_mutex_);
  std::unique_lock lock(io_mutex_);
  if (attached_ || handed_over_) {
    return Status(Code::kDiskAlreadyOwned, key_.string() + ": already attached");
  }
  if (fanout_) {
    return Status(Code::kVhdInvalidState,
                  key_.string() + ": a mirror is running; it cannot move to another process");
  }
  if (providers_ == nullptr) {
    return Status(Code::kNotSupported, key_.string() + ": this disk cannot be reopened");
  }
  VDISK_RETURN_IF_ERROR(disk_->Flush());
  // The images close only if nothing else holds them (an operation in progress on another
  // handle); otherwise their lock would outlive the hand-over.
  if (disk_.use_count() != 1) {
    return Status(Code::kSharingViolation,
                  key_.string() + ": an operation in progress still uses the disk");
  }
  // The view opens first, so that a failure leaves everything as it was.
  VDISK_ASSIGN_OR_RETURN(auto view, VirtualDisk::Open(*providers_, ViewOf(request_)));
  disk_ = std::shared_ptr<VirtualDisk>(std::move(view));  // the images close here
  handed_over_ = true;
  return Status::Ok();
}

Status OpenDisk::TakeBack() {
  std::unique_lock lock(io_mutex_);
  if (!handed_over_) return Status::Ok();
  if (providers_ == nullptr) {
    return Status(Code::kNotSupported, key_.string() + ": this disk cannot be reopened");
  }
  VDISK_ASSIGN_OR_RETURN(auto reopened, VirtualDisk::Open(*providers_, request_));
  disk_ = std::shared_ptr<VirtualDisk>(std::move(reopened));
  handed_over_ = false;
  return Status::Ok();
}

bool OpenDisk::handed_over() const { return handed_over_.load(std::memory_order_acquire); }

// Read on every raw I/O request, so without a lock.
bool OpenDisk::attached() const { return attached_.load(std::memory_order_acquire); }
bool OpenDisk::attached_read_only() const {
  return attached_read_only_.load(std::memory_order_acquire);
}

}  // namespace vdisk
