// Files only the current user reads: where an attached disk's secret (its TLS pre-shared key)
// is kept for the owner's NBD clients (docs/attach-security.md).
#pragma once

#include <filesystem>
#include <string_view>

#include "core/status.h"

namespace vdisk::platform {

// Creates the directory `path` (not its parents) with mode 0700 whatever the umask (POSIX; on
// Windows it inherits its parent's ACL). kFileExists if anything is at `path` already, so that
// nothing planted there (a symlink) is ever written through.
Status CreatePrivateDirectory(const std::filesystem::path& path);

// Creates the file `path` with mode 0600 whatever the umask (POSIX; on Windows its directory's
// ACL) and writes `text` into it. kFileExists if anything is at `path` already; a symlink there
// is never followed.
Status WritePrivateFile(const std::filesystem::path& path, std::string_view text);

}  // namespace vdisk::platform
