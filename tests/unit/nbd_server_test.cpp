// NbdServer against a raw-socket NBD client written here from the protocol text: the fixed
// newstyle handshake and its options, simple and structured replies, block status, and traffic a
// server must survive (bad magic, unknown options and commands, out-of-range and oversized
// requests, clients that vanish mid-request), each while a well-behaved client keeps being
// served. Then eight clients at once, the connection limit, and Stop with clients connected.
// The target is in memory, so every byte the server moves can be checked.
#include "attach/nbd_server.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#ifndef _WIN32
#include <sys/stat.h>
#endif

#include "attach/nbd_protocol.h"
#include "platform/socket.h"
#include "host_shell.h"
#include "test_support.h"

namespace vdisk::attach {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;
using vdisk_unit::TempDir;

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kTargetSize = 16 * kMiB;
constexpr std::uint64_t kAllocationUnit = 64 * 1024;

Bytes Pattern(std::size_t n, std::uint32_t seed) {
  Bytes out(n);
  std::mt19937 rng(seed);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

std::span<const std::byte> AsBytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// --- the target -------------------------------------------------------------------------------

// Memory with an allocation map of 64 KiB units: written units are data, the rest holes.
class MemoryTarget final : public ExportTarget {
 public:
  explicit MemoryTarget(std::uint64_t size, bool read_only = false)
      : data_(size), allocated_(size / kAllocationUnit), read_only_(read_only) {}

  std::uint64_t size() const override { return data_.size(); }
  bool read_only() const override { return read_only_; }
  BlockSizeConstraints block_size() const override { return {512, 4096, 32u << 20}; }

  Status Read(std::uint64_t offset, std::span<std::byte> out) override {
    std::lock_guard lock(mutex_);
    if (offset + out.size() > data_.size()) return Status(Code::kInvalidParameter, "read range");
    std::memcpy(out.data(), data_.data() + offset, out.size());
    return Status::Ok();
  }
  Status Write(std::uint64_t offset, std::span<const std::byte> data) override {
    {
      std::lock_guard lock(mutex_);
      if (offset + data.size() > data_.size()) {
        return Status(Code::kInvalidParameter, "write range");
      }
      std::memcpy(data_.data() + offset, data.data(), data.size());
      Mark(offset, data.size(), true);
      ++writes_;
    }
    if (write_hook_) write_hook_();
    return Status::Ok();
  }
  Status Flush() override {
    std::lock_guard lock(mutex_);
    ++flushes_;
    return Status::Ok();
  }
  Status WriteZeroes(std::uint64_t offset, std::uint64_t length, bool no_hole) override {
    std::lock_guard lock(mutex_);
    std::memset(data_.data() + offset, 0, length);
    // Whole units become holes unless the client wants them allocated.
    if (!no_hole) {
      for (std::uint64_t u = (offset + kAllocationUnit - 1) / kAllocationUnit;
           (u + 1) * kAllocationUnit <= offset + length; ++u) {
        allocated_[u] = false;
      }
    } else {
      Mark(offset, length, true);
    }
    return Status::Ok();
  }
  Result<std::vector<AllocationExtent>> BlockStatus(std::uint64_t offset,
                                                    std::uint64_t length) override {
    std::lock_guard lock(mutex_);
    std::vector<AllocationExtent> out;
    for (std::uint64_t pos = offset; pos < offset + length;) {
      const std::uint64_t unit = pos / kAllocationUnit;
      const std::uint64_t next = std::min(offset + length, (unit + 1) * kAllocationUnit);
      const bool hole = !allocated_[unit];
      if (!out.empty() && out.back().hole == hole) {
        out.back().length += next - pos;
      } else {
        out.push_back({next - pos, hole, hole});
      }
      pos = next;
    }
    return out;
  }

  Bytes Snapshot(std::uint64_t offset, std::size_t n) {
    std::lock_guard lock(mutex_);
    return Bytes(data_.begin() + static_cast<std::ptrdiff_t>(offset),
                 data_.begin() + static_cast<std::ptrdiff_t>(offset + n));
  }
  int flushes() {
    std::lock_guard lock(mutex_);
    return flushes_;
  }
  int writes() {
    std::lock_guard lock(mutex_);
    return writes_;
  }
  // Runs after every write, outside the lock (to hold a write in flight). REQUIRES: no I/O yet.
  void set_write_hook(std::function<void()> hook) { write_hook_ = std::move(hook); }

 private:
  void Mark(std::uint64_t offset, std::uint64_t length, bool value) {
    for (std::uint64_t u = offset / kAllocationUnit; u * kAllocationUnit < offset + length; ++u) {
      allocated_[u] = value;
    }
  }

  std::mutex mutex_;
  Bytes data_;
  std::vector<bool> allocated_;
  const bool read_only_;
  int flushes_ = 0;
  int writes_ = 0;
  std::function<void()> write_hook_;
};

// --- the client -------------------------------------------------------------------------------

struct OptionReply {
  bool ok = false;
  std::uint32_t option = 0;
  std::uint32_t type = 0;
  Bytes data;
};

// The outcome of one transmission request, simple or structured.
struct Reply {
  bool ok = false;  // a well-formed reply arrived
  bool structured = false;
  std::uint32_t error = 0;
  std::uint64_t cookie = 0;
  Bytes data;                                                    // READ: the data, reassembled
  std::vector<std::pair<std::uint32_t, std::uint32_t>> extents;  // BLOCK_STATUS
  std::uint32_t context_id = 0;
  int chunks = 0;
};

struct Handshake {
  std::string export_name;
  bool structured = false;
  bool base_allocation = false;
  bool no_zeroes = true;
};

class RawClient {
 public:
  static RawClient Connect(const NbdServer& server) {
    const auto& o = server.options();
    auto socket = o.transport == NbdServerOptions::Transport::kUnix
                      ? platform::ConnectUnix(o.socket_path)
                      : platform::ConnectTcp("127.0.0.1", server.port());
    EXPECT_TRUE(socket.ok()) << socket.status().message();
    return RawClient(socket.ok() ? std::move(*socket) : platform::Socket());
  }
  explicit RawClient(platform::Socket socket) : socket_(std::move(socket)) {}

  bool Send(std::span<const std::byte> bytes) { return socket_.SendAll(bytes).ok(); }
  bool Receive(std::span<std::byte> bytes) { return socket_.ReceiveAll(bytes).ok(); }
  void Close() { socket_.Close(); }

  // The server's 18-byte greeting.
  bool ReadGreeting(std::uint16_t* handshake_flags = nullptr) {
    std::array<std::byte, nbd::kServerGreetingSize> g;
    if (!Receive(g)) return false;
    nbd::WireReader r(g);
    const bool magic_ok = r.U64() == nbd::kInitPasswd && r.U64() == nbd::kOptionMagic;
    const std::uint16_t flags = r.U16();
    if (handshake_flags != nullptr) *handshake_flags = flags;
    return magic_ok;
  }
  bool SendU32(std::uint32_t v) {
    Bytes b;
    nbd::WireWriter(b).U32(v);
    return Send(b);
  }
  bool SendOption(std::uint32_t option, std::span<const std::byte> data,
                  std::uint64_t magic = nbd::kOptionMagic) {
    Bytes b;
    nbd::WireWriter(b)
        .U64(magic)
        .U32(option)
        .U32(static_cast<std::uint32_t>(data.size()))
        .Bytes(data);
    return Send(b);
  }
  OptionReply ReadOptionReply() {
    OptionReply reply;
    std::array<std::byte, nbd::kOptionReplyHeaderSize> h;
    if (!Receive(h)) return reply;
    nbd::WireReader r(h);
    if (r.U64() != nbd::kOptionReplyMagic) return reply;
    reply.option = r.U32();
    reply.type = r.U32();
    reply.data.resize(r.U32());
    reply.ok = Receive(reply.data);
    return reply;
  }

  static Bytes GoData(std::string_view name, std::initializer_list<std::uint16_t> infos) {
    Bytes b;
    nbd::WireWriter w(b);
    w.U32(static_cast<std::uint32_t>(name.size())).String(name);
    w.U16(static_cast<std::uint16_t>(infos.size()));
    for (auto i : infos) w.U16(i);
    return b;
  }
  static Bytes MetaData(std::string_view name, std::initializer_list<std::string_view> queries) {
    Bytes b;
    nbd::WireWriter w(b);
    w.U32(static_cast<std::uint32_t>(name.size())).String(name);
    w.U32(static_cast<std::uint32_t>(queries.size()));
    for (auto q : queries) w.U32(static_cast<std::uint32_t>(q.size())).String(q);
    return b;
  }

  // Greeting, client flags, the options `h` asks for, then NBD_OPT_GO.
  bool Open(const Handshake& h = {}) {
    if (!ReadGreeting()) return false;
    if (!SendU32(nbd::kClientFlagFixedNewstyle | (h.no_zeroes ? nbd::kClientFlagNoZeroes : 0))) {
      return false;
    }
    if (h.structured) {
      if (!SendOption(nbd::kOptStructuredReply, {})) return false;
      if (ReadOptionReply().type != nbd::kRepAck) return false;
    }
    if (h.base_allocation) {
      if (!SendOption(nbd::kOptSetMetaContext, MetaData(h.export_name, {nbd::kBaseAllocation}))) {
        return false;
      }
      const OptionReply context = ReadOptionReply();
      if (context.type != nbd::kRepMetaContext || context.data.size() < 4) return false;
      context_id_ = static_cast<std::uint32_t>(nbd::LoadBe(context.data.data(), 4));
      if (ReadOptionReply().type != nbd::kRepAck) return false;
    }
    if (!SendOption(nbd::kOptGo, GoData(h.export_name, {nbd::kInfoBlockSize}))) return false;
    for (;;) {
      const OptionReply reply = ReadOptionReply();
      if (!reply.ok) return false;
      if (reply.type == nbd::kRepAck) break;
      if (reply.type != nbd::kRepInfo) return false;
      nbd::WireReader r(reply.data);
      const std::uint16_t info = r.U16();
      if (info == nbd::kInfoExport) {
        size_ = r.U64();
        transmission_flags_ = r.U16();
      } else if (info == nbd::kInfoBlockSize) {
        minimum_block_ = r.U32();
        preferred_block_ = r.U32();
        maximum_block_ = r.U32();
      }
    }
    return true;
  }

  bool SendRequest(std::uint16_t type, std::uint16_t flags, std::uint64_t cookie,
                   std::uint64_t offset, std::uint32_t length,
                   std::span<const std::byte> payload = {},
                   std::uint32_t magic = nbd::kRequestMagic) {
    Bytes b;
    nbd::Request{magic, flags, type, cookie, offset, length}.Encode(b);
    b.insert(b.end(), payload.begin(), payload.end());
    return Send(b);
  }

  // Reads one whole reply. For a READ, `read_offset` and `read_length` are the request's: the
  // data is placed relative to the offset.
  Reply ReadReply(std::uint64_t read_offset = 0, std::uint32_t read_length = 0) {
    Reply reply;
    std::array<std::byte, 4> magic_bytes;
    if (!Receive(magic_bytes)) return reply;
    const auto magic = static_cast<std::uint32_t>(nbd::LoadBe(magic_bytes.data(), 4));
    if (magic == nbd::kSimpleReplyMagic) {
      std::array<std::byte, 12> rest;
      if (!Receive(rest)) return reply;
      nbd::WireReader r(rest);
      reply.error = r.U32();
      reply.cookie = r.U64();
      if (reply.error == 0 && read_length > 0) {
        reply.data.resize(read_length);
        if (!Receive(reply.data)) return reply;
      }
      reply.ok = true;
      return reply;
    }
    if (magic != nbd::kStructuredReplyMagic) return reply;
    reply.structured = true;
    reply.data.resize(read_length);
    for (bool first = true;; first = false) {
      if (!first) {
        if (!Receive(magic_bytes) ||
            nbd::LoadBe(magic_bytes.data(), 4) != nbd::kStructuredReplyMagic) {
          return reply;
        }
      }
      std::array<std::byte, 16> rest;
      if (!Receive(rest)) return reply;
      nbd::WireReader r(rest);
      const std::uint16_t flags = r.U16();
      const std::uint16_t type = r.U16();
      reply.cookie = r.U64();
      Bytes payload(r.U32());
      if (!Receive(payload)) return reply;
      ++reply.chunks;
      nbd::WireReader p(payload);
      if (type == nbd::kReplyTypeOffsetData || type == nbd::kReplyTypeOffsetHole) {
        const std::uint64_t at = p.U64();
        const std::uint64_t n = type == nbd::kReplyTypeOffsetHole ? p.U32() : p.remaining();
        if (p.failed() || at < read_offset || at - read_offset + n > read_length) return reply;
        if (type == nbd::kReplyTypeOffsetData) {
          std::memcpy(reply.data.data() + (at - read_offset), payload.data() + 8, n);
        }
      } else if (type == nbd::kReplyTypeBlockStatus) {
        reply.context_id = p.U32();
        while (p.remaining() >= 8) {
          const std::uint32_t length = p.U32();
          reply.extents.emplace_back(length, p.U32());
        }
      } else if (type == nbd::kReplyTypeError || type == nbd::kReplyTypeErrorOffset) {
        reply.error = p.U32();
      } else if (type != nbd::kReplyTypeNone) {
        return reply;
      }
      if ((flags & nbd::kReplyFlagDone) != 0) break;
    }
    reply.ok = true;
    return reply;
  }

  // READ of `length` bytes at `offset`; data positioned from `offset`.
  Reply Read(std::uint64_t offset, std::uint32_t length, std::uint64_t cookie = 1) {
    if (!SendRequest(nbd::kCmdRead, 0, cookie, offset, length)) return {};
    return ReadReply(offset, length);
  }
  Reply Write(std::uint64_t offset, std::span<const std::byte> data, std::uint16_t flags = 0,
              std::uint64_t cookie = 2) {
    if (!SendRequest(nbd::kCmdWrite, flags, cookie, offset, static_cast<std::uint32_t>(data.size()),
                     data)) {
      return {};
    }
    return ReadReply();
  }
  Reply Command(std::uint16_t type, std::uint16_t flags, std::uint64_t offset, std::uint32_t length,
                std::uint64_t cookie = 3) {
    if (!SendRequest(type, flags, cookie, offset, length)) return {};
    return ReadReply();
  }

  // Whether the server has closed the connection: reads (and drops) whatever it still sends
  // until the end of the stream. A server that keeps the connection open makes this block, and
  // the test runner's timeout reports it.
  bool SeesClosed() {
    std::array<std::byte, 4096> sink;
    for (;;) {
      auto n = socket_.ReceiveSome(sink);
      if (!n.ok() || *n == 0) return true;
    }
  }

  std::uint64_t size() const { return size_; }
  std::uint16_t transmission_flags() const { return transmission_flags_; }
  std::uint32_t minimum_block() const { return minimum_block_; }
  std::uint32_t preferred_block() const { return preferred_block_; }
  std::uint32_t maximum_block() const { return maximum_block_; }
  std::uint32_t context_id() const { return context_id_; }

 private:
  platform::Socket socket_;
  std::uint64_t size_ = 0;
  std::uint16_t transmission_flags_ = 0;
  std::uint32_t minimum_block_ = 0;
  std::uint32_t preferred_block_ = 0;
  std::uint32_t maximum_block_ = 0;
  std::uint32_t context_id_ = 0;
};

// --- fixture ----------------------------------------------------------------------------------

NbdServerOptions LocalOptions(const TempDir& dir, std::string_view socket_name = "nbd.sock") {
  NbdServerOptions options;
#ifdef _WIN32
  (void)dir;
  (void)socket_name;
  options.transport = NbdServerOptions::Transport::kTcp;
#else
  options.socket_path = dir / socket_name;
#endif
  options.export_name = "disk";
  options.description = "a test disk";
  return options;
}

class NbdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = std::make_shared<MemoryTarget>(kTargetSize);
    auto server = NbdServer::Start(target_, LocalOptions(dir_));
    ASSERT_TRUE(server.ok()) << server.status().message();
    server_ = std::move(*server);
  }

  RawClient Connect() { return RawClient::Connect(*server_); }

  // A client that has completed the handshake (structured replies, base:allocation).
  RawClient OpenGoodClient() {
    RawClient client = Connect();
    EXPECT_TRUE(client.Open({"disk", true, true})) << "the well-behaved client's handshake";
    return client;
  }

  // The well-behaved client is still served: a write and a read of it round-trip.
  void ExpectServed(RawClient& good) {
    const Bytes data = Pattern(4096, ++round_);
    const std::uint64_t offset = 8 * kMiB + (round_ % 64) * 4096;
    const Reply w = good.Write(offset, data);
    ASSERT_TRUE(w.ok) << "no reply to the good client's write";
    EXPECT_EQ(w.error, 0u) << "expected the good client's write to succeed";
    const Reply r = good.Read(offset, 4096);
    ASSERT_TRUE(r.ok) << "no reply to the good client's read";
    EXPECT_EQ(r.error, 0u);
    EXPECT_TRUE(r.data == data) << "the good client read back something else";
  }

  TempDir dir_;
  std::shared_ptr<MemoryTarget> target_;
  std::unique_ptr<NbdServer> server_;
  std::uint32_t round_ = 0;
};

// --- handshake --------------------------------------------------------------------------------

TEST_F(NbdServerTest, GreetsWithFixedNewstyleAndNoZeroes) {
  RawClient client = Connect();
  std::uint16_t flags = 0;
  ASSERT_TRUE(client.ReadGreeting(&flags)) << "expected NBDMAGIC then IHAVEOPT";
  EXPECT_EQ(flags, nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);
}

TEST_F(NbdServerTest, GoReportsSizeFlagsAndBlockSizes) {
  RawClient client = Connect();
  ASSERT_TRUE(client.Open({"disk"}));
  EXPECT_EQ(client.size(), kTargetSize);
  const std::uint16_t expected = nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagSendFua |
                                 nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes |
                                 nbd::kFlagCanMultiConn;
  EXPECT_EQ(client.transmission_flags() & expected, expected);
  EXPECT_EQ(client.transmission_flags() & nbd::kFlagReadOnly, 0) << "a writable export";
  EXPECT_EQ(client.minimum_block(), 512u);
  EXPECT_EQ(client.preferred_block(), 4096u);
  EXPECT_EQ(client.maximum_block(), 32u << 20);
}

TEST_F(NbdServerTest, DefaultExportNameSelectsTheExport) {
  RawClient client = Connect();
  ASSERT_TRUE(client.Open({""}));
  EXPECT_EQ(client.size(), kTargetSize);
}

TEST_F(NbdServerTest, ExportNameOptionEntersTransmission) {
  for (const bool no_zeroes : {true, false}) {
    RawClient client = Connect();
    ASSERT_TRUE(client.ReadGreeting());
    ASSERT_TRUE(
        client.SendU32(nbd::kClientFlagFixedNewstyle | (no_zeroes ? nbd::kClientFlagNoZeroes : 0)));
    ASSERT_TRUE(client.SendOption(nbd::kOptExportName, AsBytes("disk")));
    Bytes reply(10 + (no_zeroes ? 0 : nbd::kExportNameReplyZeroes));
    ASSERT_TRUE(client.Receive(reply));
    EXPECT_EQ(nbd::LoadBe(reply.data(), 8), kTargetSize);
    EXPECT_NE(nbd::LoadBe(reply.data() + 8, 2) & nbd::kFlagHasFlags, 0u);
    EXPECT_TRUE(std::all_of(reply.begin() + 10, reply.end(),
                            [](std::byte b) { return b == std::byte{0}; }));
    const Bytes data = Pattern(512, 7);
    EXPECT_EQ(client.Write(0, data).error, 0u) << "transmission after NBD_OPT_EXPORT_NAME";
  }
}

TEST_F(NbdServerTest, ListInfoAndAbort) {
  RawClient client = Connect();
  ASSERT_TRUE(client.ReadGreeting());
  ASSERT_TRUE(client.SendU32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes));

  ASSERT_TRUE(client.SendOption(nbd::kOptList, {}));
  OptionReply server = client.ReadOptionReply();
  ASSERT_EQ(server.type, nbd::kRepServer);
  nbd::WireReader r(server.data);
  EXPECT_EQ(r.String(r.U32()), "disk");
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck);

  ASSERT_TRUE(client.SendOption(
      nbd::kOptInfo, RawClient::GoData("disk", {nbd::kInfoName, nbd::kInfoDescription})));
  bool saw_export = false, saw_name = false, saw_description = false;
  for (;;) {
    const OptionReply reply = client.ReadOptionReply();
    ASSERT_TRUE(reply.ok);
    EXPECT_EQ(reply.option, nbd::kOptInfo);
    if (reply.type == nbd::kRepAck) break;
    ASSERT_EQ(reply.type, nbd::kRepInfo);
    nbd::WireReader info(reply.data);
    switch (info.U16()) {
      case nbd::kInfoExport:
        saw_export = info.U64() == kTargetSize;
        break;
      case nbd::kInfoName:
        saw_name = info.String(info.remaining()) == "disk";
        break;
      case nbd::kInfoDescription:
        saw_description = info.String(info.remaining()) == "a test disk";
        break;
      default:
        break;
    }
  }
  EXPECT_TRUE(saw_export && saw_name && saw_description);

  ASSERT_TRUE(client.SendOption(nbd::kOptAbort, {}));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck);
  EXPECT_TRUE(client.SeesClosed());
}

TEST_F(NbdServerTest, ListsAndSelectsBaseAllocation) {
  RawClient client = Connect();
  ASSERT_TRUE(client.ReadGreeting());
  ASSERT_TRUE(client.SendU32(nbd::kClientFlagFixedNewstyle));
  ASSERT_TRUE(client.SendOption(nbd::kOptStructuredReply, {}));
  ASSERT_EQ(client.ReadOptionReply().type, nbd::kRepAck);
  for (const std::string_view query : {"base:", ""}) {
    ASSERT_TRUE(client.SendOption(
        nbd::kOptListMetaContext,
        query.empty() ? RawClient::MetaData("disk", {}) : RawClient::MetaData("disk", {query})));
    const OptionReply context = client.ReadOptionReply();
    ASSERT_EQ(context.type, nbd::kRepMetaContext) << "query '" << query << "'";
    nbd::WireReader r(context.data);
    r.U32();
    EXPECT_EQ(r.String(r.remaining()), nbd::kBaseAllocation);
    EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck);
  }
  // Unknown contexts are ignored, not errors.
  ASSERT_TRUE(client.SendOption(nbd::kOptSetMetaContext,
                                RawClient::MetaData("disk", {"x-nothing:here", "base:"})));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck) << "nothing selected";
}

// --- transmission -----------------------------------------------------------------------------

TEST_F(NbdServerTest, SimpleRepliesReadWriteFlushTrimAndWriteZeroes) {
  RawClient client = Connect();
  ASSERT_TRUE(client.Open({"disk"}));
  const Bytes data = Pattern(128 * 1024, 1);
  const Reply w = client.Write(3 * kMiB, data, 0, 77);
  EXPECT_TRUE(w.ok && !w.structured && w.error == 0 && w.cookie == 77u);
  EXPECT_TRUE(target_->Snapshot(3 * kMiB, data.size()) == data);
  const Reply r = client.Read(3 * kMiB, 128 * 1024, 78);
  EXPECT_TRUE(r.ok && !r.structured && r.cookie == 78u);
  EXPECT_TRUE(r.data == data);

  const int flushes = target_->flushes();
  EXPECT_EQ(client.Command(nbd::kCmdFlush, 0, 0, 0).error, 0u);
  EXPECT_EQ(target_->flushes(), flushes + 1);
  EXPECT_EQ(client.Write(0, Pattern(512, 2), nbd::kCmdFlagFua).error, 0u);
  EXPECT_EQ(target_->flushes(), flushes + 2) << "FUA flushes";
  EXPECT_EQ(client.Command(nbd::kCmdTrim, 0, 0, 4096).error, 0u);
  EXPECT_EQ(client.Command(nbd::kCmdCache, 0, 0, 4096).error, 0u);

  EXPECT_EQ(client.Command(nbd::kCmdWriteZeroes, 0, 3 * kMiB + 512, 1024).error, 0u);
  const Bytes after = target_->Snapshot(3 * kMiB, data.size());
  for (std::size_t i = 0; i < after.size(); ++i) {
    ASSERT_EQ(after[i], i >= 512 && i < 1536 ? std::byte{0} : data[i]) << "byte " << i;
  }
}

TEST_F(NbdServerTest, StructuredReadsSpanSeveralChunks) {
  RawClient client = Connect();
  ASSERT_TRUE(client.Open({"disk", true}));
  const Bytes data = Pattern(3 * kMiB + 1000, 3);
  ASSERT_EQ(client.Write(kMiB - 500, data).error, 0u);
  const Reply r = client.Read(kMiB - 500, static_cast<std::uint32_t>(data.size()));
  ASSERT_TRUE(r.ok && r.structured);
  EXPECT_EQ(r.error, 0u);
  EXPECT_GT(r.chunks, 1) << "3 MiB come in 1 MiB pieces";
  EXPECT_TRUE(r.data == data);
  // A read of nothing is one NBD_REPLY_TYPE_NONE chunk.
  const Reply empty = client.Read(0, 0);
  EXPECT_TRUE(empty.ok && empty.structured && empty.error == 0 && empty.chunks == 1);
}

TEST_F(NbdServerTest, UnalignedRequestsReachTheTarget) {
  RawClient client = Connect();
  ASSERT_TRUE(client.Open({"disk", true}));
  const Bytes one = Pattern(1, 4);
  ASSERT_EQ(client.Write(4097, one).error, 0u);
  const Reply r = client.Read(4096, 3);
  ASSERT_EQ(r.error, 0u);
  EXPECT_EQ(r.data[1], one[0]);
}

TEST_F(NbdServerTest, BlockStatusReportsAllocation) {
  RawClient client = Connect();
  ASSERT_TRUE(client.Open({"disk", true, true}));
  ASSERT_EQ(client.Write(2 * kAllocationUnit, Pattern(kAllocationUnit, 5)).error, 0u);
  const Reply all = client.Command(nbd::kCmdBlockStatus, 0, 0, 4 * kAllocationUnit);
  ASSERT_TRUE(all.ok && all.structured) << "block status needs a structured reply";
  EXPECT_EQ(all.error, 0u);
  EXPECT_EQ(all.context_id, client.context_id());
  const std::uint32_t hole = nbd::kStateHole | nbd::kStateZero;
  const std::vector<std::pair<std::uint32_t, std::uint32_t>> expected = {
      {2 * kAllocationUnit, hole}, {kAllocationUnit, 0}, {kAllocationUnit, hole}};
  EXPECT_EQ(all.extents, expected);

  const Reply one =
      client.Command(nbd::kCmdBlockStatus, nbd::kCmdFlagReqOne, 0, kAllocationUnit * 4);
  ASSERT_EQ(one.extents.size(), 1u) << "NBD_CMD_FLAG_REQ_ONE";
  EXPECT_EQ(one.extents[0].first, 2 * kAllocationUnit);

  // Write-zeroes may punch holes, but not with NO_HOLE.
  ASSERT_EQ(
      client
          .Command(nbd::kCmdWriteZeroes, nbd::kCmdFlagNoHole, 2 * kAllocationUnit, kAllocationUnit)
          .error,
      0u);
  EXPECT_EQ(client.Command(nbd::kCmdBlockStatus, 0, 2 * kAllocationUnit, kAllocationUnit).extents,
            (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{kAllocationUnit, 0}}));
  ASSERT_EQ(client.Command(nbd::kCmdWriteZeroes, 0, 2 * kAllocationUnit, kAllocationUnit).error,
            0u);
  EXPECT_EQ(client.Command(nbd::kCmdBlockStatus, 0, 2 * kAllocationUnit, kAllocationUnit).extents,
            (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{kAllocationUnit, hole}}));
}

TEST_F(NbdServerTest, DiscEndsTheConnection) {
  RawClient client = Connect();
  ASSERT_TRUE(client.Open({"disk"}));
  ASSERT_TRUE(client.SendRequest(nbd::kCmdDisc, 0, 9, 0, 0));
  EXPECT_TRUE(client.SeesClosed());
}

// --- bad traffic: each gets an error or a closed connection, and the good client goes on ------

TEST_F(NbdServerTest, UnknownClientFlagsCloseTheConnection) {
  RawClient good = OpenGoodClient();
  RawClient bad = Connect();
  ASSERT_TRUE(bad.ReadGreeting());
  ASSERT_TRUE(bad.SendU32(nbd::kClientFlagFixedNewstyle | 0x80));
  EXPECT_TRUE(bad.SeesClosed());
  ExpectServed(good);
}

TEST_F(NbdServerTest, BadMagicInTheHandshakeClosesTheConnection) {
  RawClient good = OpenGoodClient();
  RawClient bad = Connect();
  ASSERT_TRUE(bad.ReadGreeting());
  ASSERT_TRUE(bad.SendU32(nbd::kClientFlagFixedNewstyle));
  ASSERT_TRUE(bad.Send(AsBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
  EXPECT_TRUE(bad.SeesClosed());
  ExpectServed(good);
}

TEST_F(NbdServerTest, BadOptionMagicAfterAGoodOptionClosesTheConnection) {
  RawClient good = OpenGoodClient();
  RawClient bad = Connect();
  ASSERT_TRUE(bad.ReadGreeting());
  ASSERT_TRUE(bad.SendU32(nbd::kClientFlagFixedNewstyle));
  ASSERT_TRUE(bad.SendOption(nbd::kOptStructuredReply, {}));
  ASSERT_EQ(bad.ReadOptionReply().type, nbd::kRepAck);
  ASSERT_TRUE(bad.SendOption(nbd::kOptGo, RawClient::GoData("disk", {}), 0x1122334455667788ull));
  EXPECT_TRUE(bad.SeesClosed());
  ExpectServed(good);
}

TEST_F(NbdServerTest, UnknownOptionsAreUnsupportedAndTheSessionGoesOn) {
  RawClient good = OpenGoodClient();
  RawClient client = Connect();
  ASSERT_TRUE(client.ReadGreeting());
  ASSERT_TRUE(client.SendU32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes));
  for (const std::uint32_t option : {nbd::kOptStartTls, nbd::kOptExtendedHeaders, 4u, 0x7777u}) {
    ASSERT_TRUE(client.SendOption(option, Pattern(100, option)));
    const OptionReply reply = client.ReadOptionReply();
    EXPECT_EQ(reply.type, nbd::kRepErrUnsup) << "option " << option;
    EXPECT_EQ(reply.option, option);
  }
  ASSERT_TRUE(client.SendOption(nbd::kOptGo, RawClient::GoData("disk", {})));
  OptionReply reply;
  do reply = client.ReadOptionReply();
  while (reply.ok && reply.type == nbd::kRepInfo);
  EXPECT_EQ(reply.type, nbd::kRepAck) << "NBD_OPT_GO after unsupported options";
  EXPECT_EQ(client.Write(0, Pattern(512, 8)).error, 0u);
  ExpectServed(good);
}

TEST_F(NbdServerTest, OverlongOptionIsRefused) {
  RawClient good = OpenGoodClient();
  RawClient bad = Connect();
  ASSERT_TRUE(bad.ReadGreeting());
  ASSERT_TRUE(bad.SendU32(nbd::kClientFlagFixedNewstyle));
  Bytes header;
  nbd::WireWriter(header).U64(nbd::kOptionMagic).U32(nbd::kOptGo).U32(0xfffffff0u);
  ASSERT_TRUE(bad.Send(header));
  const OptionReply reply = bad.ReadOptionReply();
  if (reply.ok) EXPECT_EQ(reply.type, nbd::kRepErrTooBig);
  EXPECT_TRUE(bad.SeesClosed());
  ExpectServed(good);
}

TEST_F(NbdServerTest, MalformedOptionDataIsInvalidAndTheSessionGoesOn) {
  RawClient good = OpenGoodClient();
  RawClient client = Connect();
  ASSERT_TRUE(client.ReadGreeting());
  ASSERT_TRUE(client.SendU32(nbd::kClientFlagFixedNewstyle));
  // A name length past the end of the data.
  Bytes go;
  nbd::WireWriter(go).U32(1000).String("disk").U16(0);
  ASSERT_TRUE(client.SendOption(nbd::kOptGo, go));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrInvalid);
  // Data where none belongs.
  ASSERT_TRUE(client.SendOption(nbd::kOptList, Pattern(3, 1)));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrInvalid);
  // A meta context before structured replies.
  ASSERT_TRUE(client.SendOption(nbd::kOptSetMetaContext,
                                RawClient::MetaData("disk", {nbd::kBaseAllocation})));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrInvalid);
  // An export that does not exist.
  ASSERT_TRUE(client.SendOption(nbd::kOptInfo, RawClient::GoData("other", {})));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrUnknown);
  ExpectServed(good);
  // And the session still enters transmission.
  ASSERT_TRUE(client.SendOption(nbd::kOptGo, RawClient::GoData("disk", {})));
  OptionReply reply;
  do reply = client.ReadOptionReply();
  while (reply.ok && reply.type == nbd::kRepInfo);
  EXPECT_EQ(reply.type, nbd::kRepAck);
}

TEST_F(NbdServerTest, ExportNameOfAnUnknownExportClosesTheConnection) {
  RawClient good = OpenGoodClient();
  RawClient bad = Connect();
  ASSERT_TRUE(bad.ReadGreeting());
  ASSERT_TRUE(bad.SendU32(nbd::kClientFlagFixedNewstyle));
  ASSERT_TRUE(bad.SendOption(nbd::kOptExportName, AsBytes("no-such-export")));
  EXPECT_TRUE(bad.SeesClosed());
  ExpectServed(good);
}

TEST_F(NbdServerTest, RequestWithBadMagicClosesTheConnection) {
  RawClient good = OpenGoodClient();
  RawClient bad = Connect();
  ASSERT_TRUE(bad.Open({"disk"}));
  ASSERT_TRUE(bad.SendRequest(nbd::kCmdRead, 0, 1, 0, 512, {}, 0x25609514));
  EXPECT_TRUE(bad.SeesClosed());
  ExpectServed(good);
}

TEST_F(NbdServerTest, UnknownCommandsAndFlagsGetEinval) {
  RawClient good = OpenGoodClient();
  for (const bool structured : {false, true}) {
    RawClient client = Connect();
    ASSERT_TRUE(client.Open({"disk", structured}));
    EXPECT_EQ(client.Command(0x99, 0, 0, 512).error, nbd::kEinval) << "unknown command";
    EXPECT_EQ(client.Command(8, 0, 0, 0).error, nbd::kEinval) << "NBD_CMD_RESIZE (not offered)";
    EXPECT_EQ(client.Command(nbd::kCmdFlush, 0x8000, 0, 0).error, nbd::kEinval) << "unknown flag";
    EXPECT_EQ(client.Command(nbd::kCmdWriteZeroes, nbd::kCmdFlagFastZero, 0, 512).error,
              nbd::kEinval)
        << "NBD_CMD_FLAG_FAST_ZERO was not advertised";
    const Reply r = client.Read(0, 512);
    EXPECT_EQ(r.error, 0u) << "the session goes on";
    ExpectServed(good);
  }
}

TEST_F(NbdServerTest, OutOfRangeRequestsGetEinvalOrEnospc) {
  RawClient good = OpenGoodClient();
  for (const bool structured : {false, true}) {
    RawClient client = Connect();
    ASSERT_TRUE(client.Open({"disk", structured, structured}));
    EXPECT_EQ(client.Read(kTargetSize - 512, 1024).error, nbd::kEinval);
    EXPECT_EQ(client.Read(~std::uint64_t{0} - 10, 512).error, nbd::kEinval) << "offset overflow";
    EXPECT_EQ(client.Write(kTargetSize, Pattern(512, 9)).error, nbd::kEnospc);
    EXPECT_EQ(client.Command(nbd::kCmdTrim, 0, kTargetSize, 1).error, nbd::kEinval);
    EXPECT_EQ(client.Command(nbd::kCmdWriteZeroes, 0, kTargetSize - 1, 2).error, nbd::kEnospc);
    if (structured) {
      EXPECT_EQ(client.Command(nbd::kCmdBlockStatus, 0, kTargetSize, 512).error, nbd::kEinval);
    }
    EXPECT_EQ(client.Read(kTargetSize - 512, 512).error, 0u) << "the last sector is in range";
    ExpectServed(good);
  }
}

TEST_F(NbdServerTest, OversizedRequestsAreRefused) {
  RawClient good = OpenGoodClient();
  RawClient client = Connect();
  ASSERT_TRUE(client.Open({"disk", true}));
  const std::uint32_t too_long = (32u << 20) + 512;
  EXPECT_EQ(client.Read(0, too_long).error, nbd::kEinval);
  // An oversized write: the server may read and drop the payload (then the session goes on) or
  // hang up; it must never keep it.
  const int writes = target_->writes();
  ASSERT_TRUE(client.SendRequest(nbd::kCmdWrite, 0, 5, 0, too_long));
  const Bytes piece(kMiB, std::byte{0x5a});
  bool sent = true;
  for (std::uint32_t done = 0; done < too_long && sent; done += kMiB) {
    sent = client.Send(std::span(piece).first(std::min<std::uint32_t>(kMiB, too_long - done)));
  }
  if (sent) {
    const Reply reply = client.ReadReply();
    if (reply.ok) {
      EXPECT_EQ(reply.error, nbd::kEinval);
      EXPECT_EQ(client.Read(0, 512).error, 0u) << "the stream is still in step";
    }
  }
  EXPECT_EQ(target_->writes(), writes) << "nothing of an oversized write reaches the target";
  ExpectServed(good);
}

TEST_F(NbdServerTest, ClientVanishingMidRequestLeavesTheServerServing) {
  RawClient good = OpenGoodClient();
  {
    // The header of a 1 MiB write and a little of its payload.
    RawClient bad = Connect();
    ASSERT_TRUE(bad.Open({"disk"}));
    ASSERT_TRUE(bad.SendRequest(nbd::kCmdWrite, 0, 1, 0, kMiB, Pattern(1000, 1)));
  }
  ExpectServed(good);
  {
    // Half a request header.
    RawClient bad = Connect();
    ASSERT_TRUE(bad.Open({"disk", true}));
    Bytes header;
    nbd::Request{nbd::kRequestMagic, 0, nbd::kCmdRead, 1, 0, 512}.Encode(header);
    ASSERT_TRUE(bad.Send(std::span(header).first(10)));
  }
  ExpectServed(good);
  {
    // Half an option, and a client that leaves in the middle of the greeting.
    RawClient bad = Connect();
    ASSERT_TRUE(bad.ReadGreeting());
    ASSERT_TRUE(bad.SendU32(nbd::kClientFlagFixedNewstyle));
    Bytes go;
    nbd::WireWriter(go).U64(nbd::kOptionMagic).U32(nbd::kOptGo).U32(100).U32(4);
    ASSERT_TRUE(bad.Send(go));
    RawClient gone = Connect();
  }
  ExpectServed(good);
  {
    // A reader that never reads its reply and leaves.
    RawClient bad = Connect();
    ASSERT_TRUE(bad.Open({"disk", true}));
    ASSERT_TRUE(bad.SendRequest(nbd::kCmdRead, 0, 1, 0, 8u << 20));
  }
  ExpectServed(good);
}

TEST_F(NbdServerTest, BlockStatusWithoutAContextGetsEinval) {
  RawClient good = OpenGoodClient();
  for (const bool structured : {false, true}) {
    RawClient client = Connect();
    ASSERT_TRUE(client.Open({"disk", structured, false}));
    const Reply reply = client.Command(nbd::kCmdBlockStatus, 0, 0, 4096);
    ASSERT_TRUE(reply.ok);
    EXPECT_EQ(reply.error, nbd::kEinval);
    EXPECT_EQ(client.Read(0, 512).error, 0u);
    ExpectServed(good);
  }
}

TEST_F(NbdServerTest, GarbageNeverStopsTheServer) {
  RawClient good = OpenGoodClient();
  std::mt19937 rng(2024);
  for (int i = 0; i < 60; ++i) {
    RawClient bad = Connect();
    ASSERT_TRUE(bad.ReadGreeting());
    if (i % 3 != 0) {
      ASSERT_TRUE(bad.SendU32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes));
    }
    if (i % 3 == 2) {
      // Past the handshake: garbage that starts like a request.
      ASSERT_TRUE(bad.SendOption(nbd::kOptGo, RawClient::GoData("", {})));
      OptionReply reply;
      do reply = bad.ReadOptionReply();
      while (reply.ok && reply.type == nbd::kRepInfo);
      Bytes request;
      nbd::Request{nbd::kRequestMagic,
                   static_cast<std::uint16_t>(rng()),
                   static_cast<std::uint16_t>(rng() % 10),
                   rng(),
                   rng() % (2 * kTargetSize),
                   static_cast<std::uint32_t>(rng() % (2 * kMiB))}
          .Encode(request);
      ASSERT_TRUE(bad.Send(request));
    }
    Bytes garbage = Pattern(rng() % 300, static_cast<std::uint32_t>(i));
    (void)bad.Send(garbage);
  }
  ExpectServed(good);
}

// --- read-only exports ------------------------------------------------------------------------

TEST(NbdServerReadOnly, WritesGetEpermAndTheFlagIsSet) {
  TempDir dir;
  for (const bool target_read_only : {true, false}) {
    auto target = std::make_shared<MemoryTarget>(kTargetSize, target_read_only);
    NbdServerOptions options = LocalOptions(dir);
    options.read_only = !target_read_only;  // read-only either way
    auto server = NbdServer::Start(target, options);
    ASSERT_TRUE(server.ok()) << server.status().message();
    RawClient client = RawClient::Connect(**server);
    ASSERT_TRUE(client.Open({"disk", true}));
    EXPECT_NE(client.transmission_flags() & nbd::kFlagReadOnly, 0) << "NBD_FLAG_READ_ONLY";
    EXPECT_EQ(client.Write(0, Pattern(512, 1)).error, nbd::kEperm);
    EXPECT_EQ(client.Command(nbd::kCmdWriteZeroes, 0, 0, 512).error, nbd::kEperm);
    EXPECT_EQ(client.Command(nbd::kCmdTrim, 0, 0, 512).error, nbd::kEperm);
    EXPECT_EQ(target->writes(), 0);
    const Reply r = client.Read(0, 512);
    EXPECT_EQ(r.error, 0u);
    EXPECT_TRUE(r.data == Bytes(512)) << "reads still work";
    EXPECT_TRUE((*server)->Stop().ok());
  }
}

// --- many clients, limits, transports ---------------------------------------------------------

TEST_F(NbdServerTest, EightClientsAtOnceEachKeepTheirOwnRegion) {
  constexpr int kClients = 8;
  constexpr std::uint64_t kRegion = kTargetSize / kClients;
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kClients);
  std::mutex start_mutex;
  std::condition_variable start_cv;
  int ready = 0;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      RawClient client = Connect();
      if (!client.Open({"disk", c % 2 == 0, false})) {
        failures[c] = "handshake failed";
        return;
      }
      {
        std::unique_lock lock(start_mutex);
        ++ready;
        start_cv.notify_all();
        start_cv.wait(lock, [&] { return ready == kClients; });
      }
      std::mt19937 rng(c);
      const std::uint64_t base = c * kRegion;
      for (int round = 0; round < 40 && failures[c].empty(); ++round) {
        // Mostly aligned writes, some 1-byte-granular ones.
        const std::uint32_t length = round % 4 == 3 ? 1 + rng() % 3000 : 4096 * (1 + rng() % 32);
        const std::uint64_t offset = base + rng() % (kRegion - length);
        const Bytes data = Pattern(length, rng());
        const Reply w = client.Write(offset, data, round % 5 == 0 ? nbd::kCmdFlagFua : 0, round);
        const Reply r = client.Read(offset, length, round + 1000);
        if (!w.ok || w.error != 0 || w.cookie != static_cast<std::uint64_t>(round)) {
          failures[c] = "write " + std::to_string(round) + " failed";
        } else if (!r.ok || r.error != 0 || r.data != data) {
          failures[c] = "read " + std::to_string(round) + " returned other data";
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(failures[c], "") << "client " << c;
}

TEST(NbdServerLimits, ConnectionsBeyondTheLimitAreClosed) {
  TempDir dir;
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  NbdServerOptions options = LocalOptions(dir);
  options.max_connections = 2;
  auto server = NbdServer::Start(target, options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  RawClient a = RawClient::Connect(**server);
  RawClient b = RawClient::Connect(**server);
  ASSERT_TRUE(a.Open({"disk"}));
  ASSERT_TRUE(b.Open({"disk"}));
  EXPECT_EQ((*server)->connection_count(), 2u);
  RawClient c = RawClient::Connect(**server);
  EXPECT_FALSE(c.Open({"disk"})) << "a third client over a limit of 2";
  c.Close();
  // Once one leaves, a new client is served.
  ASSERT_TRUE(a.SendRequest(nbd::kCmdDisc, 0, 1, 0, 0));
  ASSERT_TRUE(a.SeesClosed());
  RawClient d = RawClient::Connect(**server);
  EXPECT_TRUE(d.Open({"disk"}));
  EXPECT_EQ(b.Read(0, 512).error, 0u);
}

TEST(NbdServerTransport, ServesOverTcpOnAChosenPort) {
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  NbdServerOptions options;
  options.transport = NbdServerOptions::Transport::kTcp;
  options.export_name = "disk one";
  auto server = NbdServer::Start(target, options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_NE((*server)->port(), 0);
  EXPECT_EQ((*server)->uri(),
            "nbd://127.0.0.1:" + std::to_string((*server)->port()) + "/disk%20one");
  RawClient client = RawClient::Connect(**server);
  ASSERT_TRUE(client.Open({"disk one", true}));
  const Bytes data = Pattern(65536, 11);
  EXPECT_EQ(client.Write(kMiB, data).error, 0u);
  EXPECT_TRUE(client.Read(kMiB, 65536).data == data);
}

#ifndef _WIN32
TEST(NbdServerTransport, UnixSocketHasTheRequestedModeAndIsRemovedAtStop) {
  TempDir dir;
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  for (const std::uint32_t mode : {0600u, 0660u}) {
    NbdServerOptions options = LocalOptions(dir);
    options.socket_mode = mode;
    auto server = NbdServer::Start(target, options);
    ASSERT_TRUE(server.ok()) << server.status().message();
    EXPECT_EQ((*server)->uri(), "nbd+unix:///disk?socket=" + options.socket_path.string());
    struct stat st {};
    ASSERT_EQ(::stat(options.socket_path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, mode);
    EXPECT_TRUE((*server)->Stop().ok());
    EXPECT_FALSE(fs::exists(options.socket_path)) << "the socket file is removed at Stop";
  }
}

TEST(NbdServerTransport, StartRefusesBadSocketPaths) {
  TempDir dir;
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  NbdServerOptions options = LocalOptions(dir);
  options.socket_path.clear();
  EXPECT_EQ(NbdServer::Start(target, options).status().code(), Code::kInvalidParameter);
  options.socket_path = dir / std::string(200, 'x');
  EXPECT_EQ(NbdServer::Start(target, options).status().code(), Code::kInvalidParameter);
  options.socket_path = dir / "regular-file";
  { std::ofstream(options.socket_path) << "keep me"; }
  EXPECT_EQ(NbdServer::Start(target, options).status().code(), Code::kFileExists);
  EXPECT_TRUE(fs::is_regular_file(options.socket_path)) << "an existing file is left alone";
  // A socket file someone still listens on is not taken over.
  NbdServerOptions first = LocalOptions(dir, "busy.sock");
  auto running = NbdServer::Start(target, first);
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(NbdServer::Start(target, first).status().code(), Code::kFileExists);
}
#endif

#ifndef _WIN32
TEST(NbdServerTransport, UnixSocketIsOwnerOnlyWhateverTheUmask) {
  TempDir dir;
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  const mode_t old_umask = ::umask(0);  // bind(2) would create the file 0777
  auto server = NbdServer::Start(target, LocalOptions(dir));
  ::umask(old_umask);
  ASSERT_TRUE(server.ok()) << server.status().message();
  struct stat st {};
  ASSERT_EQ(::stat((*server)->options().socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}
#endif

// --- hardening: deadlines and slots -------------------------------------------------------------

TEST(NbdServerLimits, ClientSilentPastTheHandshakeDeadlineIsDropped) {
  TempDir dir;
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  NbdServerOptions options = LocalOptions(dir);
  options.handshake_timeout = std::chrono::milliseconds(300);
  auto server = NbdServer::Start(target, options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  RawClient early = RawClient::Connect(**server);
  ASSERT_TRUE(early.Open({"disk"})) << "a client that negotiates in time";
  RawClient silent = RawClient::Connect(**server);
  ASSERT_TRUE(silent.ReadGreeting());
  // Blocks until the server closes the connection; without a deadline it never would (the
  // test's timeout would report it).
  EXPECT_TRUE(silent.SeesClosed());
  // The deadline has passed for the early client too, but it had entered transmission.
  EXPECT_EQ(early.Read(0, 512).error, 0u) << "an established client is not subject to the deadline";
}

TEST(NbdServerLimits, ClientStuckInOptionHagglingIsDroppedAtTheDeadline) {
  TempDir dir;
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  NbdServerOptions options = LocalOptions(dir);
  options.handshake_timeout = std::chrono::milliseconds(300);
  auto server = NbdServer::Start(target, options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  RawClient slow = RawClient::Connect(**server);
  ASSERT_TRUE(slow.ReadGreeting());
  ASSERT_TRUE(slow.SendU32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes));
  ASSERT_TRUE(slow.SendOption(nbd::kOptList, {}));
  EXPECT_EQ(slow.ReadOptionReply().type, nbd::kRepServer);
  EXPECT_EQ(slow.ReadOptionReply().type, nbd::kRepAck);
  EXPECT_TRUE(slow.SeesClosed()) << "options alone do not keep a client past the deadline";
}

TEST(NbdServerLimits, SilentClientsCannotKeepANewcomerOut) {
  TempDir dir;
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  NbdServerOptions options = LocalOptions(dir);
  options.max_negotiating = 4;
  options.handshake_timeout = std::chrono::minutes(10);  // only the slots are under test
  auto server = NbdServer::Start(target, options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  std::vector<RawClient> silent;
  for (int i = 0; i < 12; ++i) {
    silent.push_back(RawClient::Connect(**server));
    ASSERT_TRUE(silent.back().ReadGreeting()) << "silent client " << i << " was accepted";
  }
  RawClient owner = RawClient::Connect(**server);
  ASSERT_TRUE(owner.Open({"disk"})) << "the newcomer negotiates although 12 clients sit silent";
  const Bytes data = Pattern(4096, 21);
  EXPECT_EQ(owner.Write(0, data).error, 0u);
  EXPECT_TRUE(owner.Read(0, 4096).data == data);
  // The oldest silent clients were pushed out; the newest few keep their slots.
  EXPECT_TRUE(silent.front().SeesClosed());
  EXPECT_LE((*server)->negotiating_count(), 4u);
}

// --- who gets the export ------------------------------------------------------------------------

TEST(NbdServerHiddenName, ListRevealsNothingAndOnlyTheExactNameSelects) {
  TempDir dir;
  auto target = std::make_shared<MemoryTarget>(kTargetSize);
  NbdServerOptions options = LocalOptions(dir);
  options.export_name = std::string(64, 'a') ;
  options.export_name[63] = 'b';
  options.hidden_name = true;
  auto server = NbdServer::Start(target, options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  RawClient client = RawClient::Connect(**server);
  ASSERT_TRUE(client.ReadGreeting());
  ASSERT_TRUE(client.SendU32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes));
  ASSERT_TRUE(client.SendOption(nbd::kOptList, {}));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck) << "NBD_OPT_LIST lists no export";
  for (const std::string& guess : {std::string(), std::string("disk"), std::string(64, 'a')}) {
    ASSERT_TRUE(client.SendOption(nbd::kOptInfo, RawClient::GoData(guess, {})));
    EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrUnknown) << "INFO '" << guess << "'";
    ASSERT_TRUE(client.SendOption(nbd::kOptGo, RawClient::GoData(guess, {})));
    EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrUnknown) << "GO '" << guess << "'";
  }
  client.Close();
  RawClient guesser = RawClient::Connect(**server);
  ASSERT_TRUE(guesser.ReadGreeting());
  ASSERT_TRUE(guesser.SendU32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes));
  ASSERT_TRUE(guesser.SendOption(nbd::kOptExportName, AsBytes("")));
  EXPECT_TRUE(guesser.SeesClosed()) << "NBD_OPT_EXPORT_NAME of the default name";
  RawClient owner = RawClient::Connect(**server);
  ASSERT_TRUE(owner.Open({options.export_name}));
  EXPECT_EQ(owner.Read(0, 512).error, 0u);
}

#ifndef _WIN32
class NbdServerTls : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TlsSupported()) GTEST_SKIP() << "built without TLS";
    target_ = std::make_shared<MemoryTarget>(kTargetSize);
    NbdServerOptions options;
    options.transport = NbdServerOptions::Transport::kTcp;
    options.export_name = "disk";
    options.tls_psk = TlsPsk{"owner", std::string(64, '7')};
    options.tls_psk_file = dir_ / "keys.psk";
    { std::ofstream(options.tls_psk_file) << PskFileLine(*options.tls_psk); }
    { std::ofstream(dir_ / "wrong.psk") << "owner:" << std::string(63, '7') << "8\n"; }
    { std::ofstream(dir_ / "other-user.psk") << "intruder:" << std::string(64, '7') << "\n"; }
    auto server = NbdServer::Start(target_, options);
    ASSERT_TRUE(server.ok()) << server.status().message();
    server_ = std::move(*server);
  }

  std::string Endpoint() const { return "127.0.0.1:" + std::to_string(server_->port()); }

  TempDir dir_;
  std::shared_ptr<MemoryTarget> target_;
  std::unique_ptr<NbdServer> server_;
};

TEST_F(NbdServerTls, EveryOptionBeforeStartTlsIsRefusedWithTlsRequired) {
  RawClient client = RawClient::Connect(*server_);
  ASSERT_TRUE(client.ReadGreeting());
  ASSERT_TRUE(client.SendU32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes));
  for (const std::uint32_t option : {nbd::kOptList, nbd::kOptStructuredReply, nbd::kOptInfo,
                                     nbd::kOptGo, nbd::kOptListMetaContext, 42u}) {
    const Bytes data = option == nbd::kOptInfo || option == nbd::kOptGo
                           ? RawClient::GoData("disk", {})
                           : Bytes();
    ASSERT_TRUE(client.SendOption(option, data));
    const OptionReply reply = client.ReadOptionReply();
    EXPECT_EQ(reply.option, option);
    EXPECT_EQ(reply.type, nbd::kRepErrTlsReqd) << "option " << option;
  }
  ASSERT_TRUE(client.SendOption(nbd::kOptExportName, AsBytes("disk")));
  EXPECT_TRUE(client.SeesClosed()) << "NBD_OPT_EXPORT_NAME without TLS ends the connection";
  EXPECT_EQ(target_->writes(), 0);
}

TEST_F(NbdServerTls, StartTlsWithoutTheKeyIsDropped) {
  RawClient client = RawClient::Connect(*server_);
  ASSERT_TRUE(client.ReadGreeting());
  ASSERT_TRUE(client.SendU32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes));
  ASSERT_TRUE(client.SendOption(nbd::kOptStartTls, {}));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck);
  // Not a TLS ClientHello: the handshake fails and the server hangs up.
  ASSERT_TRUE(client.SendOption(nbd::kOptGo, RawClient::GoData("disk", {})));
  EXPECT_TRUE(client.SeesClosed());
}

TEST_F(NbdServerTls, NbdinfoWithTheKeyIsServedAndWithoutItIsNot) {
  if (vdisk_unit::HostTool("nbdinfo").empty()) {
    VDISK_ORACLE_MISSING("nbdinfo (libnbd-bin) is not installed");
  }
  if (vdisk_unit::HostTool("nbdcopy").empty()) {
    VDISK_ORACLE_MISSING("nbdcopy (libnbd-bin) is not installed");
  }
  const Bytes data = Pattern(65536, 5);
  ASSERT_TRUE(target_->Write(kMiB, data).ok());
  EXPECT_EQ(server_->uri(), "nbds://owner@" + Endpoint() + "/disk?tls-psk-file=" +
                                (dir_ / "keys.psk").generic_string());
  std::string out;
  ASSERT_EQ(vdisk_unit::HostShell("nbdinfo --size '" + server_->uri() + "'", &out), 0) << out;
  EXPECT_EQ(std::stoull(out), kTargetSize) << out;
  // nbdcopy reads the export into a file: the same bytes as the target.
  const fs::path copy = dir_ / "copy.raw";
  ASSERT_EQ(vdisk_unit::HostShell("nbdcopy '" + server_->uri() + "' " +
                                      vdisk_unit::ShellQuote(copy), &out), 0) << out;
  std::ifstream in(copy, std::ios::binary);
  Bytes copied(kTargetSize);
  in.read(reinterpret_cast<char*>(copied.data()), static_cast<std::streamsize>(copied.size()));
  ASSERT_TRUE(in) << "nbdcopy wrote a short copy";
  EXPECT_TRUE(std::equal(data.begin(), data.end(), copied.begin() + kMiB));
  // Without TLS, with a wrong key, or under another name: no export.
  EXPECT_NE(vdisk_unit::HostShell("nbdinfo --list 'nbd://" + Endpoint() + "'", &out), 0) << out;
  EXPECT_EQ(out.find("disk"), std::string::npos) << out;
  for (const char* file : {"wrong.psk", "other-user.psk"}) {
    const std::string user = std::string(file) == "other-user.psk" ? "intruder" : "owner";
    const std::string uri = "nbds://" + user + "@" + Endpoint() +
                            "/disk?tls-psk-file=" + (dir_ / file).generic_string();
    EXPECT_NE(vdisk_unit::HostShell("nbdinfo --size '" + uri + "'", &out), 0) << file << out;
    EXPECT_NE(vdisk_unit::HostShell("nbdcopy " + vdisk_unit::ShellQuote(copy) + " '" + uri + "'",
                                    &out), 0) << file << out;
  }
  EXPECT_TRUE(target_->Snapshot(kMiB, data.size()) == data);
}
#endif

// --- Stop ---------------------------------------------------------------------------------------

TEST_F(NbdServerTest, StopDisconnectsEveryClientFlushesAndCanBeRepeated) {
  RawClient idle = Connect();         // never says anything
  RawClient negotiating = Connect();  // in the middle of the handshake
  ASSERT_TRUE(negotiating.ReadGreeting());
  ASSERT_TRUE(negotiating.SendU32(nbd::kClientFlagFixedNewstyle));
  RawClient transmitting = OpenGoodClient();  // in transmission
  ASSERT_EQ(transmitting.Write(0, Pattern(4096, 1)).error, 0u);
  const int flushes = target_->flushes();

  std::thread other([&] { EXPECT_TRUE(server_->Stop().ok()); });
  EXPECT_TRUE(server_->Stop().ok());
  other.join();
  EXPECT_TRUE(server_->Stop().ok()) << "a third Stop";
  EXPECT_GT(target_->flushes(), flushes) << "Stop flushes the target";
  EXPECT_EQ(server_->connection_count(), 0u);
  EXPECT_TRUE(idle.SeesClosed());
  EXPECT_TRUE(negotiating.SeesClosed());
  EXPECT_TRUE(transmitting.SeesClosed());
#ifndef _WIN32
  EXPECT_FALSE(fs::exists(server_->options().socket_path));
#endif
}

TEST_F(NbdServerTest, StopLetsTheRequestInFlightFinish) {
  std::mutex m;
  std::condition_variable cv;
  bool entered = false;
  bool release = false;
  target_->set_write_hook([&] {
    std::unique_lock lock(m);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  RawClient client = OpenGoodClient();
  const Bytes data = Pattern(4096, 5);
  ASSERT_TRUE(client.SendRequest(nbd::kCmdWrite, 0, 42, 4096, 4096, data));
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return entered; });
  }
  // The write is in the target; Stop starts, and the write is then let go.
  std::thread stopper([&] { EXPECT_TRUE(server_->Stop().ok()); });
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  const Reply reply = client.ReadReply();
  EXPECT_TRUE(reply.ok) << "the request in flight is answered";
  EXPECT_EQ(reply.error, 0u);
  EXPECT_EQ(reply.cookie, 42u);
  EXPECT_TRUE(client.SeesClosed());
  stopper.join();
  EXPECT_TRUE(target_->Snapshot(4096, 4096) == data);
}

TEST_F(NbdServerTest, DestructorStopsAServerWithClients) {
  RawClient client = OpenGoodClient();
  server_.reset();
  EXPECT_TRUE(client.SeesClosed());
}

}  // namespace
}  // namespace vdisk::attach
