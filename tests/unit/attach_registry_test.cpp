#include "attach/attach_registry.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "test_support.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace vdisk::attach {
namespace {

AttachmentRecord RecordFor(const std::filesystem::path& disk, const std::filesystem::path& socket,
                           ProcessId server) {
  AttachmentRecord record;
  record.disk_path = disk;
  record.socket_path = socket;
  record.uri = "nbd+unix:///disk?socket=" + socket.string();
  record.server = server;
  record.permanent = true;
  return record;
}

TEST(AttachRecord, RoundTripsThroughItsTextForm) {
  AttachmentRecord record = RecordFor("/data/a b.vhdx", "/run/x.sock", ProcessId{42, 777});
  record.control_path = "/run/x.ctl";
  record.read_only = true;
  auto parsed = ParseRecord(FormatRecord(record));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->disk_path, record.disk_path);
  EXPECT_EQ(parsed->uri, record.uri);
  EXPECT_EQ(parsed->socket_path, record.socket_path);
  EXPECT_EQ(parsed->control_path, record.control_path);
  EXPECT_EQ(parsed->server.pid, 42);
  EXPECT_EQ(parsed->server.start_time, 777u);
  EXPECT_TRUE(parsed->permanent);
  EXPECT_TRUE(parsed->read_only);
  EXPECT_FALSE(ParseRecord("uri=x\n").ok()) << "a record without disk and pid is refused";
}

TEST(AttachRegistry, AddsFindsListsAndRemovesRecords) {
  vdisk_unit::TempDir dir;
  AttachRegistry registry(dir.path());
  const auto self = ProcessId::Current();
  ASSERT_TRUE(self.Alive());
  ASSERT_TRUE(registry.Add(RecordFor("/d/one.vhdx", dir.path() / "1.sock", self)).ok());
  ASSERT_TRUE(registry.Add(RecordFor("/d/two.vhd", dir.path() / "2.sock", self)).ok());
  auto found = registry.Find("/d/one.vhdx");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->socket_path, dir.path() / "1.sock");
  auto list = registry.List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].disk_path, "/d/one.vhdx");
  // A second live attachment of the same disk is refused.
  const Status again = registry.Add(RecordFor("/d/one.vhdx", dir.path() / "3.sock", self));
  EXPECT_EQ(again.code(), Code::kDiskAlreadyOwned) << again.message();
  // Removing names the server: another process's record stays.
  ASSERT_TRUE(registry.Remove("/d/one.vhdx", ProcessId{self.pid + 1, 0}).ok());
  EXPECT_TRUE(registry.Find("/d/one.vhdx")->has_value());
  ASSERT_TRUE(registry.Remove("/d/one.vhdx", self).ok());
  EXPECT_FALSE(registry.Find("/d/one.vhdx")->has_value());
  EXPECT_EQ(registry.List()->size(), 1u);
}

// The id of a process that has ended: a child started and waited for.
std::int64_t DeadProcess() {
#ifdef _WIN32
  wchar_t system[MAX_PATH];
  GetSystemDirectoryW(system, MAX_PATH);
  std::wstring program = std::wstring(system) + L"\\hostname.exe";
  std::wstring command = L"hostname.exe";
  STARTUPINFOW startup{};
  startup.cb = sizeof startup;
  PROCESS_INFORMATION process{};
  if (!CreateProcessW(program.c_str(), command.data(), nullptr, nullptr, FALSE, DETACHED_PROCESS,
                      nullptr, nullptr, &startup, &process))
    return 0;
  WaitForSingleObject(process.hProcess, INFINITE);
  CloseHandle(process.hThread);
  CloseHandle(process.hProcess);  // the last handle: the id is free again
  return process.dwProcessId;
#else
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child) return 0;
  return child;
#endif
}

TEST(AttachRegistry, RecordOfADeadProcessIsRemovedWithItsSocket) {
  vdisk_unit::TempDir dir;
  AttachRegistry registry(dir.path());
  const std::int64_t child = DeadProcess();
  ASSERT_GT(child, 0);
  const auto socket = dir.path() / "dead.sock";
  std::ofstream(socket) << "";
  ASSERT_TRUE(registry.Add(RecordFor("/d/dead.vhdx", socket, ProcessId{child, 0})).ok());
  ASSERT_TRUE(std::filesystem::exists(registry.RecordPath("/d/dead.vhdx")));
  auto list = registry.List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  EXPECT_FALSE(std::filesystem::exists(registry.RecordPath("/d/dead.vhdx")));
  EXPECT_FALSE(std::filesystem::exists(socket));
  // And a new attachment of that disk is allowed.
  EXPECT_TRUE(registry.Add(RecordFor("/d/dead.vhdx", socket, ProcessId::Current())).ok());
}

TEST(AttachRegistry, RecycledPidWithAnotherStartTimeIsNotTheServer) {
  auto self = ProcessId::Current();
  ASSERT_NE(self.start_time, 0u);
  ProcessId impostor{self.pid, self.start_time + 12345};
  EXPECT_FALSE(impostor.Alive());
}

TEST(AttachRegistry, ForCurrentUserHonoursTheRuntimeDirVariable) {
  vdisk_unit::TempDir dir;
  const auto wanted = dir.path() / "runtime";
#ifdef _WIN32
  _putenv_s("VIRTDISK_RUNTIME_DIR", wanted.string().c_str());
  auto registry = AttachRegistry::ForCurrentUser();
  _putenv_s("VIRTDISK_RUNTIME_DIR", "");
#else
  ::setenv("VIRTDISK_RUNTIME_DIR", wanted.c_str(), 1);
  auto registry = AttachRegistry::ForCurrentUser();
  ::unsetenv("VIRTDISK_RUNTIME_DIR");
#endif
  ASSERT_TRUE(registry.ok()) << registry.status().message();
  EXPECT_EQ(registry->dir(), wanted);
  EXPECT_TRUE(std::filesystem::is_directory(wanted));
}

}  // namespace
}  // namespace vdisk::attach
