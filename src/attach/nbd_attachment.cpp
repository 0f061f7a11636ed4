#include "attach/nbd_attachment.h"

#include <cctype>
#include <system_error>

#include <gsl/gsl>

#include "platform/user_files.h"
#include "platform/random.h"

namespace vdisk::attach {
namespace {

// 256 bits: the TLS key, or the export name that stands for it.
constexpr std::size_t kSecretBytes = 32;
// The PSK identity, named in the URI (nbds://virtdisk@...), and the key file's name: qemu's
// tls-creds-psk object reads <dir>/keys.psk, libnbd any file (tls-psk-file).
constexpr const char* kPskUsername = "virtdisk";
constexpr const char* kPskFileName = "keys.psk";

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
  std::filesystem::path secret_dir;
  // Removes the key's directory again if the attachment does not come to be.
  auto remove_secret = gsl::finally([&secret_dir] {
    std::error_code ec;
    if (!secret_dir.empty()) std::filesystem::remove_all(secret_dir, ec);
  });
  if (options.tcp) {
    server_options.transport = NbdServerOptions::Transport::kTcp;
    server_options.host = "127.0.0.1";
    // Every local user reaches a loopback port, so unless the security descriptor admits them
    // all, the export admits only holders of a secret kept in the owner's attach directory
    // (docs/attach-security.md): a TLS pre-shared key where the build has TLS, an unguessable
    // export name otherwise (Windows).
    if (!options.grants_others) {
      VDISK_ASSIGN_OR_RETURN(const std::string secret, platform::RandomHex(kSecretBytes));
      if (TlsSupported()) {
        // Named apart from the key: the URI, which names the directory, may go on command lines.
        VDISK_ASSIGN_OR_RETURN(const std::string tag, platform::RandomHex(4));
        secret_dir = registry.dir() / (SocketStem(disk_path) + "-" +
                                       std::to_string(ProcessId::Current().pid) + "-" + tag +
                                       ".tls");
        const TlsPsk psk{kPskUsername, secret};
        const std::filesystem::path key_file = secret_dir / kPskFileName;
        if (Status made = platform::CreatePrivateDirectory(secret_dir); !made.ok()) {
          secret_dir.clear();  // not ours to remove
          return made.WithContext("creating the directory of the export's TLS key");
        }
        VDISK_RETURN_IF_ERROR(platform::WritePrivateFile(key_file, PskFileLine(psk)));
        server_options.tls_psk = psk;
        server_options.tls_psk_file = key_file;
      } else {
        server_options.export_name = secret;
        server_options.hidden_name = true;
      }
    }
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
  record.secret_path = secret_dir;
  record.server = ProcessId::Current();
  record.permanent = options.permanent;
  record.read_only = options.read_only;
  // Made before the record is added, so that nothing can fail between the two: the record
  // must never outlive a failed start.
  auto attachment = std::make_unique<NbdAttachment>(Passkey(), std::move(server), registry,
                                                    disk_path, secret_dir);
  secret_dir.clear();  // the attachment's now
  if (Status added = registry.Add(record); !added.ok()) {
    attachment->unregistered_ = true;  // not registered: nothing of another's to remove
    return added;
  }
  return attachment;
}

NbdAttachment::NbdAttachment(Passkey, std::unique_ptr<NbdServer> server, AttachRegistry registry,
                             std::filesystem::path disk_path, std::filesystem::path secret_dir)
    : server_(std::move(server)),
      uri_(server_->uri()),
      registry_(std::move(registry)),
      disk_path_(std::move(disk_path)),
      secret_dir_(std::move(secret_dir)) {}

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
  if (!secret_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(secret_dir_, ec);
  }
  return status;
}

Status NbdAttachment::Unregister() {
  if (unregistered_) return Status::Ok();
  unregistered_ = true;
  return registry_.Remove(disk_path_, ProcessId::Current());
}

}  // namespace vdisk::attach
