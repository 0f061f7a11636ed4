/*
 * virtdisk/win32.h - the Win32 types and the kernel32 subset that a VirtDisk client needs,
 * implemented by libvirtdisk on platforms other than Windows.
 *
 * ABI conventions:
 *  1. Handles are opaque pointer-sized values from the library's handle table. They are never
 *     NULL and never INVALID_HANDLE_VALUE; a closed handle is never valid again (each slot carries
 *     a generation), so a stale or bogus handle gets ERROR_INVALID_HANDLE, not a crash.
 *  2. Strings are WCHAR, which is wchar_t here (4 bytes, UTF-32), so L"..." literals work as on
 *     Windows. Paths are converted to the file system's encoding (UTF-8) inside the library.
 *  3. Functions return BOOL/DWORD exactly as kernel32 does and record the reason for a failure
 *     in the calling thread's last-error value (GetLastError).
 *  4. OVERLAPPED completion follows Windows: Internal holds the status (STATUS_PENDING while the
 *     request runs), InternalHigh the byte count; the event, if any, is set on completion.
 *
 * On Windows this file is not used: the real <windows.h> provides everything.
 */
#ifndef VIRTDISK_WIN32_H_
#define VIRTDISK_WIN32_H_

#ifdef _WIN32
#include <windows.h>
#else

#include <stddef.h>
#include <stdint.h>
#include <wchar.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(VIRTDISK_BUILDING)
#define VIRTDISK_API __attribute__((visibility("default")))
#else
#define VIRTDISK_API
#endif

#define WINAPI
#define CALLBACK
#define WINBASEAPI VIRTDISK_API

typedef int BOOL;
typedef unsigned char BYTE;
typedef unsigned char UCHAR;
typedef unsigned short USHORT;
typedef unsigned short WORD;
typedef int INT;
typedef unsigned int UINT;
typedef int32_t LONG;
typedef uint32_t ULONG;
typedef uint32_t DWORD;
typedef int64_t LONGLONG;
typedef uint64_t ULONGLONG;
typedef uint64_t ULONG64;
typedef uint64_t DWORD64;
typedef uintptr_t ULONG_PTR;
typedef intptr_t LONG_PTR;
typedef uintptr_t DWORD_PTR;
typedef uintptr_t SIZE_T;
typedef void VOID;
typedef void *PVOID;
typedef void *LPVOID;
typedef const void *LPCVOID;
typedef void *HANDLE;
typedef HANDLE *PHANDLE;
typedef HANDLE *LPHANDLE;
typedef wchar_t WCHAR;
typedef WCHAR *PWSTR;
typedef WCHAR *LPWSTR;
typedef const WCHAR *PCWSTR;
typedef const WCHAR *LPCWSTR;
typedef char CHAR;
typedef CHAR *PSTR;
typedef const CHAR *PCSTR;
typedef ULONG *PULONG;
typedef DWORD *PDWORD;
typedef DWORD *LPDWORD;
typedef ULONGLONG *PULONGLONG;
typedef ULONG64 *PULONG64;
typedef BOOL *PBOOL;
typedef void *PSECURITY_DESCRIPTOR;
typedef LONG HRESULT;

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

#define INVALID_HANDLE_VALUE ((HANDLE)(LONG_PTR)-1)
#define INFINITE 0xFFFFFFFFu
#define DUPLICATE_CLOSE_SOURCE 0x00000001u
#define DUPLICATE_SAME_ACCESS 0x00000002u

typedef struct _GUID {
  uint32_t Data1;
  uint16_t Data2;
  uint16_t Data3;
  uint8_t Data4[8];
} GUID;
typedef GUID *LPGUID;
typedef const GUID *LPCGUID;
#define REFGUID const GUID *

typedef union _LARGE_INTEGER {
  __extension__ struct {
    DWORD LowPart;
    LONG HighPart;
  };
  struct {
    DWORD LowPart;
    LONG HighPart;
  } u;
  LONGLONG QuadPart;
} LARGE_INTEGER, *PLARGE_INTEGER;

typedef struct _FILETIME {
  DWORD dwLowDateTime;
  DWORD dwHighDateTime;
} FILETIME, *PFILETIME;

typedef struct _OVERLAPPED {
  ULONG_PTR Internal;
  ULONG_PTR InternalHigh;
  /* Anonymous, as in the SDK, so that Windows code can write ov.Offset. */
  __extension__ union {
    __extension__ struct {
      DWORD Offset;
      DWORD OffsetHigh;
    };
    PVOID Pointer;
  };
  HANDLE hEvent;
} OVERLAPPED, *LPOVERLAPPED;

typedef struct _OVERLAPPED_ENTRY {
  ULONG_PTR lpCompletionKey;
  LPOVERLAPPED lpOverlapped;
  ULONG_PTR Internal;
  DWORD dwNumberOfBytesTransferred;
} OVERLAPPED_ENTRY, *LPOVERLAPPED_ENTRY;

typedef struct _SECURITY_ATTRIBUTES {
  DWORD nLength;
  LPVOID lpSecurityDescriptor;
  BOOL bInheritHandle;
} SECURITY_ATTRIBUTES, *LPSECURITY_ATTRIBUTES;

/* NTSTATUS values visible in OVERLAPPED.Internal. */
#define STATUS_SUCCESS 0x00000000u
#define STATUS_PENDING 0x00000103u

/* Wait results. */
#define WAIT_OBJECT_0 0x00000000u
#define WAIT_ABANDONED 0x00000080u
#define WAIT_TIMEOUT 0x00000102u
#define WAIT_FAILED 0xFFFFFFFFu

/* SetFilePointerEx move methods. */
#define FILE_BEGIN 0
#define FILE_CURRENT 1
#define FILE_END 2

/* Win32 error codes used by the library and its clients. */
#define ERROR_SUCCESS 0L
#define NO_ERROR 0L
#define ERROR_INVALID_FUNCTION 1L
#define ERROR_FILE_NOT_FOUND 2L
#define ERROR_PATH_NOT_FOUND 3L
#define ERROR_TOO_MANY_OPEN_FILES 4L
#define ERROR_ACCESS_DENIED 5L
#define ERROR_INVALID_HANDLE 6L
#define ERROR_NOT_ENOUGH_MEMORY 8L
#define ERROR_INVALID_DATA 13L
#define ERROR_OUTOFMEMORY 14L
#define ERROR_INVALID_DRIVE 15L
#define ERROR_WRITE_PROTECT 19L
#define ERROR_NOT_READY 21L
#define ERROR_CRC 23L
#define ERROR_SEEK 25L
#define ERROR_WRITE_FAULT 29L
#define ERROR_READ_FAULT 30L
#define ERROR_GEN_FAILURE 31L
#define ERROR_SHARING_VIOLATION 32L
#define ERROR_LOCK_VIOLATION 33L
#define ERROR_HANDLE_EOF 38L
#define ERROR_HANDLE_DISK_FULL 39L
#define ERROR_NOT_SUPPORTED 50L
#define ERROR_FILE_EXISTS 80L
#define ERROR_INVALID_PARAMETER 87L
#define ERROR_BROKEN_PIPE 109L
#define ERROR_OPEN_FAILED 110L
#define ERROR_BUFFER_OVERFLOW 111L
#define ERROR_DISK_FULL 112L
#define ERROR_CALL_NOT_IMPLEMENTED 120L
#define ERROR_INSUFFICIENT_BUFFER 122L
#define ERROR_INVALID_NAME 123L
#define ERROR_INVALID_LEVEL 124L
#define ERROR_NEGATIVE_SEEK 131L
#define ERROR_DIR_NOT_EMPTY 145L
#define ERROR_BUSY 170L
#define ERROR_ALREADY_EXISTS 183L
#define ERROR_FILE_TOO_LARGE 223L
#define ERROR_MORE_DATA 234L
#define ERROR_NO_MORE_ITEMS 259L
#define ERROR_DIRECTORY 267L
#define ERROR_NOT_OWNER 288L
#define ERROR_OPERATION_ABORTED 995L
#define ERROR_IO_INCOMPLETE 996L
#define ERROR_IO_PENDING 997L
#define ERROR_NOACCESS 998L
#define ERROR_INVALID_FLAGS 1004L
#define ERROR_FILE_INVALID 1006L
#define ERROR_NOT_FOUND 1168L
#define ERROR_DEV_NOT_EXIST 55L
#define ERROR_FILE_CORRUPT 1392L
#define ERROR_DISK_CORRUPT 1393L
#define ERROR_INTERNAL_ERROR 1359L
#define ERROR_INVALID_STATE 5023L
#define ERROR_TIMEOUT 1460L
#define ERROR_IO_DEVICE 1117L
#define ERROR_DISK_OPERATION_FAILED 1127L
#define ERROR_NOT_A_REPARSE_POINT 4390L
#define ERROR_DEVICE_NOT_CONNECTED 1167L
#define ERROR_CANCELLED 1223L
#define ERROR_ABANDONED_WAIT_0 735L

/*
 * The kernel32 subset. Semantics are those of the Windows functions of the same name, on the
 * handles this library creates (disk handles, events, I/O completion ports).
 */
VIRTDISK_API BOOL WINAPI CloseHandle(HANDLE hObject);
/* Within the calling process only (both process handles GetCurrentProcess()): the duplicate names
 * the same object, and the object's close logic waits for its last handle. */
VIRTDISK_API HANDLE WINAPI GetCurrentProcess(void);
VIRTDISK_API BOOL WINAPI DuplicateHandle(HANDLE hSourceProcessHandle, HANDLE hSourceHandle,
                                         HANDLE hTargetProcessHandle, LPHANDLE lpTargetHandle,
                                         DWORD dwDesiredAccess, BOOL bInheritHandle,
                                         DWORD dwOptions);
VIRTDISK_API DWORD WINAPI GetLastError(void);
VIRTDISK_API void WINAPI SetLastError(DWORD dwErrCode);

VIRTDISK_API HANDLE WINAPI CreateEventW(LPSECURITY_ATTRIBUTES lpEventAttributes, BOOL bManualReset,
                                        BOOL bInitialState, LPCWSTR lpName);
VIRTDISK_API BOOL WINAPI SetEvent(HANDLE hEvent);
VIRTDISK_API BOOL WINAPI ResetEvent(HANDLE hEvent);
VIRTDISK_API DWORD WINAPI WaitForSingleObject(HANDLE hHandle, DWORD dwMilliseconds);

VIRTDISK_API BOOL WINAPI ReadFile(HANDLE hFile, LPVOID lpBuffer, DWORD nNumberOfBytesToRead,
                                  LPDWORD lpNumberOfBytesRead, LPOVERLAPPED lpOverlapped);
VIRTDISK_API BOOL WINAPI WriteFile(HANDLE hFile, LPCVOID lpBuffer, DWORD nNumberOfBytesToWrite,
                                   LPDWORD lpNumberOfBytesWritten, LPOVERLAPPED lpOverlapped);
VIRTDISK_API BOOL WINAPI SetFilePointerEx(HANDLE hFile, LARGE_INTEGER liDistanceToMove,
                                          PLARGE_INTEGER lpNewFilePointer, DWORD dwMoveMethod);
VIRTDISK_API BOOL WINAPI FlushFileBuffers(HANDLE hFile);
VIRTDISK_API BOOL WINAPI GetOverlappedResult(HANDLE hFile, LPOVERLAPPED lpOverlapped,
                                             LPDWORD lpNumberOfBytesTransferred, BOOL bWait);
VIRTDISK_API BOOL WINAPI CancelIo(HANDLE hFile);
VIRTDISK_API BOOL WINAPI CancelIoEx(HANDLE hFile, LPOVERLAPPED lpOverlapped);

VIRTDISK_API HANDLE WINAPI CreateIoCompletionPort(HANDLE FileHandle, HANDLE ExistingCompletionPort,
                                                  ULONG_PTR CompletionKey,
                                                  DWORD NumberOfConcurrentThreads);
VIRTDISK_API BOOL WINAPI GetQueuedCompletionStatus(HANDLE CompletionPort,
                                                   LPDWORD lpNumberOfBytesTransferred,
                                                   ULONG_PTR *lpCompletionKey,
                                                   LPOVERLAPPED *lpOverlapped,
                                                   DWORD dwMilliseconds);
VIRTDISK_API BOOL WINAPI PostQueuedCompletionStatus(HANDLE CompletionPort,
                                                    DWORD dwNumberOfBytesTransferred,
                                                    ULONG_PTR dwCompletionKey,
                                                    LPOVERLAPPED lpOverlapped);

#ifndef HasOverlappedIoCompleted
#define HasOverlappedIoCompleted(lpOverlapped) \
  (((DWORD)(lpOverlapped)->Internal) != STATUS_PENDING)
#endif

#ifdef __cplusplus
}
#endif

#endif /* _WIN32 */
#endif /* VIRTDISK_WIN32_H_ */
