// The attach registry's directory at the shared fallback path (<temp>/virtdisk-<uid>, used when
// neither VIRTDISK_RUNTIME_DIR nor XDG_RUNTIME_DIR is set) cannot be hijacked: a symbolic link or
// a directory another user made there first is refused, and nothing outside it is changed.
// Records and sockets in it are 0600 whatever the umask. (POSIX; <temp> is a test directory
// through TMPDIR.)
#include <gtest/gtest.h>

#ifndef _WIN32
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <string>

#include "attach/attach_registry.h"
#include "platform/socket.h"
#include "test_support.h"

namespace vdisk::attach {
namespace {

namespace fs = std::filesystem;

// Sets an environment variable for the test's duration, and restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

mode_t ModeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

std::set<std::string> Listing(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename());
  return names;
}

class FallbackRuntimeDir : public ::testing::Test {
 protected:
  fs::path Fallback() const { return tmp_.path() / ("virtdisk-" + std::to_string(::getuid())); }
  void ExpectRefused(const Result<AttachRegistry>& registry, const std::string& why) {
    ASSERT_FALSE(registry.ok()) << why << ": accepted " << registry->dir();
    EXPECT_EQ(registry.status().code(), Code::kAccessDenied);
    const std::string message(registry.status().message());
    EXPECT_NE(message.find(Fallback().string()), std::string::npos) << message;
    EXPECT_NE(message.find(why), std::string::npos) << message;
    EXPECT_NE(message.find("VIRTDISK_RUNTIME_DIR"), std::string::npos) << message;
  }
  vdisk_unit::TempDir tmp_;
  ScopedEnv tmpdir_{"TMPDIR", tmp_.path().c_str()};
  ScopedEnv explicit_{"VIRTDISK_RUNTIME_DIR", nullptr};
  ScopedEnv xdg_{"XDG_RUNTIME_DIR", nullptr};
};

TEST_F(FallbackRuntimeDir, IsCreatedWithMode0700) {
  const mode_t old_umask = ::umask(0);
  auto registry = AttachRegistry::ForCurrentUser();
  ::umask(old_umask);
  ASSERT_TRUE(registry.ok()) << registry.status().message();
  EXPECT_EQ(registry->dir(), Fallback());
  EXPECT_EQ(ModeOf(Fallback()), 0700u);
  // And it is accepted the next time.
  EXPECT_TRUE(AttachRegistry::ForCurrentUser().ok());
}

TEST_F(FallbackRuntimeDir, PlantedSymlinkIsRefusedAndItsTargetLeftAlone) {
  const fs::path victim = tmp_.path() / "victim";
  fs::create_directory(victim);
  ::chmod(victim.c_str(), 0755);
  std::ofstream(victim / "keep") << "x";
  fs::create_directory_symlink(victim, Fallback());

  ExpectRefused(AttachRegistry::ForCurrentUser(), "symbolic link");
  EXPECT_EQ(ModeOf(victim), 0755u) << "the link's target was chmod-ed";
  EXPECT_EQ(Listing(victim), std::set<std::string>{"keep"});
  EXPECT_TRUE(fs::is_symlink(Fallback()));
}

TEST_F(FallbackRuntimeDir, DirectoryOfAnotherUserIsRefusedAndLeftAlone) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a directory to another user";
  const passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  ASSERT_EQ(::mkdir(Fallback().c_str(), 0755), 0);
  ASSERT_EQ(::chown(Fallback().c_str(), nobody->pw_uid, nobody->pw_gid), 0);

  ExpectRefused(AttachRegistry::ForCurrentUser(), "belongs to user");
  struct stat st {};
  ASSERT_EQ(::lstat(Fallback().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody->pw_uid);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_TRUE(Listing(Fallback()).empty());
}

TEST_F(FallbackRuntimeDir, OwnDirectoryWithWiderModeIsRefusedNotChanged) {
  ASSERT_EQ(::mkdir(Fallback().c_str(), 0700), 0);
  ASSERT_EQ(::chmod(Fallback().c_str(), 0711), 0);
  ExpectRefused(AttachRegistry::ForCurrentUser(), "mode 0711");
  EXPECT_EQ(ModeOf(Fallback()), 0711u);
}

TEST_F(FallbackRuntimeDir, RecordsAndSocketsAre0600WhateverTheUmask) {
  auto registry = AttachRegistry::ForCurrentUser();
  ASSERT_TRUE(registry.ok()) << registry.status().message();
  const mode_t old_umask = ::umask(0);
  AttachmentRecord record;
  record.disk_path = "/d/disk.vhdx";
  record.uri = "nbd+unix:///disk?socket=/x";
  record.server = ProcessId::Current();
  const Status added = registry->Add(record);
  auto listener = platform::ListenUnix(registry->NewSocketPath("export"), 0600);
  auto control = platform::ListenPrivate(registry->NewSocketPath("control"));
  ::umask(old_umask);
  ASSERT_TRUE(added.ok()) << added.message();
  EXPECT_EQ(ModeOf(registry->RecordPath(record.disk_path)), 0600u);
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  ASSERT_TRUE(control.ok()) << control.status().message();
  std::size_t sockets = 0;
  for (const auto& entry : fs::directory_iterator(registry->dir())) {
    if (entry.path().extension() != ".sock") continue;
    ++sockets;
    EXPECT_EQ(ModeOf(entry.path()), 0600u) << entry.path();
  }
  EXPECT_EQ(sockets, 2u);
}

TEST(ChosenRuntimeDir, WritableByOthersIsRefusedNotChanged) {
  vdisk_unit::TempDir tmp;
  const fs::path dir = tmp.path() / "run";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  ScopedEnv chosen("VIRTDISK_RUNTIME_DIR", dir.c_str());
  auto registry = AttachRegistry::ForCurrentUser();
  ASSERT_FALSE(registry.ok());
  EXPECT_EQ(registry.status().code(), Code::kAccessDenied);
  EXPECT_EQ(ModeOf(dir), 0777u);
}

}  // namespace
}  // namespace vdisk::attach

#endif
