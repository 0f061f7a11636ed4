// ResizeVirtualDisk and ExpandVirtualDisk: parameter and flag validation in Windows' order, then
// ResizeDisk (src/core/resize.h), which decides the size and has the format change it.
//
// Validation returns synchronously: a NULL Parameters, unknown flag bits, a version other than 1
// and (Resize) RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE with a NewSize are ERROR_INVALID_PARAMETER
// before the handle is looked at, as MirrorVirtualDisk validates; then the handle
// (ERROR_INVALID_HANDLE) and its access: VIRTUAL_DISK_ACCESS_METAOPS, which ExpandVirtualDisk's
// documentation requires ("must have been opened using the VIRTUAL_DISK_ACCESS_METAOPS flag"),
// for both (ERROR_ACCESS_DENIED).
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/impl.h"
#include "api/trace.h"
#include "core/resize.h"

namespace vdisk::api {
namespace {

constexpr DWORD kKnownResizeFlags =
    Bits(RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE,
         RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE);
// The SDK defines NOTIFY_CHANGE; it asks Windows to notify the attached disk's stack, and a
// disk must be detached to expand, so it changes nothing here.
constexpr DWORD kKnownExpandFlags = Bits(EXPAND_VIRTUAL_DISK_FLAG_NOTIFY_CHANGE);

DWORD Run(HANDLE handle, const ResizeRequest& request, LPOVERLAPPED overlapped) {
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  if (!disk->Allows(VIRTUAL_DISK_ACCESS_METAOPS) || disk->options().get_info_only ||
      disk->disk()->read_only()) {
    return ERROR_ACCESS_DENIED;
  }
  return RunDiskOperation(*disk, overlapped,
                          [open = disk->shared_open_disk(), request](OperationContext& context) {
                            return ResizeDisk(*open, request, context);
                          });
}

// Whether both exports' first checks pass: parameters given, only known flags, version 1.
template <typename Parameters>
bool KnownVersion1(const Parameters* parameters, DWORD flags, DWORD known, DWORD version1) {
  return parameters != nullptr && (flags & ~known) == 0 && Raw(parameters->Version) == version1;
}

}  // namespace

DWORD ResizeImpl(HANDLE handle, DWORD flags, PRESIZE_VIRTUAL_DISK_PARAMETERS parameters,
                 LPOVERLAPPED overlapped) {
  if (!KnownVersion1(parameters, flags, kKnownResizeFlags, RESIZE_VIRTUAL_DISK_VERSION_1))
    return ERROR_INVALID_PARAMETER;
  ResizeRequest request;
  request.new_size = parameters->Version1.NewSize;
  request.allow_unsafe = (flags & RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE) != 0;
  request.to_smallest_safe =
      (flags & RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE) != 0;
  // RESIZE_VIRTUAL_DISK_FLAG's documentation: with RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE "the
  // NewSize member ... must be zero".
  if (request.to_smallest_safe && request.new_size != 0) return ERROR_INVALID_PARAMETER;
  if (!request.to_smallest_safe && request.new_size == 0) return ERROR_INVALID_PARAMETER;
  return Run(handle, request, overlapped);
}

DWORD ExpandImpl(HANDLE handle, DWORD flags, PEXPAND_VIRTUAL_DISK_PARAMETERS parameters,
                 LPOVERLAPPED overlapped) {
  if (!KnownVersion1(parameters, flags, kKnownExpandFlags, EXPAND_VIRTUAL_DISK_VERSION_1))
    return ERROR_INVALID_PARAMETER;
  ResizeRequest request{.new_size = parameters->Version1.NewSize, .grow_only = true};
  return Run(handle, request, overlapped);
}

}  // namespace vdisk::api
