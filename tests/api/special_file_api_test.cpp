// Image and parent paths that name no regular file (a FIFO, a Unix socket, a device, a
// directory): each open gets ERROR_ACCESS_DENIED at once, never hangs. The disk layer checks the
// type on the opened descriptor or handle (src/platform/*/file_*.cpp), so every opener gets it.
//
// Why ERROR_ACCESS_DENIED: Windows' VHD stack opens an image as a file, not with
// FILE_FLAG_BACKUP_SEMANTICS, so a directory fails with STATUS_FILE_IS_A_DIRECTORY, which is
// ERROR_ACCESS_DENIED in Win32 (CreateFileW gives the same for a directory; the Windows build of
// this test checks that against the real CreateFileW).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <string>

#include "api_test_support.h"

#ifndef _WIN32
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#endif

namespace vdisk_test {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

constexpr auto kPromptly = std::chrono::seconds(1);

struct Format {
  const char* extension;
  ULONG device;
};
constexpr Format kFormats[] = {{".vhd", VIRTUAL_STORAGE_TYPE_DEVICE_VHD},
                               {".vhdx", VIRTUAL_STORAGE_TYPE_DEVICE_VHDX}};

// Runs `call` on a thread and waits at most 10 s for it. If it is still blocked then (a FIFO open
// waiting for a writer), `release` unblocks it, so that the test fails instead of hanging.
struct Timed {
  DWORD error = 0;
  steady_clock::duration took{};
  bool finished = false;
};
Timed RunTimed(const std::function<DWORD()>& call, const std::function<void()>& release) {
  auto started = steady_clock::now();
  auto result = std::async(std::launch::async, call);
  Timed timed;
  timed.finished = result.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  if (!timed.finished) release();
  timed.error = result.get();
  timed.took = steady_clock::now() - started;
  return timed;
}

class SpecialFile : public ::testing::Test {
 protected:
  // A base disk and its differencing child, closed: <stem>-base<ext> and <stem><ext>.
  fs::path Chain(const std::string& stem, const Format& format) {
    const WString base = dir_.Wide(stem + "-base" + format.extension);
    HANDLE h = nullptr;
    EXPECT_EQ(CreateVhd(base, 8 << 20, false, &h, 0, WString(), format.device), ERROR_SUCCESS);
    EXPECT_TRUE(CloseHandle(h));
    EXPECT_EQ(CreateVhd(dir_.Wide(stem + format.extension), 0, false, &h, 0, base, format.device),
              ERROR_SUCCESS);
    EXPECT_TRUE(CloseHandle(h));
    return dir_ / (stem + format.extension);
  }
  // OpenVirtualDisk of `path`, timed; `release` as for RunTimed.
  Timed Open(const fs::path& path, ULONG device, const std::function<void()>& release = [] {}) {
    const WString wide = ToWide(path);
    return RunTimed(
        [wide, device] {
          HANDLE h = nullptr;
          const DWORD e = OpenV2(wide, true, &h, device);
          if (e == ERROR_SUCCESS) CloseHandle(h);
          return e;
        },
        release);
  }
  void ExpectRefusedPromptly(const Timed& t, DWORD expected, const std::string& what) {
    EXPECT_TRUE(t.finished) << what << ": still blocked after 10 s";
    EXPECT_EQ(t.error, expected) << what << ": expected " << expected << ", got " << t.error;
    EXPECT_LT(t.took, kPromptly) << what << ": took "
                                 << std::chrono::duration_cast<std::chrono::milliseconds>(t.took)
                                        .count()
                                 << " ms";
  }
  TempDir dir_;
};

TEST_F(SpecialFile, DirectoryAsImageIsRefused) {
  for (const Format& format : kFormats) {
    const fs::path dir = dir_ / (std::string("dir") + format.extension);
    fs::create_directory(dir);
    ExpectRefusedPromptly(Open(dir, format.device), ERROR_ACCESS_DENIED,
                          std::string("directory as a ") + format.extension);
    ExpectRefusedPromptly(Open(dir, VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN), ERROR_ACCESS_DENIED,
                          std::string("directory as a ") + format.extension + ", type unknown");
  }
#ifdef _WIN32
  // The oracle: Windows' own CreateFileW on a directory, without FILE_FLAG_BACKUP_SEMANTICS.
  HANDLE file = CreateFileW(ToWide(dir_.path()).c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr,
                            OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  EXPECT_EQ(file, INVALID_HANDLE_VALUE);
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_ACCESS_DENIED));
#endif
}

TEST_F(SpecialFile, DirectoryAsParentIsAnErrorInTheParent) {
  for (const Format& format : kFormats) {
    const fs::path child = Chain("d", format);
    const fs::path base = dir_ / (std::string("d-base") + format.extension);
    fs::remove(base);
    fs::create_directory(base);
    ExpectRefusedPromptly(Open(child, format.device), ERROR_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT,
                          std::string("directory as the parent of a ") + format.extension);
  }
}

TEST_F(SpecialFile, DirectoryAsCreateParentOrSourceIsRefused) {
  const fs::path dir = dir_ / "parent.vhd";
  fs::create_directory(dir);
  HANDLE h = nullptr;
  EXPECT_EQ(CreateVhd(dir_.Wide("child.vhd"), 0, false, &h, 0, ToWide(dir)), ERROR_ACCESS_DENIED);
  EXPECT_FALSE(fs::exists(dir_ / "child.vhd"));
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  const WString source = ToWide(dir);
  params.Version2.SourcePath = source.c_str();
  EXPECT_EQ(CreateVirtualDisk(&type, dir_.Wide("copy.vhd").c_str(), VIRTUAL_DISK_ACCESS_NONE,
                              nullptr, CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &params, nullptr, &h),
            ERROR_ACCESS_DENIED);
  EXPECT_FALSE(fs::exists(dir_ / "copy.vhd"));
}

#ifdef _WIN32

TEST_F(SpecialFile, CharacterDeviceAsImageIsRefused) {
  for (const Format& format : kFormats) {
    ExpectRefusedPromptly(Open(fs::path(L"\\\\.\\NUL"), format.device), ERROR_ACCESS_DENIED,
                          std::string("NUL as a ") + format.extension);
  }
}

#else

// The special files of POSIX: made in place of an image or of a parent.
enum class Kind { kFifo, kSocket, kCharDevice };
const char* NameOf(Kind kind) {
  switch (kind) {
    case Kind::kFifo: return "FIFO";
    case Kind::kSocket: return "socket";
    case Kind::kCharDevice: return "character device";
  }
  return "?";
}

class PosixSpecialFile : public SpecialFile, public ::testing::WithParamInterface<Kind> {
 protected:
  void TearDown() override {
    for (const int fd : sockets_) ::close(fd);
  }
  // Makes a special file of the parameter's kind at `path`.
  void Make(const fs::path& path) {
    switch (GetParam()) {
      case Kind::kFifo: ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0) << path; break;
      case Kind::kSocket: {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        ASSERT_GE(fd, 0);
        sockets_.push_back(fd);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        ASSERT_LT(path.native().size(), sizeof address.sun_path);
        std::strcpy(address.sun_path, path.c_str());
        ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
        ASSERT_EQ(::listen(fd, 1), 0);
        break;
      }
      case Kind::kCharDevice:
        // /dev/null itself, reached by a name with the image's extension.
        fs::create_symlink("/dev/null", path);
        break;
    }
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    ASSERT_FALSE(S_ISREG(st.st_mode));
  }
  // Unblocks an open(2) of a FIFO that waits for a writer (the behaviour this suite guards).
  static std::function<void()> ReleaseFifo(const fs::path& path) {
    return [path] {
      const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
    };
  }
  std::vector<int> sockets_;
};

TEST_P(PosixSpecialFile, AsImageIsRefusedPromptly) {
  for (const Format& format : kFormats) {
    const fs::path path = dir_ / (std::string("special") + format.extension);
    Make(path);
    const std::string what = std::string(NameOf(GetParam())) + " as a " + format.extension;
    ExpectRefusedPromptly(Open(path, format.device, ReleaseFifo(path)), ERROR_ACCESS_DENIED,
                          what);
    ExpectRefusedPromptly(Open(path, VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, ReleaseFifo(path)),
                          ERROR_ACCESS_DENIED, what + ", type unknown");
  }
  // The device itself by its own name.
  if (GetParam() == Kind::kCharDevice) {
    ExpectRefusedPromptly(Open("/dev/null", VIRTUAL_STORAGE_TYPE_DEVICE_VHD), ERROR_ACCESS_DENIED,
                          "/dev/null as a VHD");
  }
}

TEST_P(PosixSpecialFile, AsParentIsAnErrorInTheParentPromptly) {
  for (const Format& format : kFormats) {
    const fs::path child = Chain("c", format);
    const fs::path base = dir_ / (std::string("c-base") + format.extension);
    fs::remove(base);
    Make(base);
    const std::string what =
        std::string(NameOf(GetParam())) + " as the parent of a " + format.extension;
    ExpectRefusedPromptly(Open(child, format.device, ReleaseFifo(base)),
                          ERROR_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT, what);
    fs::remove(base);
    fs::remove(child);
  }
}

TEST_P(PosixSpecialFile, AsCreateParentIsRefusedPromptly) {
  const fs::path parent = dir_ / "parent.vhd";
  Make(parent);
  const WString child = dir_.Wide("child.vhd");
  const WString parent_path = ToWide(parent);
  const Timed t = RunTimed(
      [&] {
        HANDLE h = nullptr;
        const DWORD e = CreateVhd(child, 0, false, &h, 0, parent_path);
        if (e == ERROR_SUCCESS) CloseHandle(h);
        return e;
      },
      ReleaseFifo(parent));
  ExpectRefusedPromptly(t, ERROR_ACCESS_DENIED, std::string(NameOf(GetParam())) + " as ParentPath");
  EXPECT_FALSE(fs::exists(dir_ / "child.vhd"));
}

INSTANTIATE_TEST_SUITE_P(Kinds, PosixSpecialFile,
                         ::testing::Values(Kind::kFifo, Kind::kSocket, Kind::kCharDevice),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           switch (info.param) {
                             case Kind::kFifo: return std::string("Fifo");
                             case Kind::kSocket: return std::string("Socket");
                             case Kind::kCharDevice: return std::string("CharDevice");
                           }
                           return std::string("Unknown");
                         });

#endif

}  // namespace
}  // namespace vdisk_test
