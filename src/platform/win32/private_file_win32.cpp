#include <windows.h>

#include "platform/file.h"
#include "platform/private_file.h"

namespace vdisk::platform {

// Both inherit the ACL of the directory they are made in (the user's %LOCALAPPDATA%, which
// only the user and the system reach).

Status CreatePrivateDirectory(const std::filesystem::path& path) {
  if (!CreateDirectoryW(path.c_str(), nullptr)) {
    return OsError(static_cast<int>(GetLastError()), "create directory", path);
  }
  return Status::Ok();
}

Status WritePrivateFile(const std::filesystem::path& path, std::string_view text) {
  HANDLE file = CreateFileW(path.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_NEW,
                            FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, nullptr);
  if (file == INVALID_HANDLE_VALUE) {
    return OsError(static_cast<int>(GetLastError()), "create", path);
  }
  DWORD written = 0;
  const BOOL ok = WriteFile(file, text.data(), static_cast<DWORD>(text.size()), &written, nullptr);
  const DWORD error = GetLastError();
  CloseHandle(file);
  if (!ok || written != text.size()) {
    DeleteFileW(path.c_str());
    return OsError(static_cast<int>(error), "write", path);
  }
  return Status::Ok();
}

}  // namespace vdisk::platform
