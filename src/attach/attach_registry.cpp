#include "attach/attach_registry.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

#include "platform/user_files.h"

namespace vdisk::attach {
namespace fs = std::filesystem;

namespace {

constexpr const char* kRecordExtension = ".attach";

std::string Utf8(const fs::path& path) {
  const std::u8string text = path.u8string();
  return std::string(text.begin(), text.end());
}
fs::path FromUtf8(const std::string& text) {
  return fs::path(std::u8string(text.begin(), text.end()));
}

Status FsError(const std::error_code& ec, std::string_view what, const fs::path& path) {
  return Status(Code::kIoError, std::string(what) + " " + path.string() + ": " + ec.message(),
                ec.value());
}

// FNV-1a of the canonical path: a stable, file-name-safe record name per disk.
std::string RecordName(const fs::path& disk_path) {
  std::uint64_t hash = 1469598103934665603ull;
  for (const unsigned char c : Utf8(disk_path)) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char name[32];
  std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(hash));
  return std::string(name) + kRecordExtension;
}

Result<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Code::kNotFound, path.string() + ": no such record");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Removes a stale record and the socket it names.
void RemoveStale(const fs::path& record_file, const AttachmentRecord& record) {
  std::error_code ec;
  if (!record.socket_path.empty()) fs::remove(record.socket_path, ec);
  if (!record.control_path.empty()) fs::remove(record.control_path, ec);
  // Only a directory of the registry's own: a record names nothing else to delete.
  if (!record.secret_path.empty() && record.secret_path.parent_path() == record_file.parent_path()) {
    fs::remove_all(record.secret_path, ec);
  }
  fs::remove(record_file, ec);
}

}  // namespace

// --- processes ---------------------------------------------------------------------------------

ProcessId ProcessId::Current() {
  ProcessId id;
  id.pid = platform::CurrentProcessId();
  id.start_time = platform::ProcessStartTime(id.pid);
  return id;
}

bool ProcessId::Alive() const { return platform::ProcessAlive(pid, start_time); }

// --- records -----------------------------------------------------------------------------------

std::string FormatRecord(const AttachmentRecord& record) {
  std::ostringstream out;
  out << "disk=" << Utf8(record.disk_path) << "\n"
      << "uri=" << record.uri << "\n"
      << "socket=" << Utf8(record.socket_path) << "\n"
      << "control=" << Utf8(record.control_path) << "\n"
      << "secret=" << Utf8(record.secret_path) << "\n"
      << "pid=" << record.server.pid << "\n"
      << "start=" << record.server.start_time << "\n"
      << "permanent=" << (record.permanent ? 1 : 0) << "\n"
      << "read_only=" << (record.read_only ? 1 : 0) << "\n";
  return out.str();
}

Result<AttachmentRecord> ParseRecord(const std::string& text) {
  AttachmentRecord record;
  std::istringstream in(text);
  std::string line;
  bool have_disk = false, have_pid = false;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq);
    const std::string value = line.substr(eq + 1);
    if (key == "disk") {
      record.disk_path = FromUtf8(value);
      have_disk = !value.empty();
    } else if (key == "uri") {
      record.uri = value;
    } else if (key == "socket") {
      record.socket_path = FromUtf8(value);
    } else if (key == "control") {
      record.control_path = FromUtf8(value);
    } else if (key == "secret") {
      record.secret_path = FromUtf8(value);
    } else if (key == "pid") {
      record.server.pid = std::strtoll(value.c_str(), nullptr, 10);
      have_pid = record.server.pid > 0;
    } else if (key == "start") {
      record.server.start_time = std::strtoull(value.c_str(), nullptr, 10);
    } else if (key == "permanent") {
      record.permanent = value == "1";
    } else if (key == "read_only") {
      record.read_only = value == "1";
    }
  }
  if (!have_disk || !have_pid || record.uri.empty()) {
    return Status(Code::kFileCorrupt, "attach record without disk, uri or pid");
  }
  return record;
}

// --- the registry ------------------------------------------------------------------------------

Result<AttachRegistry> AttachRegistry::ForCurrentUser() {
  constexpr std::string_view kRemedy =
      "set VIRTDISK_RUNTIME_DIR, or XDG_RUNTIME_DIR, to a directory of your own";
  fs::path dir;
  auto policy = platform::DirectoryPolicy::kPrivate;
  if (const char* explicit_dir = std::getenv("VIRTDISK_RUNTIME_DIR"); explicit_dir && *explicit_dir) {
    dir = explicit_dir;
    policy = platform::DirectoryPolicy::kChosen;
  } else {
#ifdef _WIN32
    const char* local = std::getenv("LOCALAPPDATA");
    dir = (local && *local ? fs::path(local) : fs::temp_directory_path()) / "virtdisk";
#else
    std::error_code ec;
    const char* runtime = std::getenv("XDG_RUNTIME_DIR");
    if (runtime && *runtime && fs::is_directory(runtime, ec)) {
      dir = fs::path(runtime) / "virtdisk";
    } else {
      // A shared place where another user may have made the name first: kPrivate refuses
      // anything but this user's own 0700 directory.
      fs::path tmp = fs::temp_directory_path(ec);
      if (ec) tmp = "/tmp";
      dir = tmp / ("virtdisk-" + platform::CurrentUserId());
    }
#endif
  }
  VDISK_RETURN_IF_ERROR(platform::EnsureUserDirectory(dir, policy, kRemedy)
                            .WithContext("the attach registry"));
  return AttachRegistry(dir);
}

fs::path AttachRegistry::NewSocketPath(const std::string& stem) const {
  static std::atomic<unsigned> counter{0};
  return dir_ / (stem + "-" + std::to_string(ProcessId::Current().pid) + "-" +
                 std::to_string(counter.fetch_add(1)) + ".sock");
}

fs::path AttachRegistry::RecordPath(const fs::path& disk_path) const {
  return dir_ / RecordName(disk_path);
}

Status AttachRegistry::Add(const AttachmentRecord& record) const {
  const fs::path final_path = RecordPath(record.disk_path);
  // A live record for this disk wins; a stale one is replaced.
  if (auto existing = ReadText(final_path); existing.ok()) {
    if (auto parsed = ParseRecord(*existing); parsed.ok() && parsed->server.Alive()) {
      return Status(Code::kDiskAlreadyOwned,
                    record.disk_path.string() + ": already attached (" + parsed->uri +
                        ", process " + std::to_string(parsed->server.pid) + ")");
    }
  }
  const fs::path temp = dir_ / (RecordName(record.disk_path) + "." +
                                std::to_string(ProcessId::Current().pid) + ".tmp");
  std::error_code ec;
  fs::remove(temp, ec);  // left by a process of the same pid that died writing it
  VDISK_RETURN_IF_ERROR(platform::WritePrivateFile(temp, FormatRecord(record)));
  fs::rename(temp, final_path, ec);
  if (ec) {
    fs::remove(temp, ec);
    return FsError(ec, "publishing attach record", final_path);
  }
  return Status::Ok();
}

Status AttachRegistry::Remove(const fs::path& disk_path, const ProcessId& server) const {
  const fs::path path = RecordPath(disk_path);
  auto text = ReadText(path);
  if (!text.ok()) return Status::Ok();
  auto parsed = ParseRecord(*text);
  if (parsed.ok() && parsed->server.pid != server.pid) return Status::Ok();
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return FsError(ec, "removing attach record", path);
  return Status::Ok();
}

Result<std::vector<AttachmentRecord>> AttachRegistry::List() const {
  std::vector<AttachmentRecord> records;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path path = it->path();
    if (path.extension() != kRecordExtension) continue;
    auto text = ReadText(path);
    if (!text.ok()) continue;  // removed meanwhile
    auto parsed = ParseRecord(*text);
    if (!parsed.ok()) {
      fs::remove(path, ec);
      ec.clear();
      continue;
    }
    if (!parsed->server.Alive()) {
      RemoveStale(path, *parsed);
      continue;
    }
    records.push_back(std::move(*parsed));
  }
  if (ec) return FsError(ec, "listing the attach registry", dir_);
  std::sort(records.begin(), records.end(),
            [](const AttachmentRecord& a, const AttachmentRecord& b) { return a.disk_path < b.disk_path; });
  return records;
}

Result<std::optional<AttachmentRecord>> AttachRegistry::Find(const fs::path& disk_path) const {
  const fs::path path = RecordPath(disk_path);
  auto text = ReadText(path);
  if (!text.ok()) return std::optional<AttachmentRecord>();
  auto parsed = ParseRecord(*text);
  if (!parsed.ok() || parsed->disk_path != disk_path) return std::optional<AttachmentRecord>();
  if (!parsed->server.Alive()) {
    RemoveStale(path, *parsed);
    return std::optional<AttachmentRecord>();
  }
  return std::optional<AttachmentRecord>(std::move(*parsed));
}

}  // namespace vdisk::attach
