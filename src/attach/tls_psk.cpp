#include "attach/tls_psk.h"

#include <cstring>
#include <vector>

#ifdef VIRTDISK_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#endif

namespace vdisk::attach {

std::string PskFileLine(const TlsPsk& psk) { return psk.username + ":" + psk.hex_key + "\n"; }

namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::vector<unsigned char>> DecodeHex(const std::string& hex) {
  if (hex.empty() || hex.size() % 2 != 0) {
    return Status(Code::kInvalidParameter, "a TLS pre-shared key must be an even number of hex digits");
  }
  std::vector<unsigned char> out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int high = HexDigit(hex[2 * i]);
    const int low = HexDigit(hex[2 * i + 1]);
    if (high < 0 || low < 0) {
      return Status(Code::kInvalidParameter, "a TLS pre-shared key must be hex digits only");
    }
    out[i] = static_cast<unsigned char>(high * 16 + low);
  }
  return out;
}

}  // namespace

#ifdef VIRTDISK_HAVE_GNUTLS

namespace {

// TLS 1.3 and 1.2 with the PSK key exchanges (ephemeral ones first), as libnbd and qemu offer
// them to a PSK server.
constexpr const char* kPriorities = "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK";

Status TlsError(int code, std::string_view what) {
  return Status(Code::kAccessDenied,
                std::string("TLS ") + std::string(what) + ": " + gnutls_strerror(code));
}

class GnutlsStream final : public ByteStream {
 public:
  explicit GnutlsStream(gnutls_session_t session) : session_(session) {}
  ~GnutlsStream() override {
    // close_notify, without waiting for the peer's: the connection ends either way.
    (void)gnutls_bye(session_, GNUTLS_SHUT_WR);
    gnutls_deinit(session_);
  }
  GnutlsStream(const GnutlsStream&) = delete;
  GnutlsStream& operator=(const GnutlsStream&) = delete;

  Status SendAll(std::span<const std::byte> data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = gnutls_record_send(session_, data.data() + done, data.size() - done);
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
      if (n < 0) return TlsError(static_cast<int>(n), "send");
      done += static_cast<std::size_t>(n);
    }
    return Status::Ok();
  }

  Status ReceiveAll(std::span<std::byte> out) override {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = gnutls_record_recv(session_, out.data() + done, out.size() - done);
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
      if (n < 0) return TlsError(static_cast<int>(n), "receive");
      if (n == 0) {
        return Status(Code::kIoError, "TLS: connection closed by the peer after " +
                                          std::to_string(done) + " of " +
                                          std::to_string(out.size()) + " bytes");
      }
      done += static_cast<std::size_t>(n);
    }
    return Status::Ok();
  }

 private:
  gnutls_session_t session_;
};

class GnutlsPskServer final : public TlsPskServer {
 public:
  GnutlsPskServer(std::string username, std::vector<unsigned char> key,
                  gnutls_psk_server_credentials_t credentials)
      : username_(std::move(username)), key_(std::move(key)), credentials_(credentials) {}
  ~GnutlsPskServer() override { gnutls_psk_free_server_credentials(credentials_); }
  GnutlsPskServer(const GnutlsPskServer&) = delete;
  GnutlsPskServer& operator=(const GnutlsPskServer&) = delete;

  Result<std::unique_ptr<ByteStream>> Handshake(platform::Socket& socket) const override {
    gnutls_session_t session = nullptr;
    if (const int rc = gnutls_init(&session, GNUTLS_SERVER); rc < 0) return TlsError(rc, "init");
    auto stream = std::make_unique<GnutlsStream>(session);  // owns the session from here
    const char* bad = nullptr;
    if (const int rc = gnutls_priority_set_direct(session, kPriorities, &bad); rc < 0) {
      return TlsError(rc, "priorities");
    }
    if (const int rc = gnutls_credentials_set(session, GNUTLS_CRD_PSK, credentials_); rc < 0) {
      return TlsError(rc, "credentials");
    }
    gnutls_session_set_ptr(session, const_cast<GnutlsPskServer*>(this));
    gnutls_transport_set_int(session, static_cast<int>(socket.native()));
    // The NBD server's own deadline (a watchdog that shuts the socket down) bounds the handshake.
    gnutls_handshake_set_timeout(session, 0);
    for (;;) {
      const int rc = gnutls_handshake(session);
      if (rc >= 0) break;
      if (gnutls_error_is_fatal(rc) != 0) return TlsError(rc, "handshake");
    }
    return std::unique_ptr<ByteStream>(std::move(stream));
  }

  // gnutls_psk_server_credentials_function: the key of `username`, or -1 for anyone else.
  static int KeyOf(gnutls_session_t session, const char* username, gnutls_datum_t* key) {
    const auto* self = static_cast<const GnutlsPskServer*>(gnutls_session_get_ptr(session));
    if (self == nullptr || username == nullptr || self->username_ != username) return -1;
    key->data = static_cast<unsigned char*>(gnutls_malloc(self->key_.size()));
    if (key->data == nullptr) return -1;
    std::memcpy(key->data, self->key_.data(), self->key_.size());
    key->size = static_cast<unsigned>(self->key_.size());
    return 0;
  }

 private:
  const std::string username_;
  const std::vector<unsigned char> key_;
  gnutls_psk_server_credentials_t credentials_;
};

}  // namespace

bool TlsSupported() { return true; }

Result<std::unique_ptr<TlsPskServer>> TlsPskServer::Create(const TlsPsk& psk) {
  if (psk.username.empty() || psk.username.find_first_of(":\n") != std::string::npos) {
    return Status(Code::kInvalidParameter, "a TLS PSK username must be non-empty, without ':'");
  }
  VDISK_ASSIGN_OR_RETURN(auto key, DecodeHex(psk.hex_key));
  gnutls_psk_server_credentials_t credentials = nullptr;
  if (const int rc = gnutls_psk_allocate_server_credentials(&credentials); rc < 0) {
    return Status(Code::kNotEnoughMemory,
                  std::string("TLS PSK credentials: ") + gnutls_strerror(rc));
  }
  gnutls_psk_set_server_credentials_function(credentials, &GnutlsPskServer::KeyOf);
  // DHE-PSK needs group parameters; the RFC 7919 ones GnuTLS knows.
  (void)gnutls_psk_set_server_known_dh_params(credentials, GNUTLS_SEC_PARAM_MEDIUM);
  return std::unique_ptr<TlsPskServer>(
      std::make_unique<GnutlsPskServer>(psk.username, std::move(key), credentials));
}

#else

bool TlsSupported() { return false; }

Result<std::unique_ptr<TlsPskServer>> TlsPskServer::Create(const TlsPsk& psk) {
  VDISK_ASSIGN_OR_RETURN(const auto key, DecodeHex(psk.hex_key));
  (void)key;
  return Status(Code::kNotSupported, "this build has no TLS (it was built without GnuTLS)");
}

#endif

}  // namespace vdisk::attach
