// DiskPipe and the kernel32 hooks (src/api/win32), Windows only: how an operation's OVERLAPPED
// completes through the kernel for each way it can end, including the failures no API call can
// provoke on demand (a mirror that runs out of disk space).
#include <gtest/gtest.h>

#include <windows.h>

#include <memory>
#include <thread>

#include "../test_support.h"
#include "api/disk_handle.h"
#include "api/handle_table.h"
#include "api/win32/disk_pipe.h"
#include "core/open_disk.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"

namespace vdisk::api::win32 {
namespace {

constexpr ULONG_PTR kStatusCancelled = 0xC0000120;

class DiskPipeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DWORD error = ERROR_SUCCESS;
    pipe_ = DiskPipe::Create(&error);
    ASSERT_NE(pipe_, nullptr) << "error " << error;
    ov_.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  }
  void TearDown() override {
    CloseHandle(ov_.hEvent);
    if (pipe_) CloseHandle(pipe_->client());
  }
  void Launch() {
    pipe_->PrepareOperation(&ov_);
    ASSERT_EQ(pipe_->LaunchOperation(&ov_), static_cast<DWORD>(ERROR_IO_PENDING));
    ASSERT_FALSE(HasOverlappedIoCompleted(&ov_));
    ASSERT_EQ(WaitForSingleObject(ov_.hEvent, 0), static_cast<DWORD>(WAIT_TIMEOUT));
  }
  std::shared_ptr<DiskPipe> pipe_;
  OVERLAPPED ov_{};
};

TEST_F(DiskPipeTest, SuccessIsTheKernelsCompletion) {
  Launch();
  pipe_->CompleteOperation(&ov_, ERROR_SUCCESS);
  ASSERT_EQ(WaitForSingleObject(ov_.hEvent, 60000), WAIT_OBJECT_0);
  EXPECT_EQ(ov_.Internal, 0u);
  DWORD bytes = 77;
  EXPECT_TRUE(GetOverlappedResult(pipe_->client(), &ov_, &bytes, FALSE));
  EXPECT_EQ(bytes, 0u);
  EXPECT_EQ(pipe_->FailedOperationError(&ov_), 0u);
}

TEST_F(DiskPipeTest, AFailureEndsAsACancellationAndKeepsItsError) {
  Launch();
  pipe_->CompleteOperation(&ov_, ERROR_DISK_FULL);
  ASSERT_EQ(WaitForSingleObject(ov_.hEvent, 60000), WAIT_OBJECT_0);
  EXPECT_EQ(ov_.Internal, kStatusCancelled) << "a failure never reads as success";
  EXPECT_EQ(pipe_->FailedOperationError(&ov_), static_cast<DWORD>(ERROR_DISK_FULL));
}

TEST_F(DiskPipeTest, AnEndBeforeTheReadIsIssuedCompletesAtLaunch) {
  pipe_->PrepareOperation(&ov_);
  pipe_->CompleteOperation(&ov_, ERROR_SUCCESS);
  ASSERT_EQ(pipe_->LaunchOperation(&ov_), static_cast<DWORD>(ERROR_IO_PENDING));
  ASSERT_EQ(WaitForSingleObject(ov_.hEvent, 60000), WAIT_OBJECT_0);
  EXPECT_EQ(ov_.Internal, 0u);
}

TEST_F(DiskPipeTest, AnAbandonedOperationLeavesTheOverlappedAlone) {
  ov_.Internal = 12345;
  pipe_->PrepareOperation(&ov_);
  pipe_->AbandonOperation(&ov_);
  EXPECT_EQ(ov_.Internal, 12345u);
  EXPECT_EQ(WaitForSingleObject(ov_.hEvent, 0), static_cast<DWORD>(WAIT_TIMEOUT));
}

TEST_F(DiskPipeTest, AnOrphanedCompletionDoesNotCompleteTheNextOperation) {
  // A cancel that bypasses the hooks (NtCancelIoFile) leaves the DLL's success message with no
  // read to complete.
  Launch();
  using NtCancelIoFile = LONG(WINAPI*)(HANDLE, PVOID);
  auto cancel = reinterpret_cast<NtCancelIoFile>(
      reinterpret_cast<void*>(GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtCancelIoFile")));
  ASSERT_NE(cancel, nullptr);
  ULONG_PTR io_status[2] = {};  // IO_STATUS_BLOCK
  ASSERT_EQ(cancel(pipe_->client(), io_status), 0);
  ASSERT_EQ(WaitForSingleObject(ov_.hEvent, 60000), WAIT_OBJECT_0);
  pipe_->CompleteOperation(&ov_, ERROR_SUCCESS);  // the message nobody reads

  OVERLAPPED next{};
  next.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  pipe_->PrepareOperation(&next);
  ASSERT_EQ(pipe_->LaunchOperation(&next), static_cast<DWORD>(ERROR_IO_PENDING));
  EXPECT_EQ(WaitForSingleObject(next.hEvent, 0), static_cast<DWORD>(WAIT_TIMEOUT))
      << "the next operation must wait for its own completion";
  pipe_->CompleteOperation(&next, ERROR_SUCCESS);
  EXPECT_EQ(WaitForSingleObject(next.hEvent, 60000), WAIT_OBJECT_0);
  CloseHandle(next.hEvent);
}

TEST_F(DiskPipeTest, TheCallersCancelIsLeftToTheKernel) {
  Launch();
  const auto hit = pipe_->TakeForCancel(&ov_, false);
  ASSERT_EQ(hit.size(), 1u);
  EXPECT_EQ(hit[0], &ov_);
  pipe_->CompleteOperation(&ov_, ERROR_OPERATION_ABORTED);  // the work stopped: no completion
  EXPECT_EQ(WaitForSingleObject(ov_.hEvent, 0), static_cast<DWORD>(WAIT_TIMEOUT));
  ASSERT_TRUE(CancelIoEx(pipe_->client(), &ov_));
  ASSERT_EQ(WaitForSingleObject(ov_.hEvent, 60000), WAIT_OBJECT_0);
  EXPECT_EQ(ov_.Internal, kStatusCancelled);
}

TEST_F(DiskPipeTest, CancelIoTakesOnlyTheCallingThreadsOperations) {
  Launch();
  std::vector<OVERLAPPED*> other;
  std::thread([&] { other = pipe_->TakeForCancel(nullptr, true); }).join();
  EXPECT_TRUE(other.empty());
  EXPECT_EQ(pipe_->TakeForCancel(nullptr, true).size(), 1u);
  ASSERT_TRUE(CancelIo(pipe_->client()));
  EXPECT_EQ(WaitForSingleObject(ov_.hEvent, 60000), WAIT_OBJECT_0);
}

TEST_F(DiskPipeTest, RawIoEchoCarriesTheByteCountToThePort) {
  HANDLE port = CreateIoCompletionPort(pipe_->client(), nullptr, 0x5150, 0);
  ASSERT_NE(port, nullptr);
  std::vector<char> data(100000, 'x');
  OVERLAPPED io{};
  DWORD done = 0;
  const DWORD error = pipe_->EchoCompletion(data.data(), 100000, &done, &io);
  ASSERT_TRUE(error == ERROR_SUCCESS || error == ERROR_IO_PENDING) << error;
  DWORD bytes = 0;
  ULONG_PTR key = 0;
  LPOVERLAPPED got = nullptr;
  ASSERT_TRUE(GetQueuedCompletionStatus(port, &bytes, &key, &got, 60000));
  EXPECT_EQ(bytes, 100000u);
  EXPECT_EQ(key, 0x5150u);
  EXPECT_EQ(got, &io);
  CloseHandle(port);
}

// Through the handle table and the hooks, as a caller sees it.
TEST(Kernel32Hooks, GetOverlappedResultReportsTheExactErrorOfAFailedOperation) {
  vdisk_unit::TempDir dir;
  DiskCreateRequest request;
  request.path = dir / "d.vhd";
  request.options.virtual_size = 4 << 20;
  auto created = VirtualDisk::Create(BuiltinProviders(), request);
  ASSERT_TRUE(created.ok()) << created.status().message();
  auto open = OpenDisk::Adopt(std::move(created).value());
  ASSERT_TRUE(open.ok());
  auto disk = std::make_shared<DiskHandle>(std::move(open).value(), DiskHandleOptions{});
  HANDLE h = HandleTable::Instance().Insert(disk);
  ASSERT_NE(h, nullptr);
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  disk->PrepareOperation(&ov);
  ASSERT_EQ(disk->LaunchOperation(&ov), static_cast<DWORD>(ERROR_IO_PENDING));
  disk->CompleteOperation(&ov, ERROR_DISK_FULL);
  DWORD bytes = 0;
  EXPECT_FALSE(GetOverlappedResult(h, &ov, &bytes, TRUE));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_DISK_FULL));
  EXPECT_FALSE(GetOverlappedResultEx(h, &ov, &bytes, 0, FALSE));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_DISK_FULL));
  CloseHandle(ov.hEvent);
  disk.reset();
  EXPECT_TRUE(CloseHandle(h));
  EXPECT_EQ(HandleTable::Instance().size(), 0u);
}

}  // namespace
}  // namespace vdisk::api::win32
