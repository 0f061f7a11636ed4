// CompactVirtualDisk: validation in Windows' order, then CompactDisk (core/compact.h) run by
// RunDiskOperation, on the caller's thread with a NULL OVERLAPPED, else asynchronously with
// progress (GetVirtualDiskOperationProgress) and cancellation (CancelIo, CancelIoEx,
// CloseHandle) between the compaction's steps.
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/impl.h"
#include "api/trace.h"
#include "core/compact.h"

namespace vdisk::api {
namespace {

constexpr DWORD kKnownCompactFlags =
    Bits(COMPACT_VIRTUAL_DISK_FLAG_NO_ZERO_SCAN, COMPACT_VIRTUAL_DISK_FLAG_NO_BLOCK_MOVES);

}  // namespace

DWORD CompactImpl(HANDLE handle, DWORD flags, PCOMPACT_VIRTUAL_DISK_PARAMETERS parameters,
                  LPOVERLAPPED overlapped) {
  // Flags, then the parameters' version (optional: NULL is version 1 with defaults), then the
  // handle and its access, then the disk's state, as the other exports check.
  if ((flags & ~kKnownCompactFlags) != 0) return ERROR_INVALID_PARAMETER;
  if (parameters != nullptr && Raw(parameters->Version) != COMPACT_VIRTUAL_DISK_VERSION_1)
    return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  // "A handle to the open virtual disk, which must have been opened using the
  // VIRTUAL_DISK_ACCESS_METAOPS flag" (Microsoft, CompactVirtualDisk).
  if (!disk->Allows(VIRTUAL_DISK_ACCESS_METAOPS) || disk->options().get_info_only)
    return ERROR_ACCESS_DENIED;
  auto open = disk->shared_open_disk();
  if (const Status state = CheckCompactable(*open); !state.ok()) return Fail(state);

  CompactOptions options;
  options.zero_scan = (flags & COMPACT_VIRTUAL_DISK_FLAG_NO_ZERO_SCAN) == 0;
  options.block_moves = (flags & COMPACT_VIRTUAL_DISK_FLAG_NO_BLOCK_MOVES) == 0;
  // With an OVERLAPPED: ERROR_IO_PENDING, progress through GetVirtualDiskOperationProgress
  // (blocks scanned and moved), cancellation between steps (api/operations.cpp).
  return RunDiskOperation(*disk, overlapped, [open, options](OperationContext& context) {
    auto report = CompactDisk(*open, options, context);
    return report.ok() ? Status::Ok() : report.status();
  });
}

}  // namespace vdisk::api
