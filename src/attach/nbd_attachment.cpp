#include "attach/nbd_attachment.h"

#include <cctype>

namespace vdisk::attach {
namespace {

// A short, socket-path-safe name from the disk's file name (sun_path holds 108 bytes).
std::string SocketStem(const std::filesystem::path& disk_path) {
  std::string stem;
  for (const char c : disk_path.filename().string()) {
    if (stem.size() == 24) break;
    stem += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_') ? c : '_';
  }
  return stem.empty() ? "disk" : stem;
}

}  // namespace

Result<std::unique_ptr<NbdAttachment>> NbdAttachment::Start(const std::shared_ptr<OpenDisk>& disk,
                                                            AttachRegistry registry,
                                                            const NbdAttachOptions& options) {
  const std::filesystem::path disk_path = disk->key();
  VDISK_ASSIGN_OR_RETURN(const auto existing, registry.Find(disk_path));
  if (existing) {
    return Status(Code::kDiskAlreadyOwned, disk_path.string() + ": already attached by process " +
                                               std::to_string(existing->server.pid) + " (" +
                                               existing->uri + ")");
  }
  DiskExportOptions export_options;
  export_options.read_only = options.read_only;
  export_options.restricted_range = options.range;
  VDISK_ASSIGN_OR_RETURN(auto target, DiskExportTarget::Create(disk, export_options));
  NbdServerOptions server_options;
  server_options.export_name = disk_path.filename().string();
  server_options.description = disk_path.string();
  server_options.read_only = options.read_only;
  if (options.tcp) {
    server_options.transport = NbdServerOptions::Transport::kTcp;
    server_options.host = "127.0.0.1";
  } else {
    server_options.socket_path = registry.NewSocketPath(SocketStem(disk_path));
    server_options.socket_mode = options.grants_others ? 0666 : 0600;
  }
  VDISK_ASSIGN_OR_RETURN(
      auto server,
      NbdServer::Start(std::shared_ptr<ExportTarget>(std::move(target)), server_options));
  AttachmentRecord record;
  record.disk_path = disk_path;
  record.uri = server->uri();
  record.socket_path = server_options.socket_path;
  record.control_path = options.control_path;
  record.server = ProcessId::Current();
  record.permanent = options.permanent;
  record.read_only = options.read_only;
  if (Status added = registry.Add(record); !added.ok()) {
    (void)server->Stop();
    return added;
  }
  return std::make_unique<NbdAttachment>(Passkey(), std::move(server), std::move(registry),
                                         disk_path);
}

NbdAttachment::NbdAttachment(Passkey, std::unique_ptr<NbdServer> server, AttachRegistry registry,
                             std::filesystem::path disk_path)
    : server_(std::move(server)),
      uri_(server_->uri()),
      registry_(std::move(registry)),
      disk_path_(std::move(disk_path)) {}

NbdAttachment::~NbdAttachment() { (void)Stop(); }

Status NbdAttachment::Stop() {
  const Status served = StopServing();
  const Status unregistered = Unregister();
  return served.ok() ? unregistered : served;
}

Status NbdAttachment::StopServing() {
  if (!server_) return Status::Ok();
  const Status status = server_->Stop();
  server_.reset();
  return status;
}

Status NbdAttachment::Unregister() {
  if (unregistered_) return Status::Ok();
  unregistered_ = true;
  return registry_.Remove(disk_path_, ProcessId::Current());
}

}  // namespace vdisk::attach
