// Crash safety of compaction: a child process compacts a copy of a disk and is killed with
// SIGKILL at a random point (after a random number of its steps, plus up to 300 us). Afterwards
// every byte of the disk must read as before (compaction never changes content) through a
// read-only open (VHDX: log replayed in memory) and a read-write one (replayed into the file),
// `qemu-img check` must pass for dynamic VHDX, and compacting again must complete, reaching the
// size an uninterrupted compaction reaches. VHD and VHDX, dynamic and differencing.
// Linux only: the child is a fork of this process.
#include <gtest/gtest.h>

#ifndef _WIN32
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/compact.h"
#include "core/open_disk.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "host_shell.h"
#include "test_support.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
using vdisk_unit::TempDir;

struct KillLayout {
  DiskFormat format;
  std::uint32_t block_size;
  const char* name;
};

std::string ParamName(const ::testing::TestParamInfo<KillLayout>& info) { return info.param.name; }

class CompactKilledWithSigkill : public ::testing::TestWithParam<KillLayout> {
 protected:
  static constexpr std::uint64_t kBlocks = 40;

  fs::path Path(const std::string& stem) const {
    return dir_ / (stem + (GetParam().format == DiskFormat::kVhd ? ".vhd" : ".vhdx"));
  }

  // A disk whose blocks hold data, zeros, a little data, or nothing, at random.
  void CreateDisk(const fs::path& path, std::uint32_t seed, const fs::path& parent = {}) {
    DiskCreateRequest request;
    request.path = path;
    request.format = GetParam().format;
    request.options.virtual_size = kBlocks * GetParam().block_size;
    request.options.block_size = GetParam().block_size;
    if (!parent.empty()) {
      request.parent_path = parent;
      request.options.subtype = DiskSubtype::kDifferencing;
    }
    auto disk = VirtualDisk::Create(BuiltinProviders(), request);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    std::mt19937 rng(seed);
    for (std::uint64_t b = 0; b < kBlocks; ++b) {
      const auto kind = rng() % 4;
      if (kind == 3) continue;
      std::vector<std::byte> data(kind == 2 ? 64 << 10 : GetParam().block_size);
      if (kind != 1) {
        for (auto& x : data) x = static_cast<std::byte>(rng());
      }
      const std::uint64_t within = kind == 2 ? (rng() % 8) * (64 << 10) : 0;
      ASSERT_TRUE((*disk)->Write(b * GetParam().block_size + within, data).ok());
    }
    ASSERT_TRUE((*disk)->Flush().ok());
  }

  static std::vector<std::byte> ReadAll(const fs::path& path, bool read_only) {
    DiskOpenRequest request;
    request.path = path;
    request.options.read_only = read_only;
    auto disk = VirtualDisk::Open(BuiltinProviders(), request);
    EXPECT_TRUE(disk.ok()) << disk.status().message();
    if (!disk.ok()) return {};
    std::vector<std::byte> out((*disk)->size());
    EXPECT_TRUE((*disk)->Read(0, out).ok());
    return out;
  }

  // Compacts `path`; `on_step` is called at each progress report.
  static Result<CompactReport> Compact(const fs::path& path, const std::function<void()>& on_step) {
    DiskOpenRequest request;
    request.path = path;
    request.options.read_only = false;
    auto open = OpenDisk::Open(BuiltinProviders(), request);
    if (!open.ok()) return open.status();
    CallbackControl control;
    control.on_progress = [&on_step](std::uint64_t, std::uint64_t) { on_step(); };
    return CompactDisk(**open, {}, control);
  }

  TempDir dir_;
};

TEST_P(CompactKilledWithSigkill, EveryByteReadsAsBeforeAndARerunCompletes) {
  const std::string qemu_img = vdisk_unit::HostTool("qemu-img");
  ASSERT_NO_FATAL_FAILURE(CreateDisk(Path("template"), 11));
  ASSERT_NO_FATAL_FAILURE(CreateDisk(Path("parent"), 12));
  ASSERT_NO_FATAL_FAILURE(CreateDisk(Path("child-template"), 13, Path("parent")));

  struct Template {
    fs::path file;
    fs::path image;
    std::vector<std::byte> content;
    std::uint64_t compacted_size = 0;
    int steps = 0;
  };
  Template templates[2] = {{Path("template"), Path("disk"), {}, 0, 0},
                           {Path("child-template"), Path("child"), {}, 0, 0}};
  for (Template& t : templates) {
    t.content = ReadAll(t.file, true);
    const fs::path probe = dir_ / ("probe" + t.image.extension().string());
    fs::copy_file(t.file, probe);
    auto report = Compact(probe, [&t] { ++t.steps; });
    ASSERT_TRUE(report.ok()) << report.status().message();
    ASSERT_GT(report->blocks_released, 0u);
    t.compacted_size = fs::file_size(probe);
    ASSERT_LT(t.compacted_size, fs::file_size(t.file));
    fs::remove(probe);
  }

  std::mt19937_64 rng(GetParam().format == DiskFormat::kVhd ? 0x5EED : 0xFEED);
  constexpr int kKills = 30;
  int trials = 0, killed = 0, completed = 0, qemu_checks = 0;
  const auto start = std::chrono::steady_clock::now();
  while (killed < kKills && trials < 3 * kKills) {
    Template& t = templates[trials % 3 == 2 ? 1 : 0];
    const bool differencing = &t == &templates[1];
    SCOPED_TRACE("trial " + std::to_string(trials) + (differencing ? " (differencing)" : ""));
    ++trials;
    fs::remove(t.image);
    fs::copy_file(t.file, t.image);
    const int kill_after = static_cast<int>(rng() % static_cast<std::uint64_t>(t.steps + 1));
    const auto extra_us = static_cast<long>(rng() % 300);

    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(pipe_fds[0]);
      const int out = pipe_fds[1];
      auto report = Compact(t.image, [out] {
        const char step = 's';
        (void)!::write(out, &step, 1);
      });
      ::_exit(report.ok() ? 0 : 1);
    }
    ::close(pipe_fds[1]);
    // The child's steps arrive through the pipe; it is killed after `kill_after` of them.
    int seen = 0;
    char byte;
    while (seen < kill_after && ::read(pipe_fds[0], &byte, 1) == 1) ++seen;
    std::this_thread::sleep_for(std::chrono::microseconds(extra_us));
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
    }
    ::close(pipe_fds[0]);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
      ++killed;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the compaction failed";
      ++completed;
    }
    SCOPED_TRACE("killed after " + std::to_string(seen) + " steps + " + std::to_string(extra_us) +
                 " us");

    // Read-only first (VHDX: a dirty log is replayed in memory), then read-write.
    ASSERT_TRUE(ReadAll(t.image, true) == t.content) << "read-only after the kill";
    ASSERT_TRUE(ReadAll(t.image, false) == t.content) << "read-write after the kill";
    if (!qemu_img.empty() && GetParam().format == DiskFormat::kVhdx && !differencing) {
      std::string output;
      EXPECT_EQ(vdisk_unit::HostShell(qemu_img + " check -f vhdx " +
                                          vdisk_unit::ShellQuote(t.image), &output),
                0)
          << output;
      ++qemu_checks;
    }
    // Compacting again completes the job.
    auto rerun = Compact(t.image, [] {});
    ASSERT_TRUE(rerun.ok()) << rerun.status().message();
    ASSERT_TRUE(ReadAll(t.image, true) == t.content) << "after the rerun";
    EXPECT_LE(fs::file_size(t.image), t.compacted_size) << "the rerun did not finish the job";
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ KILL     ] %s: %d trials in %.1f s, %d killed mid-compaction, %d completed "
              "before the kill, %d qemu-img checks\n",
              GetParam().name, trials, seconds, killed, completed, qemu_checks);
  EXPECT_GE(killed, kKills);
}

INSTANTIATE_TEST_SUITE_P(Formats, CompactKilledWithSigkill,
                         ::testing::Values(KillLayout{DiskFormat::kVhd, 512 << 10, "Vhd"},
                                           KillLayout{DiskFormat::kVhdx, 1 << 20, "Vhdx"}),
                         ParamName);

}  // namespace
}  // namespace vdisk
#endif  // _WIN32
