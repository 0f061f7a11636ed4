// vdisk check [--repair] [--output=json] PATH
//
// Exit codes as qemu-img check's: 0 clean, 2 corruption, 3 leaked space only, 1 when the check
// could not run. The checks are libvirtdisk's (VirtDiskCheckImage): every structure the open
// validates, the redundant copies it tolerates, the VHDX log, the parent link, unused space.
// Against a VirtDisk.dll without that extension, the check is whether the disk opens.
#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "json.h"
#include "options.h"

#ifndef _WIN32
#include <virtdisk/extensions.h>
#endif

namespace vdisk_tool {
namespace {

struct CheckOptions {
  std::string path;
  bool repair = false;
  std::string output = "human";
};

struct Finding {
  ULONG severity;
  std::uint64_t bytes;
  std::string message;
};

std::vector<Finding> RunChecks(const CheckOptions& o) {
  std::vector<Finding> findings;
#ifndef _WIN32
  const WString path = ToWide(o.path);
  const auto collect = [](void* context, ULONG severity, ULONG64 bytes, const char* message) {
    static_cast<std::vector<Finding>*>(context)->push_back({severity, bytes, message});
  };
  Check(VirtDiskCheckImage(path.c_str(), o.repair ? VIRTDISK_CHECK_FLAG_REPAIR : VIRTDISK_CHECK_FLAG_NONE,
                           collect, &findings),
        o.path, "checking");
#else
  OwnedHandle disk;
  if (const DWORD error = TryOpen(o.path, o.repair ? OpenMode::kReadWrite : OpenMode::kReadOnly, &disk);
      error != ERROR_SUCCESS) {
    if (error == ERROR_FILE_NOT_FOUND || error == ERROR_PATH_NOT_FOUND || error == ERROR_ACCESS_DENIED ||
        error == ERROR_SHARING_VIOLATION) {
      Fail(error, o.path, "opening");
    }
    findings.push_back({1, 0, fmt::format("{} ({})", ErrorName(error), error)});
  }
#endif
  return findings;
}

int RunCheck(const CheckOptions& o) {
  const std::vector<Finding> findings = RunChecks(o);
  std::size_t corruptions = 0, leaks = 0;
  std::uint64_t leaked = 0;
  for (const auto& f : findings) {
    if (f.severity == 1) ++corruptions;
    if (f.severity == 2) {
      ++leaks;
      leaked += f.bytes;
    }
  }
  const int status = corruptions > 0 ? kExitCheckCorrupt : leaks > 0 ? kExitCheckLeaks : kExitOk;
  if (o.output == "json") {
    Json list = Json::Array();
    for (const auto& f : findings) {
      list.Add(Json::Object()
                   .Set("kind", Json::String(f.severity == 1 ? "corruption" : f.severity == 2 ? "leak" : "note"))
                   .Set("message", Json::String(f.message)));
    }
    Json out = Json::Object();
    out.Set("filename", Json::String(o.path));
    out.Set("check-errors", Json::Number(0));
    out.Set("corruptions", Json::Number(corruptions));
    out.Set("leaks", Json::Number(leaks));
    out.Set("leaked-bytes", Json::Number(leaked));
    out.Set("findings", std::move(list));
    fmt::print("{}\n", out.Dump());
    return status;
  }
  for (const auto& f : findings) {
    const char* kind = f.severity == 1 ? "ERROR" : f.severity == 2 ? "Leaked" : "note";
    fmt::print("{}: {}: {}\n", kind, o.path, f.message);
  }
  if (corruptions > 0) {
    fmt::print("{}: {} error{} found: the image is corrupt{}\n", o.path, corruptions,
               corruptions == 1 ? "" : "s", o.repair ? "" : " (vdisk check --repair may fix what a read-write open repairs)");
  } else if (leaks > 0) {
    fmt::print("{}: no errors; {} of leaked space (harmless; it wastes space only)\n", o.path, HumanBytes(leaked));
  } else {
    fmt::print("{}: no errors were found\n", o.path);
  }
  return status;
}

}  // namespace

void AddCheckCommand(CLI::App& app, RunState& state) {
  auto o = std::make_shared<CheckOptions>();
  auto* cmd = app.add_subcommand(
      "check", "Check a VHD/VHDX's structures (exit 0 clean, 2 corrupt, 3 leaks, 1 not checked)");
  cmd->add_option("PATH", o->path, "The disk")->required();
  cmd->add_flag("-r,--repair", o->repair,
                "Repair what a read-write open repairs (a damaged copy of a header or footer, "
                "a log to replay), then check");
  cmd->add_option("--output", o->output, "human (default) or json")->check(CLI::IsMember({"human", "json"}));
  cmd->callback([o, &state] {
    state.failure_exit = kExitFailure;
    state.exit_code = RunCheck(*o);
  });
}

}  // namespace vdisk_tool
