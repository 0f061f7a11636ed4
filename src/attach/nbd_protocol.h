// The NBD wire protocol: constants, message layouts and big-endian encoding.
//
// Everything here is from the NBD protocol specification, doc/proto.md of
// https://github.com/NetworkBlockDevice/nbd (section names quoted below). All numbers travel in
// network byte order. The server (nbd_server.cpp) and the unit tests' raw client both build and
// parse messages with WireWriter / WireReader, so both sides agree with one definition.
//
// Thread safety: constants and pure functions only; a WireWriter or WireReader belongs to one
// thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vdisk::attach::nbd {

// --- "Newstyle negotiation" / "Fixed newstyle negotiation" ------------------------------------
inline constexpr std::uint64_t kInitPasswd = 0x4e42444d41474943ull;   // "NBDMAGIC"
inline constexpr std::uint64_t kOptionMagic = 0x49484156454f5054ull;  // "IHAVEOPT"
inline constexpr std::uint64_t kOptionReplyMagic = 0x0003e889045565a9ull;

// "Handshake flags" (16 bits, server).
inline constexpr std::uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr std::uint16_t kFlagNoZeroes = 1u << 1;
// "Client flags" (32 bits). Any other bit: the server MUST drop the connection.
inline constexpr std::uint32_t kClientFlagFixedNewstyle = 1u << 0;
inline constexpr std::uint32_t kClientFlagNoZeroes = 1u << 1;
inline constexpr std::uint32_t kKnownClientFlags = kClientFlagFixedNewstyle | kClientFlagNoZeroes;

// "Transmission flags" (16 bits).
inline constexpr std::uint16_t kFlagHasFlags = 1u << 0;
inline constexpr std::uint16_t kFlagReadOnly = 1u << 1;
inline constexpr std::uint16_t kFlagSendFlush = 1u << 2;
inline constexpr std::uint16_t kFlagSendFua = 1u << 3;
inline constexpr std::uint16_t kFlagRotational = 1u << 4;
inline constexpr std::uint16_t kFlagSendTrim = 1u << 5;
inline constexpr std::uint16_t kFlagSendWriteZeroes = 1u << 6;
inline constexpr std::uint16_t kFlagSendDf = 1u << 7;
inline constexpr std::uint16_t kFlagCanMultiConn = 1u << 8;
inline constexpr std::uint16_t kFlagSendCache = 1u << 10;
inline constexpr std::uint16_t kFlagSendFastZero = 1u << 11;

// "Option types".
inline constexpr std::uint32_t kOptExportName = 1;
inline constexpr std::uint32_t kOptAbort = 2;
inline constexpr std::uint32_t kOptList = 3;
inline constexpr std::uint32_t kOptStartTls = 5;
inline constexpr std::uint32_t kOptInfo = 6;
inline constexpr std::uint32_t kOptGo = 7;
inline constexpr std::uint32_t kOptStructuredReply = 8;
inline constexpr std::uint32_t kOptListMetaContext = 9;
inline constexpr std::uint32_t kOptSetMetaContext = 10;
inline constexpr std::uint32_t kOptExtendedHeaders = 11;

// "Option reply types". Errors have bit 31 set.
inline constexpr std::uint32_t kRepAck = 1;
inline constexpr std::uint32_t kRepServer = 2;
inline constexpr std::uint32_t kRepInfo = 3;
inline constexpr std::uint32_t kRepMetaContext = 4;
inline constexpr std::uint32_t kRepErrorBit = 1u << 31;
inline constexpr std::uint32_t kRepErrUnsup = kRepErrorBit + 1;
inline constexpr std::uint32_t kRepErrPolicy = kRepErrorBit + 2;
inline constexpr std::uint32_t kRepErrInvalid = kRepErrorBit + 3;
inline constexpr std::uint32_t kRepErrPlatform = kRepErrorBit + 4;
inline constexpr std::uint32_t kRepErrTlsReqd = kRepErrorBit + 5;
inline constexpr std::uint32_t kRepErrUnknown = kRepErrorBit + 6;
inline constexpr std::uint32_t kRepErrShutdown = kRepErrorBit + 7;
inline constexpr std::uint32_t kRepErrBlockSizeReqd = kRepErrorBit + 8;
inline constexpr std::uint32_t kRepErrTooBig = kRepErrorBit + 9;

// NBD_REP_INFO information types ("NBD_OPT_INFO (6) and NBD_OPT_GO (7)").
inline constexpr std::uint16_t kInfoExport = 0;       // u64 size, u16 transmission flags
inline constexpr std::uint16_t kInfoName = 1;         // string
inline constexpr std::uint16_t kInfoDescription = 2;  // string
inline constexpr std::uint16_t kInfoBlockSize = 3;    // u32 minimum, preferred, maximum

// "Metadata querying": the one context the standard defines, and its flags.
inline constexpr std::string_view kBaseAllocation = "base:allocation";
inline constexpr std::uint32_t kStateHole = 1u << 0;
inline constexpr std::uint32_t kStateZero = 1u << 1;

// --- "Transmission" -----------------------------------------------------------------------------
inline constexpr std::uint32_t kRequestMagic = 0x25609513;
inline constexpr std::uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr std::uint32_t kStructuredReplyMagic = 0x668e33ef;

// "Request types".
inline constexpr std::uint16_t kCmdRead = 0;
inline constexpr std::uint16_t kCmdWrite = 1;
inline constexpr std::uint16_t kCmdDisc = 2;
inline constexpr std::uint16_t kCmdFlush = 3;
inline constexpr std::uint16_t kCmdTrim = 4;
inline constexpr std::uint16_t kCmdCache = 5;
inline constexpr std::uint16_t kCmdWriteZeroes = 6;
inline constexpr std::uint16_t kCmdBlockStatus = 7;

// "Command flags".
inline constexpr std::uint16_t kCmdFlagFua = 1u << 0;
inline constexpr std::uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr std::uint16_t kCmdFlagDf = 1u << 2;
inline constexpr std::uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr std::uint16_t kCmdFlagFastZero = 1u << 4;

// "Structured reply flags" and "Structured reply types".
inline constexpr std::uint16_t kReplyFlagDone = 1u << 0;
inline constexpr std::uint16_t kReplyTypeNone = 0;
inline constexpr std::uint16_t kReplyTypeOffsetData = 1;
inline constexpr std::uint16_t kReplyTypeOffsetHole = 2;
inline constexpr std::uint16_t kReplyTypeBlockStatus = 5;
inline constexpr std::uint16_t kReplyTypeError = (1u << 15) + 1;
inline constexpr std::uint16_t kReplyTypeErrorOffset = (1u << 15) + 2;

// "Error values".
inline constexpr std::uint32_t kEperm = 1;
inline constexpr std::uint32_t kEio = 5;
inline constexpr std::uint32_t kEnomem = 12;
inline constexpr std::uint32_t kEinval = 22;
inline constexpr std::uint32_t kEnospc = 28;
inline constexpr std::uint32_t kEoverflow = 75;
inline constexpr std::uint32_t kEnotsup = 95;
inline constexpr std::uint32_t kEshutdown = 108;

// Message sizes.
inline constexpr std::size_t kServerGreetingSize = 18;     // magic, IHAVEOPT, handshake flags
inline constexpr std::size_t kOptionHeaderSize = 16;       // magic, option, length
inline constexpr std::size_t kOptionReplyHeaderSize = 20;  // magic, option, type, length
inline constexpr std::size_t kExportNameReplyZeroes = 124;
inline constexpr std::size_t kRequestSize = 28;      // magic, flags, type, cookie, offset, length
inline constexpr std::size_t kSimpleReplySize = 16;  // magic, error, cookie
inline constexpr std::size_t kStructuredReplySize = 20;  // magic, flags, type, cookie, length

// "Block size constraints": the largest request length a client may assume is not a denial of
// service (2^25), which is also the most this server accepts in one request.
inline constexpr std::uint32_t kMaxRequestLength = 32u << 20;
// "Conventions": strings SHOULD be at most 256 bytes and MUST be at most 4096.
inline constexpr std::size_t kMaxStringLength = 4096;

// --- big-endian encoding ------------------------------------------------------------------------

inline void StoreBe(std::byte* out, std::uint64_t value, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) {
    out[i] = static_cast<std::byte>(value >> (8 * (bytes - 1 - i)));
  }
}

inline std::uint64_t LoadBe(const std::byte* in, std::size_t bytes) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < bytes; ++i)
    value = (value << 8) | std::to_integer<std::uint64_t>(in[i]);
  return value;
}

// Appends big-endian fields to a byte vector.
class WireWriter {
 public:
  explicit WireWriter(std::vector<std::byte>& out) : out_(out) {}
  WireWriter& U16(std::uint16_t v) { return Put(v, 2); }
  WireWriter& U32(std::uint32_t v) { return Put(v, 4); }
  WireWriter& U64(std::uint64_t v) { return Put(v, 8); }
  WireWriter& Bytes(std::span<const std::byte> bytes) {
    out_.insert(out_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  WireWriter& String(std::string_view s) {
    return Bytes(std::as_bytes(std::span<const char>(s.data(), s.size())));
  }
  WireWriter& Zeroes(std::size_t n) {
    out_.insert(out_.end(), n, std::byte{0});
    return *this;
  }

 private:
  WireWriter& Put(std::uint64_t v, std::size_t bytes) {
    const std::size_t at = out_.size();
    out_.resize(at + bytes);
    StoreBe(out_.data() + at, v, bytes);
    return *this;
  }
  std::vector<std::byte>& out_;
};

// Reads big-endian fields from a byte span. Reading past the end sets failed() and yields zeros,
// so a parser reads a whole message and checks once.
class WireReader {
 public:
  explicit WireReader(std::span<const std::byte> in) : in_(in) {}
  std::uint16_t U16() { return static_cast<std::uint16_t>(Get(2)); }
  std::uint32_t U32() { return static_cast<std::uint32_t>(Get(4)); }
  std::uint64_t U64() { return Get(8); }
  // `n` bytes as a string; empty (and failed) if fewer remain.
  std::string String(std::size_t n) {
    if (n > remaining()) {
      failed_ = true;
      pos_ = in_.size();
      return {};
    }
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::size_t remaining() const { return in_.size() - pos_; }
  bool failed() const { return failed_; }

 private:
  std::uint64_t Get(std::size_t bytes) {
    if (bytes > remaining()) {
      failed_ = true;
      pos_ = in_.size();
      return 0;
    }
    const std::uint64_t v = LoadBe(in_.data() + pos_, bytes);
    pos_ += bytes;
    return v;
  }
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

// A transmission request ("Request message"), decoded.
struct Request {
  std::uint32_t magic = 0;
  std::uint16_t flags = 0;
  std::uint16_t type = 0;
  std::uint64_t cookie = 0;  // called "handle" in older texts of the spec
  std::uint64_t offset = 0;
  std::uint32_t length = 0;

  static Request Decode(std::span<const std::byte, kRequestSize> in) {
    WireReader r(in);
    Request q;
    q.magic = r.U32();
    q.flags = r.U16();
    q.type = r.U16();
    q.cookie = r.U64();
    q.offset = r.U64();
    q.length = r.U32();
    return q;
  }
  void Encode(std::vector<std::byte>& out) const {
    WireWriter(out).U32(magic).U16(flags).U16(type).U64(cookie).U64(offset).U32(length);
  }
};

}  // namespace vdisk::attach::nbd
