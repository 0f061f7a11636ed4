// vdisk resize / expand / compact / merge / set-parent: the lifecycle operations, each a thin
// call of its VirtDisk function, followed with a progress bar (GetVirtualDiskOperationProgress)
// and cancelled by Ctrl-C like mirror.
#include <fmt/format.h>

#include <functional>
#include <memory>
#include <string>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "options.h"
#include "progress.h"

namespace vdisk_tool {
namespace {

// Starts `call` with an OVERLAPPED on `disk` and follows it to its end.
int RunAsync(HANDLE disk, const std::string& file, const std::string& label, bool progress,
             const std::function<DWORD(OVERLAPPED*)>& call) {
  InstallInterruptHandlers();
  OwnedHandle event(CreateEventW(nullptr, TRUE, FALSE, nullptr));
  if (!event) Fail(GetLastError(), file, "CreateEventW");
  OVERLAPPED overlapped{};
  overlapped.hEvent = event.get();
  const DWORD started = call(&overlapped);
  if (started != ERROR_IO_PENDING && started != ERROR_SUCCESS) Fail(started, file, label);
  ProgressBar bar(label, progress ? ProgressBar::Mode::kForced : ProgressBar::Mode::kTerminal);
  const OperationOutcome outcome = FollowOperation(disk, &overlapped, &bar, file);
  bar.Finish(outcome.status == ERROR_SUCCESS);
  if (outcome.signal != 0) {
    std::fprintf(stderr, "vdisk: %s of %s interrupted (signal %d) and cancelled\n", label.c_str(),
                 file.c_str(), outcome.signal);
    return kExitSignalBase + outcome.signal;
  }
  Check(outcome.status, file, label);
  return 0;
}

struct ResizeOptions {
  std::string path, size;
  bool allow_unsafe = false, smallest_safe = false, progress = false;
};

int RunResize(const ResizeOptions& o) {
  if (o.smallest_safe == !o.size.empty()) throw UsageError("give SIZE or --smallest-safe (not both)");
  const std::uint64_t size = o.size.empty() ? 0 : ParseSize("SIZE", o.size);
  OwnedHandle disk = OpenDisk(o.path, OpenMode::kReadWrite);
  RESIZE_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = RESIZE_VIRTUAL_DISK_VERSION_1;
  parameters.Version1.NewSize = size;
  RESIZE_VIRTUAL_DISK_FLAG flags = RESIZE_VIRTUAL_DISK_FLAG_NONE;
  if (o.allow_unsafe) flags = static_cast<RESIZE_VIRTUAL_DISK_FLAG>(flags | RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE);
  if (o.smallest_safe) flags = static_cast<RESIZE_VIRTUAL_DISK_FLAG>(flags | RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE);
  const int status = RunAsync(disk.get(), o.path, "resize", o.progress, [&](OVERLAPPED* overlapped) {
    return ResizeVirtualDisk(disk.get(), flags, &parameters, overlapped);
  });
  if (status != 0) return status;
  const Geometry geometry = GeometryOf(disk.get(), o.path);
  disk.Close(o.path);
  fmt::print("resized {}: virtual size {}\n", o.path, Bytes(geometry.virtual_size));
  return 0;
}

struct ExpandOptions {
  std::string path, size;
  bool progress = false;
};

int RunExpand(const ExpandOptions& o) {
  const std::uint64_t size = ParseSize("SIZE", o.size);
  OwnedHandle disk = OpenDisk(o.path, OpenMode::kReadWrite);
  EXPAND_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = EXPAND_VIRTUAL_DISK_VERSION_1;
  parameters.Version1.NewSize = size;
  const int status = RunAsync(disk.get(), o.path, "expand", o.progress, [&](OVERLAPPED* overlapped) {
    return ExpandVirtualDisk(disk.get(), EXPAND_VIRTUAL_DISK_FLAG_NONE, &parameters, overlapped);
  });
  if (status != 0) return status;
  const Geometry geometry = GeometryOf(disk.get(), o.path);
  disk.Close(o.path);
  fmt::print("expanded {}: virtual size {}\n", o.path, Bytes(geometry.virtual_size));
  return 0;
}

struct CompactOptions {
  std::string path;
  bool no_zero_scan = false, no_block_moves = false, progress = false;
};

int RunCompact(const CompactOptions& o) {
  OwnedHandle disk = OpenDisk(o.path, OpenMode::kReadWrite);
  const std::uint64_t before = fs::file_size(o.path);
  COMPACT_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = COMPACT_VIRTUAL_DISK_VERSION_1;
  COMPACT_VIRTUAL_DISK_FLAG flags = COMPACT_VIRTUAL_DISK_FLAG_NONE;
  if (o.no_zero_scan) flags = static_cast<COMPACT_VIRTUAL_DISK_FLAG>(flags | COMPACT_VIRTUAL_DISK_FLAG_NO_ZERO_SCAN);
  if (o.no_block_moves) flags = static_cast<COMPACT_VIRTUAL_DISK_FLAG>(flags | COMPACT_VIRTUAL_DISK_FLAG_NO_BLOCK_MOVES);
  const int status = RunAsync(disk.get(), o.path, "compact", o.progress, [&](OVERLAPPED* overlapped) {
    return CompactVirtualDisk(disk.get(), flags, &parameters, overlapped);
  });
  if (status != 0) return status;
  disk.Close(o.path);
  const std::uint64_t after = fs::file_size(o.path);
  fmt::print("compacted {}: file size {} -> {}\n", o.path, HumanBytes(before), HumanBytes(after));
  return 0;
}

struct MergeOptions {
  std::string child;
  unsigned depth = 1;
  bool progress = false;
};

int RunMerge(const MergeOptions& o) {
  if (o.depth == 0) throw UsageError("--depth is 1 (into the parent) or more");
  OwnedHandle disk = OpenDisk(o.child, OpenMode::kReadWrite);
  MERGE_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = MERGE_VIRTUAL_DISK_VERSION_2;
  parameters.Version2.MergeSourceDepth = 1;             // the child itself
  parameters.Version2.MergeTargetDepth = 1 + o.depth;   // its parent, or further up
  const int status = RunAsync(disk.get(), o.child, "merge", o.progress, [&](OVERLAPPED* overlapped) {
    return MergeVirtualDisk(disk.get(), MERGE_VIRTUAL_DISK_FLAG_NONE, &parameters, overlapped);
  });
  if (status != 0) return status;
  disk.Close(o.child);
  fmt::print("merged {} into the disk {} level{} up its chain\n", o.child, o.depth, o.depth == 1 ? "" : "s");
  return 0;
}

int RunSetParent(const std::string& child, const std::string& parent) {
  OwnedHandle disk;
  // The child alone: its recorded parent may be the one that no longer resolves.
  Check(TryOpen(child, OpenMode::kReadWrite, &disk, OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS), child,
        "opening read-write");
  const WString wide = ToWide(parent);
  SET_VIRTUAL_DISK_INFO info{};
  info.Version = SET_VIRTUAL_DISK_INFO_PARENT_PATH;
  info.ParentFilePath = wide.c_str();
  Check(SetVirtualDiskInformation(disk.get(), &info), child, "setting the parent to " + parent);
  disk.Close(child);
  fmt::print("{}: parent is now {}\n", child, parent);
  return 0;
}

}  // namespace

void AddLifecycleCommands(CLI::App& app, RunState& state) {
  auto r = std::make_shared<ResizeOptions>();
  auto* resize = app.add_subcommand("resize", "Change a disk's virtual size (ResizeVirtualDisk)");
  resize->add_option("PATH", r->path, "The disk")->required();
  resize->add_option("SIZE", r->size, "The new virtual size, e.g. 2G");
  resize->add_flag("--allow-unsafe", r->allow_unsafe, "Allow shrinking below the last partition");
  resize->add_flag("--smallest-safe", r->smallest_safe, "Shrink to the smallest size that keeps every partition");
  resize->add_flag("-p,--progress", r->progress, "Show progress even off a terminal");
  resize->callback([r, &state] { state.exit_code = RunResize(*r); });

  auto e = std::make_shared<ExpandOptions>();
  auto* expand = app.add_subcommand("expand", "Grow a disk's virtual size (ExpandVirtualDisk)");
  expand->add_option("PATH", e->path, "The disk")->required();
  expand->add_option("SIZE", e->size, "The new virtual size")->required();
  expand->add_flag("-p,--progress", e->progress, "Show progress even off a terminal");
  expand->callback([e, &state] { state.exit_code = RunExpand(*e); });

  auto c = std::make_shared<CompactOptions>();
  auto* compact = app.add_subcommand("compact", "Give unused space of a dynamic disk back (CompactVirtualDisk)");
  compact->add_option("PATH", c->path, "The disk")->required();
  compact->add_flag("--no-zero-scan", c->no_zero_scan, "Do not look for all-zero blocks");
  compact->add_flag("--no-block-moves", c->no_block_moves, "Do not move blocks (only trim the end)");
  compact->add_flag("-p,--progress", c->progress, "Show progress even off a terminal");
  compact->callback([c, &state] { state.exit_code = RunCompact(*c); });

  auto m = std::make_shared<MergeOptions>();
  auto* merge = app.add_subcommand("merge", "Merge a differencing disk into its parent (MergeVirtualDisk)");
  merge->add_option("CHILD", m->child, "The differencing disk")->required();
  merge->add_option("--depth", m->depth, "How many levels up to merge into (default 1: the parent)");
  merge->add_flag("-p,--progress", m->progress, "Show progress even off a terminal");
  merge->callback([m, &state] { state.exit_code = RunMerge(*m); });

  auto child = std::make_shared<std::string>();
  auto parent = std::make_shared<std::string>();
  auto* set_parent = app.add_subcommand("set-parent", "Point a differencing disk at a (moved) parent");
  set_parent->add_option("CHILD", *child, "The differencing disk")->required();
  set_parent->add_option("PARENT", *parent, "Its parent's path now")->required();
  set_parent->callback([child, parent, &state] { state.exit_code = RunSetParent(*child, *parent); });
}

}  // namespace vdisk_tool
