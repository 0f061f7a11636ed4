#include "api/win32/volume_handle.h"

#include <winioctl.h>

#include <string_view>

namespace vdisk::api::win32 {

bool IsVolumeOrDriveHandle(HANDLE handle) {
  if (handle == nullptr || handle == INVALID_HANDLE_VALUE) return false;
  // A disk device (volume, partition, drive) or a file system on one. Under Wine 8 files on a
  // drive answer it too, hence the name check below.
  STORAGE_DEVICE_NUMBER number{};
  DWORD got = 0;
  if (!DeviceIoControl(handle, IOCTL_STORAGE_GET_DEVICE_NUMBER, nullptr, 0, &number,
                       sizeof number, &got, nullptr))
    return false;
  alignas(FILE_NAME_INFO) char buffer[sizeof(FILE_NAME_INFO) + 8 * sizeof(wchar_t)];
  auto* info = reinterpret_cast<FILE_NAME_INFO*>(buffer);
  // A volume or drive opened as a device has no file name (the query fails, or names nothing);
  // a longer name than fits here is no root directory either.
  if (!GetFileInformationByHandleEx(handle, FileNameInfo, info, sizeof buffer))
    return GetLastError() != ERROR_MORE_DATA;
  const std::wstring_view name(info->FileName, info->FileNameLength / sizeof(wchar_t));
  return name.empty() || name == L"\\";
}

}  // namespace vdisk::api::win32
