// Volumes over Win32: GetVolumePathNameW for the mount point, GetVolumeNameForVolumeMountPointW
// for its \\?\Volume{GUID}\ name, GetDriveTypeW for network drives.
#include <windows.h>

#include <cwchar>
#include <string>

#include "platform/file.h"
#include "platform/volume.h"

namespace vdisk::platform {

Result<VolumeLocation> LocateOnVolume(const std::filesystem::path& file) {
  std::error_code ec;
  const std::filesystem::path full = std::filesystem::canonical(file, ec);
  if (ec) return OsError(ec.value(), "locating the volume of", file);
  std::wstring mount(MAX_PATH + 1, L'\0');
  if (!GetVolumePathNameW(full.c_str(), mount.data(), static_cast<DWORD>(mount.size()))) {
    return OsError(static_cast<int>(GetLastError()), "GetVolumePathNameW", full);
  }
  mount.resize(wcslen(mount.c_str()));
  VolumeLocation location;
  location.relative_path = full.lexically_relative(std::filesystem::path(mount));
  std::wstring guid_name(64, L'\0');
  if (GetVolumeNameForVolumeMountPointW(mount.c_str(), guid_name.data(),
                                        static_cast<DWORD>(guid_name.size()))) {
    guid_name.resize(wcslen(guid_name.c_str()));
    location.volume = guid_name;
  } else {
    location.volume = mount;  // e.g. a network share, which has no volume GUID
  }
  location.remote = GetDriveTypeW(mount.c_str()) == DRIVE_REMOTE;
  return location;
}

}  // namespace vdisk::platform
