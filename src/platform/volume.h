// The volume a file lives on, as GetStorageDependencyInformation reports it (HostVolumeName and
// DependentVolumeRelativePath of STORAGE_DEPENDENCY_INFO_TYPE_2).
//
// Windows names a volume \\?\Volume{GUID}\ and a file by its path below the volume's root. POSIX
// has no volume GUIDs: the volume is the mount point of the file system holding the file (the
// highest ancestor directory on the same device), with a trailing separator, so that on both
// systems `volume` followed by `relative_path` spells the file's full path.
// Thread safety: stateless.
#pragma once

#include <filesystem>

#include "base/status.h"

namespace vdisk::platform {

struct VolumeLocation {
  std::filesystem::path volume;         // "/", "/home/"; Windows: \\?\Volume{GUID}\ or "C:\"
  std::filesystem::path relative_path;  // the file below the volume's root, no leading separator
  bool remote = false;                  // on a network file system (NFS, SMB/CIFS, ...)
};

// REQUIRES: `file` exists. Fails with the OS error if it cannot be examined.
Result<VolumeLocation> LocateOnVolume(const std::filesystem::path& file);

}  // namespace vdisk::platform
