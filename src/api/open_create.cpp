// OpenVirtualDisk and CreateVirtualDisk.
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/disk_handle.h"
#include "api/error_map.h"
#include "api/handle_table.h"
#include "api/impl.h"
#include "api/strings.h"
#include "api/trace.h"
#include "platform/file.h"
#include "attach/attach_registry.h"
#include "core/open_disk.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"

namespace vdisk::api {
namespace {

constexpr DWORD kKnownOpenFlags = Bits(
    OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, OPEN_VIRTUAL_DISK_FLAG_BLANK_FILE, OPEN_VIRTUAL_DISK_FLAG_BOOT_DRIVE, OPEN_VIRTUAL_DISK_FLAG_CACHED_IO, OPEN_VIRTUAL_DISK_FLAG_CUSTOM_DIFF_CHAIN, OPEN_VIRTUAL_DISK_FLAG_PARENT_CACHED_IO, OPEN_VIRTUAL_DISK_FLAG_VHDSET_FILE_ONLY, OPEN_VIRTUAL_DISK_FLAG_IGNORE_RELATIVE_PARENT_LOCATOR, OPEN_VIRTUAL_DISK_FLAG_NO_WRITE_HARDENING, OPEN_VIRTUAL_DISK_FLAG_SUPPORT_COMPRESSED_VOLUMES, OPEN_VIRTUAL_DISK_FLAG_SUPPORT_SPARSE_FILES_ANY_FS, OPEN_VIRTUAL_DISK_FLAG_SUPPORT_ENCRYPTED_FILES);

constexpr DWORD kKnownCreateFlags = Bits(
    CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION, CREATE_VIRTUAL_DISK_FLAG_PREVENT_WRITES_TO_SOURCE_DISK, CREATE_VIRTUAL_DISK_FLAG_DO_NOT_COPY_METADATA_FROM_PARENT, CREATE_VIRTUAL_DISK_FLAG_CREATE_BACKING_STORAGE, CREATE_VIRTUAL_DISK_FLAG_USE_CHANGE_TRACKING_SOURCE_LIMIT, CREATE_VIRTUAL_DISK_FLAG_PRESERVE_PARENT_CHANGE_TRACKING_STATE, CREATE_VIRTUAL_DISK_FLAG_VHD_SET_USE_ORIGINAL_BACKING_STORAGE, CREATE_VIRTUAL_DISK_FLAG_SPARSE_FILE, CREATE_VIRTUAL_DISK_FLAG_PMEM_COMPATIBLE, CREATE_VIRTUAL_DISK_FLAG_SUPPORT_COMPRESSED_VOLUMES, CREATE_VIRTUAL_DISK_FLAG_SUPPORT_SPARSE_FILES_ANY_FS);

// Access that needs the image open for writing.
constexpr DWORD kWriteAccess = Bits(
    VIRTUAL_DISK_ACCESS_ATTACH_RW, VIRTUAL_DISK_ACCESS_METAOPS, VIRTUAL_DISK_ACCESS_CREATE);

DWORD Publish(std::shared_ptr<OpenDisk> disk, const DiskHandleOptions& options, PHANDLE handle) {
  HANDLE value =
      HandleTable::Instance().Insert(std::make_shared<DiskHandle>(std::move(disk), options));
  if (value == nullptr) return ERROR_NOT_ENOUGH_MEMORY;
  *handle = value;
  return ERROR_SUCCESS;
}

// Whether a live attach host of this user serves the disk at `path`.
bool ServedByAttachHost(const std::filesystem::path& path) {
  auto registry = attach::AttachRegistry::ForCurrentUser();
  if (!registry.ok()) return false;
  auto record = registry->Find(OpenDisk::KeyOf(path));
  return record.ok() && record->has_value() && (*record)->permanent &&
         !(*record)->control_path.empty();
}

// Version 1 parameters need an access mask; VIRTUAL_DISK_ACCESS_NONE is a bad parameter, but
// Windows looks for the file first: a missing file is ERROR_FILE_NOT_FOUND (Wine's conformance
// test dlls/virtdisk/tests/virtdisk.c, test_OpenVirtualDisk, passes on Windows with that answer).
DWORD Version1WithoutAccess(PCWSTR path) {
  if (*path != 0) {
    const std::filesystem::path file = ToPath(path);
    std::error_code ec;
    if (!std::filesystem::exists(std::filesystem::symlink_status(file, ec))) {
      const bool dir_missing =
          file.has_parent_path() && !std::filesystem::is_directory(file.parent_path(), ec);
      SetLastFailureMessage(file.string() + ": no such file");
      return dir_missing ? ERROR_PATH_NOT_FOUND : ERROR_FILE_NOT_FOUND;
    }
  }
  SetLastFailureMessage("OPEN_VIRTUAL_DISK_VERSION_1 needs an access mask, not VIRTUAL_DISK_ACCESS_NONE");
  return ERROR_INVALID_PARAMETER;
}

}  // namespace

DWORD OpenDiskImpl(PVIRTUAL_STORAGE_TYPE type, PCWSTR path, DWORD mask, DWORD flags, POPEN_VIRTUAL_DISK_PARAMETERS parameters,
                   PHANDLE handle) {
  // Windows' order: NULLs, then mask and flag bits, then the parameter version, then the file.
  if (type == nullptr || path == nullptr || handle == nullptr) return ERROR_INVALID_PARAMETER;
  if ((mask & ~VIRTUAL_DISK_ACCESS_ALL) != 0) return ERROR_INVALID_PARAMETER;
  if ((flags & ~kKnownOpenFlags) != 0) return ERROR_INVALID_PARAMETER;

  DiskHandleOptions options;
  options.access = mask;
  const DWORD version =
      parameters == nullptr ? DWORD{OPEN_VIRTUAL_DISK_VERSION_1} : Raw(parameters->Version);
  switch (version) {
    case OPEN_VIRTUAL_DISK_VERSION_1:
      if (mask == VIRTUAL_DISK_ACCESS_NONE) return Version1WithoutAccess(path);
      options.read_only = (mask & kWriteAccess) == 0;
      break;
    case OPEN_VIRTUAL_DISK_VERSION_2:
    case OPEN_VIRTUAL_DISK_VERSION_3:
      // Version 2 and later take their access from the parameters, never from the mask.
      if (mask != VIRTUAL_DISK_ACCESS_NONE) return ERROR_INVALID_PARAMETER;
      options.version2 = true;
      options.get_info_only = parameters->Version2.GetInfoOnly != FALSE;
      options.read_only = options.get_info_only || parameters->Version2.ReadOnly != FALSE;
      break;
    default:
      return ERROR_INVALID_PARAMETER;
  }
  if (*path == 0) return ERROR_INVALID_PARAMETER;

  auto format = FormatOf(*type);
  if (!format.ok()) return Fail(format.status());
  if (*format == DiskFormat::kIso && !options.read_only) {
    SetLastFailureMessage("ISO images open read-only only");
    return ERROR_ACCESS_DENIED;
  }

  DiskOpenRequest request;
  request.path = ToPath(path);
  request.format = *format;
  request.options.read_only = options.read_only;
  request.options.no_write_hardening = (flags & OPEN_VIRTUAL_DISK_FLAG_NO_WRITE_HARDENING) != 0;
  request.options.ignore_relative_parent_locator =
      (flags & OPEN_VIRTUAL_DISK_FLAG_IGNORE_RELATIVE_PARENT_LOCATOR) != 0;
  // A get-info-only handle must open even when the chain is broken, to let tools repair it.
  request.no_parents = (flags & OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS) != 0 || options.get_info_only;
  // The caller builds the chain with AddVirtualDiskParent (Microsoft's storage sample,
  // Samples/Hyper-V/Storage/cpp/AddVirtualDiskParent.cpp: open with this flag, then add).
  request.custom_chain = (flags & OPEN_VIRTUAL_DISK_FLAG_CUSTOM_DIFF_CHAIN) != 0 && !request.no_parents;
  // A get-info-only handle only answers questions: it reads the image without the lock, so it
  // is not kept out by a process that holds the disk for writing and does not keep one out (as
  // `qemu-img info -U` reads an image qemu holds). Its answers are of the image as it is when
  // asked; the image is opened read-only and never written.
  request.without_lock = options.get_info_only;

  auto disk = OpenDisk::Open(BuiltinProviders(), request, options.get_info_only);
  if (!disk.ok() && disk.status().code() == Code::kSharingViolation &&
      ServedByAttachHost(request.path)) {
    // The lock is the attach host's (PERMANENT_LIFETIME): the handle gets the lock-free view,
    // enough to query and to detach the disk (attach.cpp).
    disk = OpenDisk::OpenHandedOver(BuiltinProviders(), request, options.get_info_only);
  }
  if (!disk.ok()) return Fail(disk.status());
  return Publish(std::move(disk).value(), options, handle);
}

namespace {

struct CreateArguments {
  GUID unique_id;
  ULONGLONG maximum_size = 0;
  ULONG block_size = 0;
  ULONG sector_size = 0;
  ULONG physical_sector_size = 0;
  PCWSTR parent_path = nullptr;
  PCWSTR source_path = nullptr;
  DWORD open_flags = OPEN_VIRTUAL_DISK_FLAG_NONE;
};

}  // namespace

DWORD CreateDiskImpl(PVIRTUAL_STORAGE_TYPE type, PCWSTR path, DWORD mask, DWORD flags, PCREATE_VIRTUAL_DISK_PARAMETERS parameters,
                     LPOVERLAPPED overlapped, PHANDLE handle) {
  if (type == nullptr || path == nullptr || parameters == nullptr || handle == nullptr)
    return ERROR_INVALID_PARAMETER;
  if ((mask & ~VIRTUAL_DISK_ACCESS_ALL) != 0) return ERROR_INVALID_PARAMETER;
  if ((flags & ~kKnownCreateFlags) != 0) return ERROR_INVALID_PARAMETER;

  CreateArguments args;
  DiskHandleOptions options;
  options.access = mask;
  switch (Raw(parameters->Version)) {
    case CREATE_VIRTUAL_DISK_VERSION_1: {
      if (mask == VIRTUAL_DISK_ACCESS_NONE) return ERROR_INVALID_PARAMETER;
      const auto& v1 = parameters->Version1;
      args = {v1.UniqueId, v1.MaximumSize, v1.BlockSizeInBytes, v1.SectorSizeInBytes, 0,
              v1.ParentPath, v1.SourcePath, OPEN_VIRTUAL_DISK_FLAG_NONE};
      break;
    }
    case CREATE_VIRTUAL_DISK_VERSION_2:
    case CREATE_VIRTUAL_DISK_VERSION_3:
    case CREATE_VIRTUAL_DISK_VERSION_4: {
      if (mask != VIRTUAL_DISK_ACCESS_NONE) return ERROR_INVALID_PARAMETER;
      // Versions 3 and 4 only add fields that start with V2's, so V2's view reads them all.
      const auto& v2 = parameters->Version2;
      args = {v2.UniqueId,   v2.MaximumSize, v2.BlockSizeInBytes, v2.SectorSizeInBytes,
              v2.PhysicalSectorSizeInBytes, v2.ParentPath, v2.SourcePath, Raw(v2.OpenFlags)};
      if (Raw(parameters->Version) >= CREATE_VIRTUAL_DISK_VERSION_3 &&
          parameters->Version3.SourceLimitPath != nullptr) {
        SetLastFailureMessage("SourceLimitPath (resilient change tracking) is not supported");
        return ERROR_NOT_SUPPORTED;
      }
      options.version2 = true;
      break;
    }
    default:
      return ERROR_INVALID_PARAMETER;
  }
  if (*path == 0) return ERROR_INVALID_PARAMETER;
  if ((args.open_flags & ~kKnownOpenFlags) != 0) return ERROR_INVALID_PARAMETER;

  const bool has_parent = args.parent_path != nullptr && *args.parent_path != 0;
  const bool has_source = args.source_path != nullptr && *args.source_path != 0;
  const bool fixed = (flags & CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION) != 0;
  // CREATE_VIRTUAL_DISK_PARAMETERS: MaximumSize must be 0 with a parent; without a parent or
  // source it must be given, as a multiple of 512.
  if (has_parent && (args.maximum_size != 0 || fixed || has_source)) return ERROR_INVALID_PARAMETER;
  if (!has_parent && !has_source && args.maximum_size == 0) return ERROR_INVALID_PARAMETER;
  if (args.maximum_size % 512 != 0) return ERROR_INVALID_PARAMETER;

  auto format = FormatOf(*type);
  if (!format.ok()) return Fail(format.status());
  DiskCreateRequest request;
  request.path = ToPath(path);
  request.format = *format;
  if (request.format == DiskFormat::kUnknown) {
    // Windows picks the format of a new file from its extension.
    std::string ext = request.path.extension().string();
    for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext == ".vhd" || ext == ".avhd") {
      request.format = DiskFormat::kVhd;
    } else if (ext == ".vhdx" || ext == ".avhdx") {
      request.format = DiskFormat::kVhdx;
    } else {
      SetLastFailureMessage("cannot tell the format of a new disk from the extension '" + ext +
                            "'");
      return ERROR_VIRTDISK_PROVIDER_NOT_FOUND;
    }
  }
  if (request.format == DiskFormat::kIso) {
    SetLastFailureMessage("ISO images cannot be created");
    return ERROR_NOT_SUPPORTED;
  }
  request.options.subtype = fixed ? DiskSubtype::kFixed : DiskSubtype::kDynamic;
  request.options.virtual_size = args.maximum_size;
  request.options.block_size = args.block_size;
  request.options.logical_sector_size = args.sector_size;
  request.options.physical_sector_size = args.physical_sector_size;
  request.options.unique_id = FromGuid(args.unique_id);
  request.options.full_physical_allocation = fixed;
  request.options.no_write_hardening =
      (args.open_flags & OPEN_VIRTUAL_DISK_FLAG_NO_WRITE_HARDENING) != 0;
  if (has_parent) request.parent_path = ToPath(args.parent_path);
  if (has_source) request.source_path = ToPath(args.source_path);

  // The new file goes again if the call fails from here on, by an error or an exception.
  platform::NewFileGuard created(request.path);
  auto disk = VirtualDisk::Create(BuiltinProviders(), request);
  if (!disk.ok()) return Fail(disk.status());
  created.Arm();
  auto open = OpenDisk::Adopt(std::move(disk).value(), &BuiltinProviders());
  if (!open.ok()) return Fail(open.status());
  const DWORD error = Publish(std::move(open).value(), options, handle);
  if (error != ERROR_SUCCESS) return error;
  created.Keep();
  DWORD unused = ERROR_SUCCESS;
  return CompleteNow(overlapped, error, LookupDisk(*handle, &unused).get());
}

}  // namespace vdisk::api
