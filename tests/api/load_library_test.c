/* Loads VirtDisk.dll at run time, as a program that does not link the import library does:
 * LoadLibraryW(L"VirtDisk.dll") must find ours (the copy next to the program, not the system's
 * or Wine's built-in one) and GetProcAddress must find all 29 exports. One call then tells the
 * implementations apart: Wine's built-in OpenVirtualDisk answers ERROR_CALL_NOT_IMPLEMENTED for a
 * valid request, ours opens the file or reports that it is missing. Windows only. */
#include <windows.h>

#include <stdio.h>
#include <string.h>
#include <wchar.h>

static const char *const kExports[] = {
    "AddVirtualDiskParent",
    "ApplySnapshotVhdSet",
    "AttachVirtualDisk",
    "BreakMirrorVirtualDisk",
    "CompactVirtualDisk",
    "CompleteForkVirtualDisk",
    "CreateVirtualDisk",
    "DeleteSnapshotVhdSet",
    "DeleteVirtualDiskMetadata",
    "DetachVirtualDisk",
    "EnumerateVirtualDiskMetadata",
    "ExpandVirtualDisk",
    "ForkVirtualDisk",
    "GetAllAttachedVirtualDiskPhysicalPaths",
    "GetStorageDependencyInformation",
    "GetVirtualDiskInformation",
    "GetVirtualDiskMetadata",
    "GetVirtualDiskOperationProgress",
    "GetVirtualDiskPhysicalPath",
    "MergeVirtualDisk",
    "MirrorVirtualDisk",
    "ModifyVhdSet",
    "OpenVirtualDisk",
    "QueryChangesVirtualDisk",
    "RawSCSIVirtualDisk",
    "ResizeVirtualDisk",
    "SetVirtualDiskInformation",
    "SetVirtualDiskMetadata",
    "TakeSnapshotVhdSet",
};

typedef struct {
  ULONG DeviceId;
  GUID VendorId;
} StorageType;
typedef DWORD(WINAPI *OpenFn)(StorageType *, PCWSTR, DWORD, DWORD, void *, HANDLE *);

static int failed = 0;

static void Fail(const char *what) {
  printf("FAIL: %s\n", what);
  ++failed;
}

/* The directory part of a path, lower-cased, with a trailing backslash. */
static void DirectoryOf(const WCHAR *path, WCHAR *out, size_t count) {
  size_t n = wcslen(path);
  while (n > 0 && path[n - 1] != L'\\' && path[n - 1] != L'/') --n;
  if (n >= count) n = count - 1;
  for (size_t i = 0; i < n; ++i) out[i] = (WCHAR)towlower(path[i] == L'/' ? L'\\' : path[i]);
  out[n] = 0;
}

int main(void) {
  HMODULE dll = LoadLibraryW(L"VirtDisk.dll");
  if (dll == NULL) {
    printf("FAIL: LoadLibraryW(VirtDisk.dll): error %lu\n", GetLastError());
    return 1;
  }
  WCHAR dll_path[MAX_PATH], exe_path[MAX_PATH], dll_dir[MAX_PATH], exe_dir[MAX_PATH];
  if (GetModuleFileNameW(dll, dll_path, MAX_PATH) == 0 ||
      GetModuleFileNameW(NULL, exe_path, MAX_PATH) == 0) {
    Fail("GetModuleFileNameW");
    return 1;
  }
  DirectoryOf(dll_path, dll_dir, MAX_PATH);
  DirectoryOf(exe_path, exe_dir, MAX_PATH);
  if (wcscmp(dll_dir, exe_dir) != 0) {
    printf("FAIL: loaded %ls, not the VirtDisk.dll next to %ls\n", dll_path, exe_path);
    ++failed;
  }

  size_t found = 0;
  for (size_t i = 0; i < sizeof kExports / sizeof kExports[0]; ++i) {
    if (GetProcAddress(dll, kExports[i]) != NULL) {
      ++found;
    } else {
      printf("FAIL: GetProcAddress(%s)\n", kExports[i]);
      ++failed;
    }
  }
  if (sizeof kExports / sizeof kExports[0] != 29) Fail("the list should hold 29 names");

  OpenFn open = (OpenFn)(void (*)(void))GetProcAddress(dll, "OpenVirtualDisk");
  if (open != NULL) {
    WCHAR missing[MAX_PATH + 32];
    swprintf(missing, sizeof missing / sizeof missing[0], L"%lsno-such-disk.vhd", exe_dir);
    StorageType type;
    memset(&type, 0, sizeof type);  /* VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, VENDOR_UNKNOWN */
    HANDLE handle = NULL;
    /* VIRTUAL_DISK_ACCESS_ALL, OPEN_VIRTUAL_DISK_FLAG_NONE, no parameters. */
    const DWORD error = open(&type, missing, 0x003f0000, 0, NULL, &handle);
    if (error != ERROR_FILE_NOT_FOUND && error != ERROR_PATH_NOT_FOUND) {
      printf("FAIL: OpenVirtualDisk of a missing file answered %lu, expected %d\n", error,
             ERROR_FILE_NOT_FOUND);
      ++failed;
    }
  }
  FreeLibrary(dll);
  printf("load_library: %zu of 29 exports found, %d failures\n", found, failed);
  return failed == 0 ? 0 : 1;
}
