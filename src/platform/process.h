// Processes: where this module lives, and starting a program that outlives its starter (a
// daemon), which is how a PERMANENT_LIFETIME attachment gets its host (src/attach/attach_host.h).
//
// StartDaemon and BecomeDaemon are the two halves of one protocol:
//  1. StartDaemon runs `program` with stdin, stdout and stderr on /dev/null and exactly one more
//     descriptor: the write end of a pipe, as descriptor kReportDescriptor. Nothing else of the
//     starter (image files, sockets, a caller's pipes) reaches the program.
//  2. The program calls BecomeDaemon before it starts any thread: it forks, the process that
//     StartDaemon started exits at once (and StartDaemon reaps it), and the daemon carries on in
//     a session of its own, the child of no process of the starter.
//  3. The daemon writes its report to kReportDescriptor and closes it.
//  4. StartDaemon returns what was written once the pipe is closed by every writer: when the
//     daemon has reported, or died trying. It never waits for the daemon to exit.
//
// That is the POSIX form. Windows has no fork and no descriptor 3: the program is created
// detached at once, BecomeDaemon does nothing, and the report pipe's handle reaches the program
// through an environment variable (src/platform/win32/process_win32.cpp). The contract above
// holds on both.
// Thread safety: all functions may be called from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace vdisk::platform {

inline constexpr int kReportDescriptor = 3;

// The directory of the module (shared library or executable) this code is linked into.
Result<std::filesystem::path> ThisModuleDirectory();

// Starts `program` (a path, not looked up in PATH) with `arguments` as described above and
// returns its report. Fails with the OS error if the program cannot be started, and with
// kIoError if it ended without writing anything (the message names its exit status).
Result<std::string> StartDaemon(const std::filesystem::path& program,
                                const std::vector<std::string>& arguments);

// Step 2 above. Returns in the daemon only; the calling process exits inside.
// REQUIRES: no thread has been started yet.
Status BecomeDaemon();

// Step 3 above: writes `text` to kReportDescriptor and closes it. A second call does nothing.
Status SendReport(std::string_view text);

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and in every thread it starts later,
// and ignores SIGPIPE, so that WaitForTerminationSignal can take them synchronously.
Status BlockTerminationSignals();
// Waits until one of the signals BlockTerminationSignals blocked arrives; returns its number.
int WaitForTerminationSignal();

}  // namespace vdisk::platform
