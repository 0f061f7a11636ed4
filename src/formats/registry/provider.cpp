#include "formats/registry/provider.h"

namespace vdisk {

Result<std::unique_ptr<Image>> CreateImageFile(const std::filesystem::path& path,
                                               const CreateOptions& options,
                                               const std::function<Status(platform::File&)>& write,
                                               const ImageOpener& open) {
  platform::NewFileGuard created(path);  // before the file: removed after it is closed
  VDISK_ASSIGN_OR_RETURN(auto file, platform::OpenFile(path, platform::FileAccess::kReadWrite,
                                                       platform::FileDisposition::kCreateNew));
  created.Arm();
  Status status = file->Lock(/*exclusive=*/true);
  if (status.ok()) status = write(*file);
  if (status.ok()) {
    OpenOptions open_options;
    open_options.read_only = false;
    open_options.no_write_hardening = options.no_write_hardening;
    auto image = open(std::move(file), open_options);
    if (image.ok()) {
      created.Keep();
      return image;
    }
    status = image.status();
  }
  file.reset();
  return status.WithContext("creating " + path.string());
}

}  // namespace vdisk
