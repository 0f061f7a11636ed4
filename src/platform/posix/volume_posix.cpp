// Volumes over POSIX: the mount point is found by walking up while st_dev stays the same;
// statfs(2) tells network file systems by their magic numbers (Linux).
#include <sys/stat.h>
#ifdef __linux__
#include <sys/vfs.h>
#endif

#include <cerrno>
#include <cstdint>
#include <string>

#include "platform/file.h"
#include "platform/volume.h"

namespace vdisk::platform {
namespace {

bool OnNetworkFileSystem(const std::filesystem::path& path) {
#ifdef __linux__
  struct statfs info {};
  if (::statfs(path.c_str(), &info) != 0) return false;
  // f_type values of linux/magic.h (and cifs' own headers): NFS, SMB, CIFS, SMB2, AFS, Coda,
  // Ceph.
  switch (static_cast<std::uint32_t>(info.f_type)) {
    case 0x6969u:
    case 0x517Bu:
    case 0xFF534D42u:
    case 0xFE534D42u:
    case 0x5346414Fu:
    case 0x73757245u:
    case 0x00C36400u:
      return true;
    default:
      return false;
  }
#else
  (void)path;
  return false;
#endif
}

}  // namespace

Result<VolumeLocation> LocateOnVolume(const std::filesystem::path& file) {
  std::error_code ec;
  const std::filesystem::path full = std::filesystem::canonical(file, ec);
  if (ec) return OsError(ec.value(), "locating the volume of", file);
  struct stat st {};
  if (::stat(full.c_str(), &st) != 0) return OsError(errno, "stat", full);
  std::filesystem::path mount = full.parent_path();
  for (;;) {
    const std::filesystem::path up = mount.parent_path();
    struct stat up_st {};
    if (up == mount || ::stat(up.c_str(), &up_st) != 0 || up_st.st_dev != st.st_dev) break;
    mount = up;
  }
  VolumeLocation location;
  location.relative_path = full.lexically_relative(mount);
  location.volume = mount;
  if (!location.volume.empty() && location.volume.native().back() != '/') {
    location.volume += "/";
  }
  location.remote = OnNetworkFileSystem(full);
  return location;
}

}  // namespace vdisk::platform
