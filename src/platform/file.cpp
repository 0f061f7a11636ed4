#include "platform/file.h"

#include <mutex>
#include <utility>

namespace vdisk::platform {
namespace {

std::mutex& OpenerMutex() {
  static std::mutex mutex;
  return mutex;
}

FileOpener& CurrentOpener() {
  static FileOpener opener;
  return opener;
}

}  // namespace

Result<std::unique_ptr<File>> OpenFile(const std::filesystem::path& path, FileAccess access,
                                       FileDisposition disposition) {
  FileOpener opener;
  {
    std::lock_guard lock(OpenerMutex());
    opener = CurrentOpener();
  }
  if (opener) return opener(path, access, disposition);
  return OpenOsFile(path, access, disposition);
}

FileOpener SetFileOpenerForTesting(FileOpener opener) {
  std::lock_guard lock(OpenerMutex());
  return std::exchange(CurrentOpener(), std::move(opener));
}

}  // namespace vdisk::platform
