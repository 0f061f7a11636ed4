// MirrorVirtualDisk and BreakMirrorVirtualDisk.
//
// The mirror is a MirrorJob (src/mirror) bound to the caller's OVERLAPPED: MirrorVirtualDisk
// returns ERROR_IO_PENDING, and the OVERLAPPED completes only when the job ends: ERROR_SUCCESS
// after BreakMirrorVirtualDisk, ERROR_OPERATION_ABORTED after CancelIo/CancelIoEx/CloseHandle,
// or the error that stopped the copy (on Windows the kernel reports that as a cancellation; the
// hooked GetOverlappedResult and GetVirtualDiskOperationProgress give the error itself).
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/impl.h"
#include "api/overlapped.h"
#include "api/strings.h"
#include "api/trace.h"
#include "formats/registry/registry.h"
#include "mirror/mirror_job.h"

namespace vdisk::api {
namespace {

constexpr DWORD kKnownMirrorFlags =
    Bits(MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE, MIRROR_VIRTUAL_DISK_FLAG_SKIP_MIRROR_ACTIVATION,
         MIRROR_VIRTUAL_DISK_FLAG_ENABLE_SMB_COMPRESSION,
         MIRROR_VIRTUAL_DISK_FLAG_IS_LIVE_MIGRATION);

}  // namespace

DWORD MirrorImpl(HANDLE handle, DWORD flags,
                 PMIRROR_VIRTUAL_DISK_PARAMETERS parameters, LPOVERLAPPED overlapped) {
  if (parameters == nullptr || overlapped == nullptr) return ERROR_INVALID_PARAMETER;
  if ((flags & ~kKnownMirrorFlags) != 0) return ERROR_INVALID_PARAMETER;
  if (Raw(parameters->Version) != MIRROR_VIRTUAL_DISK_VERSION_1) return ERROR_INVALID_PARAMETER;
  PCWSTR path = parameters->Version1.MirrorVirtualDiskPath;
  if (path == nullptr || *path == 0) return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  if (!disk->Allows(VIRTUAL_DISK_ACCESS_ATTACH_RW) || disk->options().get_info_only)
    return ERROR_ACCESS_DENIED;

  MirrorOptions options;
  options.target_path = ToPath(path);
  options.existing_file = (flags & MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE) != 0;
  options.skip_activation = (flags & MIRROR_VIRTUAL_DISK_FLAG_SKIP_MIRROR_ACTIVATION) != 0;
  return StartDiskOperation(
      *disk, overlapped,
      [&](std::function<void(const Status&)> done) -> Result<std::shared_ptr<DiskOperation>> {
        options.on_finished = std::move(done);
        VDISK_ASSIGN_OR_RETURN(
            auto job,
            MirrorJob::Start(BuiltinProviders(), disk->shared_open_disk(), std::move(options)));
        return std::shared_ptr<DiskOperation>(std::move(job));
      });
}

DWORD BreakMirrorImpl(HANDLE handle) {
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  auto job = disk->Mirror(nullptr);
  if (!job) return Fail(Status(Code::kVhdInvalidState, "no mirror was started on this handle"));
  const Status status = job->Break();
  return status.ok() ? ERROR_SUCCESS : Fail(status);
}

}  // namespace vdisk::api
