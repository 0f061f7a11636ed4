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
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/strings.h"
#include "api/trace.h"
#include "attach/attach_registry.h"
#include "attach/disk_export_target.h"
#include "attach/nbd_server.h"
#include "attach/security_descriptor.h"

namespace vdisk::api {
namespace {

constexpr DWORD kKnownAttachFlags = Bits(
    ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY, ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER, ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, ATTACH_VIRTUAL_DISK_FLAG_NO_SECURITY_DESCRIPTOR, ATTACH_VIRTUAL_DISK_FLAG_BYPASS_DEFAULT_ENCRYPTION_POLICY, ATTACH_VIRTUAL_DISK_FLAG_NON_PNP, ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE, ATTACH_VIRTUAL_DISK_FLAG_SINGLE_PARTITION, ATTACH_VIRTUAL_DISK_FLAG_REGISTER_VOLUME, ATTACH_VIRTUAL_DISK_FLAG_AT_BOOT);

// An attached disk's NBD export, and its record in the attach registry.
class NbdSurface final : public Surface {
 public:
  NbdSurface(std::unique_ptr<attach::NbdServer> server, attach::AttachRegistry registry,
             std::filesystem::path disk_path)
      : server_(std::move(server)), registry_(std::move(registry)), disk_path_(std::move(disk_path)) {}
  ~NbdSurface() override { (void)Stop(); }
  std::string uri() const override { return server_->uri(); }
  Status Stop() override {
    const Status status = server_->Stop();
    (void)registry_.Remove(disk_path_, attach::ProcessId::Current());
    return status;
  }

 private:
  std::unique_ptr<attach::NbdServer> server_;
  attach::AttachRegistry registry_;
  std::filesystem::path disk_path_;
};

// A short, socket-path-safe name from the disk's file name (sun_path holds 108 bytes).
std::string SocketStem(const std::filesystem::path& disk_path) {
  std::string stem;
  for (const char c : disk_path.filename().string()) {
    if (stem.size() == 24) break;
    stem += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_') ? c : '_';
  }
  return stem.empty() ? "disk" : stem;
}

Result<std::unique_ptr<Surface>> SurfaceOverNbd(const std::shared_ptr<OpenDisk>& disk,
                                                bool read_only, bool grants_others,
                                                std::optional<attach::DiskExportOptions::Range> range) {
  VDISK_ASSIGN_OR_RETURN(auto registry, attach::AttachRegistry::ForCurrentUser());
  const std::filesystem::path disk_path = disk->key();
  VDISK_ASSIGN_OR_RETURN(const auto existing, registry.Find(disk_path));
  if (existing) {
    return Status(Code::kDiskAlreadyOwned, disk_path.string() + ": already attached by process " +
                                               std::to_string(existing->server.pid) + " (" +
                                               existing->uri + ")");
  }
  attach::DiskExportOptions export_options;
  export_options.read_only = read_only;
  export_options.restricted_range = range;
  VDISK_ASSIGN_OR_RETURN(auto target, attach::DiskExportTarget::Create(disk, export_options));
  attach::NbdServerOptions options;
  options.export_name = disk_path.filename().string();
  options.description = disk_path.string();
  options.read_only = read_only;
#ifdef _WIN32
  const bool tcp = true;
#else
  const char* transport = std::getenv("VIRTDISK_ATTACH_TRANSPORT");
  const bool tcp = transport != nullptr && std::strcmp(transport, "tcp") == 0;
#endif
  if (tcp) {
    options.transport = attach::NbdServerOptions::Transport::kTcp;
    options.host = "127.0.0.1";
  } else {
    options.socket_path = registry.NewSocketPath(SocketStem(disk_path));
    options.socket_mode = grants_others ? 0666 : 0600;
  }
  VDISK_ASSIGN_OR_RETURN(auto server, attach::NbdServer::Start(
                                          std::shared_ptr<attach::ExportTarget>(std::move(target)),
                                          options));
  attach::AttachmentRecord record;
  record.disk_path = disk_path;
  record.uri = server->uri();
  record.socket_path = options.socket_path;
  record.server = attach::ProcessId::Current();
  record.read_only = read_only;
  if (Status added = registry.Add(record); !added.ok()) {
    (void)server->Stop();
    return added;
  }
  return std::unique_ptr<Surface>(
      std::make_unique<NbdSurface>(std::move(server), std::move(registry), disk_path));
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
  if (!read_only && disk->disk()->read_only()) {
    // ISOs, and disks opened read-only, attach only with ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY.
    SetLastFailureMessage("the disk is open read-only: attach with ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY");
    return ERROR_ACCESS_DENIED;
  }
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST) == 0) {
    if ((flags & ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME) != 0) {
      SetLastFailureMessage(
          "ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME (an attachment that outlives the process) "
          "is not built yet; attach without it, or with NO_LOCAL_HOST");
      return ERROR_NOT_SUPPORTED;
    }
    auto grants = attach::DescriptorGrantsOthers(
        (flags & ATTACH_VIRTUAL_DISK_FLAG_NO_SECURITY_DESCRIPTOR) != 0 ? nullptr : security);
    if (!grants.ok()) return Fail(grants.status());
    std::optional<attach::DiskExportOptions::Range> range;
    if ((flags & ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE) != 0) {
      range = attach::DiskExportOptions::Range{parameters->Version2.RestrictedOffset,
                                               parameters->Version2.RestrictedLength};
    }
    auto open = disk->shared_open_disk();
    const Status status = open->AttachSurfaced(read_only, [&] {
      return SurfaceOverNbd(open, read_only, *grants, range);
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
  const Status status = disk->open_disk().Detach();
  if (!status.ok()) return Fail(status);
  disk->set_attached_here(false);
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

}  // namespace
}  // namespace vdisk::api

using namespace vdisk::api;  // NOLINT: export definitions only

extern "C" {

VIRTDISK_API DWORD WINAPI AttachVirtualDisk(HANDLE VirtualDiskHandle,
                                            PSECURITY_DESCRIPTOR SecurityDescriptor,
                                            ATTACH_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags,
                                            PATTACH_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped) {
  (void)ProviderSpecificFlags;
  ClearLastFailureMessage();
  const DWORD result = GuardedCall("AttachVirtualDisk", [&] {
    return AttachImpl(VirtualDiskHandle, SecurityDescriptor, Raw(Flags), Parameters, Overlapped);
  });
  TraceCall("AttachVirtualDisk",
            Hex(reinterpret_cast<ULONG_PTR>(VirtualDiskHandle)) + ", flags " + Hex(Raw(Flags)),
            result);
  return result;
}

VIRTDISK_API DWORD WINAPI DetachVirtualDisk(HANDLE VirtualDiskHandle,
                                            DETACH_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags) {
  (void)ProviderSpecificFlags;
  ClearLastFailureMessage();
  const DWORD result =
      GuardedCall("DetachVirtualDisk", [&] { return DetachImpl(VirtualDiskHandle, Raw(Flags)); });
  TraceCall("DetachVirtualDisk",
            Hex(reinterpret_cast<ULONG_PTR>(VirtualDiskHandle)) + ", flags " + Hex(Raw(Flags)),
            result);
  return result;
}

VIRTDISK_API DWORD WINAPI GetVirtualDiskPhysicalPath(HANDLE VirtualDiskHandle,
                                                     PULONG DiskPathSizeInBytes, PWSTR DiskPath) {
  ClearLastFailureMessage();
  const DWORD result = GuardedCall("GetVirtualDiskPhysicalPath", [&] {
    return PhysicalPathImpl(VirtualDiskHandle, DiskPathSizeInBytes, DiskPath);
  });
  TraceCall("GetVirtualDiskPhysicalPath", Hex(reinterpret_cast<ULONG_PTR>(VirtualDiskHandle)),
            result);
  return result;
}

VIRTDISK_API DWORD WINAPI GetAllAttachedVirtualDiskPhysicalPaths(PULONG PathsBufferSizeInBytes,
                                                                 PWSTR PathsBuffer) {
  ClearLastFailureMessage();
  const DWORD result = GuardedCall("GetAllAttachedVirtualDiskPhysicalPaths", [&] {
    return AllPathsImpl(PathsBufferSizeInBytes, PathsBuffer);
  });
  TraceCall("GetAllAttachedVirtualDiskPhysicalPaths", "", result);
  return result;
}

}  // extern "C"
