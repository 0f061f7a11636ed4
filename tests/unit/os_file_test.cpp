// OpenOsFile refuses what is not a regular file, at once and with a reason that names the file
// and its kind (the C API's codes for the same cases: tests/api/special_file_api_test.cpp).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "platform/file.h"
#include "test_support.h"

#ifndef _WIN32
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace vdisk::platform {
namespace {

namespace fs = std::filesystem;
using vdisk_unit::TempDir;

std::string ReasonOf(const fs::path& path, FileAccess access) {
  auto file = OpenOsFile(path, access, FileDisposition::kOpenExisting);
  EXPECT_FALSE(file.ok()) << path;
  if (file.ok()) return {};
  EXPECT_EQ(file.status().code(), Code::kNotRegularFile) << file.status().message();
  return std::string(file.status().message());
}

TEST(OsFileOpen, DirectoryIsNamedAsADirectory) {
  TempDir dir;
  for (const FileAccess access : {FileAccess::kRead, FileAccess::kReadWrite}) {
    EXPECT_EQ(ReasonOf(dir.path(), access),
              dir.path().string() + " is a directory, not a regular file");
  }
}

#ifndef _WIN32
TEST(OsFileOpen, FifoIsNamedAsAFifoWithoutWaitingForAWriter) {
  TempDir dir;
  const fs::path fifo = dir.path() / "image.vhd";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Without O_NONBLOCK, open(2) of a FIFO with no writer never returns: this test would hang.
  for (const FileAccess access : {FileAccess::kRead, FileAccess::kReadShared}) {
    EXPECT_EQ(ReasonOf(fifo, access), fifo.string() + " is a FIFO, not a regular file");
  }
}

TEST(OsFileOpen, CharacterDeviceIsNamedAsOne) {
  EXPECT_EQ(ReasonOf("/dev/null", FileAccess::kRead),
            "/dev/null is a character device, not a regular file");
}

TEST(OsFileOpen, RegularFileOpensBlocking) {
  TempDir dir;
  const fs::path path = dir.path() / "plain";
  auto created = OpenOsFile(path, FileAccess::kReadWrite, FileDisposition::kCreateNew);
  ASSERT_TRUE(created.ok()) << created.status().message();
  // The O_NONBLOCK the type check opened it with is gone again.
  const int flags = ::fcntl(*(*created)->native_handle(), F_GETFL);
  EXPECT_EQ(flags & O_NONBLOCK, 0);
}
#endif

}  // namespace
}  // namespace vdisk::platform
