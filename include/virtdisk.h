/*
 * virtdisk.h - the public interface of VirtDisk.dll (the Windows "virtual disk" API), as the
 * Windows SDK's um/VirtDisk.h declares it, for this project's user-mode reimplementation.
 *
 * Every type, constant and prototype below has the name, value, member order and parameter
 * list of the current SDK header, so existing Windows code compiles unchanged against it and
 * binaries built against the SDK run against our VirtDisk.dll.
 *
 * ABI conventions:
 *  1. Handles. A virtual disk is named by the HANDLE that OpenVirtualDisk/CreateVirtualDisk
 *     returned through their last parameter; it is released with CloseHandle. The library
 *     never reads through a handle it did not hand out: a bogus one gets ERROR_INVALID_HANDLE.
 *  2. Strings are WCHAR strings, NUL-terminated. On Windows WCHAR is a 2-byte UTF-16 unit. On
 *     other platforms it is wchar_t (4 bytes, UTF-32) so that L"..." literals work; byte counts
 *     of strings (point 3) then grow with it (see point 5 for struct layout).
 *  3. Sizes travel in bytes. A caller-allocated output buffer is described by an in/out
 *     PULONG: on entry its capacity in bytes, on return the bytes written or, when the buffer
 *     was too small (ERROR_INSUFFICIENT_BUFFER), the bytes needed. Versioned parameter structs
 *     are read according to their leading Version field; callers zero them before filling in
 *     one version's members.
 *  4. Errors. Every function returns a Win32 error code as its DWORD result: ERROR_SUCCESS,
 *     ERROR_IO_PENDING for an asynchronous operation started with an OVERLAPPED, or the reason
 *     for the failure. The functions do not report through SetLastError.
 *  5. Layout. Structs use the SDK's natural alignment; no packing pragmas. On x64 every struct
 *     has the same size and offsets on every platform: the only WCHAR arrays (the one-element
 *     string heads in GET_VIRTUAL_DISK_INFO) fit in padding either way. The variable-length
 *     string that continues past such a head does take sizeof(WCHAR) per character.
 *  6. Linkage. On Windows the functions are imported from VirtDisk.dll (dllimport, unless
 *     VIRTDISK_BUILDING); the DLL exports them undecorated through exports.def. Elsewhere they
 *     are plain C symbols with default visibility in libvirtdisk. The two vendor GUIDs are
 *     DEFINE_GUID declarations on Windows (include <initguid.h> first to define them, as with
 *     the SDK) and ordinary extern constants defined by the library elsewhere.
 */
#if !defined(_INC_VIRTDISK) && !defined(VIRT_DISK_API_DEF)
/* Our guard doubles as the guards of mingw-w64's header (_INC_VIRTDISK) and of the SDK's
 * (VIRT_DISK_API_DEF): mingw's <windows.h> includes <virtdisk.h>, and whichever copy is found
 * first must be the only one processed. It is defined before <windows.h> is pulled in below, so
 * the nested include from inside <windows.h> is a no-op. */
#define _INC_VIRTDISK
#define VIRT_DISK_API_DEF
#define VIRTDISK_H_

#ifdef _WIN32
#include <windows.h>
#else
#include <virtdisk/win32.h>
#endif

/* Linkage of the exported functions (see point 6 above). */
#ifndef VIRTDISK_API
#if defined(_WIN32)
#if defined(VIRTDISK_BUILDING)
#define VIRTDISK_API
#else
#define VIRTDISK_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define VIRTDISK_API __attribute__((visibility("default")))
#else
#define VIRTDISK_API
#endif
#endif

/* The SDK's anonymous unions are C11, and its flexible arrays in a union an extension; GNU
 * compilers accept both without -pedantic complaints when the member is marked. */
#if defined(__GNUC__)
#define VIRTDISK_NAMELESS_ __extension__
#else
#define VIRTDISK_NAMELESS_
#endif

/* The SDK ends STORAGE_DEPENDENCY_INFO with flexible arrays inside a union, which MSVC accepts.
 * GNU compilers reject "[]" there but accept the zero-length form, which lays out the same. */
#if defined(_MSC_VER)
#define VIRTDISK_ANYSIZE_
#else
#define VIRTDISK_ANYSIZE_ 0
#endif

/* Bitwise operators for the flag enums in C++, as the SDK gets from DEFINE_ENUM_FLAG_OPERATORS
 * in <winnt.h>; our own equivalent where no Windows header has defined that macro. */
#if defined(__cplusplus)
#if defined(DEFINE_ENUM_FLAG_OPERATORS)
#define VIRTDISK_FLAG_OPERATORS_(T) DEFINE_ENUM_FLAG_OPERATORS(T)
#else
#if __cplusplus >= 201103L
#define VIRTDISK_FLAG_CONSTEXPR_ constexpr
#else
#define VIRTDISK_FLAG_CONSTEXPR_
#endif
/* Every flag enum here has only non-negative values below 2^31, so unsigned int holds each. */
#define VIRTDISK_FLAG_OPERATORS_(T)                                                     \
  extern "C++" {                                                                        \
  inline VIRTDISK_FLAG_CONSTEXPR_ T operator|(T a, T b) {                               \
    return static_cast<T>(static_cast<unsigned int>(a) | static_cast<unsigned int>(b)); \
  }                                                                                     \
  inline VIRTDISK_FLAG_CONSTEXPR_ T operator&(T a, T b) {                               \
    return static_cast<T>(static_cast<unsigned int>(a) & static_cast<unsigned int>(b)); \
  }                                                                                     \
  inline VIRTDISK_FLAG_CONSTEXPR_ T operator^(T a, T b) {                               \
    return static_cast<T>(static_cast<unsigned int>(a) ^ static_cast<unsigned int>(b)); \
  }                                                                                     \
  inline T operator~(T a) { return static_cast<T>(~static_cast<unsigned int>(a)); }     \
  inline T &operator|=(T &a, T b) { return a = a | b; }                                 \
  inline T &operator&=(T &a, T b) { return a = a & b; }                                 \
  inline T &operator^=(T &a, T b) { return a = a ^ b; }                                 \
  }
#endif
#else
#define VIRTDISK_FLAG_OPERATORS_(T)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Identifiers for virtual storage types and providers.
 */

#ifndef _VIRTUAL_STORAGE_TYPE_DEFINED
#define _VIRTUAL_STORAGE_TYPE_DEFINED
typedef struct _VIRTUAL_STORAGE_TYPE {
  ULONG DeviceId;
  GUID VendorId;
} VIRTUAL_STORAGE_TYPE, *PVIRTUAL_STORAGE_TYPE;
#endif

/* Values of the vendor GUIDs, for code that needs them as initializers (the library's own
 * definitions on non-Windows platforms, tests). Not in the SDK. */
/* clang-format off */
#define VIRTDISK_GUID_INIT_VENDOR_UNKNOWN                                                       \
  { 0x00000000, 0x0000, 0x0000, { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 } }
#define VIRTDISK_GUID_INIT_VENDOR_MICROSOFT                                                     \
  { 0xec984aec, 0xa0f9, 0x47e9, { 0x90, 0x1f, 0x71, 0x41, 0x5a, 0x66, 0x34, 0x5b } }
/* clang-format on */

#ifndef _WIN32
VIRTDISK_API extern const GUID VIRTUAL_STORAGE_TYPE_VENDOR_UNKNOWN;
/* {EC984AEC-A0F9-47E9-901F-71415A66345B} */
VIRTDISK_API extern const GUID VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT;
#endif
/* On Windows the DEFINE_GUID lines follow at the end of this file, outside the include guard,
 * so that a later include after <initguid.h> still produces the definitions. */

#define VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN 0
#define VIRTUAL_STORAGE_TYPE_DEVICE_ISO 1
#define VIRTUAL_STORAGE_TYPE_DEVICE_VHD 2
#define VIRTUAL_STORAGE_TYPE_DEVICE_VHDX 3
#define VIRTUAL_STORAGE_TYPE_DEVICE_VHDSET 4

/*
 * OpenVirtualDisk
 */

/* The default RWDepth of OPEN_VIRTUAL_DISK_PARAMETERS.Version1. */
#define OPEN_VIRTUAL_DISK_RW_DEPTH_DEFAULT 1

typedef enum _OPEN_VIRTUAL_DISK_VERSION {
  OPEN_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  OPEN_VIRTUAL_DISK_VERSION_1 = 1,
  OPEN_VIRTUAL_DISK_VERSION_2 = 2,
  OPEN_VIRTUAL_DISK_VERSION_3 = 3
} OPEN_VIRTUAL_DISK_VERSION;

typedef struct _OPEN_VIRTUAL_DISK_PARAMETERS {
  OPEN_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      ULONG RWDepth;
    } Version1;
    struct {
      BOOL GetInfoOnly;
      BOOL ReadOnly;
      GUID ResiliencyGuid;
    } Version2;
    struct {
      BOOL GetInfoOnly;
      BOOL ReadOnly;
      GUID ResiliencyGuid;
      GUID SnapshotId;
    } Version3;
  };
} OPEN_VIRTUAL_DISK_PARAMETERS, *POPEN_VIRTUAL_DISK_PARAMETERS;

/* Access mask for OpenVirtualDisk and CreateVirtualDisk, in the specific-rights bits of a file
 * object's ACCESS_MASK. */
typedef enum _VIRTUAL_DISK_ACCESS_MASK {
  VIRTUAL_DISK_ACCESS_NONE = 0x00000000,
  VIRTUAL_DISK_ACCESS_ATTACH_RO = 0x00010000,
  VIRTUAL_DISK_ACCESS_ATTACH_RW = 0x00020000,
  VIRTUAL_DISK_ACCESS_DETACH = 0x00040000,
  VIRTUAL_DISK_ACCESS_GET_INFO = 0x00080000,
  VIRTUAL_DISK_ACCESS_CREATE = 0x00100000,
  VIRTUAL_DISK_ACCESS_METAOPS = 0x00200000,
  VIRTUAL_DISK_ACCESS_READ = 0x000d0000,
  VIRTUAL_DISK_ACCESS_ALL = 0x003f0000,
  /* Not an access right: the mask of the rights that need the disk opened for write. */
  VIRTUAL_DISK_ACCESS_WRITABLE = 0x00320000
} VIRTUAL_DISK_ACCESS_MASK;

VIRTDISK_FLAG_OPERATORS_(VIRTUAL_DISK_ACCESS_MASK)

typedef enum _OPEN_VIRTUAL_DISK_FLAG {
  OPEN_VIRTUAL_DISK_FLAG_NONE = 0x00000000,
  OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS = 0x00000001,
  OPEN_VIRTUAL_DISK_FLAG_BLANK_FILE = 0x00000002,
  OPEN_VIRTUAL_DISK_FLAG_BOOT_DRIVE = 0x00000004,
  OPEN_VIRTUAL_DISK_FLAG_CACHED_IO = 0x00000008,
  OPEN_VIRTUAL_DISK_FLAG_CUSTOM_DIFF_CHAIN = 0x00000010,
  OPEN_VIRTUAL_DISK_FLAG_PARENT_CACHED_IO = 0x00000020,
  OPEN_VIRTUAL_DISK_FLAG_VHDSET_FILE_ONLY = 0x00000040,
  OPEN_VIRTUAL_DISK_FLAG_IGNORE_RELATIVE_PARENT_LOCATOR = 0x00000080,
  OPEN_VIRTUAL_DISK_FLAG_NO_WRITE_HARDENING = 0x00000100,
  OPEN_VIRTUAL_DISK_FLAG_SUPPORT_COMPRESSED_VOLUMES = 0x00000200,
  OPEN_VIRTUAL_DISK_FLAG_SUPPORT_SPARSE_FILES_ANY_FS = 0x00000400,
  OPEN_VIRTUAL_DISK_FLAG_SUPPORT_ENCRYPTED_FILES = 0x00000800
} OPEN_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(OPEN_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI OpenVirtualDisk(PVIRTUAL_STORAGE_TYPE VirtualStorageType, PCWSTR Path,
                                          VIRTUAL_DISK_ACCESS_MASK VirtualDiskAccessMask,
                                          OPEN_VIRTUAL_DISK_FLAG Flags,
                                          POPEN_VIRTUAL_DISK_PARAMETERS Parameters, PHANDLE Handle);

/*
 * CreateVirtualDisk
 */

/* Block size 0: the provider's default (fixed VHD: must be 0; dynamic VHD: 2 MB; differencing
 * VHD: the parent's, 2 MB under a fixed parent; dynamic VHDX: 32 MB; differencing VHDX: 2 MB).
 * Sector size 0: the default logical sector size of 512 bytes. */
#define CREATE_VIRTUAL_DISK_PARAMETERS_DEFAULT_BLOCK_SIZE 0
#define CREATE_VIRTUAL_DISK_PARAMETERS_DEFAULT_SECTOR_SIZE 0

typedef enum _CREATE_VIRTUAL_DISK_VERSION {
  CREATE_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  CREATE_VIRTUAL_DISK_VERSION_1 = 1,
  CREATE_VIRTUAL_DISK_VERSION_2 = 2,
  CREATE_VIRTUAL_DISK_VERSION_3 = 3,
  CREATE_VIRTUAL_DISK_VERSION_4 = 4
} CREATE_VIRTUAL_DISK_VERSION;

/* Version2 inserts PhysicalSectorSizeInBytes after SectorSizeInBytes, so its ParentPath sits 8
 * bytes later than Version1's (mingw-w64 10 omits that member; its Version2 is misaligned). */
typedef struct _CREATE_VIRTUAL_DISK_PARAMETERS {
  CREATE_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      GUID UniqueId;
      ULONGLONG MaximumSize;
      ULONG BlockSizeInBytes;
      ULONG SectorSizeInBytes;
      PCWSTR ParentPath;
      PCWSTR SourcePath;
    } Version1;
    struct {
      GUID UniqueId;
      ULONGLONG MaximumSize;
      ULONG BlockSizeInBytes;
      ULONG SectorSizeInBytes;
      ULONG PhysicalSectorSizeInBytes;
      PCWSTR ParentPath;
      PCWSTR SourcePath;
      OPEN_VIRTUAL_DISK_FLAG OpenFlags;
      VIRTUAL_STORAGE_TYPE ParentVirtualStorageType;
      VIRTUAL_STORAGE_TYPE SourceVirtualStorageType;
      GUID ResiliencyGuid;
    } Version2;
    struct {
      GUID UniqueId;
      ULONGLONG MaximumSize;
      ULONG BlockSizeInBytes;
      ULONG SectorSizeInBytes;
      ULONG PhysicalSectorSizeInBytes;
      PCWSTR ParentPath;
      PCWSTR SourcePath;
      OPEN_VIRTUAL_DISK_FLAG OpenFlags;
      VIRTUAL_STORAGE_TYPE ParentVirtualStorageType;
      VIRTUAL_STORAGE_TYPE SourceVirtualStorageType;
      GUID ResiliencyGuid;
      PCWSTR SourceLimitPath;
      VIRTUAL_STORAGE_TYPE BackingStorageType;
    } Version3;
    struct {
      GUID UniqueId;
      ULONGLONG MaximumSize;
      ULONG BlockSizeInBytes;
      ULONG SectorSizeInBytes;
      ULONG PhysicalSectorSizeInBytes;
      PCWSTR ParentPath;
      PCWSTR SourcePath;
      OPEN_VIRTUAL_DISK_FLAG OpenFlags;
      VIRTUAL_STORAGE_TYPE ParentVirtualStorageType;
      VIRTUAL_STORAGE_TYPE SourceVirtualStorageType;
      GUID ResiliencyGuid;
      PCWSTR SourceLimitPath;
      VIRTUAL_STORAGE_TYPE BackingStorageType;
      GUID PmemAddressAbstractionType;
      ULONGLONG DataAlignment;
    } Version4;
  };
} CREATE_VIRTUAL_DISK_PARAMETERS, *PCREATE_VIRTUAL_DISK_PARAMETERS;

typedef enum _CREATE_VIRTUAL_DISK_FLAG {
  CREATE_VIRTUAL_DISK_FLAG_NONE = 0x0,
  CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION = 0x1,
  CREATE_VIRTUAL_DISK_FLAG_PREVENT_WRITES_TO_SOURCE_DISK = 0x2,
  CREATE_VIRTUAL_DISK_FLAG_DO_NOT_COPY_METADATA_FROM_PARENT = 0x4,
  CREATE_VIRTUAL_DISK_FLAG_CREATE_BACKING_STORAGE = 0x8,
  CREATE_VIRTUAL_DISK_FLAG_USE_CHANGE_TRACKING_SOURCE_LIMIT = 0x10,
  CREATE_VIRTUAL_DISK_FLAG_PRESERVE_PARENT_CHANGE_TRACKING_STATE = 0x20,
  CREATE_VIRTUAL_DISK_FLAG_VHD_SET_USE_ORIGINAL_BACKING_STORAGE = 0x40,
  CREATE_VIRTUAL_DISK_FLAG_SPARSE_FILE = 0x80,
  CREATE_VIRTUAL_DISK_FLAG_PMEM_COMPATIBLE = 0x100,
  CREATE_VIRTUAL_DISK_FLAG_SUPPORT_COMPRESSED_VOLUMES = 0x200,
  CREATE_VIRTUAL_DISK_FLAG_SUPPORT_SPARSE_FILES_ANY_FS = 0x400
} CREATE_VIRTUAL_DISK_FLAG;

#define CREATE_VIRTUAL_DISK_FLAG_USE_RCT_SOURCE_LIMIT \
  CREATE_VIRTUAL_DISK_FLAG_USE_CHANGE_TRACKING_SOURCE_LIMIT

VIRTDISK_FLAG_OPERATORS_(CREATE_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI CreateVirtualDisk(PVIRTUAL_STORAGE_TYPE VirtualStorageType, PCWSTR Path,
                                            VIRTUAL_DISK_ACCESS_MASK VirtualDiskAccessMask,
                                            PSECURITY_DESCRIPTOR SecurityDescriptor,
                                            CREATE_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags,
                                            PCREATE_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped, PHANDLE Handle);

/*
 * AttachVirtualDisk
 */

typedef enum _ATTACH_VIRTUAL_DISK_VERSION {
  ATTACH_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  ATTACH_VIRTUAL_DISK_VERSION_1 = 1,
  ATTACH_VIRTUAL_DISK_VERSION_2 = 2
} ATTACH_VIRTUAL_DISK_VERSION;

typedef struct _ATTACH_VIRTUAL_DISK_PARAMETERS {
  ATTACH_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      ULONG Reserved;
    } Version1;
    struct {
      ULONGLONG RestrictedOffset;
      ULONGLONG RestrictedLength;
    } Version2;
  };
} ATTACH_VIRTUAL_DISK_PARAMETERS, *PATTACH_VIRTUAL_DISK_PARAMETERS;

typedef enum _ATTACH_VIRTUAL_DISK_FLAG {
  ATTACH_VIRTUAL_DISK_FLAG_NONE = 0x00000000,
  ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY = 0x00000001,
  ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER = 0x00000002,
  ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME = 0x00000004,
  ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST = 0x00000008,
  ATTACH_VIRTUAL_DISK_FLAG_NO_SECURITY_DESCRIPTOR = 0x00000010,
  ATTACH_VIRTUAL_DISK_FLAG_BYPASS_DEFAULT_ENCRYPTION_POLICY = 0x00000020,
  ATTACH_VIRTUAL_DISK_FLAG_NON_PNP = 0x00000040,
  ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE = 0x00000080,
  ATTACH_VIRTUAL_DISK_FLAG_SINGLE_PARTITION = 0x00000100,
  ATTACH_VIRTUAL_DISK_FLAG_REGISTER_VOLUME = 0x00000200,
  ATTACH_VIRTUAL_DISK_FLAG_AT_BOOT = 0x00000400
} ATTACH_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(ATTACH_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI AttachVirtualDisk(HANDLE VirtualDiskHandle,
                                            PSECURITY_DESCRIPTOR SecurityDescriptor,
                                            ATTACH_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags,
                                            PATTACH_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped);

/*
 * DetachVirtualDisk
 */

typedef enum _DETACH_VIRTUAL_DISK_FLAG {
  DETACH_VIRTUAL_DISK_FLAG_NONE = 0x00000000
} DETACH_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(DETACH_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI DetachVirtualDisk(HANDLE VirtualDiskHandle,
                                            DETACH_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags);

/*
 * GetVirtualDiskPhysicalPath, GetAllAttachedVirtualDiskPhysicalPaths
 */

VIRTDISK_API DWORD WINAPI GetVirtualDiskPhysicalPath(HANDLE VirtualDiskHandle,
                                                     PULONG DiskPathSizeInBytes, PWSTR DiskPath);

/* PathsBuffer receives a multi-string: NUL-separated paths ending in an empty string. */
VIRTDISK_API DWORD WINAPI GetAllAttachedVirtualDiskPhysicalPaths(PULONG PathsBufferSizeInBytes,
                                                                 PWSTR PathsBuffer);

/*
 * GetStorageDependencyInformation
 */

typedef enum _DEPENDENT_DISK_FLAG {
  DEPENDENT_DISK_FLAG_NONE = 0x00000000,
  DEPENDENT_DISK_FLAG_MULT_BACKING_FILES = 0x00000001,
  DEPENDENT_DISK_FLAG_FULLY_ALLOCATED = 0x00000002,
  DEPENDENT_DISK_FLAG_READ_ONLY = 0x00000004,
  DEPENDENT_DISK_FLAG_REMOTE = 0x00000008,
  DEPENDENT_DISK_FLAG_SYSTEM_VOLUME = 0x00000010,
  DEPENDENT_DISK_FLAG_SYSTEM_VOLUME_PARENT = 0x00000020,
  DEPENDENT_DISK_FLAG_REMOVABLE = 0x00000040,
  DEPENDENT_DISK_FLAG_NO_DRIVE_LETTER = 0x00000080,
  DEPENDENT_DISK_FLAG_PARENT = 0x00000100,
  DEPENDENT_DISK_FLAG_NO_HOST_DISK = 0x00000200,
  DEPENDENT_DISK_FLAG_PERMANENT_LIFETIME = 0x00000400,
  DEPENDENT_DISK_FLAG_SUPPORT_COMPRESSED_VOLUMES = 0x00000800,
  DEPENDENT_DISK_FLAG_ALWAYS_ALLOW_SPARSE = 0x00001000,
  DEPENDENT_DISK_FLAG_SUPPORT_ENCRYPTED_FILES = 0x00002000
} DEPENDENT_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(DEPENDENT_DISK_FLAG)

typedef enum _STORAGE_DEPENDENCY_INFO_VERSION {
  STORAGE_DEPENDENCY_INFO_VERSION_UNSPECIFIED = 0,
  STORAGE_DEPENDENCY_INFO_VERSION_1 = 1,
  STORAGE_DEPENDENCY_INFO_VERSION_2 = 2
} STORAGE_DEPENDENCY_INFO_VERSION;

typedef struct _STORAGE_DEPENDENCY_INFO_TYPE_1 {
  DEPENDENT_DISK_FLAG DependencyTypeFlags;
  ULONG ProviderSpecificFlags;
  VIRTUAL_STORAGE_TYPE VirtualStorageType;
} STORAGE_DEPENDENCY_INFO_TYPE_1, *PSTORAGE_DEPENDENCY_INFO_TYPE_1;

typedef struct _STORAGE_DEPENDENCY_INFO_TYPE_2 {
  DEPENDENT_DISK_FLAG DependencyTypeFlags;
  ULONG ProviderSpecificFlags;
  VIRTUAL_STORAGE_TYPE VirtualStorageType;
  ULONG AncestorLevel;
  PWSTR DependencyDeviceName;
  PWSTR HostVolumeName;
  PWSTR DependentVolumeName;
  PWSTR DependentVolumeRelativePath;
} STORAGE_DEPENDENCY_INFO_TYPE_2, *PSTORAGE_DEPENDENCY_INFO_TYPE_2;

/* NumberEntries entries follow the header; sizeof covers the header only (8 bytes on x64).
 * Clang notes that an empty union is sized differently by C and C++; here it never matters, as
 * the struct is 8 bytes either way (tests/api pins it in both languages). */
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wextern-c-compat"
#endif
typedef struct _STORAGE_DEPENDENCY_INFO {
  STORAGE_DEPENDENCY_INFO_VERSION Version;
  ULONG NumberEntries;
  VIRTDISK_NAMELESS_ union {
    STORAGE_DEPENDENCY_INFO_TYPE_1 Version1Entries[VIRTDISK_ANYSIZE_];
    STORAGE_DEPENDENCY_INFO_TYPE_2 Version2Entries[VIRTDISK_ANYSIZE_];
  };
} STORAGE_DEPENDENCY_INFO, *PSTORAGE_DEPENDENCY_INFO;
#if defined(__clang__)
#pragma clang diagnostic pop
#endif

typedef enum _GET_STORAGE_DEPENDENCY_FLAG {
  GET_STORAGE_DEPENDENCY_FLAG_NONE = 0x00000000,
  /* Report the volumes or disks hosting the object rather than those it hosts. */
  GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES = 0x00000001,
  /* The handle is to a disk, not to a volume or file. */
  GET_STORAGE_DEPENDENCY_FLAG_DISK_HANDLE = 0x00000002
} GET_STORAGE_DEPENDENCY_FLAG;

#define GET_STORAGE_DEPENDENCY_FLAG_PARENTS GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES

VIRTDISK_FLAG_OPERATORS_(GET_STORAGE_DEPENDENCY_FLAG)

VIRTDISK_API DWORD WINAPI GetStorageDependencyInformation(
    HANDLE ObjectHandle, GET_STORAGE_DEPENDENCY_FLAG Flags, ULONG StorageDependencyInfoSize,
    PSTORAGE_DEPENDENCY_INFO StorageDependencyInfo, PULONG SizeUsed);

/*
 * GetVirtualDiskInformation
 */

typedef enum _GET_VIRTUAL_DISK_INFO_VERSION {
  GET_VIRTUAL_DISK_INFO_UNSPECIFIED = 0,
  GET_VIRTUAL_DISK_INFO_SIZE = 1,
  GET_VIRTUAL_DISK_INFO_IDENTIFIER = 2,
  GET_VIRTUAL_DISK_INFO_PARENT_LOCATION = 3,
  GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER = 4,
  GET_VIRTUAL_DISK_INFO_PARENT_TIMESTAMP = 5,
  GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE = 6,
  GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE = 7,
  GET_VIRTUAL_DISK_INFO_IS_4K_ALIGNED = 8,
  GET_VIRTUAL_DISK_INFO_PHYSICAL_DISK = 9,
  GET_VIRTUAL_DISK_INFO_VHD_PHYSICAL_SECTOR_SIZE = 10,
  GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE = 11,
  GET_VIRTUAL_DISK_INFO_FRAGMENTATION = 12,
  GET_VIRTUAL_DISK_INFO_IS_LOADED = 13,
  GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID = 14,
  GET_VIRTUAL_DISK_INFO_CHANGE_TRACKING_STATE = 15
} GET_VIRTUAL_DISK_INFO_VERSION;

/* ParentLocationBuffer and MostRecentId are variable-length: the caller's buffer continues past
 * sizeof(GET_VIRTUAL_DISK_INFO). ParentLocationBuffer holds one path, or a multi-string of
 * candidate paths when ParentResolved is FALSE. */
typedef struct _GET_VIRTUAL_DISK_INFO {
  GET_VIRTUAL_DISK_INFO_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      ULONGLONG VirtualSize;
      ULONGLONG PhysicalSize;
      ULONG BlockSize;
      ULONG SectorSize;
    } Size;
    GUID Identifier;
    struct {
      BOOL ParentResolved;
      WCHAR ParentLocationBuffer[1];
    } ParentLocation;
    GUID ParentIdentifier;
    ULONG ParentTimestamp;
    VIRTUAL_STORAGE_TYPE VirtualStorageType;
    ULONG ProviderSubtype;
    BOOL Is4kAligned;
    BOOL IsLoaded;
    struct {
      ULONG LogicalSectorSize;
      ULONG PhysicalSectorSize;
      BOOL IsRemote;
    } PhysicalDisk;
    ULONG VhdPhysicalSectorSize;
    ULONGLONG SmallestSafeVirtualSize;
    ULONG FragmentationPercentage;
    GUID VirtualDiskId;
    struct {
      BOOL Enabled;
      BOOL NewerChanges;
      WCHAR MostRecentId[1];
    } ChangeTrackingState;
  };
} GET_VIRTUAL_DISK_INFO, *PGET_VIRTUAL_DISK_INFO;

/* In WCHARs, not counting the terminating NUL. */
#define VIRTUAL_DISK_MAXIMUM_CHANGE_TRACKING_ID_LENGTH 256

VIRTDISK_API DWORD WINAPI GetVirtualDiskInformation(HANDLE VirtualDiskHandle,
                                                    PULONG VirtualDiskInfoSize,
                                                    PGET_VIRTUAL_DISK_INFO VirtualDiskInfo,
                                                    PULONG SizeUsed);

/*
 * SetVirtualDiskInformation
 */

typedef enum _SET_VIRTUAL_DISK_INFO_VERSION {
  SET_VIRTUAL_DISK_INFO_UNSPECIFIED = 0,
  SET_VIRTUAL_DISK_INFO_PARENT_PATH = 1,
  SET_VIRTUAL_DISK_INFO_IDENTIFIER = 2,
  SET_VIRTUAL_DISK_INFO_PARENT_PATH_WITH_DEPTH = 3,
  SET_VIRTUAL_DISK_INFO_PHYSICAL_SECTOR_SIZE = 4,
  SET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID = 5,
  SET_VIRTUAL_DISK_INFO_CHANGE_TRACKING_STATE = 6,
  SET_VIRTUAL_DISK_INFO_PARENT_LOCATOR = 7
} SET_VIRTUAL_DISK_INFO_VERSION;

typedef struct _SET_VIRTUAL_DISK_INFO {
  SET_VIRTUAL_DISK_INFO_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    PCWSTR ParentFilePath;
    GUID UniqueIdentifier;
    struct {
      ULONG ChildDepth;
      PCWSTR ParentFilePath;
    } ParentPathWithDepthInfo;
    ULONG VhdPhysicalSectorSize;
    GUID VirtualDiskId;
    BOOL ChangeTrackingEnabled;
    struct {
      GUID LinkageId;
      PCWSTR ParentFilePath;
    } ParentLocator;
  };
} SET_VIRTUAL_DISK_INFO, *PSET_VIRTUAL_DISK_INFO;

VIRTDISK_API DWORD WINAPI SetVirtualDiskInformation(HANDLE VirtualDiskHandle,
                                                    PSET_VIRTUAL_DISK_INFO VirtualDiskInfo);

/*
 * Metadata (Windows 8 and later)
 */

VIRTDISK_API DWORD WINAPI EnumerateVirtualDiskMetadata(HANDLE VirtualDiskHandle,
                                                       PULONG NumberOfItems, GUID *Items);

VIRTDISK_API DWORD WINAPI GetVirtualDiskMetadata(HANDLE VirtualDiskHandle, const GUID *Item,
                                                 PULONG MetaDataSize, PVOID MetaData);

VIRTDISK_API DWORD WINAPI SetVirtualDiskMetadata(HANDLE VirtualDiskHandle, const GUID *Item,
                                                 ULONG MetaDataSize, const void *MetaData);

VIRTDISK_API DWORD WINAPI DeleteVirtualDiskMetadata(HANDLE VirtualDiskHandle, const GUID *Item);

/*
 * GetVirtualDiskOperationProgress
 */

typedef struct _VIRTUAL_DISK_PROGRESS {
  DWORD OperationStatus;
  ULONGLONG CurrentValue;
  ULONGLONG CompletionValue;
} VIRTUAL_DISK_PROGRESS, *PVIRTUAL_DISK_PROGRESS;

VIRTDISK_API DWORD WINAPI GetVirtualDiskOperationProgress(HANDLE VirtualDiskHandle,
                                                          LPOVERLAPPED Overlapped,
                                                          PVIRTUAL_DISK_PROGRESS Progress);

/*
 * CompactVirtualDisk
 */

typedef enum _COMPACT_VIRTUAL_DISK_VERSION {
  COMPACT_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  COMPACT_VIRTUAL_DISK_VERSION_1 = 1
} COMPACT_VIRTUAL_DISK_VERSION;

typedef struct _COMPACT_VIRTUAL_DISK_PARAMETERS {
  COMPACT_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      ULONG Reserved;
    } Version1;
  };
} COMPACT_VIRTUAL_DISK_PARAMETERS, *PCOMPACT_VIRTUAL_DISK_PARAMETERS;

typedef enum _COMPACT_VIRTUAL_DISK_FLAG {
  COMPACT_VIRTUAL_DISK_FLAG_NONE = 0x00000000,
  COMPACT_VIRTUAL_DISK_FLAG_NO_ZERO_SCAN = 0x00000001,
  COMPACT_VIRTUAL_DISK_FLAG_NO_BLOCK_MOVES = 0x00000002
} COMPACT_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(COMPACT_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI CompactVirtualDisk(HANDLE VirtualDiskHandle,
                                             COMPACT_VIRTUAL_DISK_FLAG Flags,
                                             PCOMPACT_VIRTUAL_DISK_PARAMETERS Parameters,
                                             LPOVERLAPPED Overlapped);

/*
 * MergeVirtualDisk
 */

typedef enum _MERGE_VIRTUAL_DISK_VERSION {
  MERGE_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  MERGE_VIRTUAL_DISK_VERSION_1 = 1,
  MERGE_VIRTUAL_DISK_VERSION_2 = 2
} MERGE_VIRTUAL_DISK_VERSION;

#define MERGE_VIRTUAL_DISK_DEFAULT_MERGE_DEPTH 1

typedef struct _MERGE_VIRTUAL_DISK_PARAMETERS {
  MERGE_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      ULONG MergeDepth;
    } Version1;
    struct {
      ULONG MergeSourceDepth;
      ULONG MergeTargetDepth;
    } Version2;
  };
} MERGE_VIRTUAL_DISK_PARAMETERS, *PMERGE_VIRTUAL_DISK_PARAMETERS;

typedef enum _MERGE_VIRTUAL_DISK_FLAG {
  MERGE_VIRTUAL_DISK_FLAG_NONE = 0x00000000
} MERGE_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(MERGE_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI MergeVirtualDisk(HANDLE VirtualDiskHandle, MERGE_VIRTUAL_DISK_FLAG Flags,
                                           PMERGE_VIRTUAL_DISK_PARAMETERS Parameters,
                                           LPOVERLAPPED Overlapped);

/*
 * ExpandVirtualDisk
 */

typedef enum _EXPAND_VIRTUAL_DISK_VERSION {
  EXPAND_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  EXPAND_VIRTUAL_DISK_VERSION_1 = 1
} EXPAND_VIRTUAL_DISK_VERSION;

typedef struct _EXPAND_VIRTUAL_DISK_PARAMETERS {
  EXPAND_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      ULONGLONG NewSize;
    } Version1;
  };
} EXPAND_VIRTUAL_DISK_PARAMETERS, *PEXPAND_VIRTUAL_DISK_PARAMETERS;

typedef enum _EXPAND_VIRTUAL_DISK_FLAG {
  EXPAND_VIRTUAL_DISK_FLAG_NONE = 0x00000000,
  EXPAND_VIRTUAL_DISK_FLAG_NOTIFY_CHANGE = 0x00000001
} EXPAND_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(EXPAND_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI ExpandVirtualDisk(HANDLE VirtualDiskHandle,
                                            EXPAND_VIRTUAL_DISK_FLAG Flags,
                                            PEXPAND_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped);

/*
 * ResizeVirtualDisk (Windows 8 and later)
 */

typedef enum _RESIZE_VIRTUAL_DISK_VERSION {
  RESIZE_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  RESIZE_VIRTUAL_DISK_VERSION_1 = 1
} RESIZE_VIRTUAL_DISK_VERSION;

typedef struct _RESIZE_VIRTUAL_DISK_PARAMETERS {
  RESIZE_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      ULONGLONG NewSize;
    } Version1;
  };
} RESIZE_VIRTUAL_DISK_PARAMETERS, *PRESIZE_VIRTUAL_DISK_PARAMETERS;

typedef enum _RESIZE_VIRTUAL_DISK_FLAG {
  RESIZE_VIRTUAL_DISK_FLAG_NONE = 0x0,
  /* Skip the partition-table check that keeps a shrink from cutting off data. */
  RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE = 0x1,
  /* Shrink to the smallest size that keeps every partition; NewSize must then be 0. */
  RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE = 0x2
} RESIZE_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(RESIZE_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI ResizeVirtualDisk(HANDLE VirtualDiskHandle,
                                            RESIZE_VIRTUAL_DISK_FLAG Flags,
                                            PRESIZE_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped);

/*
 * MirrorVirtualDisk, BreakMirrorVirtualDisk (Windows 8 and later)
 */

typedef enum _MIRROR_VIRTUAL_DISK_VERSION {
  MIRROR_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  MIRROR_VIRTUAL_DISK_VERSION_1 = 1
} MIRROR_VIRTUAL_DISK_VERSION;

typedef struct _MIRROR_VIRTUAL_DISK_PARAMETERS {
  MIRROR_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      PCWSTR MirrorVirtualDiskPath;
    } Version1;
  };
} MIRROR_VIRTUAL_DISK_PARAMETERS, *PMIRROR_VIRTUAL_DISK_PARAMETERS;

typedef enum _MIRROR_VIRTUAL_DISK_FLAG {
  MIRROR_VIRTUAL_DISK_FLAG_NONE = 0x00000000,
  MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE = 0x00000001,
  MIRROR_VIRTUAL_DISK_FLAG_SKIP_MIRROR_ACTIVATION = 0x00000002,
  MIRROR_VIRTUAL_DISK_FLAG_ENABLE_SMB_COMPRESSION = 0x00000004,
  MIRROR_VIRTUAL_DISK_FLAG_IS_LIVE_MIGRATION = 0x00000008
} MIRROR_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(MIRROR_VIRTUAL_DISK_FLAG)

/* Overlapped is required: mirroring is always asynchronous. */
VIRTDISK_API DWORD WINAPI MirrorVirtualDisk(HANDLE VirtualDiskHandle,
                                            MIRROR_VIRTUAL_DISK_FLAG Flags,
                                            PMIRROR_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped);

VIRTDISK_API DWORD WINAPI BreakMirrorVirtualDisk(HANDLE VirtualDiskHandle);

/*
 * AddVirtualDiskParent (Windows 8 and later)
 */

VIRTDISK_API DWORD WINAPI AddVirtualDiskParent(HANDLE VirtualDiskHandle, PCWSTR ParentPath);

/*
 * QueryChangesVirtualDisk (resilient change tracking, Windows 10 and later)
 */

typedef struct _QUERY_CHANGES_VIRTUAL_DISK_RANGE {
  ULONG64 ByteOffset;
  ULONG64 ByteLength;
  ULONG64 Reserved;
} QUERY_CHANGES_VIRTUAL_DISK_RANGE, *PQUERY_CHANGES_VIRTUAL_DISK_RANGE;

typedef enum _QUERY_CHANGES_VIRTUAL_DISK_FLAG {
  QUERY_CHANGES_VIRTUAL_DISK_FLAG_NONE = 0x00000000
} QUERY_CHANGES_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(QUERY_CHANGES_VIRTUAL_DISK_FLAG)

/*
 * VHD Set snapshots (Windows 10 and later)
 */

typedef enum _TAKE_SNAPSHOT_VHDSET_FLAG {
  TAKE_SNAPSHOT_VHDSET_FLAG_NONE = 0x00000000,
  TAKE_SNAPSHOT_VHDSET_FLAG_WRITEABLE = 0x00000001
} TAKE_SNAPSHOT_VHDSET_FLAG,
    *PTAKE_SNAPSHOT_VHDSET_FLAG;

VIRTDISK_FLAG_OPERATORS_(TAKE_SNAPSHOT_VHDSET_FLAG)

typedef enum _TAKE_SNAPSHOT_VHDSET_VERSION {
  TAKE_SNAPSHOT_VHDSET_VERSION_UNSPECIFIED = 0,
  TAKE_SNAPSHOT_VHDSET_VERSION_1 = 1
} TAKE_SNAPSHOT_VHDSET_VERSION;

typedef struct _TAKE_SNAPSHOT_VHDSET_PARAMETERS {
  TAKE_SNAPSHOT_VHDSET_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      GUID SnapshotId;
    } Version1;
  };
} TAKE_SNAPSHOT_VHDSET_PARAMETERS, *PTAKE_SNAPSHOT_VHDSET_PARAMETERS;

typedef enum _DELETE_SNAPSHOT_VHDSET_FLAG {
  DELETE_SNAPSHOT_VHDSET_FLAG_NONE = 0x00000000,
  DELETE_SNAPSHOT_VHDSET_FLAG_PERSIST_RCT = 0x00000001
} DELETE_SNAPSHOT_VHDSET_FLAG,
    *PDELETE_SNAPSHOT_VHDSET_FLAG;

VIRTDISK_FLAG_OPERATORS_(DELETE_SNAPSHOT_VHDSET_FLAG)

typedef enum _DELETE_SNAPSHOT_VHDSET_VERSION {
  DELETE_SNAPSHOT_VHDSET_VERSION_UNSPECIFIED = 0,
  DELETE_SNAPSHOT_VHDSET_VERSION_1 = 1
} DELETE_SNAPSHOT_VHDSET_VERSION;

typedef struct _DELETE_SNAPSHOT_VHDSET_PARAMETERS {
  DELETE_SNAPSHOT_VHDSET_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      GUID SnapshotId;
    } Version1;
  };
} DELETE_SNAPSHOT_VHDSET_PARAMETERS, *PDELETE_SNAPSHOT_VHDSET_PARAMETERS;

typedef enum _MODIFY_VHDSET_VERSION {
  MODIFY_VHDSET_UNSPECIFIED = 0,
  MODIFY_VHDSET_SNAPSHOT_PATH = 1,
  MODIFY_VHDSET_REMOVE_SNAPSHOT = 2,
  MODIFY_VHDSET_DEFAULT_SNAPSHOT_PATH = 3
} MODIFY_VHDSET_VERSION,
    *PMODIFY_VHDSET_VERSION;

typedef enum _MODIFY_VHDSET_FLAG {
  MODIFY_VHDSET_FLAG_NONE = 0x00000000,
  MODIFY_VHDSET_FLAG_WRITEABLE_SNAPSHOT = 0x00000001
} MODIFY_VHDSET_FLAG,
    *PMODIFY_VHDSET_FLAG;

VIRTDISK_FLAG_OPERATORS_(MODIFY_VHDSET_FLAG)

typedef struct _MODIFY_VHDSET_PARAMETERS {
  MODIFY_VHDSET_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      GUID SnapshotId;
      PCWSTR SnapshotFilePath;
    } SnapshotPath;
    GUID SnapshotId;
    PCWSTR DefaultFilePath;
  };
} MODIFY_VHDSET_PARAMETERS, *PMODIFY_VHDSET_PARAMETERS;

typedef enum _APPLY_SNAPSHOT_VHDSET_FLAG {
  APPLY_SNAPSHOT_VHDSET_FLAG_NONE = 0x00000000,
  APPLY_SNAPSHOT_VHDSET_FLAG_WRITEABLE = 0x00000001
} APPLY_SNAPSHOT_VHDSET_FLAG,
    *PAPPLY_SNAPSHOT_VHDSET_FLAG;

VIRTDISK_FLAG_OPERATORS_(APPLY_SNAPSHOT_VHDSET_FLAG)

typedef enum _APPLY_SNAPSHOT_VHDSET_VERSION {
  APPLY_SNAPSHOT_VHDSET_VERSION_UNSPECIFIED = 0,
  APPLY_SNAPSHOT_VHDSET_VERSION_1 = 1
} APPLY_SNAPSHOT_VHDSET_VERSION;

typedef struct _APPLY_SNAPSHOT_VHDSET_PARAMETERS {
  APPLY_SNAPSHOT_VHDSET_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      GUID SnapshotId;
      GUID LeafSnapshotId;
    } Version1;
  };
} APPLY_SNAPSHOT_VHDSET_PARAMETERS, *PAPPLY_SNAPSHOT_VHDSET_PARAMETERS;

/*
 * RawSCSIVirtualDisk (Windows 10 and later)
 */

typedef enum _RAW_SCSI_VIRTUAL_DISK_FLAG {
  RAW_SCSI_VIRTUAL_DISK_FLAG_NONE = 0x00000000
} RAW_SCSI_VIRTUAL_DISK_FLAG,
    *PRAW_SCSI_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(RAW_SCSI_VIRTUAL_DISK_FLAG)

typedef enum _RAW_SCSI_VIRTUAL_DISK_VERSION {
  RAW_SCSI_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  RAW_SCSI_VIRTUAL_DISK_VERSION_1 = 1
} RAW_SCSI_VIRTUAL_DISK_VERSION;

/* DataBuffer holds DataTransferLength bytes, SenseInfo SenseInfoLength, Cdb CdbLength. */
typedef struct _RAW_SCSI_VIRTUAL_DISK_PARAMETERS {
  RAW_SCSI_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      BOOL RSVDHandle;
      UCHAR DataIn;
      UCHAR CdbLength;
      UCHAR SenseInfoLength;
      ULONG SrbFlags;
      ULONG DataTransferLength;
      PVOID DataBuffer;
      UCHAR *SenseInfo;
      UCHAR *Cdb;
    } Version1;
  };
} RAW_SCSI_VIRTUAL_DISK_PARAMETERS, *PRAW_SCSI_VIRTUAL_DISK_PARAMETERS;

/* SenseInfoLength and DataTransferLength report the bytes actually transferred. */
typedef struct _RAW_SCSI_VIRTUAL_DISK_RESPONSE {
  RAW_SCSI_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      UCHAR ScsiStatus;
      UCHAR SenseInfoLength;
      ULONG DataTransferLength;
    } Version1;
  };
} RAW_SCSI_VIRTUAL_DISK_RESPONSE, *PRAW_SCSI_VIRTUAL_DISK_RESPONSE;

VIRTDISK_API DWORD WINAPI QueryChangesVirtualDisk(HANDLE VirtualDiskHandle, PCWSTR ChangeTrackingId,
                                                  ULONG64 ByteOffset, ULONG64 ByteLength,
                                                  QUERY_CHANGES_VIRTUAL_DISK_FLAG Flags,
                                                  PQUERY_CHANGES_VIRTUAL_DISK_RANGE Ranges,
                                                  PULONG RangeCount, PULONG64 ProcessedLength);

VIRTDISK_API DWORD WINAPI TakeSnapshotVhdSet(HANDLE VirtualDiskHandle,
                                             const PTAKE_SNAPSHOT_VHDSET_PARAMETERS Parameters,
                                             TAKE_SNAPSHOT_VHDSET_FLAG Flags);

VIRTDISK_API DWORD WINAPI DeleteSnapshotVhdSet(HANDLE VirtualDiskHandle,
                                               const PDELETE_SNAPSHOT_VHDSET_PARAMETERS Parameters,
                                               DELETE_SNAPSHOT_VHDSET_FLAG Flags);

VIRTDISK_API DWORD WINAPI ModifyVhdSet(HANDLE VirtualDiskHandle,
                                       const PMODIFY_VHDSET_PARAMETERS Parameters,
                                       MODIFY_VHDSET_FLAG Flags);

VIRTDISK_API DWORD WINAPI ApplySnapshotVhdSet(HANDLE VirtualDiskHandle,
                                              const PAPPLY_SNAPSHOT_VHDSET_PARAMETERS Parameters,
                                              APPLY_SNAPSHOT_VHDSET_FLAG Flags);

VIRTDISK_API DWORD WINAPI RawSCSIVirtualDisk(HANDLE VirtualDiskHandle,
                                             const PRAW_SCSI_VIRTUAL_DISK_PARAMETERS Parameters,
                                             RAW_SCSI_VIRTUAL_DISK_FLAG Flags,
                                             PRAW_SCSI_VIRTUAL_DISK_RESPONSE Response);

/*
 * ForkVirtualDisk, CompleteForkVirtualDisk (Windows 10 1809 and later)
 */

typedef enum _FORK_VIRTUAL_DISK_VERSION {
  FORK_VIRTUAL_DISK_VERSION_UNSPECIFIED = 0,
  FORK_VIRTUAL_DISK_VERSION_1 = 1
} FORK_VIRTUAL_DISK_VERSION;

typedef struct _FORK_VIRTUAL_DISK_PARAMETERS {
  FORK_VIRTUAL_DISK_VERSION Version;
  VIRTDISK_NAMELESS_ union {
    struct {
      PCWSTR ForkedVirtualDiskPath;
    } Version1;
  };
} FORK_VIRTUAL_DISK_PARAMETERS, *PFORK_VIRTUAL_DISK_PARAMETERS;

typedef enum _FORK_VIRTUAL_DISK_FLAG {
  FORK_VIRTUAL_DISK_FLAG_NONE = 0x00000000,
  FORK_VIRTUAL_DISK_FLAG_EXISTING_FILE = 0x00000001
} FORK_VIRTUAL_DISK_FLAG;

VIRTDISK_FLAG_OPERATORS_(FORK_VIRTUAL_DISK_FLAG)

VIRTDISK_API DWORD WINAPI ForkVirtualDisk(HANDLE VirtualDiskHandle, FORK_VIRTUAL_DISK_FLAG Flags,
                                          const FORK_VIRTUAL_DISK_PARAMETERS *Parameters,
                                          LPOVERLAPPED Overlapped);

VIRTDISK_API DWORD WINAPI CompleteForkVirtualDisk(HANDLE VirtualDiskHandle);

/*
 * Deprecated Windows 7 beta names, kept by the SDK as aliases of Attach/Detach.
 */

#define SurfaceVirtualDisk AttachVirtualDisk
#define UnsurfaceVirtualDisk DetachVirtualDisk
#define VIRTUAL_DISK_ACCESS_SURFACE_RO VIRTUAL_DISK_ACCESS_ATTACH_RO
#define VIRTUAL_DISK_ACCESS_SURFACE_RW VIRTUAL_DISK_ACCESS_ATTACH_RW
#define VIRTUAL_DISK_ACCESS_UNSURFACE VIRTUAL_DISK_ACCESS_DETACH
#define SURFACE_VIRTUAL_DISK_VERSION_UNSPECIFIED ATTACH_VIRTUAL_DISK_VERSION_UNSPECIFIED
#define SURFACE_VIRTUAL_DISK_VERSION_1 ATTACH_VIRTUAL_DISK_VERSION_1
#define SURFACE_VIRTUAL_DISK_VERSION ATTACH_VIRTUAL_DISK_VERSION
#define _SURFACE_VIRTUAL_DISK_VERSION _ATTACH_VIRTUAL_DISK_VERSION
#define SURFACE_VIRTUAL_DISK_PARAMETERS ATTACH_VIRTUAL_DISK_PARAMETERS
#define PSURFACE_VIRTUAL_DISK_PARAMETERS PATTACH_VIRTUAL_DISK_PARAMETERS
#define _SURFACE_VIRTUAL_DISK_PARAMETERS _ATTACH_VIRTUAL_DISK_PARAMETERS
#define _SURFACE_VIRTUAL_DISK_FLAG _ATTACH_VIRTUAL_DISK_FLAG
#define SURFACE_VIRTUAL_DISK_FLAG_NONE ATTACH_VIRTUAL_DISK_FLAG_NONE
#define SURFACE_VIRTUAL_DISK_FLAG_READ_ONLY ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY
#define SURFACE_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER
#define SURFACE_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME
#define SURFACE_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST
#define SURFACE_VIRTUAL_DISK_FLAG_NO_SECURITY_DESCRIPTOR \
  ATTACH_VIRTUAL_DISK_FLAG_NO_SECURITY_DESCRIPTOR
#define SURFACE_VIRTUAL_DISK_FLAG_BYPASS_DEFAULT_ENCRYPTION_POLICY \
  ATTACH_VIRTUAL_DISK_FLAG_BYPASS_DEFAULT_ENCRYPTION_POLICY
#define SURFACE_VIRTUAL_DISK_FLAG ATTACH_VIRTUAL_DISK_FLAG
#define _UNSURFACE_VIRTUAL_DISK_FLAG _DETACH_VIRTUAL_DISK_FLAG
#define UNSURFACE_VIRTUAL_DISK_FLAG_NONE DETACH_VIRTUAL_DISK_FLAG_NONE
#define UNSURFACE_VIRTUAL_DISK_FLAG DETACH_VIRTUAL_DISK_FLAG

#ifdef __cplusplus
}
#endif

/*
 * Error codes of the virtual disk facility (FACILITY_USERMODE_VHD, 0x3A) and of shared VHDX
 * (FACILITY_SHARED_VHDX, 0x5C), from <winerror.h>. Returned as DWORDs like any Win32 error.
 * Each is guarded so that a <winerror.h> that already has it wins.
 */

#ifndef ERROR_QUERY_STORAGE_ERROR
#define ERROR_QUERY_STORAGE_ERROR ((DWORD)0x803A0001L)
#endif
#ifndef ERROR_VHD_DRIVE_FOOTER_MISSING
#define ERROR_VHD_DRIVE_FOOTER_MISSING ((DWORD)0xC03A0001L)
#endif
#ifndef ERROR_VHD_DRIVE_FOOTER_CHECKSUM_MISMATCH
#define ERROR_VHD_DRIVE_FOOTER_CHECKSUM_MISMATCH ((DWORD)0xC03A0002L)
#endif
#ifndef ERROR_VHD_DRIVE_FOOTER_CORRUPT
#define ERROR_VHD_DRIVE_FOOTER_CORRUPT ((DWORD)0xC03A0003L)
#endif
#ifndef ERROR_VHD_FORMAT_UNKNOWN
#define ERROR_VHD_FORMAT_UNKNOWN ((DWORD)0xC03A0004L)
#endif
#ifndef ERROR_VHD_FORMAT_UNSUPPORTED_VERSION
#define ERROR_VHD_FORMAT_UNSUPPORTED_VERSION ((DWORD)0xC03A0005L)
#endif
#ifndef ERROR_VHD_SPARSE_HEADER_CHECKSUM_MISMATCH
#define ERROR_VHD_SPARSE_HEADER_CHECKSUM_MISMATCH ((DWORD)0xC03A0006L)
#endif
#ifndef ERROR_VHD_SPARSE_HEADER_UNSUPPORTED_VERSION
#define ERROR_VHD_SPARSE_HEADER_UNSUPPORTED_VERSION ((DWORD)0xC03A0007L)
#endif
#ifndef ERROR_VHD_SPARSE_HEADER_CORRUPT
#define ERROR_VHD_SPARSE_HEADER_CORRUPT ((DWORD)0xC03A0008L)
#endif
#ifndef ERROR_VHD_BLOCK_ALLOCATION_FAILURE
#define ERROR_VHD_BLOCK_ALLOCATION_FAILURE ((DWORD)0xC03A0009L)
#endif
#ifndef ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT
#define ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT ((DWORD)0xC03A000AL)
#endif
#ifndef ERROR_VHD_INVALID_BLOCK_SIZE
#define ERROR_VHD_INVALID_BLOCK_SIZE ((DWORD)0xC03A000BL)
#endif
#ifndef ERROR_VHD_BITMAP_MISMATCH
#define ERROR_VHD_BITMAP_MISMATCH ((DWORD)0xC03A000CL)
#endif
#ifndef ERROR_VHD_PARENT_VHD_NOT_FOUND
#define ERROR_VHD_PARENT_VHD_NOT_FOUND ((DWORD)0xC03A000DL)
#endif
#ifndef ERROR_VHD_CHILD_PARENT_ID_MISMATCH
#define ERROR_VHD_CHILD_PARENT_ID_MISMATCH ((DWORD)0xC03A000EL)
#endif
#ifndef ERROR_VHD_CHILD_PARENT_TIMESTAMP_MISMATCH
#define ERROR_VHD_CHILD_PARENT_TIMESTAMP_MISMATCH ((DWORD)0xC03A000FL)
#endif
#ifndef ERROR_VHD_METADATA_READ_FAILURE
#define ERROR_VHD_METADATA_READ_FAILURE ((DWORD)0xC03A0010L)
#endif
#ifndef ERROR_VHD_METADATA_WRITE_FAILURE
#define ERROR_VHD_METADATA_WRITE_FAILURE ((DWORD)0xC03A0011L)
#endif
#ifndef ERROR_VHD_INVALID_SIZE
#define ERROR_VHD_INVALID_SIZE ((DWORD)0xC03A0012L)
#endif
#ifndef ERROR_VHD_INVALID_FILE_SIZE
#define ERROR_VHD_INVALID_FILE_SIZE ((DWORD)0xC03A0013L)
#endif
#ifndef ERROR_VIRTDISK_PROVIDER_NOT_FOUND
#define ERROR_VIRTDISK_PROVIDER_NOT_FOUND ((DWORD)0xC03A0014L)
#endif
#ifndef ERROR_VIRTDISK_NOT_VIRTUAL_DISK
#define ERROR_VIRTDISK_NOT_VIRTUAL_DISK ((DWORD)0xC03A0015L)
#endif
#ifndef ERROR_VHD_PARENT_VHD_ACCESS_DENIED
#define ERROR_VHD_PARENT_VHD_ACCESS_DENIED ((DWORD)0xC03A0016L)
#endif
#ifndef ERROR_VHD_CHILD_PARENT_SIZE_MISMATCH
#define ERROR_VHD_CHILD_PARENT_SIZE_MISMATCH ((DWORD)0xC03A0017L)
#endif
#ifndef ERROR_VHD_DIFFERENCING_CHAIN_CYCLE_DETECTED
#define ERROR_VHD_DIFFERENCING_CHAIN_CYCLE_DETECTED ((DWORD)0xC03A0018L)
#endif
#ifndef ERROR_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT
#define ERROR_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT ((DWORD)0xC03A0019L)
#endif
#ifndef ERROR_VIRTUAL_DISK_LIMITATION
#define ERROR_VIRTUAL_DISK_LIMITATION ((DWORD)0xC03A001AL)
#endif
#ifndef ERROR_VHD_INVALID_TYPE
#define ERROR_VHD_INVALID_TYPE ((DWORD)0xC03A001BL)
#endif
#ifndef ERROR_VHD_INVALID_STATE
#define ERROR_VHD_INVALID_STATE ((DWORD)0xC03A001CL)
#endif
#ifndef ERROR_VIRTDISK_UNSUPPORTED_DISK_SECTOR_SIZE
#define ERROR_VIRTDISK_UNSUPPORTED_DISK_SECTOR_SIZE ((DWORD)0xC03A001DL)
#endif
#ifndef ERROR_VIRTDISK_DISK_ALREADY_OWNED
#define ERROR_VIRTDISK_DISK_ALREADY_OWNED ((DWORD)0xC03A001EL)
#endif
#ifndef ERROR_VIRTDISK_DISK_ONLINE_AND_WRITABLE
#define ERROR_VIRTDISK_DISK_ONLINE_AND_WRITABLE ((DWORD)0xC03A001FL)
#endif
#ifndef ERROR_CTLOG_TRACKING_NOT_INITIALIZED
#define ERROR_CTLOG_TRACKING_NOT_INITIALIZED ((DWORD)0xC03A0020L)
#endif
#ifndef ERROR_CTLOG_LOGFILE_SIZE_EXCEEDED_MAXSIZE
#define ERROR_CTLOG_LOGFILE_SIZE_EXCEEDED_MAXSIZE ((DWORD)0xC03A0021L)
#endif
#ifndef ERROR_CTLOG_VHD_CHANGED_OFFLINE
#define ERROR_CTLOG_VHD_CHANGED_OFFLINE ((DWORD)0xC03A0022L)
#endif
#ifndef ERROR_CTLOG_INVALID_TRACKING_STATE
#define ERROR_CTLOG_INVALID_TRACKING_STATE ((DWORD)0xC03A0023L)
#endif
#ifndef ERROR_CTLOG_INCONSISTENT_TRACKING_FILE
#define ERROR_CTLOG_INCONSISTENT_TRACKING_FILE ((DWORD)0xC03A0024L)
#endif
#ifndef ERROR_VHD_RESIZE_WOULD_TRUNCATE_DATA
#define ERROR_VHD_RESIZE_WOULD_TRUNCATE_DATA ((DWORD)0xC03A0025L)
#endif
#ifndef ERROR_VHD_COULD_NOT_COMPUTE_MINIMUM_VIRTUAL_SIZE
#define ERROR_VHD_COULD_NOT_COMPUTE_MINIMUM_VIRTUAL_SIZE ((DWORD)0xC03A0026L)
#endif
#ifndef ERROR_VHD_ALREADY_AT_OR_BELOW_MINIMUM_VIRTUAL_SIZE
#define ERROR_VHD_ALREADY_AT_OR_BELOW_MINIMUM_VIRTUAL_SIZE ((DWORD)0xC03A0027L)
#endif
#ifndef ERROR_VHD_METADATA_FULL
#define ERROR_VHD_METADATA_FULL ((DWORD)0xC03A0028L)
#endif
#ifndef ERROR_VHD_INVALID_CHANGE_TRACKING_ID
#define ERROR_VHD_INVALID_CHANGE_TRACKING_ID ((DWORD)0xC03A0029L)
#endif
#ifndef ERROR_VHD_CHANGE_TRACKING_DISABLED
#define ERROR_VHD_CHANGE_TRACKING_DISABLED ((DWORD)0xC03A002AL)
#endif
#ifndef ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION
#define ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION ((DWORD)0xC03A0030L)
#endif
#ifndef ERROR_VHD_SHARED
#define ERROR_VHD_SHARED ((DWORD)0xC05CFF0AL)
#endif
#ifndef ERROR_VHDSET_BACKING_STORAGE_NOT_FOUND
#define ERROR_VHDSET_BACKING_STORAGE_NOT_FOUND ((DWORD)0xC05CFF0CL)
#endif

#endif /* !_INC_VIRTDISK && !VIRT_DISK_API_DEF */

/*
 * Vendor GUIDs on Windows, as the SDK declares them: DEFINE_GUID gives a declaration, or a
 * definition when <initguid.h> came first. This block sits outside the include guard because
 * mingw-w64's <windows.h> includes <virtdisk.h> before the client can include <initguid.h>;
 * a later include with INITGUID defined must still emit the definitions, once.
 */
#if defined(_WIN32) && defined(VIRTDISK_H_) && defined(DEFINE_GUID)
#if defined(INITGUID) && !defined(VIRTDISK_VENDOR_GUIDS_DEFINED_)
#define VIRTDISK_VENDOR_GUIDS_DEFINED_
#define VIRTDISK_VENDOR_GUIDS_DECLARED_
DEFINE_GUID(VIRTUAL_STORAGE_TYPE_VENDOR_UNKNOWN, 0x00000000, 0x0000, 0x0000, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00);
/* {EC984AEC-A0F9-47E9-901F-71415A66345B} */
DEFINE_GUID(VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT, 0xec984aec, 0xa0f9, 0x47e9, 0x90, 0x1f, 0x71,
            0x41, 0x5a, 0x66, 0x34, 0x5b);
#elif !defined(INITGUID) && !defined(VIRTDISK_VENDOR_GUIDS_DECLARED_)
#define VIRTDISK_VENDOR_GUIDS_DECLARED_
DEFINE_GUID(VIRTUAL_STORAGE_TYPE_VENDOR_UNKNOWN, 0x00000000, 0x0000, 0x0000, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00);
DEFINE_GUID(VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT, 0xec984aec, 0xa0f9, 0x47e9, 0x90, 0x1f, 0x71,
            0x41, 0x5a, 0x66, 0x34, 0x5b);
#endif
#endif
