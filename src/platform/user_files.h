// Per-user state on the local machine: the user's private directories and files, and whether a
// process of the user still runs. The attach registry (src/attach/attach_registry.h) keeps its
// records and sockets with these, so that it makes no OS call of its own.
// Thread safety: all functions may be called from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "base/status.h"

namespace vdisk::platform {

// The current user's numeric id as text ("1000"), for per-user names; "" on Windows.
std::string CurrentUserId();

enum class DirectoryPolicy {
  // A directory at a well-known shared path (<temp>/virtdisk-<uid>) that someone else could
  // create first: it must be a real directory (a symbolic link is never followed), owned by
  // the current user, with mode exactly 0700. What is there is never changed.
  kPrivate,
  // A directory the user named: links are followed, it must be owned by the current user and
  // writable by no one else (group or other write bits are refused, not removed).
  kChosen,
};
// Creates `path` (mode 0700; missing parents too under kChosen) unless it exists, then checks it
// as `policy` says. Fails with kAccessDenied and a message naming the path, what is wrong, and
// `remedy`. On Windows only creates it (the user's profile is private already).
Status EnsureUserDirectory(const std::filesystem::path& path, DirectoryPolicy policy,
                           std::string_view remedy);

// Creates the directory `path` (not its parents), which must not exist, with mode 0700 whatever
// the umask (POSIX; on Windows it inherits its parent's ACL). kFileExists if anything is at
// `path` already, so that nothing planted there (a symlink) is ever written through.
Status CreatePrivateDirectory(const std::filesystem::path& path);

// Creates `path`, which must not exist, readable and writable by the current user only (mode
// 0600 whatever the umask; never through a symbolic link or, on Windows, a reparse point), and
// writes `text` to it.
Status WritePrivateFile(const std::filesystem::path& path, std::string_view text);

// The current process's id and its start time as the OS reports it (Linux: field 22 of
// /proc/<pid>/stat; Windows: its creation time), or 0 if unknown.
std::int64_t CurrentProcessId();
std::uint64_t ProcessStartTime(std::int64_t pid);
// Whether process `pid` still runs and, when `start_time` is not 0, is the process that started
// then (not another one that got the recycled pid).
bool ProcessAlive(std::int64_t pid, std::uint64_t start_time);

}  // namespace vdisk::platform
