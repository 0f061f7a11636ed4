// DuplicateHandle of a disk handle, within the process: the duplicate names the same disk handle,
// as a duplicated kernel handle names the same file object. It answers every call, also once the
// original is closed; it shares the file position and the running operation; the disk (its
// attachment, its file) is released only when the last of the handles is closed. On Windows the
// kernel32 hooks map the new value (src/api/win32/kernel32_hooks.cpp); on Linux DuplicateHandle
// is part of the library's kernel32 subset.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

HANDLE Duplicate(HANDLE source, DWORD options = DUPLICATE_SAME_ACCESS) {
  HANDLE copy = nullptr;
  if (!DuplicateHandle(GetCurrentProcess(), source, GetCurrentProcess(), &copy, 0, FALSE,
                       options)) {
    ADD_FAILURE() << "DuplicateHandle failed with " << GetLastError();
    return nullptr;
  }
  return copy;
}

DWORD VirtualSizeOf(HANDLE h, ULONGLONG* size) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG bytes = sizeof info;
  const DWORD error = GetVirtualDiskInformation(h, &bytes, &info, nullptr);
  *size = info.Size.VirtualSize;
  return error;
}

// Whether the image file is free, as another program sees it: on Windows it opens without
// sharing; on both, another handle can attach the disk (an attachment made through a handle
// lasts until that handle's disk is released).
bool Released(const TempDir& dir, const std::string& name) {
#ifdef _WIN32
  HANDLE file = CreateFileW((dir / name).wstring().c_str(), GENERIC_READ, 0, nullptr,
                            OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file != INVALID_HANDLE_VALUE) CloseHandle(file);
  // Our own handle holds the file open with sharing: that alone proves nothing either way.
  if (file == INVALID_HANDLE_VALUE) return false;
#endif
  HANDLE other = nullptr;
  if (OpenV2(dir.Wide(name), false, &other) != ERROR_SUCCESS) return false;
  const bool attached = AttachRaw(other) == ERROR_SUCCESS;
  CloseHandle(other);
  return attached;
}

TEST(DuplicateHandle, AnswersInformationBeforeAndAfterTheOriginalIsClosed) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), 8 << 20, false, &h), ERROR_SUCCESS);
  HANDLE d = Duplicate(h);
  ASSERT_NE(d, nullptr);
  EXPECT_NE(d, h);
  ULONGLONG size = 0;
  EXPECT_EQ(VirtualSizeOf(d, &size), ERROR_SUCCESS) << "while the original is open";
  EXPECT_EQ(size, 8ull << 20);
  ASSERT_TRUE(CloseHandle(h));
  size = 0;
  EXPECT_EQ(VirtualSizeOf(d, &size), ERROR_SUCCESS) << "after the original is closed";
  EXPECT_EQ(size, 8ull << 20);
  EXPECT_TRUE(CloseHandle(d));
#ifndef _WIN32
  // (On Windows the kernel may already have given the value to another object.)
  EXPECT_EQ(VirtualSizeOf(d, &size), static_cast<DWORD>(ERROR_INVALID_HANDLE));
#endif
}

TEST(DuplicateHandle, RawIoWorksThroughTheDuplicateAndSharesTheFilePosition) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), 8 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const auto first = Pattern(8192, 1);
  ASSERT_EQ(WriteAt(h, 65536, first.data(), 8192), ERROR_SUCCESS);
  HANDLE d = Duplicate(h);
  ASSERT_NE(d, nullptr);
  // One file object, one position: a seek through one handle moves the other's.
  LARGE_INTEGER to{};
  to.QuadPart = 65536 + 4096;
  ASSERT_TRUE(SetFilePointerEx(h, to, nullptr, FILE_BEGIN));
  std::vector<unsigned char> back(4096);
  DWORD n = 0;
  ASSERT_TRUE(ReadFile(d, back.data(), 4096, &n, nullptr)) << GetLastError();
  EXPECT_EQ(n, 4096u);
  EXPECT_EQ(back, std::vector<unsigned char>(first.begin() + 4096, first.end()));
  ASSERT_TRUE(CloseHandle(h));
  // The attachment made through the original lasts while the duplicate is open.
  back.assign(8192, 0);
  ASSERT_EQ(ReadAt(d, 65536, back.data(), 8192), ERROR_SUCCESS);
  EXPECT_EQ(back, first);
  const auto second = Pattern(4096, 2);
  ASSERT_EQ(WriteAt(d, 1 << 20, second.data(), 4096), ERROR_SUCCESS);
  back.assign(4096, 0);
  ASSERT_EQ(ReadAt(d, 1 << 20, back.data(), 4096), ERROR_SUCCESS);
  EXPECT_EQ(back, second);
  EXPECT_TRUE(CloseHandle(d));
}

TEST(DuplicateHandle, TheDiskIsReleasedOnlyWhenTheLastHandleCloses) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), 8 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  HANDLE d = Duplicate(h);
  ASSERT_NE(d, nullptr);
  HANDLE e = Duplicate(d);  // a duplicate of a duplicate
  ASSERT_NE(e, nullptr);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_FALSE(Released(dir, "d.vhd")) << "two duplicates still open";
  ASSERT_TRUE(CloseHandle(e));
  EXPECT_FALSE(Released(dir, "d.vhd")) << "one duplicate still open";
  std::vector<unsigned char> back(4096);
  EXPECT_EQ(ReadAt(d, 0, back.data(), 4096), ERROR_SUCCESS) << "still attached";
  ASSERT_TRUE(CloseHandle(d));
  EXPECT_TRUE(Released(dir, "d.vhd")) << "every handle closed";
}

TEST(DuplicateHandle, CloseSourceLeavesOnlyTheDuplicate) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), 8 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  HANDLE d = Duplicate(h, DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE);
  ASSERT_NE(d, nullptr);
  ULONGLONG size = 0;
  EXPECT_EQ(VirtualSizeOf(d, &size), ERROR_SUCCESS);
  EXPECT_FALSE(Released(dir, "d.vhd"));
  ASSERT_TRUE(CloseHandle(d));
  EXPECT_TRUE(Released(dir, "d.vhd"));
#ifndef _WIN32
  EXPECT_FALSE(CloseHandle(h)) << "the source was closed";
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_INVALID_HANDLE));
#endif
}

TEST(DuplicateHandle, OfAValueThatIsNotAHandleIsRefused) {
  HANDLE copy = nullptr;
  EXPECT_FALSE(DuplicateHandle(GetCurrentProcess(), reinterpret_cast<HANDLE>(0x7654320),
                               GetCurrentProcess(), &copy, 0, FALSE, DUPLICATE_SAME_ACCESS));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_INVALID_HANDLE));
}

// Fills the first MiB of a new disk `name` with a pattern and detaches it; returns the pattern.
std::vector<unsigned char> MakeSource(const TempDir& dir, const std::string& name) {
  HANDLE h = nullptr;
  EXPECT_EQ(CreateVhd(dir.Wide(name), 16 << 20, false, &h), ERROR_SUCCESS);
  EXPECT_EQ(AttachRaw(h), ERROR_SUCCESS);
  auto data = Pattern(1 << 20, 9);
  EXPECT_EQ(WriteAt(h, 0, data.data(), 1 << 20), ERROR_SUCCESS);
  EXPECT_TRUE(CloseHandle(h));
  return data;
}

void WaitReady(HANDLE h, OVERLAPPED* ov) {
  VIRTUAL_DISK_PROGRESS progress{};
  do {
    ASSERT_EQ(GetVirtualDiskOperationProgress(h, ov, &progress), ERROR_SUCCESS);
    ASSERT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_IO_PENDING));
  } while (progress.CurrentValue != progress.CompletionValue);
}

void ExpectDiskHolds(const TempDir& dir, const std::string& name,
                     const std::vector<unsigned char>& data) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide(name), true, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  std::vector<unsigned char> back(data.size());
  ASSERT_EQ(ReadAt(h, 0, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
  EXPECT_EQ(back, data) << name;
  EXPECT_TRUE(CloseHandle(h));
}

TEST(DuplicateHandle, MirrorsThroughTheDuplicateAfterTheOriginalIsClosed) {
  TempDir dir;
  const auto data = MakeSource(dir, "src.vhd");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  HANDLE d = Duplicate(h);
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(CloseHandle(h));
  const WString target = dir.Wide("dst.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(d, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov), ERROR_IO_PENDING);
  ASSERT_NO_FATAL_FAILURE(WaitReady(d, &ov));
  ASSERT_EQ(BreakMirrorVirtualDisk(d), ERROR_SUCCESS);
  DWORD bytes = 0;
  EXPECT_TRUE(GetOverlappedResult(d, &ov, &bytes, TRUE)) << GetLastError();
  EXPECT_TRUE(CloseHandle(d));
  CloseHandle(ov.hEvent);
  ExpectDiskHolds(dir, "dst.vhd", data);
}

TEST(DuplicateHandle, ClosingTheHandleThatStartedAMirrorLeavesItRunningForTheDuplicate) {
  TempDir dir;
  const auto data = MakeSource(dir, "src.vhd");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  const WString target = dir.Wide("dst.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov), ERROR_IO_PENDING);
  HANDLE d = Duplicate(h);
  ASSERT_NE(d, nullptr);
  // Closing one of two handles to the disk cancels nothing (Windows cancels a handle's I/O when
  // the file object's last handle goes).
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_NO_FATAL_FAILURE(WaitReady(d, &ov));
  EXPECT_FALSE(HasOverlappedIoCompleted(&ov));
  ASSERT_EQ(BreakMirrorVirtualDisk(d), ERROR_SUCCESS);
  DWORD bytes = 0;
  EXPECT_TRUE(GetOverlappedResult(d, &ov, &bytes, TRUE)) << GetLastError();
  EXPECT_EQ(static_cast<DWORD>(ov.Internal), 0u);
  EXPECT_TRUE(CloseHandle(d));
  CloseHandle(ov.hEvent);
  ExpectDiskHolds(dir, "dst.vhd", data);
}

TEST(DuplicateHandle, ClosingTheLastHandleCancelsTheMirror) {
  TempDir dir;
  MakeSource(dir, "src.vhd");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  HANDLE d = Duplicate(h);
  ASSERT_NE(d, nullptr);
  const WString target = dir.Wide("dst.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(d, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov), ERROR_IO_PENDING);
  ASSERT_TRUE(CloseHandle(d));
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(WaitForSingleObject(ov.hEvent, 60000), WAIT_OBJECT_0);
  EXPECT_EQ(static_cast<DWORD>(ov.Internal), 0xC0000120u) << "STATUS_CANCELLED";
  EXPECT_FALSE(std::filesystem::exists(dir / "dst.vhd")) << "the cancelled mirror's target";
  CloseHandle(ov.hEvent);
}

}  // namespace
}  // namespace vdisk_test
