/*
 * virtdisk/extensions.h - what libvirtdisk.so offers beyond Microsoft's VirtDisk API.
 *
 * These functions are not part of the Windows SDK and VirtDisk.dll does not export them (its
 * export table is exactly the SDK's): they exist only in the Linux library, for tools such as
 * vdisk that want more than a Win32 error code. A program that must also run against Microsoft's
 * VirtDisk.dll finds them with dlsym and does without when they are missing.
 */
#ifndef VIRTDISK_EXTENSIONS_H
#define VIRTDISK_EXTENSIONS_H

#include <virtdisk.h>

#if defined(_WIN32)
#error "virtdisk/extensions.h: these functions exist only in libvirtdisk.so"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The reason sentence of the calling thread's last failed call, e.g.
 * "VHDX size 70368744177665 is invalid: at most 64 TiB"; "" after a call that succeeded or
 * gave no reason. Valid until the thread's next call into the library. */
VIRTDISK_API const char *VirtDiskGetLastFailureMessage(void);

/* One range of a virtual disk as VirtDiskGetAllocatedRanges describes it. */
typedef enum _VIRTDISK_RANGE_KIND {
  VIRTDISK_RANGE_DATA = 0,        /* held by a file of the chain (Depth says which) */
  VIRTDISK_RANGE_ZERO = 1,        /* allocated as zeros (reads as zeros, hides any parent) */
  VIRTDISK_RANGE_UNALLOCATED = 2  /* in no file of the chain: reads as zeros */
} VIRTDISK_RANGE_KIND;

typedef struct _VIRTDISK_ALLOCATED_RANGE {
  ULONG64 Offset;      /* virtual disk offset, bytes */
  ULONG64 Length;      /* bytes */
  ULONG Kind;          /* VIRTDISK_RANGE_KIND */
  ULONG Depth;         /* DATA/ZERO: 0 the opened file, 1 its parent, ... */
  ULONG64 FileOffset;  /* DATA: where the range starts in that file */
} VIRTDISK_ALLOCATED_RANGE;

/* Describes [Offset, Offset+Length) of the disk behind VirtualDiskHandle (needs
 * VIRTUAL_DISK_ACCESS_GET_INFO, or a version 2 open) as consecutive ranges, adjacent ranges of
 * the same kind, depth and contiguous file offsets merged. *RangeCount holds the room in Ranges
 * and receives the number written; when the room runs out the answer is ERROR_MORE_DATA and the
 * caller continues from the end of the last range written. */
VIRTDISK_API DWORD WINAPI VirtDiskGetAllocatedRanges(HANDLE VirtualDiskHandle, ULONG64 Offset,
                                                     ULONG64 Length,
                                                     VIRTDISK_ALLOCATED_RANGE *Ranges,
                                                     PULONG RangeCount);

/* Structural check of an image file (VHD, VHDX): every structure the open validates, plus the
 * redundant copies it tolerates (VHD footer copy, VHDX headers and region tables), the VHDX log,
 * the parent link, and file space no structure uses. */
typedef enum _VIRTDISK_CHECK_SEVERITY {
  VIRTDISK_CHECK_CORRUPTION = 1, /* damage; the message names the structure */
  VIRTDISK_CHECK_LEAK = 2,       /* file space that no structure uses (harmless) */
  VIRTDISK_CHECK_NOTE = 3        /* information, e.g. what --repair did */
} VIRTDISK_CHECK_SEVERITY;

#define VIRTDISK_CHECK_FLAG_NONE 0x0
/* Repair first what a read-write open repairs (a damaged redundant copy, a log to replay), then
 * check. */
#define VIRTDISK_CHECK_FLAG_REPAIR 0x1

typedef void (*VIRTDISK_CHECK_CALLBACK)(void *Context, ULONG Severity, ULONG64 Bytes,
                                        const char *Message);

/* ERROR_SUCCESS when the check ran (its findings went to Callback; Bytes is the leaked size
 * for a LEAK, else 0); an error when it could not run (e.g. ERROR_FILE_NOT_FOUND), with the
 * reason in VirtDiskGetLastFailureMessage. */
VIRTDISK_API DWORD WINAPI VirtDiskCheckImage(PCWSTR Path, ULONG Flags,
                                             VIRTDISK_CHECK_CALLBACK Callback, void *Context);

/* One attachment of the calling user's, as VirtDiskEnumerateAttachments describes it. The
 * strings live until the callback returns. */
typedef struct _VIRTDISK_ATTACHMENT {
  PCWSTR DiskPath;     /* the disk's image file (the top of its chain), absolute */
  PCWSTR PhysicalPath; /* where clients reach it (GetVirtualDiskPhysicalPath: the NBD URI) */
  ULONG Flags;         /* VIRTDISK_ATTACHMENT_FLAG_* */
  ULONG Reserved;
  LONGLONG ProcessId;  /* the process serving the export */
} VIRTDISK_ATTACHMENT;

/* Attached with ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY: clients may only read. */
#define VIRTDISK_ATTACHMENT_FLAG_READ_ONLY 0x1
/* Attached with ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME: an attach host serves it (the
 * ProcessId), and it stays until DetachVirtualDisk; without it the attaching process serves it
 * until its handle closes. */
#define VIRTDISK_ATTACHMENT_FLAG_PERMANENT 0x2

typedef void (*VIRTDISK_ATTACHMENT_CALLBACK)(void *Context, const VIRTDISK_ATTACHMENT *Attachment);

/* Calls Callback once for each disk attached by a live process of the calling user (the ones
 * GetAllAttachedVirtualDiskPhysicalPaths lists, in the same order). ERROR_SUCCESS when the list
 * was read, also when it is empty. */
VIRTDISK_API DWORD WINAPI VirtDiskEnumerateAttachments(VIRTDISK_ATTACHMENT_CALLBACK Callback,
                                                       void *Context);

#ifdef __cplusplus
}
#endif

#endif /* VIRTDISK_EXTENSIONS_H */
