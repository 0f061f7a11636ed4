// No exception leaves an export or a kernel32 function: for one export of each family, every
// allocation the calling thread makes in the call is made to fail in turn (a replaced global
// operator new counts down to a std::bad_alloc), and each time the call returns an error code,
// the process lives on, and nothing stays half done (no handle, the disk still opens and reads).
//
// This binary links the library's sources statically (tests/api/CMakeLists.txt), so the
// replacement operator new is the library's too, on Linux and in the Windows build.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "../api_test_support.h"

namespace {

// Allocations of this thread still allowed before one fails; negative: none fails.
thread_local long allocations_left = -1;
thread_local bool failed_one = false;

void* Allocate(std::size_t n) {
  if (allocations_left >= 0) {
    if (allocations_left == 0) {
      allocations_left = -1;  // one failure per run; what the error path allocates succeeds
      failed_one = true;
      throw std::bad_alloc();
    }
    --allocations_left;
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t n) { return Allocate(n); }
void* operator new[](std::size_t n) { return Allocate(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return Allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return Allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace vdisk_test {
namespace {

constexpr ULONGLONG kSize = 16ull << 20;

struct Sweep {
  int runs = 0;            // calls made with one allocation failing
  int out_of_memory = 0;   // of which answered ERROR_NOT_ENOUGH_MEMORY
  std::vector<DWORD> other_errors;
};

// Calls `call` with allocation 0, 1, 2, ... of this thread failing, until a call completes
// without reaching the failing allocation. `call` returns the Win32 result and allocates nothing
// itself (its arguments are made beforehand); `undo` puts back what a successful call did,
// `check` runs after every call that failed.
Sweep SweepAllocations(const std::function<DWORD()>& call, const std::function<void()>& undo,
                       const std::function<void()>& check) {
  Sweep sweep;
  for (long k = 0; k < 100000; ++k) {
    failed_one = false;
    allocations_left = k;
    const DWORD result = call();
    allocations_left = -1;
    if (!failed_one) {
      EXPECT_EQ(result, static_cast<DWORD>(ERROR_SUCCESS)) << "without a failing allocation";
      undo();
      break;
    }
    ++sweep.runs;
    SCOPED_TRACE("allocation " + std::to_string(k) + " failed, result " + std::to_string(result));
    if (result == ERROR_SUCCESS) {
      undo();  // the failure was absorbed (a cache, a trace): fine, as long as it worked
      continue;
    }
    if (result == ERROR_NOT_ENOUGH_MEMORY) {
      ++sweep.out_of_memory;
    } else {
      sweep.other_errors.push_back(result);
    }
    check();
  }
  return sweep;
}

class AllocationFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    vhdx_ = dir_.Wide("disk.vhdx");
    HANDLE h = nullptr;
    ASSERT_EQ(CreateVhd(vhdx_, kSize, false, &h, 0, WString(), VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
              ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
    pattern_ = Pattern(64 * 1024, 7);
    ASSERT_EQ(WriteAt(h, 1 << 20, pattern_.data(), static_cast<DWORD>(pattern_.size())),
              ERROR_SUCCESS);
    ASSERT_TRUE(CloseHandle(h));
  }

  // The disk still opens and holds what SetUp wrote.
  void ExpectDiskIntact() {
    HANDLE h = nullptr;
    ASSERT_EQ(OpenV2(vhdx_, true, &h), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
    std::vector<unsigned char> back(pattern_.size());
    ASSERT_EQ(ReadAt(h, 1 << 20, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
    EXPECT_TRUE(back == pattern_);
    EXPECT_TRUE(CloseHandle(h));
  }

  static void ExpectSwept(const Sweep& sweep) {
    EXPECT_GT(sweep.runs, 0) << "the call allocated nothing on this thread";
    EXPECT_GT(sweep.out_of_memory, 0) << "no run answered ERROR_NOT_ENOUGH_MEMORY";
    for (DWORD error : sweep.other_errors) {
      // An allocation failure may surface as the error of the step it broke, never as success
      // of a half-done call; these are the ones a caller can act on.
      EXPECT_TRUE(error == ERROR_INTERNAL_ERROR || error == ERROR_NOT_ENOUGH_MEMORY ||
                  error == ERROR_OUTOFMEMORY)
          << "unexpected error " << error;
    }
  }

  TempDir dir_;
  WString vhdx_;
  std::vector<unsigned char> pattern_;
};

TEST_F(AllocationFaults, OpenAndCreate) {
  HANDLE h = nullptr;
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN);
  OPEN_VIRTUAL_DISK_PARAMETERS open{};
  open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  ExpectSwept(SweepAllocations(
      [&] {
        h = nullptr;
        return OpenVirtualDisk(&type, vhdx_.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                               OPEN_VIRTUAL_DISK_FLAG_NONE, &open, &h);
      },
      [&] { EXPECT_TRUE(CloseHandle(h)); },
      [&] { EXPECT_EQ(h, nullptr) << "a failed open handed out a handle"; }));

  const WString created = dir_.Wide("created.vhd");
  VIRTUAL_STORAGE_TYPE vhd = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  CREATE_VIRTUAL_DISK_PARAMETERS create{};
  create.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  create.Version2.MaximumSize = kSize;
  auto remove_created = [&] { std::filesystem::remove(dir_ / "created.vhd"); };
  ExpectSwept(SweepAllocations(
      [&] {
        h = nullptr;
        return CreateVirtualDisk(&vhd, created.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                                 CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &create, nullptr, &h);
      },
      [&] {
        EXPECT_TRUE(CloseHandle(h));
        remove_created();
      },
      [&] {
        EXPECT_EQ(h, nullptr);
        // A failed create leaves no file behind.
        EXPECT_FALSE(std::filesystem::exists(dir_ / "created.vhd"));
        remove_created();
      }));
  ExpectDiskIntact();
}

TEST_F(AllocationFaults, Information) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(vhdx_, true, &h), ERROR_SUCCESS);
  for (GET_VIRTUAL_DISK_INFO_VERSION version :
       {GET_VIRTUAL_DISK_INFO_SIZE, GET_VIRTUAL_DISK_INFO_IDENTIFIER,
        GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE}) {
    ExpectSwept(SweepAllocations(
        [&] {
          GET_VIRTUAL_DISK_INFO info{};
          info.Version = version;
          ULONG size = sizeof info;
          return GetVirtualDiskInformation(h, &size, &info, nullptr);
        },
        [] {}, [] {}));
  }
  EXPECT_TRUE(CloseHandle(h));
}

TEST_F(AllocationFaults, Metadata) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(vhdx_, false, &h), ERROR_SUCCESS);
  const GUID item = {0x1b2c3d4e, 0x1111, 0x2222, {1, 2, 3, 4, 5, 6, 7, 8}};
  const std::vector<unsigned char> value = Pattern(300, 3);
  ExpectSwept(SweepAllocations(
      [&] {
        return SetVirtualDiskMetadata(h, &item, static_cast<ULONG>(value.size()), value.data());
      },
      [] {}, [] {}));
  std::vector<unsigned char> back(value.size());
  ExpectSwept(SweepAllocations(
      [&] {
        ULONG size = static_cast<ULONG>(back.size());
        return GetVirtualDiskMetadata(h, &item, &size, back.data());
      },
      [] {}, [] {}));
  EXPECT_TRUE(back == value);
  EXPECT_TRUE(CloseHandle(h));
  ExpectDiskIntact();
}

TEST_F(AllocationFaults, Mirror) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(vhdx_, false, &h), ERROR_SUCCESS);
  const WString target = dir_.Wide("mirror.vhdx");
  HANDLE event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_NE(event, nullptr);
  OVERLAPPED overlapped{};
  ExpectSwept(SweepAllocations(
      [&] {
        overlapped = OVERLAPPED{};
        overlapped.hEvent = event;
        MIRROR_VIRTUAL_DISK_PARAMETERS parameters{};
        parameters.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
        parameters.Version1.MirrorVirtualDiskPath = target.c_str();
        const DWORD result = MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &parameters,
                                               &overlapped);
        return result == ERROR_IO_PENDING ? static_cast<DWORD>(ERROR_SUCCESS) : result;
      },
      [&] {
        // Started: cancel it; the target it created goes.
        EXPECT_TRUE(CancelIoEx(h, &overlapped));
        DWORD bytes = 0;
        EXPECT_FALSE(GetOverlappedResult(h, &overlapped, &bytes, TRUE));
      },
      [&] { EXPECT_FALSE(std::filesystem::exists(dir_ / "mirror.vhdx")); }));
  EXPECT_TRUE(CloseHandle(event));
  EXPECT_TRUE(CloseHandle(h));
  ExpectDiskIntact();
}

TEST_F(AllocationFaults, AttachAndPhysicalPath) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(vhdx_, false, &h), ERROR_SUCCESS);
  ExpectSwept(SweepAllocations(
      [&] {
        ATTACH_VIRTUAL_DISK_PARAMETERS parameters{};
        parameters.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
        return AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER, 0,
                                 &parameters, nullptr);
      },
      [&] {
        EXPECT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
                  static_cast<DWORD>(ERROR_SUCCESS));
      },
      [&] {
        // A failed attach leaves the disk detached.
        EXPECT_NE(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
                  static_cast<DWORD>(ERROR_SUCCESS));
      }));
  ATTACH_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ASSERT_EQ(AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER, 0,
                              &parameters, nullptr),
            static_cast<DWORD>(ERROR_SUCCESS));
  ExpectSwept(SweepAllocations(
      [&] {
        WCHAR path[512];
        ULONG size = sizeof path;
        return GetVirtualDiskPhysicalPath(h, &size, path);
      },
      [] {}, [] {}));
  EXPECT_TRUE(CloseHandle(h));
  ExpectDiskIntact();
}

TEST_F(AllocationFaults, RawIo) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(vhdx_, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  std::vector<unsigned char> buffer(pattern_.size());
  ExpectSwept(SweepAllocations(
      [&] {
        // Synchronous ReadFile and WriteFile at the position set by SetFilePointerEx.
        LARGE_INTEGER at{};
        at.QuadPart = 1 << 20;
        if (!SetFilePointerEx(h, at, nullptr, FILE_BEGIN)) return GetLastError();
        DWORD done = 0;
        if (!ReadFile(h, buffer.data(), static_cast<DWORD>(buffer.size()), &done, nullptr))
          return GetLastError();
        if (!SetFilePointerEx(h, at, nullptr, FILE_BEGIN)) return GetLastError();
        if (!WriteFile(h, buffer.data(), done, &done, nullptr)) return GetLastError();
        return static_cast<DWORD>(ERROR_SUCCESS);
      },
      [] {}, [] {}));
  EXPECT_TRUE(CloseHandle(h));
  ExpectDiskIntact();
}

}  // namespace
}  // namespace vdisk_test
