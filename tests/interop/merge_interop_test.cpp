// MergeVirtualDisk against independent readers, and killed in the middle.
//
// Oracles: before the merge the chain is read through our API into a raw file; after it the
// merged-into parent (a plain dynamic disk) is read by qemu itself: `qemu-img compare` of the
// parent against that raw file, libvhdi reading the VHD parent, `qemu-img check` of a VHDX
// parent. (qemu reads neither VHD parents nor differencing VHDX, so the chain before the merge
// is read through the API; the parent afterwards needs no chain.)
//
// MergeKilledWithSigkill: merge_runner merges a chain and is killed with SIGKILL at a random
// point of the merge (a random delay within the time a whole merge takes, measured first).
// Afterwards the chain opens and reads as before ("If the merge operation is interrupted, the
// child disk is still usable", MergeVirtualDisk's remarks), and running the merge again completes
// it ("can be rerun to complete the merge"): the parent then reads what the chain showed, qemu
// agrees, and a VHDX parent passes `qemu-img check`. A middle merge (V2, source depth 2) that got
// as far as re-pointing the top is complete already: the top's chain then skips the merged file.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "interop_support.h"

extern char** environ;

namespace vdisk_interop {
namespace {

namespace fs = std::filesystem;

#define ASSERT_OK(expr) ASSERT_EQ(static_cast<DWORD>(expr), static_cast<DWORD>(ERROR_SUCCESS))

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kDiskSize = 32 * kMiB;

struct Format {
  const char* extension;
  const char* qemu_format;
};

// Writes `count` 64 KiB..1 MiB random writes of `seed` through the API.
void Fill(const fs::path& image, std::uint64_t seed, int count) {
  Handle h;
  const auto type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
  ASSERT_OK(OpenV2(image, type, false, h));
  ASSERT_OK(AttachRaw(h.get(), false));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < count; ++i) {
    const std::uint64_t length = std::uniform_int_distribution<std::uint64_t>(1, 16)(rng) * 65536;
    const std::uint64_t offset =
        std::uniform_int_distribution<std::uint64_t>(0, (kDiskSize - length) / 4096)(rng) * 4096;
    Bytes data(length);
    FillPattern(rng(), data);
    ASSERT_OK(WriteAt(h.get(), offset, data));
  }
}

// CreateVirtualDisk (V2) with the format the extension names: a dynamic disk of kDiskSize, or a
// differencing child of `parent`.
DWORD Create(const fs::path& path, const fs::path& parent, Handle& handle) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  params.Version2.MaximumSize = parent.empty() ? kDiskSize : 0;
  const WString parent_wide = Wide(parent);
  if (!parent.empty()) params.Version2.ParentPath = parent_wide.c_str();
  const WString wide = Wide(path);
  return CreateVirtualDisk(&type, wide.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                           CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &params, nullptr, handle.out());
}

// base <- l1 (<- l2 when `levels` is 3), each with its own writes.
void MakeChain(const fs::path& dir, const Format& format, int levels) {
  Handle h;
  ASSERT_OK(Create(dir / (std::string("l0") + format.extension), {}, h));
  h.Close();
  Fill(dir / (std::string("l0") + format.extension), 1, 24);
  for (int level = 1; level < levels; ++level) {
    ASSERT_OK(Create(dir / ("l" + std::to_string(level) + format.extension),
                     dir / ("l" + std::to_string(level - 1) + format.extension), h));
    h.Close();
    Fill(dir / ("l" + std::to_string(level) + format.extension), 10 + level, 20);
  }
}

DWORD Merge(const fs::path& top, ULONG source, ULONG target) {
  Handle h;
  const auto type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
  if (const DWORD e = OpenV2(top, type, false, h); e != ERROR_SUCCESS) return e;
  MERGE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MERGE_VIRTUAL_DISK_VERSION_2;
  p.Version2.MergeSourceDepth = source;
  p.Version2.MergeTargetDepth = target;
  return MergeVirtualDisk(h.get(), MERGE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr);
}

// What qemu-img compare says of `image` (as `format`) against a raw file.
CommandResult QemuCompare(const fs::path& image, const char* format, const fs::path& raw) {
  return RunTool({"qemu-img", "compare", "-f", format, "-F", "raw", image.string(), raw.string()});
}

class MergeInterop : public ::testing::TestWithParam<Format> {
 protected:
  void SetUp() override { INTEROP_REQUIRE_TOOL("qemu-img"); }
  fs::path File(const std::string& stem) const { return dir_ / (stem + GetParam().extension); }
  ScratchDir dir_;
};

TEST_P(MergeInterop, ParentAfterMergeEqualsTheChainBeforeForQemuAndLibvhdi) {
  MakeChain(dir_.path(), GetParam(), 3);
  std::string error;
  const auto before = ReadImageThroughApi(File("l2"), &error);
  ASSERT_TRUE(before) << error;
  WriteWholeFile(dir_ / "before.raw", *before);
  EXPECT_NE(QemuCompare(File("l0"), GetParam().qemu_format, dir_ / "before.raw").exit_code, 0)
      << "the base differs from the chain before the merge";

  ASSERT_OK(Merge(File("l2"), 1, 3));

  const CommandResult compare =
      QemuCompare(File("l0"), GetParam().qemu_format, dir_ / "before.raw");
  EXPECT_EQ(compare.exit_code, 0) << compare.Describe();
  if (std::string(GetParam().extension) == ".vhdx") {
    const CommandResult check = RunTool({"qemu-img", "check", "-f", "vhdx", File("l0").string()});
    EXPECT_EQ(check.exit_code, 0) << check.Describe();
  } else {
#if VIRTDISK_HAVE_LIBVHDI
    const auto libvhdi = LibvhdiReadAll({File("l0")}, nullptr, &error);
    ASSERT_TRUE(libvhdi) << error;
    EXPECT_EQ(CompareBytes(*libvhdi, *before), "equal");
#endif
  }
}

TEST_P(MergeInterop, MiddleMergeLeavesAChainLibvhdiAndQemuRead) {
  MakeChain(dir_.path(), GetParam(), 3);
  std::string error;
  const auto before = ReadImageThroughApi(File("l2"), &error);
  ASSERT_TRUE(before) << error;
  const auto middle = ReadImageThroughApi(File("l1"), &error);
  ASSERT_TRUE(middle) << error;
  WriteWholeFile(dir_ / "middle.raw", *middle);

  ASSERT_OK(Merge(File("l2"), 2, 3));

  const auto after = ReadImageThroughApi(File("l2"), &error);
  ASSERT_TRUE(after) << error;
  EXPECT_EQ(CompareBytes(*after, *before), "equal");
  const CommandResult compare =
      QemuCompare(File("l0"), GetParam().qemu_format, dir_ / "middle.raw");
  EXPECT_EQ(compare.exit_code, 0) << compare.Describe();
#if VIRTDISK_HAVE_LIBVHDI
  if (std::string(GetParam().extension) == ".vhd") {
    // libvhdi follows the re-pointed top straight to the base.
    const auto libvhdi = LibvhdiReadAll({File("l2"), File("l0")}, nullptr, &error);
    ASSERT_TRUE(libvhdi) << error;
    EXPECT_EQ(CompareBytes(*libvhdi, *before), "equal");
  }
#endif
  if (std::string(GetParam().extension) == ".vhdx") {
    // qemu opens no differencing VHDX, so the re-pointed top is checked by our reread above.
    const CommandResult check = RunTool({"qemu-img", "check", "-f", "vhdx", File("l0").string()});
    EXPECT_EQ(check.exit_code, 0) << check.Describe();
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, MergeInterop,
                         ::testing::Values(Format{".vhd", "vpc"}, Format{".vhdx", "vhdx"}),
                         [](const auto& info) {
                           return std::string(info.param.qemu_format) == "vpc"
                                      ? std::string("Vhd")
                                      : std::string("Vhdx");
                         });

// --- killed merges --------------------------------------------------------------------------

struct RunnerRun {
  int status = -1;
  std::chrono::microseconds elapsed{0};  // from "about to merge" to the end
};

// Starts merge_runner; kills it `delay` after it says it is about to merge (never, if negative).
RunnerRun RunMerge(const fs::path& top, int source, int target, std::chrono::microseconds delay) {
  RunnerRun run;
  const std::string runner = VIRTDISK_MERGE_RUNNER;
  const std::string top_text = top.string();
  const std::string source_text = std::to_string(source);
  const std::string target_text = std::to_string(target);
  std::vector<char*> argv = {const_cast<char*>(runner.c_str()), const_cast<char*>(top_text.c_str()),
                             const_cast<char*>(source_text.c_str()),
                             const_cast<char*>(target_text.c_str()), nullptr};
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return run;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ready[1], 3);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.emplace_back("VIRTDISK_MERGE_READY_FD=3");
  std::vector<char*> env;
  for (auto& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, runner.c_str(), &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(ready[1]);
  if (rc != 0) {
    close(ready[0]);
    return run;
  }
  pollfd pfd{ready[0], POLLIN, 0};
  char byte = 0;
  if (poll(&pfd, 1, 10000) == 1) (void)!read(ready[0], &byte, 1);
  close(ready[0]);
  const auto start = std::chrono::steady_clock::now();
  if (delay.count() >= 0) {
    timespec ts{static_cast<time_t>(delay.count() / 1000000),
                static_cast<long>(delay.count() % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    kill(pid, SIGKILL);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  run.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);
  run.status = status;
  return run;
}

struct KillCase {
  Format format;
  int source;  // V2 depths; the chain has three files
  int target;
  const char* name;
};

class MergeKilledWithSigkill : public ::testing::TestWithParam<KillCase> {
 protected:
  void SetUp() override { INTEROP_REQUIRE_TOOL("qemu-img"); }
};

TEST_P(MergeKilledWithSigkill, ChainReadsAsBeforeAndARerunCompletes) {
  const KillCase& c = GetParam();
  const char* ext = c.format.extension;
  ScratchDir templates;
  MakeChain(templates.path(), c.format, 3);
  std::string error;
  const auto before = ReadImageThroughApi(templates / (std::string("l2") + ext), &error);
  ASSERT_TRUE(before) << error;
  // What the target must hold at the end: the chain from the source down, before the merge.
  const auto expected_target =
      ReadImageThroughApi(templates / ("l" + std::to_string(3 - c.source) + ext), &error);
  ASSERT_TRUE(expected_target) << error;
  // The expected results as raw files, for qemu-img compare.
  WriteWholeFile(templates / "target.raw", *expected_target);

  auto copy_chain = [&](const fs::path& to) {
    for (const char* stem : {"l0", "l1", "l2"}) {
      fs::copy_file(templates / (std::string(stem) + ext), to / (std::string(stem) + ext));
    }
  };
  // How long a whole merge takes here: the kill points are spread over it.
  std::chrono::microseconds whole{0};
  {
    ScratchDir dir;
    copy_chain(dir.path());
    const RunnerRun run = RunMerge(dir / (std::string("l2") + ext), c.source, c.target,
                                   std::chrono::microseconds(-1));
    ASSERT_TRUE(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0) << run.status;
    whole = run.elapsed;
  }

  constexpr int kTrials = 14;
  std::mt19937_64 rng(0x6d65726765ULL + static_cast<std::uint64_t>(c.source * 7 + c.target));
  int killed = 0;
  int completed_before_kill = 0;
  int relinked_before_kill = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    ScratchDir dir;
    copy_chain(dir.path());
    const fs::path top = dir / (std::string("l2") + ext);
    const auto delay = std::chrono::microseconds(
        std::uniform_int_distribution<std::int64_t>(0, whole.count())(rng));
    const RunnerRun run = RunMerge(top, c.source, c.target, delay);
    if (WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGKILL) {
      ++killed;
    } else {
      ASSERT_TRUE(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0) << run.status;
      ++completed_before_kill;
    }

    // The chain opens and reads as before, whatever the kill interrupted.
    const auto after_kill = ReadImageThroughApi(top, &error);
    ASSERT_TRUE(after_kill) << error;
    ASSERT_EQ(CompareBytes(*after_kill, *before), "equal");

    // A middle merge that re-pointed the top is complete; otherwise run it again.
    bool relinked = false;
    if (c.source > 1) {
      Handle h;
      ASSERT_OK(OpenV2(top, StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false), true, h));
      std::vector<unsigned char> buffer(4096);
      auto* info = reinterpret_cast<GET_VIRTUAL_DISK_INFO*>(buffer.data());
      info->Version = GET_VIRTUAL_DISK_INFO_PARENT_LOCATION;
      ULONG size = static_cast<ULONG>(buffer.size());
      ASSERT_OK(GetVirtualDiskInformation(h.get(), &size, info, nullptr));
      std::string parent;
      for (const WCHAR* w = info->ParentLocation.ParentLocationBuffer; *w != 0; ++w)
        parent.push_back(static_cast<char>(*w));
      relinked = parent.find(std::string("l0") + ext) != std::string::npos;
    }
    if (relinked) {
      ++relinked_before_kill;
    } else {
      ASSERT_OK(Merge(top, static_cast<ULONG>(c.source), static_cast<ULONG>(c.target)));
    }
    const auto after_rerun = ReadImageThroughApi(top, &error);
    ASSERT_TRUE(after_rerun) << error;
    ASSERT_EQ(CompareBytes(*after_rerun, *before), "equal");
    const fs::path target = dir / ("l" + std::to_string(3 - c.target) + ext);
    const CommandResult compare =
        QemuCompare(target, c.format.qemu_format, templates / "target.raw");
    ASSERT_EQ(compare.exit_code, 0) << compare.Describe();
    if (std::string(ext) == ".vhdx") {
      const CommandResult check = RunTool({"qemu-img", "check", "-f", "vhdx", target.string()});
      ASSERT_EQ(check.exit_code, 0) << check.Describe();
    }
  }
  // Most trials must really interrupt the merge, or the test proves little.
  EXPECT_GE(killed, kTrials / 2) << completed_before_kill << " merges ended before their kill";
  RecordProperty("killed", killed);
  RecordProperty("relinked_before_kill", relinked_before_kill);
  std::printf(
      "%s: %d of %d trials killed mid-merge (%d had re-pointed the top); merge takes %lld us\n",
      c.name, killed, kTrials, relinked_before_kill, static_cast<long long>(whole.count()));
}

INSTANTIATE_TEST_SUITE_P(Cases, MergeKilledWithSigkill,
                         ::testing::Values(KillCase{{".vhd", "vpc"}, 1, 3, "VhdTopIntoBase"},
                                           KillCase{{".vhdx", "vhdx"}, 1, 3, "VhdxTopIntoBase"},
                                           KillCase{{".vhd", "vpc"}, 2, 3, "VhdMiddleIntoBase"},
                                           KillCase{{".vhdx", "vhdx"}, 2, 3, "VhdxMiddleIntoBase"}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace vdisk_interop
