// vdisk mirror SRC DST [--existing] [-p]
//
// MirrorVirtualDisk as Microsoft's sample drives it: start with an OVERLAPPED, follow
// GetVirtualDiskOperationProgress until the copy is complete, BreakMirrorVirtualDisk, follow
// until the operation ends. Ctrl-C or SIGTERM cancels through the API (CancelIoEx): the library
// stops the copy and removes a target it created; the source is untouched.
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <string>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "options.h"
#include "progress.h"

namespace vdisk_tool {
namespace {

struct MirrorOptions {
  std::string source, target;
  bool existing = false;
  bool progress = false;
};

int RunMirror(const MirrorOptions& o) {
  InstallInterruptHandlers();
  OwnedHandle disk = OpenDisk(o.source, OpenMode::kReadWrite);
  OwnedHandle event(CreateEventW(nullptr, TRUE, FALSE, nullptr));
  if (!event) Fail(GetLastError(), o.source, "CreateEventW");
  OVERLAPPED overlapped{};
  overlapped.hEvent = event.get();
  const WString target = ToWide(o.target);
  MIRROR_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  parameters.Version1.MirrorVirtualDiskPath = target.c_str();
  const auto flags = o.existing ? MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE : MIRROR_VIRTUAL_DISK_FLAG_NONE;
  const auto start = std::chrono::steady_clock::now();
  const DWORD started = MirrorVirtualDisk(disk.get(), flags, &parameters, &overlapped);
  if (started != ERROR_IO_PENDING && started != ERROR_SUCCESS) {
    Fail(started, o.target, "mirroring " + o.source + " to it");
  }
  ProgressBar bar("mirror", o.progress ? ProgressBar::Mode::kForced : ProgressBar::Mode::kTerminal);
  OperationOutcome outcome = FollowOperation(
      disk.get(), &overlapped, &bar, o.source, [](const VIRTUAL_DISK_PROGRESS& progress) {
        return progress.CurrentValue == progress.CompletionValue;
      });
  if (outcome.signal == 0 && outcome.status == ERROR_IO_PENDING) {
    // The copy is complete and the mirror keeps the target in step: break it.
    bar.Finish(true);
    Check(BreakMirrorVirtualDisk(disk.get()), o.source, "BreakMirrorVirtualDisk");
    outcome = FollowOperation(disk.get(), &overlapped, nullptr, o.source);
  } else {
    bar.Finish(false);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (outcome.signal != 0) {
    disk.Close(o.source);
    std::fprintf(stderr, "vdisk: mirror of %s interrupted (signal %d) and cancelled; %s\n",
                 o.source.c_str(), outcome.signal,
                 o.existing ? (o.target + " is incomplete").c_str()
                            : (o.target + " removed; the source is unchanged").c_str());
    return kExitSignalBase + outcome.signal;
  }
  if (outcome.status != ERROR_SUCCESS) {
    Fail(outcome.status, o.target, "mirroring " + o.source + " to it");
  }
  disk.Close(o.source);
  fmt::print("mirrored {} to {}: {} in {:.1f} s; {} is now the disk's file\n", o.source, o.target,
             HumanBytes(outcome.progress.CompletionValue), seconds, o.target);
  return 0;
}

}  // namespace

void AddMirrorCommand(CLI::App& app, RunState& state) {
  auto o = std::make_shared<MirrorOptions>();
  auto* cmd = app.add_subcommand(
      "mirror", "Copy a disk to a new file while it stays usable, then switch to the copy");
  cmd->add_option("SRC", o->source, "The disk")->required();
  cmd->add_option("DST", o->target, "The copy (created, same format and size)")->required();
  cmd->add_flag("--existing", o->existing, "DST exists already (same format and size)");
  cmd->add_flag("-p,--progress", o->progress,
                "Show progress even off a terminal (a line per 10 %)");
  cmd->callback([o, &state] { state.exit_code = RunMirror(*o); });
}

}  // namespace vdisk_tool
