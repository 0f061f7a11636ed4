// The other processes of attach_host_api_test.cpp and attach_host_interop_test.cpp, written as a
// Win32 client of the public API (Microsoft's storage sample: DEVICE_UNKNOWN + VENDOR_UNKNOWN,
// OPEN_VIRTUAL_DISK_VERSION_2, VIRTUAL_DISK_ACCESS_NONE). Builds for Linux and Windows:
//   attach_client attach-permanent PATH   attach with PERMANENT_LIFETIME and the security
//                                         descriptor O:BAG:BAD:(A;;GA;;;WD), close, exit
//   attach_client attach-and-wait PATH    attach for the life of the process, then wait to be
//                                         killed
//   attach_client attach-owner-only-and-wait PATH
//                                         the same with a NULL security descriptor (owner only)
//   attach_client detach PATH             open the file and DetachVirtualDisk
// Prints "attached <uri>" or "detached" on success, "error <code> <step>" otherwise (exit 1).
#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif
#include <virtdisk.h>

#include <cstdio>
#include <cstring>
#include <cwchar>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using WString = std::basic_string<WCHAR>;

#ifdef _WIN32
WString Wide(const wchar_t* path) { return WString(path); }
bool Is(const wchar_t* arg, const wchar_t* command) { return std::wcscmp(arg, command) == 0; }
[[noreturn]] void WaitToBeKilled() {
  // The process's own handle is signalled when it ends: only TerminateProcess ends this wait.
  for (;;) WaitForSingleObject(GetCurrentProcess(), INFINITE);
}
#else
WString Wide(const char* path) {
  const std::wstring w = std::filesystem::path(path).wstring();
  return WString(w.begin(), w.end());
}
bool Is(const char* arg, const char* command) { return std::strcmp(arg, command) == 0; }
[[noreturn]] void WaitToBeKilled() {
  for (;;) ::pause();
}
#endif

int Fail(DWORD error, const char* step) {
  std::printf("error %lu %s\n", static_cast<unsigned long>(error), step);
  return 1;
}

// O:BAG:BAD:(A;;GA;;;WD) as ConvertStringSecurityDescriptorToSecurityDescriptor builds it: a
// self-relative SECURITY_DESCRIPTOR (MS-DTYP 2.4.6) whose owner and group are
// BUILTIN\Administrators (S-1-5-32-544) and whose DACL allows Everyone (S-1-1-0) GENERIC_ALL.
std::vector<unsigned char> EveryoneMayUseIt() {
  // clang-format off
  const std::vector<unsigned char> administrators = {1, 2, 0, 0, 0, 0, 0, 5,      // S-1-5-...
                                                     32, 0, 0, 0, 0x20, 2, 0, 0};  // 32-544
  const std::vector<unsigned char> dacl = {2, 0, 28, 0, 1, 0, 0, 0,  // ACL rev 2, 28 bytes, 1 ACE
                                           0, 0, 20, 0,              // ACCESS_ALLOWED_ACE, 20 bytes
                                           0, 0, 0, 0x10,            // GENERIC_ALL
                                           1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};  // S-1-1-0
  std::vector<unsigned char> sd = {1, 0, 0x04, 0x80,  // revision 1; SE_DACL_PRESENT|SELF_RELATIVE
                                   20, 0, 0, 0,       // owner at 20
                                   36, 0, 0, 0,       // group at 36
                                   0, 0, 0, 0,        // no SACL
                                   52, 0, 0, 0};      // DACL at 52
  // clang-format on
  sd.insert(sd.end(), administrators.begin(), administrators.end());
  sd.insert(sd.end(), administrators.begin(), administrators.end());
  sd.insert(sd.end(), dacl.begin(), dacl.end());
  return sd;
}

DWORD Open(const WString& path, HANDLE* handle) {
  VIRTUAL_STORAGE_TYPE type{};  // VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, VENDOR_UNKNOWN
  OPEN_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  return OpenVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE, OPEN_VIRTUAL_DISK_FLAG_NONE,
                         &parameters, handle);
}

std::string PhysicalPath(HANDLE handle) {
  ULONG size = 0;
  if (GetVirtualDiskPhysicalPath(handle, &size, nullptr) != ERROR_INSUFFICIENT_BUFFER) return "";
  std::vector<WCHAR> buffer(size / sizeof(WCHAR) + 1);
  if (GetVirtualDiskPhysicalPath(handle, &size, buffer.data()) != ERROR_SUCCESS) return "";
  std::string out;
  for (const WCHAR* p = buffer.data(); *p != 0; ++p) out.push_back(static_cast<char>(*p));
  return out;
}

int Attach(const WString& path, bool permanent, bool owner_only = false) {
  HANDLE handle = nullptr;
  if (DWORD e = Open(path, &handle); e != ERROR_SUCCESS) return Fail(e, "open");
  std::vector<unsigned char> sd = owner_only ? std::vector<unsigned char>() : EveryoneMayUseIt();
  ATTACH_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  const ATTACH_VIRTUAL_DISK_FLAG flags =
      permanent ? ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME : ATTACH_VIRTUAL_DISK_FLAG_NONE;
  if (DWORD e = AttachVirtualDisk(handle, sd.empty() ? nullptr : sd.data(), flags, 0,
                                  &parameters, nullptr);
      e != ERROR_SUCCESS)
    return Fail(e, "attach");
  const std::string uri = PhysicalPath(handle);
  if (uri.empty()) return Fail(0, "physical path");
  std::printf("attached %s\n", uri.c_str());
  std::fflush(stdout);
  if (permanent) {
    // A permanent surface persists when the handle closes and the process exits.
    CloseHandle(handle);
    return 0;
  }
  WaitToBeKilled();
}

int Detach(const WString& path) {
  HANDLE handle = nullptr;
  if (DWORD e = Open(path, &handle); e != ERROR_SUCCESS) return Fail(e, "open");
  if (DWORD e = DetachVirtualDisk(handle, DETACH_VIRTUAL_DISK_FLAG_NONE, 0); e != ERROR_SUCCESS)
    return Fail(e, "detach");
  CloseHandle(handle);
  std::printf("detached\n");
  return 0;
}

}  // namespace

#ifdef _WIN32
#define VIRTDISK_ARG(text) L##text
int wmain(int argc, wchar_t** argv) {
#else
#define VIRTDISK_ARG(text) text
int main(int argc, char** argv) {
#endif
  if (argc != 3) return 2;
  const WString path = Wide(argv[2]);
  if (Is(argv[1], VIRTDISK_ARG("attach-permanent"))) return Attach(path, true);
  if (Is(argv[1], VIRTDISK_ARG("attach-and-wait"))) return Attach(path, false);
  if (Is(argv[1], VIRTDISK_ARG("attach-owner-only-and-wait"))) return Attach(path, false, true);
  if (Is(argv[1], VIRTDISK_ARG("detach"))) return Detach(path);
  return 2;
}
