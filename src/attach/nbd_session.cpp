// One NBD client connection (nbd_session.h): the fixed-newstyle handshake with its options, then
// the transmission phase's requests and structured replies (the NBD protocol document,
// github.com/NetworkBlockDevice/nbd doc/proto.md).
#include "attach/nbd_session.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <gsl/gsl>

#include "attach/nbd_protocol.h"

namespace vdisk::attach {
namespace {

// Data moves through a connection in pieces of at most this size, each starting on a multiple
// of it, so a connection's buffer never exceeds it whatever length a client names.
constexpr std::uint64_t kIoChunk = 1u << 20;
// The longest option (its data) read into memory. Everything this server understands is far
// smaller (strings are at most 4096 bytes); anything longer is refused and the client dropped.
constexpr std::uint32_t kMaxOptionLength = 64u << 10;
// The id of base:allocation in NBD_REP_META_CONTEXT and block status chunks.
constexpr std::uint32_t kBaseAllocationId = 1;
// At most this many descriptors in one NBD_REPLY_TYPE_BLOCK_STATUS chunk; a client asks again
// from where the answer ended.
constexpr std::size_t kMaxReplyExtents = 1u << 16;

std::uint32_t NbdErrorOf(const Status& status) {
  switch (status.code()) {
    case Code::kWriteProtect:
    case Code::kAccessDenied:
      return nbd::kEperm;
    case Code::kDiskFull:
      return nbd::kEnospc;
    case Code::kInvalidParameter:
      return nbd::kEinval;
    case Code::kNotEnoughMemory:
      return nbd::kEnomem;
    default:
      return nbd::kEio;
  }
}


std::string_view Truncated(std::string_view s) { return s.substr(0, nbd::kMaxStringLength); }

// One client connection, from the greeting to the disconnect. Runs on the connection's thread;
// it sends and receives on its socket alone (Stop only shuts the socket down).
class Session {
 public:
  // `tls`: the server's TLS credentials when TLS is required, else null. `establish` is called
  // when the client is about to enter the transmission phase; false refuses it (too many
  // clients: NBD_OPT_GO is answered NBD_REP_ERR_POLICY, NBD_OPT_EXPORT_NAME disconnects).
  Session(platform::Socket& socket, ExportTarget& target, const NbdServerOptions& options,
          const TlsPskServer* tls, const std::atomic<bool>& stopping,
          std::function<bool()> establish)
      : socket_(socket),
        plain_(socket),
        target_(target),
        options_(options),
        tls_(tls),
        stopping_(stopping),
        establish_(std::move(establish)),
        read_only_(options.read_only || target.read_only()) {}

  void Run() {
    if (Handshake()) Transmission();
  }

 private:
  enum class Next { kContinue, kTransmission, kClose };

  // --- handshake ("Fixed newstyle negotiation") ------------------------------------------------

  // True when the client entered the transmission phase.
  bool Handshake() {
    out_.clear();
    nbd::WireWriter(out_)
        .U64(nbd::kInitPasswd)
        .U64(nbd::kOptionMagic)
        .U16(nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);
    if (!io_->SendAll(out_).ok()) return false;
    std::array<std::byte, 4> client_flags;
    if (!io_->ReceiveAll(client_flags).ok()) return false;
    const auto flags = static_cast<std::uint32_t>(nbd::LoadBe(client_flags.data(), 4));
    // "the server MUST drop the TCP connection if the client sets an unknown flag".
    if ((flags & ~nbd::kKnownClientFlags) != 0) return false;
    no_zeroes_ = (flags & nbd::kClientFlagNoZeroes) != 0;

    for (;;) {
      std::array<std::byte, nbd::kOptionHeaderSize> header;
      if (!io_->ReceiveAll(header).ok()) return false;
      nbd::WireReader r(header);
      const std::uint64_t magic = r.U64();
      const std::uint32_t option = r.U32();
      const std::uint32_t length = r.U32();
      if (magic != nbd::kOptionMagic) return false;  // the framing is lost
      if (length > kMaxOptionLength) {
        // Not worth reading: answer and hang up ("a server ... MAY initiate a hard disconnect"
        // for what it considers a denial of service).
        (void)SendOptionError(option, nbd::kRepErrTooBig,
                              "option data of " + std::to_string(length) + " bytes is too long");
        return false;
      }
      std::vector<std::byte> data(length);
      if (!io_->ReceiveAll(data).ok()) return false;
      Next next;
      if (tls_ != nullptr && tls_stream_ == nullptr && option != nbd::kOptAbort) {
        next = BeforeTls(option, data);
      } else if (stopping_.load(std::memory_order_acquire) && option != nbd::kOptAbort) {
        next = SendOptionError(option, nbd::kRepErrShutdown, "the server is shutting down").ok()
                   ? Next::kContinue
                   : Next::kClose;
      } else {
        next = HandleOption(option, data);
      }
      if (next == Next::kClose) return false;
      if (next == Next::kTransmission) return true;
    }
  }

  // "TLS required" mode before the TLS handshake (the NBD protocol document, "Server-side
  // requirements"): NBD_OPT_STARTTLS starts it; any other option is refused with
  // NBD_REP_ERR_TLS_REQD, and NBD_OPT_EXPORT_NAME, which cannot be refused, ends the connection.
  Next BeforeTls(std::uint32_t option, std::span<const std::byte> data) {
    auto reply = [](const Status& sent) { return sent.ok() ? Next::kContinue : Next::kClose; };
    if (option == nbd::kOptExportName) return Next::kClose;
    if (option != nbd::kOptStartTls) {
      return reply(SendOptionError(option, nbd::kRepErrTlsReqd,
                                   "this server requires TLS: negotiate NBD_OPT_STARTTLS first"));
    }
    if (!data.empty()) {
      return reply(SendOptionError(option, nbd::kRepErrInvalid, "NBD_OPT_STARTTLS takes no data"));
    }
    if (!SendOptionReply(option, nbd::kRepAck, {}).ok()) return Next::kClose;
    auto stream = tls_->Handshake(socket_);
    if (!stream.ok()) return Next::kClose;  // not the key's holder, or a broken handshake
    tls_stream_ = std::move(stream).value();
    io_ = tls_stream_.get();
    return Next::kContinue;
  }

  Next HandleOption(std::uint32_t option, std::span<const std::byte> data) {
    auto reply = [](const Status& sent) { return sent.ok() ? Next::kContinue : Next::kClose; };
    switch (option) {
      case nbd::kOptExportName: {
        const std::string name(reinterpret_cast<const char*>(data.data()), data.size());
        // No way to answer an error here: "the server MUST terminate the session".
        if (!ExportNameMatches(name) || !establish_()) return Next::kClose;
        out_.clear();
        nbd::WireWriter w(out_);
        w.U64(target_.size()).U16(TransmissionFlags());
        if (!no_zeroes_) w.Zeroes(nbd::kExportNameReplyZeroes);
        return io_->SendAll(out_).ok() ? Next::kTransmission : Next::kClose;
      }
      case nbd::kOptAbort:
        (void)SendOptionReply(option, nbd::kRepAck, {});
        return Next::kClose;
      case nbd::kOptList: {
        if (!data.empty()) {
          return reply(SendOptionError(option, nbd::kRepErrInvalid, "NBD_OPT_LIST takes no data"));
        }
        // A hidden export is not listed: its name is what a client must know.
        if (options_.hidden_name) return reply(SendOptionReply(option, nbd::kRepAck, {}));
        std::vector<std::byte> server;
        nbd::WireWriter(server)
            .U32(gsl::narrow<std::uint32_t>(options_.export_name.size()))
            .String(options_.export_name);
        if (!SendOptionReply(option, nbd::kRepServer, server).ok()) return Next::kClose;
        return reply(SendOptionReply(option, nbd::kRepAck, {}));
      }
      case nbd::kOptInfo:
      case nbd::kOptGo:
        return HandleInfoOrGo(option, data);
      case nbd::kOptStructuredReply:
        if (!data.empty()) {
          return reply(SendOptionError(option, nbd::kRepErrInvalid,
                                       "NBD_OPT_STRUCTURED_REPLY takes no data"));
        }
        structured_ = true;
        return reply(SendOptionReply(option, nbd::kRepAck, {}));
      case nbd::kOptListMetaContext:
      case nbd::kOptSetMetaContext:
        return HandleMetaContext(option, data);
      case nbd::kOptStartTls:
        if (tls_ != nullptr) {
          return reply(SendOptionError(option, nbd::kRepErrInvalid, "TLS is already negotiated"));
        }
        return reply(SendOptionError(option, nbd::kRepErrUnsup, "this export does not offer TLS"));
      default:
        return reply(SendOptionError(option, nbd::kRepErrUnsup,
                                     "option " + std::to_string(option) + " is not supported"));
    }
  }

  Next HandleInfoOrGo(std::uint32_t option, std::span<const std::byte> data) {
    auto reply = [](const Status& sent) { return sent.ok() ? Next::kContinue : Next::kClose; };
    nbd::WireReader r(data);
    const std::uint32_t name_length = r.U32();
    const std::string name = r.String(name_length);
    const std::uint16_t count = r.U16();
    std::vector<std::uint16_t> requests;
    for (std::uint16_t i = 0; i < count && !r.failed(); ++i) requests.push_back(r.U16());
    if (r.failed() || r.remaining() != 0) {
      return reply(
          SendOptionError(option, nbd::kRepErrInvalid, "malformed NBD_OPT_INFO/NBD_OPT_GO data"));
    }
    if (!ExportNameMatches(name)) {
      return reply(SendOptionError(option, nbd::kRepErrUnknown,
                                   "no export named '" + std::string(Truncated(name)) + "'"));
    }
    if (option == nbd::kOptGo && !establish_()) {
      return reply(SendOptionError(option, nbd::kRepErrPolicy,
                                   "the export serves its maximum number of clients already"));
    }
    auto requested = [&](std::uint16_t info) {
      return std::find(requests.begin(), requests.end(), info) != requests.end();
    };
    std::vector<std::byte> info;
    nbd::WireWriter(info).U16(nbd::kInfoExport).U64(target_.size()).U16(TransmissionFlags());
    if (!SendOptionReply(option, nbd::kRepInfo, info).ok()) return Next::kClose;
    if (requested(nbd::kInfoName)) {
      info.clear();
      nbd::WireWriter(info).U16(nbd::kInfoName).String(options_.export_name);
      if (!SendOptionReply(option, nbd::kRepInfo, info).ok()) return Next::kClose;
    }
    if (requested(nbd::kInfoDescription) && !options_.description.empty()) {
      info.clear();
      nbd::WireWriter(info).U16(nbd::kInfoDescription).String(options_.description);
      if (!SendOptionReply(option, nbd::kRepInfo, info).ok()) return Next::kClose;
    }
    // Sent whether asked or not (a client ignores what it did not ask for): requests that
    // honour it never need a read-modify-write.
    const BlockSizeConstraints sizes = BlockSizes();
    info.clear();
    nbd::WireWriter(info)
        .U16(nbd::kInfoBlockSize)
        .U32(sizes.minimum)
        .U32(sizes.preferred)
        .U32(sizes.maximum);
    if (!SendOptionReply(option, nbd::kRepInfo, info).ok()) return Next::kClose;
    if (!SendOptionReply(option, nbd::kRepAck, {}).ok()) return Next::kClose;
    return option == nbd::kOptGo ? Next::kTransmission : Next::kContinue;
  }

  Next HandleMetaContext(std::uint32_t option, std::span<const std::byte> data) {
    auto reply = [](const Status& sent) { return sent.ok() ? Next::kContinue : Next::kClose; };
    const bool set = option == nbd::kOptSetMetaContext;
    // "Issuing this command replaces all previously-set metadata contexts (including when this
    // command fails)".
    if (set) meta_context_ = false;
    if (!structured_) {
      return reply(
          SendOptionError(option, nbd::kRepErrInvalid, "negotiate NBD_OPT_STRUCTURED_REPLY first"));
    }
    nbd::WireReader r(data);
    const std::string name = r.String(r.U32());
    const std::uint32_t count = r.U32();
    bool wants_allocation = false;
    for (std::uint32_t i = 0; i < count && !r.failed(); ++i) {
      const std::string query = r.String(r.U32());
      // "base:" lists every base context but selects nothing; unknown contexts are ignored.
      if (query == nbd::kBaseAllocation || (!set && query == "base:")) wants_allocation = true;
    }
    if (r.failed() || r.remaining() != 0) {
      return reply(SendOptionError(option, nbd::kRepErrInvalid, "malformed meta context data"));
    }
    if (!ExportNameMatches(name)) {
      return reply(SendOptionError(option, nbd::kRepErrUnknown,
                                   "no export named '" + std::string(Truncated(name)) + "'"));
    }
    if (!set && count == 0) wants_allocation = true;  // no query: list everything
    if (wants_allocation) {
      std::vector<std::byte> context;
      // The id of a listed context "SHOULD be set to zero".
      nbd::WireWriter(context).U32(set ? kBaseAllocationId : 0).String(nbd::kBaseAllocation);
      if (!SendOptionReply(option, nbd::kRepMetaContext, context).ok()) return Next::kClose;
      if (set) meta_context_ = true;
    }
    return reply(SendOptionReply(option, nbd::kRepAck, {}));
  }

  Status SendOptionReply(std::uint32_t option, std::uint32_t type,
                         std::span<const std::byte> data) {
    out_.clear();
    nbd::WireWriter(out_)
        .U64(nbd::kOptionReplyMagic)
        .U32(option)
        .U32(type)
        .U32(gsl::narrow<std::uint32_t>(data.size()))
        .Bytes(data);
    return io_->SendAll(out_);
  }

  Status SendOptionError(std::uint32_t option, std::uint32_t type, std::string_view message) {
    const std::string_view text = Truncated(message);
    return SendOptionReply(option, type,
                           std::as_bytes(std::span<const char>(text.data(), text.size())));
  }

  bool ExportNameMatches(std::string_view name) const {
    if (options_.hidden_name) return SameName(name, options_.export_name);
    return name.empty() || name == options_.export_name;
  }

  // Compares without stopping at the first difference, so that timing tells nothing of a
  // hidden name.
  static bool SameName(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char difference = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      difference |= static_cast<unsigned char>(a[i] ^ b[i]);
    }
    return difference == 0;
  }

  std::uint16_t TransmissionFlags() const {
    std::uint16_t flags = nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagSendFua |
                          nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes | nbd::kFlagCanMultiConn |
                          nbd::kFlagSendCache;
    if (read_only_) flags |= nbd::kFlagReadOnly;
    return flags;
  }

  BlockSizeConstraints BlockSizes() const {
    BlockSizeConstraints sizes = target_.block_size();
    sizes.maximum = std::min(sizes.maximum, nbd::kMaxRequestLength);
    sizes.maximum -= sizes.maximum % std::max<std::uint32_t>(sizes.minimum, 1);
    return sizes;
  }

  // --- transmission ------------------------------------------------------------------------------

  void Transmission() {
    for (;;) {
      std::array<std::byte, nbd::kRequestSize> header;
      if (!io_->ReceiveAll(header).ok()) return;
      const nbd::Request request = nbd::Request::Decode(header);
      if (request.magic != nbd::kRequestMagic) return;  // the framing is lost
      // "The server MUST handle all outstanding requests": they are all answered already.
      if (request.type == nbd::kCmdDisc) return;
      if (!Handle(request)) return;
    }
  }

  // Serves one request; false when the connection must end.
  bool Handle(const nbd::Request& q) {
    constexpr std::uint16_t kFua = nbd::kCmdFlagFua;
    switch (q.type) {
      case nbd::kCmdRead:
        return HandleRead(q);
      case nbd::kCmdWrite:
        return HandleWrite(q);
      case nbd::kCmdFlush:
        if (const auto e = Refusal(q, kFua, false, 0)) return SendError(q, e->first, e->second);
        return SendStatus(q, target_.Flush());
      case nbd::kCmdTrim: {
        if (const auto e = Refusal(q, kFua, true, nbd::kEinval)) {
          return SendError(q, e->first, e->second);
        }
        Status status = target_.Trim(q.offset, q.length);
        if (status.ok() && (q.flags & kFua) != 0) status = target_.Flush();
        return SendStatus(q, status);
      }
      case nbd::kCmdCache:
        if (const auto e = Refusal(q, kFua, false, nbd::kEinval)) {
          return SendError(q, e->first, e->second);
        }
        return SendStatus(q, Status::Ok());
      case nbd::kCmdWriteZeroes: {
        if (const auto e = Refusal(q, kFua | nbd::kCmdFlagNoHole, true, nbd::kEnospc)) {
          return SendError(q, e->first, e->second);
        }
        Status status =
            target_.WriteZeroes(q.offset, q.length, (q.flags & nbd::kCmdFlagNoHole) != 0);
        if (status.ok() && (q.flags & kFua) != 0) status = target_.Flush();
        return SendStatus(q, status);
      }
      case nbd::kCmdBlockStatus:
        return HandleBlockStatus(q);
      default:
        // "The server SHOULD return NBD_EINVAL if it receives an unknown command."
        return SendError(q, nbd::kEinval, "unknown command " + std::to_string(q.type));
    }
  }

  using Refused = std::optional<std::pair<std::uint32_t, std::string>>;

  // Why `q` cannot be served, checked in this order: shutting down, a flag not valid for the
  // command, a length over `max_length` (0: no limit), a write to a read-only export, a range
  // outside the export (answered with `range_error`: "Error values" asks ENOSPC for writes and
  // write-zeroes, EINVAL for reads, trims and block status; 0 for commands without a range).
  Refused Refusal(const nbd::Request& q, std::uint16_t allowed_flags, bool writes,
                  std::uint32_t range_error, std::uint32_t max_length = 0) const {
    if (stopping_.load(std::memory_order_acquire)) {
      return std::pair{nbd::kEshutdown, std::string("the server is shutting down")};
    }
    if ((q.flags & ~allowed_flags) != 0) {
      return std::pair{nbd::kEinval, "command flags " + std::to_string(q.flags) +
                                         " are not valid for command " + std::to_string(q.type)};
    }
    if (max_length != 0 && q.length > max_length) {
      return std::pair{nbd::kEinval, "a request of " + std::to_string(q.length) +
                                         " bytes is longer than the " + std::to_string(max_length) +
                                         "-byte limit"};
    }
    if (writes && read_only_) {
      return std::pair{nbd::kEperm, std::string("the export is read-only")};
    }
    if (range_error != 0 && (q.offset > target_.size() || q.length > target_.size() - q.offset)) {
      return std::pair{range_error, std::to_string(q.length) + " bytes at " +
                                        std::to_string(q.offset) + " end past the " +
                                        std::to_string(target_.size()) + "-byte export"};
    }
    return std::nullopt;
  }

  // The next piece of [pos, end): up to the next multiple of kIoChunk.
  static std::size_t ChunkAt(std::uint64_t pos, std::uint64_t end) {
    return static_cast<std::size_t>(std::min(end, (pos / kIoChunk + 1) * kIoChunk) - pos);
  }

  bool HandleRead(const nbd::Request& q) {
    const Refused refused =
        Refusal(q, nbd::kCmdFlagFua, false, nbd::kEinval, nbd::kMaxRequestLength);
    if (refused) return SendError(q, refused->first, refused->second);
    const std::uint64_t end = q.offset + q.length;
    if (q.length == 0) {
      return structured_ ? SendChunk(q.cookie, nbd::kReplyFlagDone, nbd::kReplyTypeNone, {})
                         : SendSimple(q.cookie, 0);
    }
    if (structured_) {
      // One NBD_REPLY_TYPE_OFFSET_DATA chunk per piece; the last one carries DONE, since it is
      // sent only once its data has been read.
      for (std::uint64_t pos = q.offset; pos < end;) {
        const std::size_t n = ChunkAt(pos, end);
        constexpr std::size_t kHead = nbd::kStructuredReplySize + 8;
        buffer_.resize(kHead + n);
        const Status status = target_.Read(pos, std::span(buffer_).subspan(kHead, n));
        if (!status.ok()) return SendErrorAt(q, pos, status);
        const bool last = pos + n == end;
        WriteChunkHeader(buffer_.data(), q.cookie, last ? nbd::kReplyFlagDone : 0,
                         nbd::kReplyTypeOffsetData, gsl::narrow<std::uint32_t>(8 + n));
        nbd::StoreBe(buffer_.data() + nbd::kStructuredReplySize, pos, 8);
        if (!io_->SendAll(buffer_).ok()) return false;
        pos += n;
      }
      return true;
    }
    // Simple reply: the header goes out with the first piece, so a failure to read that one is
    // still an orderly error; a later failure can only end the connection ("Simple replies").
    for (std::uint64_t pos = q.offset; pos < end;) {
      const std::size_t n = ChunkAt(pos, end);
      const std::size_t head = pos == q.offset ? nbd::kSimpleReplySize : 0;
      buffer_.resize(head + n);
      const Status status = target_.Read(pos, std::span(buffer_).subspan(head, n));
      if (!status.ok()) {
        if (head == 0) return false;
        return SendSimple(q.cookie, NbdErrorOf(status));
      }
      if (head != 0) WriteSimpleHeader(buffer_.data(), q.cookie, 0);
      if (!io_->SendAll(buffer_).ok()) return false;
      pos += n;
    }
    return true;
  }

  bool HandleWrite(const nbd::Request& q) {
    const Refused refused =
        Refusal(q, nbd::kCmdFlagFua, true, nbd::kEnospc, nbd::kMaxRequestLength);
    // The payload is always read, piece by piece, to keep the stream in step; it reaches the
    // target only if the request is acceptable, and stops reaching it at the first failure.
    Status status;
    const std::uint64_t end = q.offset + q.length;
    for (std::uint64_t pos = q.offset, done = 0; done < q.length;) {
      const std::size_t n =
          refused ? static_cast<std::size_t>(std::min<std::uint64_t>(kIoChunk, q.length - done))
                  : ChunkAt(pos, end);
      buffer_.resize(n);
      if (!io_->ReceiveAll(buffer_).ok()) return false;
      if (!refused && status.ok()) status = target_.Write(pos, buffer_);
      pos += n;
      done += n;
    }
    if (refused) return SendError(q, refused->first, refused->second);
    if (status.ok() && (q.flags & nbd::kCmdFlagFua) != 0) status = target_.Flush();
    return SendStatus(q, status);
  }

  bool HandleBlockStatus(const nbd::Request& q) {
    if (!structured_ || !meta_context_) {
      // "Servers SHOULD reply with NBD_EINVAL to clients sending NBD_CMD_BLOCK_STATUS without
      // selecting at least one metadata context."
      return SendError(q, nbd::kEinval, "no metadata context was negotiated");
    }
    if (const auto e = Refusal(q, nbd::kCmdFlagFua | nbd::kCmdFlagReqOne, false, nbd::kEinval)) {
      return SendError(q, e->first, e->second);
    }
    if (q.length == 0) return SendError(q, nbd::kEinval, "block status of 0 bytes");
    auto extents = target_.BlockStatus(q.offset, q.length);
    if (!extents.ok())
      return SendError(q, NbdErrorOf(extents.status()), extents.status().message());
    if (extents->empty()) return SendError(q, nbd::kEio, "the target reported no extent");
    std::size_t count = std::min(extents->size(), kMaxReplyExtents);
    if ((q.flags & nbd::kCmdFlagReqOne) != 0) count = 1;
    out_.resize(nbd::kStructuredReplySize);
    WriteChunkHeader(out_.data(), q.cookie, nbd::kReplyFlagDone, nbd::kReplyTypeBlockStatus,
                     gsl::narrow<std::uint32_t>(4 + 8 * count));
    nbd::WireWriter w(out_);
    w.U32(kBaseAllocationId);
    std::uint64_t covered = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const AllocationExtent& e = (*extents)[i];
      // A target never reports past the request, so every length fits the 32-bit field.
      const std::uint64_t length = std::min<std::uint64_t>(e.length, q.length - covered);
      if (length == 0) return SendError(q, nbd::kEio, "the target reported an empty extent");
      w.U32(static_cast<std::uint32_t>(length))
          .U32((e.hole ? nbd::kStateHole : 0) | (e.zero ? nbd::kStateZero : 0));
      covered += length;
    }
    return io_->SendAll(out_).ok();
  }

  // --- replies ----------------------------------------------------------------------------------

  static void WriteSimpleHeader(std::byte* out, std::uint64_t cookie, std::uint32_t error) {
    nbd::StoreBe(out, nbd::kSimpleReplyMagic, 4);
    nbd::StoreBe(out + 4, error, 4);
    nbd::StoreBe(out + 8, cookie, 8);
  }

  static void WriteChunkHeader(std::byte* out, std::uint64_t cookie, std::uint16_t flags,
                               std::uint16_t type, std::uint32_t length) {
    nbd::StoreBe(out, nbd::kStructuredReplyMagic, 4);
    nbd::StoreBe(out + 4, flags, 2);
    nbd::StoreBe(out + 6, type, 2);
    nbd::StoreBe(out + 8, cookie, 8);
    nbd::StoreBe(out + 16, length, 4);
  }

  bool SendSimple(std::uint64_t cookie, std::uint32_t error) {
    std::array<std::byte, nbd::kSimpleReplySize> reply;
    WriteSimpleHeader(reply.data(), cookie, error);
    return io_->SendAll(reply).ok();
  }

  bool SendChunk(std::uint64_t cookie, std::uint16_t flags, std::uint16_t type,
                 std::span<const std::byte> payload) {
    out_.resize(nbd::kStructuredReplySize);
    WriteChunkHeader(out_.data(), cookie, flags, type, gsl::narrow<std::uint32_t>(payload.size()));
    out_.insert(out_.end(), payload.begin(), payload.end());
    return io_->SendAll(out_).ok();
  }

  // An error as the whole reply: a structured NBD_REPLY_TYPE_ERROR chunk with a message once
  // structured replies are negotiated ("The server SHOULD prefer sending errors via a
  // structured reply"), a simple reply otherwise.
  bool SendError(const nbd::Request& q, std::uint32_t error, std::string_view message) {
    if (!structured_) return SendSimple(q.cookie, error);
    const std::string_view text = Truncated(message);
    std::vector<std::byte> payload;
    nbd::WireWriter(payload).U32(error).U16(static_cast<std::uint16_t>(text.size())).String(text);
    return SendChunk(q.cookie, nbd::kReplyFlagDone, nbd::kReplyTypeError, payload);
  }

  // A read that failed at `offset` (NBD_REPLY_TYPE_ERROR_OFFSET, which ends the reply).
  bool SendErrorAt(const nbd::Request& q, std::uint64_t offset, const Status& status) {
    const std::string_view text = Truncated(status.message());
    std::vector<std::byte> payload;
    nbd::WireWriter(payload)
        .U32(NbdErrorOf(status))
        .U16(static_cast<std::uint16_t>(text.size()))
        .String(text)
        .U64(offset);
    return SendChunk(q.cookie, nbd::kReplyFlagDone, nbd::kReplyTypeErrorOffset, payload);
  }

  bool SendStatus(const nbd::Request& q, const Status& status) {
    if (status.ok()) return SendSimple(q.cookie, 0);
    return SendError(q, NbdErrorOf(status), status.message());
  }

  platform::Socket& socket_;
  SocketStream plain_;
  std::unique_ptr<ByteStream> tls_stream_;  // once NBD_OPT_STARTTLS has succeeded
  ByteStream* io_ = &plain_;                // what the protocol talks through
  ExportTarget& target_;
  const NbdServerOptions& options_;
  const TlsPskServer* const tls_;
  const std::atomic<bool>& stopping_;
  const std::function<bool()> establish_;
  const bool read_only_;
  bool no_zeroes_ = false;
  bool structured_ = false;
  bool meta_context_ = false;      // base:allocation selected
  std::vector<std::byte> buffer_;  // data of one piece, with room for its reply header
  std::vector<std::byte> out_;     // a reply being assembled
};

}  // namespace

void RunNbdSession(platform::Socket& socket, ExportTarget& target, const NbdServerOptions& options,
                   const TlsPskServer* tls, const std::atomic<bool>& stopping,
                   std::function<bool()> establish) {
  Session(socket, target, options, tls, stopping, std::move(establish)).Run();
}

}  // namespace vdisk::attach
