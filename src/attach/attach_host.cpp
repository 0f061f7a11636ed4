#include "attach/attach_host.h"

#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "core/open_disk.h"
#include "formats/registry/registry.h"
#include "platform/process.h"
#include "platform/socket.h"

namespace vdisk::attach {
namespace fs = std::filesystem;

namespace {

// How long DetachThroughHost waits for a host that has answered to be gone. It exits right after
// answering; this bound only keeps a caller from hanging on a host that cannot exit.
constexpr auto kExitWait = std::chrono::seconds(60);
constexpr std::size_t kMaxLine = 4096;

// --- lines ---------------------------------------------------------------------------------------

std::string FailureLine(const Status& status) {
  std::string message(status.message());
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return "failed " + std::to_string(static_cast<unsigned>(status.code())) + " " +
         std::to_string(status.os_error()) + " " + message + "\n";
}

// The Status a "failed <code> <os error> <message>" line stands for.
Status ParseFailure(const std::string& line, std::string_view who) {
  std::istringstream in(line);
  std::string word;
  unsigned code = 0;
  int os_error = 0;
  in >> word >> code >> os_error;
  std::string message;
  std::getline(in, message);
  if (!message.empty() && message.front() == ' ') message.erase(0, 1);
  if (in.bad() || word != "failed" || code > static_cast<unsigned>(Code::kDiskAlreadyOwned) ||
      code == 0) {
    return Status(Code::kInternal, std::string(who) + " answered \"" + line + "\"");
  }
  return Status(static_cast<Code>(code), message, os_error);
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

Status SendLine(platform::Socket& socket, const std::string& line) {
  return socket.SendAll(std::as_bytes(std::span(line.data(), line.size())));
}

// Reads up to a newline (not included) or the end of the stream, at most kMaxLine bytes.
Result<std::string> ReceiveLine(platform::Socket& socket) {
  std::string line;
  std::byte c{};
  while (line.size() < kMaxLine) {
    VDISK_ASSIGN_OR_RETURN(const std::size_t n, socket.ReceiveSome(std::span(&c, 1)));
    if (n == 0 || static_cast<char>(c) == '\n') break;
    line.push_back(static_cast<char>(c));
  }
  return line;
}

// --- the host ------------------------------------------------------------------------------------

// Detach requests that arrived on the control socket, handed from their connection's thread to
// the main thread, which answers them once the disk is detached.
struct DetachRequests {
  std::mutex mutex;
  std::vector<platform::Socket> requesters;
};

class AttachHost {
 public:
  explicit AttachHost(AttachHostRequest request)
      : request_(std::move(request)), registry_(request_.registry_dir) {}

  // Steps 2 to 4 of attach_host.h. Returns the export's URI.
  Result<std::string> Start() {
    const fs::path& disk_path = request_.open.path;
    VDISK_ASSIGN_OR_RETURN(disk_, OpenDisk::Open(BuiltinProviders(), request_.open));
    control_path_ =
        registry_.dir() / ("host-" + std::to_string(ProcessId::Current().pid) + ".control");
    VDISK_ASSIGN_OR_RETURN(auto listener, platform::ListenPrivate(control_path_));
    control_ = std::move(listener);
    NbdAttachOptions options = request_.attach;
    options.permanent = true;
    options.control_path = control_path_;
    auto attachment = NbdAttachment::Start(disk_, registry_, options);
    if (!attachment.ok()) return attachment.status().WithContext(disk_path.string());
    attachment_ = std::move(attachment).value();
    return attachment_->uri();
  }

  // Serves the control socket until a detach request or a termination signal, then detaches.
  // Returns the exit code.
  int Serve() {
    auto requests = std::make_shared<DetachRequests>();
    std::shared_ptr<platform::Listener> listener = control_;
    std::thread([listener] {
      (void)platform::WaitForTerminationSignal();
      listener->Shutdown();
    }).detach();
    for (;;) {
      auto client = control_->Accept();
      if (!client.ok()) {
        if (client.status().code() == Code::kOperationAborted) break;
        // Out of descriptors or memory for a moment: let the condition pass.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      // One thread per connection, so that a client that never sends its request cannot keep
      // the others (or a termination signal) waiting.
      std::thread([socket = std::make_shared<platform::Socket>(std::move(client).value()), requests,
                   listener]() mutable {
        auto line = ReceiveLine(*socket);
        if (!line.ok()) return;
        if (*line != "detach") {
          (void)SendLine(*socket, FailureLine(Status(Code::kInvalidParameter,
                                                     "unknown request \"" + *line + "\"")));
          return;
        }
        std::lock_guard lock(requests->mutex);
        requests->requesters.push_back(std::move(*socket));
        listener->Shutdown();
      }).detach();
    }
    const Status status = Detach();
    std::lock_guard lock(requests->mutex);
    for (auto& requester : requests->requesters) {
      (void)SendLine(requester, status.ok() ? std::string("detached\n") : FailureLine(status));
    }
    return status.ok() ? 0 : 1;
  }

 private:
  // Clients first, then the image, then the record, so that whoever finds no record finds the
  // image free too.
  Status Detach() {
    Status status = attachment_->StopServing();
    disk_.reset();  // the last reference: the images close and their lock goes
    const Status unregistered = attachment_->Unregister();
    attachment_.reset();
    std::error_code ec;
    fs::remove(control_path_, ec);
    return status.ok() ? unregistered : status;
  }

  AttachHostRequest request_;
  AttachRegistry registry_;
  std::shared_ptr<OpenDisk> disk_;
  fs::path control_path_;
  std::shared_ptr<platform::Listener> control_;
  std::unique_ptr<NbdAttachment> attachment_;
};

}  // namespace

// --- the command line ----------------------------------------------------------------------------

namespace {

// Paths travel as UTF-8 (the native bytes on POSIX; Windows converts to and from UTF-16).
std::string PathArgument(const fs::path& path) {
  const std::u8string utf8 = path.u8string();
  return std::string(utf8.begin(), utf8.end());
}

fs::path PathFromArgument(const std::string& argument) {
  return fs::path(std::u8string(argument.begin(), argument.end()));
}

}  // namespace

std::vector<std::string> HostArguments(const AttachHostRequest& request) {
  std::vector<std::string> args = {
      "--registry", PathArgument(request.registry_dir),
      "--disk",     PathArgument(request.open.path),
      "--format",   std::to_string(static_cast<std::uint32_t>(request.open.format))};
  if (request.open.options.read_only) args.push_back("--open-read-only");
  if (request.open.options.no_write_hardening) args.push_back("--no-write-hardening");
  if (request.open.options.ignore_relative_parent_locator) {
    args.push_back("--ignore-relative-parent-locator");
  }
  if (request.open.no_parents) args.push_back("--no-parents");
  if (request.attach.read_only) args.push_back("--read-only");
  if (request.attach.grants_others) args.push_back("--grants-others");
  if (request.attach.tcp) args.push_back("--tcp");
  if (request.attach.range) {
    args.push_back("--range");
    args.push_back(std::to_string(request.attach.range->offset) + ":" +
                   std::to_string(request.attach.range->length));
  }
  return args;
}

Result<AttachHostRequest> ParseHostArguments(const std::vector<std::string>& arguments) {
  AttachHostRequest request;
  request.open.options.read_only = false;  // OpenOptions defaults to read-only
  const auto bad = [](const std::string& why) {
    return Status(Code::kInvalidParameter, "attach host: " + why);
  };
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const std::string& arg = arguments[i];
    const bool has_value = i + 1 < arguments.size();
    if (arg == "--registry" && has_value) {
      request.registry_dir = PathFromArgument(arguments[++i]);
    } else if (arg == "--disk" && has_value) {
      request.open.path = PathFromArgument(arguments[++i]);
    } else if (arg == "--format" && has_value) {
      const unsigned long format = std::strtoul(arguments[++i].c_str(), nullptr, 10);
      if (format > static_cast<unsigned long>(DiskFormat::kVhdSet)) return bad("bad --format");
      request.open.format = static_cast<DiskFormat>(format);
    } else if (arg == "--open-read-only") {
      request.open.options.read_only = true;
    } else if (arg == "--no-write-hardening") {
      request.open.options.no_write_hardening = true;
    } else if (arg == "--ignore-relative-parent-locator") {
      request.open.options.ignore_relative_parent_locator = true;
    } else if (arg == "--no-parents") {
      request.open.no_parents = true;
    } else if (arg == "--read-only") {
      request.attach.read_only = true;
    } else if (arg == "--grants-others") {
      request.attach.grants_others = true;
    } else if (arg == "--tcp") {
      request.attach.tcp = true;
    } else if (arg == "--range" && has_value) {
      const std::string& range = arguments[++i];
      const auto colon = range.find(':');
      if (colon == std::string::npos) return bad("--range takes OFFSET:LENGTH");
      request.attach.range =
          DiskExportOptions::Range{std::strtoull(range.substr(0, colon).c_str(), nullptr, 10),
                                   std::strtoull(range.substr(colon + 1).c_str(), nullptr, 10)};
    } else {
      return bad("unknown or incomplete argument \"" + arg + "\"");
    }
  }
  if (request.registry_dir.empty() || request.open.path.empty()) {
    return bad("--registry and --disk are required");
  }
  // The host opens read-only what it only exports read-only: other processes may then read the
  // disk too.
  if (request.attach.read_only) request.open.options.read_only = true;
  return request;
}

// --- the attaching side --------------------------------------------------------------------------

Result<fs::path> AttachHostProgram() {
  fs::path program;
  if (const char* explicit_path = std::getenv("VIRTDISK_ATTACH_HOST");
      explicit_path != nullptr && *explicit_path != 0) {
    program = explicit_path;
  } else {
    VDISK_ASSIGN_OR_RETURN(const fs::path dir, platform::ThisModuleDirectory());
    program = dir / kAttachHostProgram;
#ifdef _WIN32
    program += ".exe";
#endif
  }
  std::error_code ec;
  if (!fs::is_regular_file(program, ec)) {
    return Status(Code::kFileNotFound,
                  program.string() + ": the attach host program is missing (install " +
                      kAttachHostProgram +
                      " next to the library, or name it in VIRTDISK_ATTACH_HOST)");
  }
  return program;
}

Result<std::string> StartAttachHost(const AttachHostRequest& request) {
  VDISK_ASSIGN_OR_RETURN(const fs::path program, AttachHostProgram());
  VDISK_ASSIGN_OR_RETURN(const std::string report,
                         platform::StartDaemon(program, HostArguments(request)));
  const std::string line = FirstLine(report);
  if (line.rfind("ready ", 0) == 0 && line.size() > 6) return line.substr(6);
  return ParseFailure(line, "the attach host");
}

Status DetachThroughHost(const AttachmentRecord& record) {
  const std::string disk = record.disk_path.string();
  if (record.control_path.empty()) {
    return Status(Code::kInvalidParameter, disk + ": not served by an attach host");
  }
  auto connected = platform::ConnectPrivate(record.control_path);
  if (!connected.ok()) {
    if (!record.server.Alive()) return Status(Code::kNotVirtualDisk, disk + ": no longer attached");
    return connected.status().WithContext("connecting to the attach host of " + disk);
  }
  platform::Socket& socket = *connected;
  VDISK_RETURN_IF_ERROR(SendLine(socket, "detach\n"));
  // The answer, then the end of the stream: the host's descriptors close when it exits.
  std::string answer;
  std::byte chunk[256];
  for (;;) {
    auto n = socket.ReceiveSome(chunk);
    if (!n.ok() || *n == 0) break;
    if (answer.size() < kMaxLine) answer.append(reinterpret_cast<const char*>(chunk), *n);
  }
  const auto deadline = std::chrono::steady_clock::now() + kExitWait;
  while (record.server.Alive()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Status(Code::kIoError, disk + ": the attach host (process " +
                                        std::to_string(record.server.pid) + ") did not exit");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::string line = FirstLine(answer);
  if (line == "detached") return Status::Ok();
  if (line.empty()) {
    return Status(Code::kIoError, disk + ": the attach host (process " +
                                      std::to_string(record.server.pid) +
                                      ") ended without answering the detach request");
  }
  return ParseFailure(line, "the attach host").WithContext("detaching " + disk);
}

// --- the host's main -----------------------------------------------------------------------------

int RunAttachHost(const std::vector<std::string>& arguments) {
  auto request = ParseHostArguments(arguments);
  if (!request.ok()) {
    (void)platform::SendReport(FailureLine(request.status()));
    return 2;
  }
  if (Status daemon = platform::BecomeDaemon(); !daemon.ok()) {
    (void)platform::SendReport(FailureLine(daemon));
    return 1;
  }
  // Before any thread starts, so that every thread has the signals blocked.
  if (Status blocked = platform::BlockTerminationSignals(); !blocked.ok()) {
    (void)platform::SendReport(FailureLine(blocked));
    return 1;
  }
  Status failure;
  {
    AttachHost host(std::move(request).value());
    auto uri = host.Start();
    if (uri.ok()) {
      (void)platform::SendReport("ready " + *uri + "\n");
      return host.Serve();
    }
    failure = uri.status();
  }
  // Reported only once the host has closed the image again: the attaching process reopens it as
  // soon as it reads the failure.
  (void)platform::SendReport(FailureLine(failure));
  return 1;
}

}  // namespace vdisk::attach
