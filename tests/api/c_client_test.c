/* A plain C99 client of the library, as existing Win32 code would call it. Builds for Linux and,
 * with mingw-w64, for Windows, where it loads VirtDisk.dll through the import library. */
#ifdef _WIN32
#include <initguid.h>
#include <windows.h>
#endif
#include <virtdisk.h>

#include <stdio.h>
#include <string.h>
#include <wchar.h>

#ifdef _WIN32
#include <stdlib.h>
#else
#include <stdlib.h>
#include <unistd.h>
#endif

static int passed = 0;
static int failed = 0;

static void Check(int ok, const char *what, unsigned long expected, unsigned long got) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    printf("FAIL: %s: expected %lu (0x%lx), got %lu (0x%lx)\n", what, expected, expected, got, got);
  }
}

static void CheckEq(const char *what, unsigned long expected, unsigned long got) {
  Check(expected == got, what, expected, got);
}
#define CHECK_EQ(what, expected, got) CheckEq(what, (unsigned long)(expected), (unsigned long)(got))

static void MakePath(WCHAR *out, size_t count, const char *name) {
  char narrow[512];
#ifdef _WIN32
  char dir[400];
  DWORD n = GetTempPathA(sizeof dir, dir);
  if (n == 0 || n >= sizeof dir) strcpy(dir, ".\\");
  snprintf(narrow, sizeof narrow, "%svdisk-c-client-%lu-%s", dir, (unsigned long)GetCurrentProcessId(), name);
#else
  const char *dir = getenv("TMPDIR");
  snprintf(narrow, sizeof narrow, "%s/vdisk-c-client-%ld-%s", dir ? dir : "/tmp", (long)getpid(), name);
#endif
  {
    size_t i;
    for (i = 0; narrow[i] != 0 && i + 1 < count; ++i) out[i] = (WCHAR)(unsigned char)narrow[i];
    out[i] = 0;
  }
}

static void RemovePath(const WCHAR *path) {
  char narrow[512];
  size_t i;
  for (i = 0; path[i] != 0 && i + 1 < sizeof narrow; ++i) narrow[i] = (char)path[i];
  narrow[i] = 0;
  remove(narrow);
}

/* Takes the address of every export through the header's declarations, so that the program
 * imports all 29 from VirtDisk.dll: it links only if the import library resolves each symbol
 * the compiler emits for them (on x86 the stdcall-decorated _OpenVirtualDisk@24 ...), and
 * loads only if the DLL exports each name. Returns how many addresses are not NULL. */
static int CountExports(void) {
  /* void (*)(void) is the one type GCC lets any function pointer be cast to without warning. */
  typedef void (*AnyFunction)(void);
  const AnyFunction exports[] = {
      (AnyFunction)AddVirtualDiskParent,
      (AnyFunction)ApplySnapshotVhdSet,
      (AnyFunction)AttachVirtualDisk,
      (AnyFunction)BreakMirrorVirtualDisk,
      (AnyFunction)CompactVirtualDisk,
      (AnyFunction)CompleteForkVirtualDisk,
      (AnyFunction)CreateVirtualDisk,
      (AnyFunction)DeleteSnapshotVhdSet,
      (AnyFunction)DeleteVirtualDiskMetadata,
      (AnyFunction)DetachVirtualDisk,
      (AnyFunction)EnumerateVirtualDiskMetadata,
      (AnyFunction)ExpandVirtualDisk,
      (AnyFunction)ForkVirtualDisk,
      (AnyFunction)GetAllAttachedVirtualDiskPhysicalPaths,
      (AnyFunction)GetStorageDependencyInformation,
      (AnyFunction)GetVirtualDiskInformation,
      (AnyFunction)GetVirtualDiskMetadata,
      (AnyFunction)GetVirtualDiskOperationProgress,
      (AnyFunction)GetVirtualDiskPhysicalPath,
      (AnyFunction)MergeVirtualDisk,
      (AnyFunction)MirrorVirtualDisk,
      (AnyFunction)ModifyVhdSet,
      (AnyFunction)OpenVirtualDisk,
      (AnyFunction)QueryChangesVirtualDisk,
      (AnyFunction)RawSCSIVirtualDisk,
      (AnyFunction)ResizeVirtualDisk,
      (AnyFunction)SetVirtualDiskInformation,
      (AnyFunction)SetVirtualDiskMetadata,
      (AnyFunction)TakeSnapshotVhdSet,
  };
  int count = 0;
  size_t i;
  for (i = 0; i < sizeof exports / sizeof exports[0]; ++i) count += exports[i] != NULL;
  return count;
}

int main(void) {
  WCHAR path[512];
  WCHAR missing[512];
  VIRTUAL_STORAGE_TYPE type;
  CREATE_VIRTUAL_DISK_PARAMETERS create;
  OPEN_VIRTUAL_DISK_PARAMETERS open;
  GET_VIRTUAL_DISK_INFO info;
  HANDLE created = NULL;
  HANDLE opened = NULL;
  ULONG size;
  DWORD error;
  const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;

  CHECK_EQ("exports resolved", 29, CountExports());

  MakePath(path, 512, "disk.vhd");
  MakePath(missing, 512, "missing.vhd");
  RemovePath(path);

  memset(&type, 0, sizeof type);
  type.DeviceId = VIRTUAL_STORAGE_TYPE_DEVICE_VHD;
  type.VendorId = VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT;
  CHECK_EQ("vendor GUID links and has its value", 0,
           memcmp(&type.VendorId, &microsoft, sizeof microsoft));

  memset(&create, 0, sizeof create);
  create.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  create.Version2.MaximumSize = 3u * 1024 * 1024 + 512;
  create.Version2.SectorSizeInBytes = 512;
  error = CreateVirtualDisk(&type, path, VIRTUAL_DISK_ACCESS_NONE, NULL,
                            CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &create, NULL, &created);
  CHECK_EQ("CreateVirtualDisk", ERROR_SUCCESS, error);

  memset(&open, 0, sizeof open);
  open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  open.Version2.ReadOnly = TRUE;
  type.DeviceId = VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN;
  error = OpenVirtualDisk(&type, path, VIRTUAL_DISK_ACCESS_NONE, OPEN_VIRTUAL_DISK_FLAG_NONE,
                          &open, &opened);
  /* The creating handle is still open for writing, so a read-only open shares it in-process. */
  CHECK_EQ("OpenVirtualDisk", ERROR_SUCCESS, error);

  memset(&info, 0, sizeof info);
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  size = sizeof info;
  error = GetVirtualDiskInformation(opened, &size, &info, NULL);
  CHECK_EQ("GetVirtualDiskInformation(SIZE)", ERROR_SUCCESS, error);
  CHECK_EQ("virtual size", 3u * 1024 * 1024 + 512, info.Size.VirtualSize);
  CHECK_EQ("block size", 2u * 1024 * 1024, info.Size.BlockSize);

  info.Version = GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE;
  size = sizeof info;
  error = GetVirtualDiskInformation(opened, &size, &info, NULL);
  CHECK_EQ("GetVirtualDiskInformation(VIRTUAL_STORAGE_TYPE)", ERROR_SUCCESS, error);
  CHECK_EQ("detected device", VIRTUAL_STORAGE_TYPE_DEVICE_VHD, info.VirtualStorageType.DeviceId);

  error = OpenVirtualDisk(&type, missing, VIRTUAL_DISK_ACCESS_NONE, OPEN_VIRTUAL_DISK_FLAG_NONE,
                          &open, &opened);
  CHECK_EQ("missing file", ERROR_FILE_NOT_FOUND, error);
  error = OpenVirtualDisk(NULL, path, VIRTUAL_DISK_ACCESS_NONE, OPEN_VIRTUAL_DISK_FLAG_NONE,
                          &open, &opened);
  CHECK_EQ("NULL storage type", ERROR_INVALID_PARAMETER, error);

  CHECK_EQ("CloseHandle(opened)", TRUE, CloseHandle(opened));
  CHECK_EQ("CloseHandle(created)", TRUE, CloseHandle(created));
  RemovePath(path);

  printf("c_client: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
