// GetStorageDependencyInformation for virtual disk handles, and (Windows) for volume and drive
// handles of the system's own disks, which are on no virtual disk of this library (see
// IsStorageHandleOffVirtualDisks).
//
// Windows answers it for the volumes and disks of its storage stack. Here the disks are the
// handles of OpenVirtualDisk and CreateVirtualDisk, and for them:
//  - GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES (= _PARENTS): what the disk depends on, one entry
//    per file of its differencing chain, the file it was opened from first. A handle opened with
//    OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS (or GetInfoOnly) knows only that file.
//  - Without it: what depends on the disk, i.e. volumes and disks hosted inside it. A user-mode
//    library mounts nothing inside a virtual disk, so the answer has no entries.
//  - GET_STORAGE_DEPENDENCY_FLAG_DISK_HANDLE says that the handle is a disk, not a volume or a
//    directory. Every handle this library knows is a disk, so the flag is accepted but not
//    required: Microsoft's GetStorageDependencyInformation sample retries without it.
//
// Where the reference (the SDK documentation) is silent, these are the choices made here:
//  - AncestorLevel: 1 for the file the disk was opened from, 2 for its parent, and so on.
//  - HostVolumeName: the volume holding the file (platform::LocateOnVolume: \\?\Volume{GUID}\ on
//    Windows, the mount point with a trailing '/' on POSIX) and DependentVolumeRelativePath the
//    file's path below it, so that the two together spell the file's full path.
//  - DependencyDeviceName: the attached disk's physical path (its NBD URI, as
//    GetVirtualDiskPhysicalPath returns it), or an empty string if it is not exported.
//  - DependentVolumeName: an empty string (no volume is mounted from a virtual disk).
//  - DependencyTypeFlags: PARENT and READ_ONLY for every file below the first; READ_ONLY for the
//    first when it is open or attached read-only; FULLY_ALLOCATED for fixed images (and ISOs);
//    MULT_BACKING_FILES on every entry of a chain of more than one file; REMOTE for files on a
//    network file system; and, for an attached disk, NO_DRIVE_LETTER on every entry (a user-mode
//    attachment never gets a drive letter), NO_HOST_DISK when it is attached with NO_LOCAL_HOST,
//    PERMANENT_LIFETIME when an attach host serves it.
//  - ProviderSpecificFlags: 0. VirtualStorageType: the file's own format, vendor Microsoft (as
//    GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE answers).
//  - A buffer too small for the Version field (under 8 bytes) is ERROR_INVALID_PARAMETER: the
//    caller must fill in the Version it wants.
// Every string is NUL-terminated and lives in the caller's buffer, after the entries; the
// pointers point there. SizeUsed receives the size the answer needs, on success and with
// ERROR_INSUFFICIENT_BUFFER.
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/impl.h"
#include "api/strings.h"
#include "api/trace.h"
#include "attach/attach_registry.h"
#include "platform/volume.h"
#ifdef _WIN32
#include "api/win32/volume_handle.h"
#endif

namespace vdisk::api {
namespace {

using WString = std::basic_string<WCHAR>;

constexpr DWORD kKnownFlags =
    Bits(GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES, GET_STORAGE_DEPENDENCY_FLAG_DISK_HANDLE);
constexpr std::size_t kEntriesOffset = offsetof(STORAGE_DEPENDENCY_INFO, Version1Entries);
static_assert(offsetof(STORAGE_DEPENDENCY_INFO, Version2Entries) == kEntriesOffset);

// One file of the chain, as an entry describes it.
struct Dependency {
  DWORD flags = 0;
  DiskFormat format = DiskFormat::kUnknown;
  ULONG ancestor_level = 0;
  WString device_name;
  WString host_volume;
  WString dependent_volume;
  WString relative_path;
};

// How the disk is attached, as far as this process can tell.
struct Attachment {
  bool attached = false;
  bool read_only = false;
  bool no_host_disk = false;  // raw I/O on the handle only (NO_LOCAL_HOST)
  bool permanent = false;
  std::string uri;
};

Attachment AttachmentOf(OpenDisk& open) {
  Attachment a;
  if (open.attached()) {
    a.attached = true;
    a.read_only = open.attached_read_only();
    a.uri = open.surface_uri();
    a.no_host_disk = a.uri.empty();
    return a;
  }
  // Attached by another process of the user, or by this one's attach host. A registry that
  // cannot be read means nothing is known to be attached: the question is about files.
  auto registry = attach::AttachRegistry::ForCurrentUser();
  if (!registry.ok()) return a;
  auto record = registry->Find(open.key());
  if (!record.ok() || !record->has_value()) return a;
  a.attached = true;
  a.read_only = (*record)->read_only;
  a.permanent = (*record)->permanent;
  a.uri = (*record)->uri;
  return a;
}

Result<std::vector<Dependency>> ChainDependencies(OpenDisk& open, bool handle_read_only) {
  const Attachment attachment = AttachmentOf(open);
  const auto disk = open.disk();
  const auto& chain = disk->chain();
  std::vector<Dependency> out;
  for (std::size_t level = 0; level < chain.size(); ++level) {
    const Image& image = *chain[level];
    VDISK_ASSIGN_OR_RETURN(const auto volume, platform::LocateOnVolume(image.file().path()));
    Dependency d;
    d.format = image.format();
    d.ancestor_level = static_cast<ULONG>(level + 1);
    d.device_name = ToWide(attachment.uri);
    d.host_volume = ToWide(volume.volume.string());
    d.relative_path = ToWide(volume.relative_path.string());
    if (level > 0) d.flags |= DEPENDENT_DISK_FLAG_PARENT | DEPENDENT_DISK_FLAG_READ_ONLY;
    if (level == 0 && (handle_read_only || image.read_only() || attachment.read_only)) {
      d.flags |= DEPENDENT_DISK_FLAG_READ_ONLY;
    }
    if (image.subtype() == DiskSubtype::kFixed) d.flags |= DEPENDENT_DISK_FLAG_FULLY_ALLOCATED;
    if (chain.size() > 1) d.flags |= DEPENDENT_DISK_FLAG_MULT_BACKING_FILES;
    if (volume.remote) d.flags |= DEPENDENT_DISK_FLAG_REMOTE;
    if (attachment.attached) {
      d.flags |= DEPENDENT_DISK_FLAG_NO_DRIVE_LETTER;
      if (attachment.no_host_disk) d.flags |= DEPENDENT_DISK_FLAG_NO_HOST_DISK;
      if (attachment.permanent) d.flags |= DEPENDENT_DISK_FLAG_PERMANENT_LIFETIME;
    }
    out.push_back(std::move(d));
  }
  return out;
}

VIRTUAL_STORAGE_TYPE StorageTypeOf(DiskFormat format) {
  VIRTUAL_STORAGE_TYPE type{};
  type.DeviceId = static_cast<ULONG>(format);
  const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
  type.VendorId = microsoft;
  return type;
}

std::size_t StringBytes(const WString& s) { return (s.size() + 1) * sizeof(WCHAR); }

// Bytes the answer needs: header, entries, then (version 2) the strings.
std::size_t NeededSize(DWORD version, const std::vector<Dependency>& entries) {
  if (version == STORAGE_DEPENDENCY_INFO_VERSION_1) {
    return kEntriesOffset + entries.size() * sizeof(STORAGE_DEPENDENCY_INFO_TYPE_1);
  }
  std::size_t size = kEntriesOffset + entries.size() * sizeof(STORAGE_DEPENDENCY_INFO_TYPE_2);
  size = (size + alignof(WCHAR) - 1) / alignof(WCHAR) * alignof(WCHAR);
  for (const auto& e : entries) {
    size += StringBytes(e.device_name) + StringBytes(e.host_volume) +
            StringBytes(e.dependent_volume) + StringBytes(e.relative_path);
  }
  return size;
}

// Writes the answer. REQUIRES: `info` holds NeededSize(version, entries) bytes.
void Fill(DWORD version, const std::vector<Dependency>& entries, PSTORAGE_DEPENDENCY_INFO info) {
  auto* base = reinterpret_cast<unsigned char*>(info);
  info->NumberEntries = static_cast<ULONG>(entries.size());
  if (version == STORAGE_DEPENDENCY_INFO_VERSION_1) {
    for (std::size_t i = 0; i < entries.size(); ++i) {
      STORAGE_DEPENDENCY_INFO_TYPE_1 entry{};
      entry.DependencyTypeFlags = static_cast<DEPENDENT_DISK_FLAG>(entries[i].flags);
      entry.ProviderSpecificFlags = 0;
      entry.VirtualStorageType = StorageTypeOf(entries[i].format);
      std::memcpy(base + kEntriesOffset + i * sizeof entry, &entry, sizeof entry);
    }
    return;
  }
  std::size_t at = kEntriesOffset + entries.size() * sizeof(STORAGE_DEPENDENCY_INFO_TYPE_2);
  at = (at + alignof(WCHAR) - 1) / alignof(WCHAR) * alignof(WCHAR);
  const auto place = [&](const WString& s) {
    auto* where = reinterpret_cast<PWSTR>(base + at);
    std::memcpy(where, s.c_str(), StringBytes(s));
    at += StringBytes(s);
    return where;
  };
  for (std::size_t i = 0; i < entries.size(); ++i) {
    STORAGE_DEPENDENCY_INFO_TYPE_2 entry{};
    entry.DependencyTypeFlags = static_cast<DEPENDENT_DISK_FLAG>(entries[i].flags);
    entry.ProviderSpecificFlags = 0;
    entry.VirtualStorageType = StorageTypeOf(entries[i].format);
    entry.AncestorLevel = entries[i].ancestor_level;
    entry.DependencyDeviceName = place(entries[i].device_name);
    entry.HostVolumeName = place(entries[i].host_volume);
    entry.DependentVolumeName = place(entries[i].dependent_volume);
    entry.DependentVolumeRelativePath = place(entries[i].relative_path);
    std::memcpy(base + kEntriesOffset + i * sizeof entry, &entry, sizeof entry);
  }
}

// A volume, physical drive or volume root of the system's own storage stack, which is never on a
// disk of this library (it surfaces none as a Windows disk): the answer is success with no
// entries (no virtual disk hosts it and, without HOST_VOLUMES, none hosted on it is surfaced),
// SizeUsed the header's 8 bytes. Sources: Wine's GetStorageDependencyInformation
// (dlls/virtdisk/virtdisk_main.c) answers a volume handle so, and its conformance test
// (dlls/virtdisk/tests/virtdisk.c), also run on Windows, opens C: and expects only the argument
// errors that come first. Microsoft's documentation names no error for a volume that is not on a
// virtual disk; its sample (Windows-classic-samples, Samples/Hyper-V/Storage/cpp/
// GetStorageDependencyInformation.cpp, opening \\.\C:\ or \\.\PhysicalDriveN) says only
// that a failure is "most likely due to the disk not being a mounted VHD", so Windows itself
// may refuse such a disk with an error it does not name; docs/behaviour.md says so. Linux has no
// such handles (the kernel32 subset opens no devices).
bool IsStorageHandleOffVirtualDisks(HANDLE handle) {
#ifdef _WIN32
  return win32::IsVolumeOrDriveHandle(handle);
#else
  (void)handle;
  return false;
#endif
}

}  // namespace

DWORD DependencyImpl(HANDLE handle, DWORD flags, ULONG size, PSTORAGE_DEPENDENCY_INFO info,
                     PULONG size_used) {
  // Windows' order: NULLs, flag bits, the version, then the object.
  if (info == nullptr) return ERROR_INVALID_PARAMETER;
  if ((flags & ~kKnownFlags) != 0) return ERROR_INVALID_PARAMETER;
  if (size < kEntriesOffset) return ERROR_INVALID_PARAMETER;
  const DWORD version = Raw(info->Version);
  if (version != STORAGE_DEPENDENCY_INFO_VERSION_1 && version != STORAGE_DEPENDENCY_INFO_VERSION_2)
    return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk && !IsStorageHandleOffVirtualDisks(handle)) return error;

  std::vector<Dependency> entries;
  if (disk && (flags & GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES) != 0) {
    auto chain = ChainDependencies(disk->open_disk(), disk->options().read_only);
    if (!chain.ok()) return Fail(chain.status());
    entries = std::move(chain).value();
  }
  const std::size_t needed = NeededSize(version, entries);
  if (needed > size) {
    if (size_used != nullptr) *size_used = static_cast<ULONG>(needed);
    return ERROR_INSUFFICIENT_BUFFER;
  }
  Fill(version, entries, info);
  if (size_used != nullptr) *size_used = static_cast<ULONG>(needed);
  return ERROR_SUCCESS;
}

}  // namespace vdisk::api
