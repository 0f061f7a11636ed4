#include "api/error_map.h"

#include "api/trace.h"

namespace vdisk::api {

DWORD ToWin32Error(Code code) noexcept {
  switch (code) {
    case Code::kOk: return ERROR_SUCCESS;
    case Code::kInvalidParameter: return ERROR_INVALID_PARAMETER;
    case Code::kInvalidHandle: return ERROR_INVALID_HANDLE;
    case Code::kNotSupported: return ERROR_NOT_SUPPORTED;
    case Code::kFileNotFound: return ERROR_FILE_NOT_FOUND;
    case Code::kPathNotFound: return ERROR_PATH_NOT_FOUND;
    case Code::kFileExists: return ERROR_FILE_EXISTS;
    case Code::kAccessDenied: return ERROR_ACCESS_DENIED;
    case Code::kSharingViolation: return ERROR_SHARING_VIOLATION;
    case Code::kWriteProtect: return ERROR_WRITE_PROTECT;
    case Code::kNotEnoughMemory: return ERROR_NOT_ENOUGH_MEMORY;
    case Code::kDiskFull: return ERROR_DISK_FULL;
    case Code::kIoError: return ERROR_IO_DEVICE;
    case Code::kInsufficientBuffer: return ERROR_INSUFFICIENT_BUFFER;
    case Code::kMoreData: return ERROR_MORE_DATA;
    case Code::kIoPending: return ERROR_IO_PENDING;
    case Code::kOperationAborted: return ERROR_OPERATION_ABORTED;
    case Code::kInvalidState: return ERROR_NOT_READY;
    case Code::kNotFound: return ERROR_NOT_FOUND;
    case Code::kFileCorrupt: return ERROR_FILE_CORRUPT;
    case Code::kDirectory: return ERROR_DIRECTORY;
    // Windows opens an image without FILE_FLAG_BACKUP_SEMANTICS, so a directory fails with
    // STATUS_FILE_IS_A_DIRECTORY, which is ERROR_ACCESS_DENIED in Win32 (as CreateFileW gives for
    // a directory); FIFOs, sockets and devices get the same code, the reason names the kind.
    case Code::kNotRegularFile: return ERROR_ACCESS_DENIED;
    case Code::kInternal: return ERROR_INTERNAL_ERROR;
    case Code::kVhdFooterMissing: return ERROR_VHD_DRIVE_FOOTER_MISSING;
    case Code::kVhdFooterChecksumMismatch: return ERROR_VHD_DRIVE_FOOTER_CHECKSUM_MISMATCH;
    case Code::kVhdFooterCorrupt: return ERROR_VHD_DRIVE_FOOTER_CORRUPT;
    case Code::kVhdFormatUnknown: return ERROR_VHD_FORMAT_UNKNOWN;
    case Code::kVhdUnsupportedVersion: return ERROR_VHD_FORMAT_UNSUPPORTED_VERSION;
    case Code::kVhdSparseHeaderChecksumMismatch: return ERROR_VHD_SPARSE_HEADER_CHECKSUM_MISMATCH;
    case Code::kVhdSparseHeaderUnsupportedVersion:
      return ERROR_VHD_SPARSE_HEADER_UNSUPPORTED_VERSION;
    case Code::kVhdSparseHeaderCorrupt: return ERROR_VHD_SPARSE_HEADER_CORRUPT;
    case Code::kVhdBlockAllocationFailure: return ERROR_VHD_BLOCK_ALLOCATION_FAILURE;
    case Code::kVhdBlockAllocationTableCorrupt: return ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT;
    case Code::kVhdInvalidBlockSize: return ERROR_VHD_INVALID_BLOCK_SIZE;
    case Code::kVhdBitmapMismatch: return ERROR_VHD_BITMAP_MISMATCH;
    case Code::kVhdParentNotFound: return ERROR_VHD_PARENT_VHD_NOT_FOUND;
    case Code::kVhdChildParentIdMismatch: return ERROR_VHD_CHILD_PARENT_ID_MISMATCH;
    case Code::kVhdChildParentTimestampMismatch: return ERROR_VHD_CHILD_PARENT_TIMESTAMP_MISMATCH;
    case Code::kVhdMetadataReadFailure: return ERROR_VHD_METADATA_READ_FAILURE;
    case Code::kVhdMetadataWriteFailure: return ERROR_VHD_METADATA_WRITE_FAILURE;
    case Code::kVhdInvalidSize: return ERROR_VHD_INVALID_SIZE;
    case Code::kVhdInvalidFileSize: return ERROR_VHD_INVALID_FILE_SIZE;
    case Code::kProviderNotFound: return ERROR_VIRTDISK_PROVIDER_NOT_FOUND;
    case Code::kNotVirtualDisk: return ERROR_VIRTDISK_NOT_VIRTUAL_DISK;
    case Code::kVhdParentAccessDenied: return ERROR_VHD_PARENT_VHD_ACCESS_DENIED;
    case Code::kVhdChildParentSizeMismatch: return ERROR_VHD_CHILD_PARENT_SIZE_MISMATCH;
    case Code::kVhdChainCycle: return ERROR_VHD_DIFFERENCING_CHAIN_CYCLE_DETECTED;
    // A valid chain longer than this implementation supports: a limit of the virtual disk
    // system, not a fault of any file in the chain.
    case Code::kVhdChainTooDeep: return ERROR_VIRTUAL_DISK_LIMITATION;
    case Code::kVhdChainErrorInParent: return ERROR_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT;
    case Code::kVirtualDiskLimitation: return ERROR_VIRTUAL_DISK_LIMITATION;
    case Code::kVhdInvalidType: return ERROR_VHD_INVALID_TYPE;
    case Code::kVhdInvalidState: return ERROR_VHD_INVALID_STATE;
    case Code::kUnsupportedSectorSize: return ERROR_VIRTDISK_UNSUPPORTED_DISK_SECTOR_SIZE;
    case Code::kDiskAlreadyOwned: return ERROR_VIRTDISK_DISK_ALREADY_OWNED;
    case Code::kVhdResizeWouldTruncateData: return ERROR_VHD_RESIZE_WOULD_TRUNCATE_DATA;
    case Code::kVhdAlreadyAtOrBelowMinimumVirtualSize:
      return ERROR_VHD_ALREADY_AT_OR_BELOW_MINIMUM_VIRTUAL_SIZE;
  }
  return ERROR_INTERNAL_ERROR;
}

DWORD Fail(const Status& status) noexcept {
  SetLastFailureMessage(status.message());
  return ToWin32Error(status.code());
}

}  // namespace vdisk::api
