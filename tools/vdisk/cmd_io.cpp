// vdisk write / read: raw sectors of a disk, from and to files or standard input and output.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "options.h"
#include "stream.h"

namespace vdisk_tool {
namespace {

struct WriteOptions {
  std::string path, offset, length, pattern, from;
};
struct ReadOptions {
  std::string path, offset, length, to;
};

std::uint64_t SectorMultiple(const char* option, const std::string& text) {
  const std::uint64_t value = ParseSize(option, text);
  if (value % kMinimumSector != 0) {
    throw UsageError(fmt::format("{} {} is not a multiple of 512: raw I/O moves whole sectors",
                                 option, value));
  }
  return value;
}

int RunWrite(const WriteOptions& o) {
  if (o.pattern.empty() == o.from.empty()) {
    throw UsageError("give exactly one of --pattern BYTE and --from FILE ('-': standard input)");
  }
  const std::uint64_t offset = SectorMultiple("--offset", o.offset);
  std::optional<unsigned> pattern;
  std::unique_ptr<InputStream> from;
  std::uint64_t length = 0;
  if (!o.pattern.empty()) {
    pattern = ParseByte("--pattern", o.pattern);
    if (o.length.empty()) throw UsageError("--length is required with --pattern");
    length = SectorMultiple("--length", o.length);
  } else {
    from = InputStream::Open(o.from);
    if (!o.length.empty()) {
      length = SectorMultiple("--length", o.length);
    } else if (const auto size = from->size()) {
      length = *size;
      if (length % kMinimumSector != 0) {
        throw UsageError(fmt::format("--from '{}' holds {} bytes, not a multiple of 512: give a "
                                     "--length that is", o.from, length));
      }
    } else {
      throw UsageError("--length is required when --from is standard input");
    }
  }
  if (length == 0) throw UsageError("--length must not be 0");
  RawDisk disk(o.path, true);
  disk.CheckRange(offset, length);
  WorkBuffer buffer;
  if (pattern) std::memset(buffer.first(buffer.size()).data(), static_cast<int>(*pattern), buffer.size());
  for (std::uint64_t done = 0; done < length;) {
    const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - done));
    const auto bytes = buffer.first(chunk);
    if (from && from->Read(bytes) != chunk) {
      throw Failure(o.from, fmt::format("ends after {} bytes, before --length {}", done, length));
    }
    disk.Write(offset + done, bytes);
    done += chunk;
  }
  disk.Close();
  fmt::print("wrote {} at offset {} of {}{}\n", Bytes(length), offset, o.path,
             pattern ? fmt::format(", pattern 0x{:02x}", *pattern) : ", from " + o.from);
  return 0;
}

void HexLine(std::uint64_t offset, std::span<const std::byte> bytes) {
  std::string line = fmt::format("{:08x} ", offset);
  for (std::size_t i = 0; i < 16; ++i) {
    if (i % 8 == 0) line += ' ';
    line += i < bytes.size() ? fmt::format("{:02x} ", static_cast<unsigned>(bytes[i])) : "   ";
  }
  line += " |";
  for (const std::byte b : bytes) {
    const auto c = static_cast<unsigned char>(b);
    line += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
  }
  fmt::print("{}|\n", line);
}

int RunRead(const ReadOptions& o) {
  const std::uint64_t offset = SectorMultiple("--offset", o.offset);
  const std::uint64_t length = SectorMultiple("--length", o.length);
  if (length == 0) throw UsageError("--length must not be 0");
  std::unique_ptr<OutputStream> to;
  if (!o.to.empty()) to = OutputStream::Create(o.to, /*sparse=*/false);
  RawDisk disk(o.path, false);
  disk.CheckRange(offset, length);
  WorkBuffer buffer;
  constexpr std::size_t kShown = 64;
  std::vector<std::byte> head;
  bool uniform = true;
  std::byte first{};
  for (std::uint64_t done = 0; done < length;) {
    const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - done));
    const auto bytes = buffer.first(chunk);
    disk.Read(offset + done, bytes);
    if (to) {
      to->Write(done, bytes);
    } else {
      if (done == 0) first = bytes[0];
      if (head.size() < kShown) {
        head.insert(head.end(), bytes.begin(),
                    bytes.begin() + static_cast<std::ptrdiff_t>(std::min(kShown - head.size(), chunk)));
      }
      uniform = uniform && std::all_of(bytes.begin(), bytes.end(), [&](std::byte b) { return b == first; });
    }
    done += chunk;
  }
  disk.Close();
  if (to) {
    to->Finish(length);
    if (!IsStdio(o.to)) {
      fmt::print("read {} at offset {} of {} into {}\n", Bytes(length), offset, o.path, o.to);
    }
    return 0;
  }
  for (std::size_t i = 0; i < head.size(); i += 16) {
    HexLine(offset + i, std::span<const std::byte>(head).subspan(i, std::min<std::size_t>(16, head.size() - i)));
  }
  if (uniform) {
    fmt::print("all {} bytes = 0x{:02X}\n", length, static_cast<unsigned>(first));
  } else if (length > kShown) {
    fmt::print("... {} more bytes, not all equal (use --to FILE for all of them)\n", length - kShown);
  }
  return 0;
}

}  // namespace

void AddIoCommands(CLI::App& app, RunState& state) {
  auto w = std::make_shared<WriteOptions>();
  auto* write = app.add_subcommand("write", "Write raw sectors: a byte pattern or a file's bytes");
  write->add_option("PATH", w->path, "The disk")->required();
  write->add_option("--offset", w->offset, "Where to write (a multiple of the sector size)")->required();
  write->add_option("--length", w->length, "How many bytes (default: all of --from)");
  write->add_option("--pattern", w->pattern, "Write this byte (0..255, 0xAB)");
  write->add_option("--from", w->from, "Write this file's bytes ('-': standard input)");
  write->callback([w, &state] { state.exit_code = RunWrite(*w); });

  auto r = std::make_shared<ReadOptions>();
  auto* read = app.add_subcommand("read", "Read raw sectors into a file, or show their first bytes");
  read->add_option("PATH", r->path, "The disk")->required();
  read->add_option("--offset", r->offset, "Where to read (a multiple of the sector size)")->required();
  read->add_option("--length", r->length, "How many bytes")->required();
  read->add_option("--to", r->to, "Write them to this file ('-': standard output)");
  read->callback([r, &state] { state.exit_code = RunRead(*r); });
}

}  // namespace vdisk_tool
