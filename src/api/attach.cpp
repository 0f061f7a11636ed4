// AttachVirtualDisk, DetachVirtualDisk, GetVirtualDiskPhysicalPath and
// GetAllAttachedVirtualDiskPhysicalPaths.
//
// Attaching with ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST surfaces the disk for raw I/O on its
// handle (ReadFile/WriteFile with OVERLAPPED offsets), as Microsoft's RawIO sample uses it.
// Without it the disk is exported over NBD (src/attach): a Unix socket in the user's attach
// registry directory by default, TCP loopback when VIRTDISK_ATTACH_TRANSPORT=tcp (always on
// Windows). The export's URI is the disk's "physical path", and the attachment is recorded in
// the per-user AttachRegistry so that GetAllAttachedVirtualDiskPhysicalPaths in any process of
// the user lists it. The security descriptor decides who may connect: the owner only (NULL, or a
// DACL that grants nobody else), or every local user (socket mode 0666).
//
// Without ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME the export lives in this process and ends
// with DetachVirtualDisk or when the attaching handle closes. With it, the export lives in an
// attach host process (src/attach/attach_host.h): this process hands the image over (it flushes
// and closes it, releasing its lock, and keeps a read-only view for information; reads and
// writes through its handles fail with ERROR_SHARING_VIOLATION meanwhile), and the host opens
// it, exports it, records itself in the registry and stays after this process exits.
// OpenVirtualDisk of a disk that a live host serves gets the same view (open_create.cpp), and
// DetachVirtualDisk on any handle to it, in any process of the user, asks the host to detach
// and, once the host has exited, reopens the image for that handle as it was asked for.
// On Windows the host is virtdisk-attach-host.exe next to VirtDisk.dll (or named by
// VIRTDISK_ATTACH_HOST).
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/impl.h"
#include "api/strings.h"
#include "api/trace.h"
#include "attach/attach_host.h"
#include "attach/attach_registry.h"
#include "attach/nbd_attachment.h"
#include "attach/security_descriptor.h"

namespace vdisk::api {
namespace {

constexpr DWORD kKnownAttachFlags = Bits(
    ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY, ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER, ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, ATTACH_VIRTUAL_DISK_FLAG_NO_SECURITY_DESCRIPTOR, ATTACH_VIRTUAL_DISK_FLAG_BYPASS_DEFAULT_ENCRYPTION_POLICY, ATTACH_VIRTUAL_DISK_FLAG_NON_PNP, ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE, ATTACH_VIRTUAL_DISK_FLAG_SINGLE_PARTITION, ATTACH_VIRTUAL_DISK_FLAG_REGISTER_VOLUME, ATTACH_VIRTUAL_DISK_FLAG_AT_BOOT);

bool UseTcp() {
#ifdef _WIN32
  return true;
#else
  const char* transport = std::getenv("VIRTDISK_ATTACH_TRANSPORT");
  return transport != nullptr && std::strcmp(transport, "tcp") == 0;
#endif
}

// PERMANENT_LIFETIME: hands the image over to an attach host process and waits for its report.
// On failure the image is taken back, so the handle works as before.
Status AttachThroughHost(OpenDisk& open, const attach::NbdAttachOptions& options) {
  VDISK_ASSIGN_OR_RETURN(auto registry, attach::AttachRegistry::ForCurrentUser());
  const std::filesystem::path key = open.key();
  if (open.attached()) return Status(Code::kDiskAlreadyOwned, key.string() + ": already attached");
  VDISK_ASSIGN_OR_RETURN(const auto existing, registry.Find(key));
  if (existing) {
    return Status(Code::kDiskAlreadyOwned, key.string() + ": already attached by process " +
                                               std::to_string(existing->server.pid) + " (" +
                                               existing->uri + ")");
  }
  attach::AttachHostRequest request;
  request.registry_dir = registry.dir();
  request.open = open.request();
  request.open.path = key;
  request.attach = options;
  VDISK_RETURN_IF_ERROR(open.HandOver());
  auto uri = attach::StartAttachHost(request);
  if (!uri.ok()) {
    if (Status back = open.TakeBack(); !back.ok()) {
      return Status(uri.status().code(),
                    std::string(uri.status().message()) +
                        "; the image could not be reopened either: " + std::string(back.message()),
                    uri.status().os_error());
    }
    return uri.status();
  }
  return Status::Ok();
}

// The permanent attachment of `key` in the registry, if a live attach host serves it.
Result<std::optional<attach::AttachmentRecord>> HostedAttachment(
    const std::filesystem::path& key) {
  VDISK_ASSIGN_OR_RETURN(auto registry, attach::AttachRegistry::ForCurrentUser());
  VDISK_ASSIGN_OR_RETURN(auto record, registry.Find(key));
  if (record && (!record->permanent || record->control_path.empty())) record.reset();
  return record;
}

// A handle whose disk was handed over takes the image back once no host serves it any more
// (another process detached it, or the host died).
void TakeBackIfHostGone(OpenDisk& open) {
  if (!open.handed_over()) return;
  auto hosted = HostedAttachment(open.key());
  if (hosted.ok() && !hosted->has_value()) (void)open.TakeBack();
}

// Copies `text` with its NUL into a caller's WCHAR buffer of *size_in_bytes bytes, with the size
// protocol: too small (or NULL) gives ERROR_INSUFFICIENT_BUFFER and the size needed.
DWORD CopyOut(const std::basic_string<WCHAR>& text, PULONG size_in_bytes, PWSTR buffer) {
  const ULONG needed = static_cast<ULONG>((text.size() + 1) * sizeof(WCHAR));
  if (buffer == nullptr || *size_in_bytes < needed) {
    *size_in_bytes = needed;
    return ERROR_INSUFFICIENT_BUFFER;
  }
  std::memcpy(buffer, text.c_str(), needed);
  *size_in_bytes = needed;
  return ERROR_SUCCESS;
}

}  // namespace

DWORD AttachImpl(HANDLE handle, PSECURITY_DESCRIPTOR security, DWORD flags,
                 PATTACH_VIRTUAL_DISK_PARAMETERS parameters, LPOVERLAPPED overlapped) {
  if ((flags & ~kKnownAttachFlags) != 0) return ERROR_INVALID_PARAMETER;
  if (parameters != nullptr && Raw(parameters->Version) != ATTACH_VIRTUAL_DISK_VERSION_1 &&
      Raw(parameters->Version) != ATTACH_VIRTUAL_DISK_VERSION_2)
    return ERROR_INVALID_PARAMETER;
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE) != 0 &&
      (parameters == nullptr || Raw(parameters->Version) != ATTACH_VIRTUAL_DISK_VERSION_2))
    return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;

  const bool read_only = (flags & ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY) != 0;
  const DWORD needed =
      read_only ? VIRTUAL_DISK_ACCESS_ATTACH_RO : VIRTUAL_DISK_ACCESS_ATTACH_RW;
  if (!disk->Allows(needed) || disk->options().get_info_only) return ERROR_ACCESS_DENIED;
  if (const Status whole = disk->open_disk().CheckDataAvailable(); !whole.ok()) return Fail(whole);
  TakeBackIfHostGone(disk->open_disk());
  if (disk->open_disk().handed_over()) {
    return Fail(Status(Code::kDiskAlreadyOwned,
                       disk->open_disk().key().string() + ": attached by an attach host"));
  }
  if (!read_only && disk->disk()->read_only()) {
    // ISOs, and disks opened read-only, attach only with ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY.
    SetLastFailureMessage("the disk is open read-only: attach with ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY");
    return ERROR_ACCESS_DENIED;
  }
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST) == 0) {
    auto grants = attach::DescriptorGrantsOthers(
        (flags & ATTACH_VIRTUAL_DISK_FLAG_NO_SECURITY_DESCRIPTOR) != 0 ? nullptr : security);
    if (!grants.ok()) return Fail(grants.status());
    attach::NbdAttachOptions options;
    options.read_only = read_only;
    options.grants_others = *grants;
    options.tcp = UseTcp();
    if ((flags & ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE) != 0) {
      options.range = attach::DiskExportOptions::Range{parameters->Version2.RestrictedOffset,
                                                       parameters->Version2.RestrictedLength};
    }
    auto open = disk->shared_open_disk();
    if ((flags & ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME) != 0) {
      const Status status = AttachThroughHost(*open, options);
      if (!status.ok()) return Fail(status);
      return CompleteNow(overlapped, ERROR_SUCCESS, disk.get());
    }
    const Status status = open->AttachSurfaced(read_only, [&]() -> Result<std::unique_ptr<Surface>> {
      VDISK_ASSIGN_OR_RETURN(auto registry, attach::AttachRegistry::ForCurrentUser());
      VDISK_ASSIGN_OR_RETURN(auto attachment,
                             attach::NbdAttachment::Start(open, std::move(registry), options));
      return std::unique_ptr<Surface>(std::move(attachment));
    });
    if (!status.ok()) return Fail(status);
    disk->set_attached_here(true);
    return CompleteNow(overlapped, ERROR_SUCCESS, disk.get());
  }
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE) != 0) {
    SetLastFailureMessage("ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE applies to exported disks; "
                          "raw I/O (NO_LOCAL_HOST) always sees the whole disk");
    return ERROR_INVALID_PARAMETER;
  }
  const Status status = disk->open_disk().AttachRaw(read_only);
  if (!status.ok()) return Fail(status);
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME) == 0) disk->set_attached_here(true);
  return CompleteNow(overlapped, ERROR_SUCCESS, disk.get());
}

DWORD DetachImpl(HANDLE handle, DWORD flags) {
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  if (flags != DETACH_VIRTUAL_DISK_FLAG_NONE) return ERROR_INVALID_PARAMETER;
  if (!disk->Allows(VIRTUAL_DISK_ACCESS_DETACH) || disk->options().get_info_only)
    return ERROR_ACCESS_DENIED;
  OpenDisk& open = disk->open_disk();
  if (open.attached()) {
    const Status status = open.Detach();
    if (!status.ok()) return Fail(status);
    disk->set_attached_here(false);
    return ERROR_SUCCESS;
  }
  // Attached with PERMANENT_LIFETIME, by this or another process of the user: its attach host
  // detaches it.
  auto hosted = HostedAttachment(open.key());
  if (!hosted.ok()) return Fail(hosted.status());
  if (!hosted->has_value()) {
    TakeBackIfHostGone(open);
    // Windows answers a detach of a disk that is not attached with
    // ERROR_VIRTDISK_NOT_VIRTUAL_DISK, as OpenDisk::Detach does.
    return Fail(Status(Code::kNotVirtualDisk, open.key().string() + ": not attached"));
  }
  if (Status detached = attach::DetachThroughHost(**hosted); !detached.ok()) {
    TakeBackIfHostGone(open);
    return Fail(detached);
  }
  // The disk is detached either way; a handle that could not take the image back keeps its
  // read-only view (its reads and writes fail with ERROR_SHARING_VIOLATION).
  if (Status back = open.TakeBack(); !back.ok()) {
    TraceLine("DetachVirtualDisk: detached, but the image could not be reopened: " +
              std::string(back.message()));
  }
  return ERROR_SUCCESS;
}

DWORD PhysicalPathImpl(HANDLE handle, PULONG size_in_bytes, PWSTR path) {
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  if (size_in_bytes == nullptr) return ERROR_INVALID_PARAMETER;
  std::string uri = disk->open_disk().surface_uri();
  if (uri.empty() && disk->open_disk().attached()) {
    SetLastFailureMessage("the disk is attached for raw I/O on its handle (NO_LOCAL_HOST) only");
    return ERROR_NOT_SUPPORTED;
  }
  if (uri.empty()) {
    // Attached by another process of the user?
    auto registry = attach::AttachRegistry::ForCurrentUser();
    if (!registry.ok()) return Fail(registry.status());
    auto record = registry->Find(disk->open_disk().key());
    if (!record.ok()) return Fail(record.status());
    if (!record->has_value()) {
      SetLastFailureMessage(disk->open_disk().key().string() + ": not attached");
      return ERROR_VIRTDISK_NOT_VIRTUAL_DISK;
    }
    uri = (*record)->uri;
  }
  return CopyOut(ToWide(uri), size_in_bytes, path);
}

DWORD AllPathsImpl(PULONG size_in_bytes, PWSTR paths) {
  if (size_in_bytes == nullptr) return ERROR_INVALID_PARAMETER;
  auto registry = attach::AttachRegistry::ForCurrentUser();
  if (!registry.ok()) return Fail(registry.status());
  auto records = registry->List();
  if (!records.ok()) return Fail(records.status());
  // A list of NUL-terminated strings ended by an empty one (REG_MULTI_SZ), as Windows returns.
  std::basic_string<WCHAR> list;
  for (const auto& record : *records) {
    list += ToWide(record.uri);
    list.push_back(0);
  }
  if (list.empty()) list.push_back(0);  // an empty list is two NULs
  // The list's final NUL is the one CopyOut adds.
  return CopyOut(list, size_in_bytes, paths);
}

}  // namespace vdisk::api
