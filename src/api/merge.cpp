// MergeVirtualDisk and AddVirtualDiskParent.
//
// MergeVirtualDisk validates in this order: handle, Parameters, flags, version, depths, access;
// the work (core/merge.h) then runs on the caller's thread with a NULL OVERLAPPED, or bound to
// the OVERLAPPED like any disk operation (progress, cancel).
//
// AddVirtualDiskParent extends the chain of a handle opened with
// OPEN_VIRTUAL_DISK_FLAG_CUSTOM_DIFF_CHAIN by one parent below its current base, as Microsoft's
// storage sample uses it (Samples/Hyper-V/Storage/cpp/AddVirtualDiskParent.cpp: a V2 read-only
// open with that flag, then one call per parent; the function's page: "adds the specified parent
// virtual hard disk to the head of the differencing chain ... can be called repeatedly").
#include <functional>
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/impl.h"
#include "api/strings.h"
#include "api/trace.h"
#include "core/disk_operation.h"
#include "core/merge.h"
#include "formats/registry/registry.h"

namespace vdisk::api {
DWORD MergeImpl(HANDLE handle, DWORD flags, PMERGE_VIRTUAL_DISK_PARAMETERS parameters,
                LPOVERLAPPED overlapped) {
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  if (parameters == nullptr) return ERROR_INVALID_PARAMETER;
  if (flags != MERGE_VIRTUAL_DISK_FLAG_NONE) {
    return Fail(Status(Code::kInvalidParameter,
                       disk->open_disk().key().string() + ": MergeVirtualDisk: flags " +
                           Hex(flags) + ": MERGE_VIRTUAL_DISK_FLAG_NONE is the only flag"));
  }
  const std::string where = disk->open_disk().key().string() + ": MergeVirtualDisk: ";
  MergeRequest request;
  switch (Raw(parameters->Version)) {
    case MERGE_VIRTUAL_DISK_VERSION_1:
      // "the number of parent disks in the differencing chain to merge together": the top and
      // MergeDepth - 1 parents go into parent number MergeDepth.
      if (parameters->Version1.MergeDepth == 0) {
        return Fail(Status(Code::kInvalidParameter, where + "MergeDepth 0: at least 1 is needed"));
      }
      request.source_level = 0;
      request.target_level = parameters->Version1.MergeDepth;
      break;
    case MERGE_VIRTUAL_DISK_VERSION_2:
      // Depths from the leaf, which is at depth 1.
      if (parameters->Version2.MergeSourceDepth == 0 ||
          parameters->Version2.MergeTargetDepth <= parameters->Version2.MergeSourceDepth) {
        return Fail(Status(
            Code::kInvalidParameter,
            where + "MergeSourceDepth " + std::to_string(parameters->Version2.MergeSourceDepth) +
                " and MergeTargetDepth " + std::to_string(parameters->Version2.MergeTargetDepth) +
                ": the source must be at depth 1 or more and above the target"));
      }
      request.source_level = parameters->Version2.MergeSourceDepth - 1;
      request.target_level = parameters->Version2.MergeTargetDepth - 1;
      break;
    default:
      return ERROR_INVALID_PARAMETER;
  }
  // The page: "must have been opened using the VIRTUAL_DISK_ACCESS_METAOPS flag" (V1); a V2
  // handle needs to be writable.
  if (!disk->Allows(VIRTUAL_DISK_ACCESS_METAOPS) || disk->options().get_info_only ||
      disk->disk()->read_only()) {
    return Fail(Status(Code::kAccessDenied,
                       where + "the handle is not open for writing (V1: METAOPS access)"));
  }
  if (const Status depths = CheckMerge(*disk->disk(), request); !depths.ok()) return Fail(depths);

  auto open_disk = disk->shared_open_disk();
  return RunDiskOperation(*disk, overlapped, [open_disk, request](OperationContext& context) {
    return MergeDisk(*open_disk, BuiltinProviders(), request, context);
  });
}

DWORD AddParentImpl(HANDLE handle, PCWSTR parent_path) {
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  if (parent_path == nullptr || *parent_path == 0) return ERROR_INVALID_PARAMETER;
  OpenDisk& open_disk = disk->open_disk();
  DiskOpenRequest request = open_disk.request();
  if (!request.custom_chain) {
    return Fail(
        Status(Code::kVhdInvalidState, open_disk.key().string() +
                                           ": AddVirtualDiskParent needs a handle opened with "
                                           "OPEN_VIRTUAL_DISK_FLAG_CUSTOM_DIFF_CHAIN"));
  }
  request.custom_parents.push_back(ToPath(parent_path));
  const Status status = open_disk.ReopenAs(BuiltinProviders(), request);
  return status.ok() ? ERROR_SUCCESS : Fail(status);
}

}  // namespace vdisk::api
