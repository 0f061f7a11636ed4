// vdisk convert SRC DST [--type vhd|vhdx|raw] [--fixed] [-p]
//
// Raw, VHD and VHDX in any direction. Sparse both ways: ranges a disk does not hold are not
// read (libvirtdisk tells them), and all-zero chunks are not written, so they stay unallocated
// in a VHD/VHDX target and holes in a raw file.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "client.h"
#include "commands.h"
#include "errors.h"
#include "options.h"
#include "progress.h"
#include "stream.h"

namespace vdisk_tool {
namespace {

struct ConvertOptions {
  std::string source, target, type, block_size;
  bool fixed = false;
  bool progress = false;
};

// What the file holds, by its first and last bytes: a VHDX starts with "vhdxfile", a VHD ends
// (or, dynamic, also starts) with a "conectix" footer; an ISO is named so. Anything else is raw.
ImageFormat SniffFormat(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return ImageFormat::kUnknown;
  std::array<char, 8> head{};
  file.read(head.data(), head.size());
  const std::string_view first(head.data(), static_cast<std::size_t>(file.gcount()));
  if (first == "vhdxfile") return ImageFormat::kVhdx;
  if (first == "conectix") return ImageFormat::kVhd;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (!ec && size >= 512) {
    for (const std::uint64_t footer : {size - 512, size - 511}) {
      file.clear();
      file.seekg(static_cast<std::streamoff>(footer));
      file.read(head.data(), head.size());
      if (file.gcount() == 8 && std::string_view(head.data(), 8) == "conectix") return ImageFormat::kVhd;
    }
  }
  return ImageFormat::kRaw;
}

bool IsIso(const fs::path& path) {
  std::string extension = path.extension().string();
  for (auto& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return extension == ".iso";
}

// The source, read chunk by chunk with the ranges that may hold data.
class Source {
 public:
  virtual ~Source() = default;
  virtual std::uint64_t size() const = 0;
  virtual std::vector<DiskRange> DataRanges() = 0;
  virtual void Read(std::uint64_t offset, std::span<std::byte> out) = 0;
};

class DiskSource : public Source {
 public:
  explicit DiskSource(const fs::path& path) : disk_(path, false), name_(path.string()) {}
  std::uint64_t size() const override { return disk_.geometry().virtual_size; }
  std::vector<DiskRange> DataRanges() override {
    auto ranges = AllocatedRanges(disk_.handle(), size(), name_);
    std::erase_if(ranges, [](const DiskRange& r) { return !r.data; });
    return ranges;
  }
  void Read(std::uint64_t offset, std::span<std::byte> out) override { disk_.Read(offset, out); }

 private:
  RawDisk disk_;
  std::string name_;
};

class RawSource : public Source {
 public:
  explicit RawSource(const fs::path& path) : name_(path.string()), file_(path, std::ios::binary) {
    if (!file_) throw Failure(name_, "cannot open");
    size_ = fs::file_size(path);
  }
  std::uint64_t size() const override { return size_; }
  std::vector<DiskRange> DataRanges() override { return {DiskRange{0, size_}}; }
  void Read(std::uint64_t offset, std::span<std::byte> out) override {
    std::memset(out.data(), 0, out.size());  // a short last sector reads as zeros after the end
    file_.clear();
    file_.seekg(static_cast<std::streamoff>(offset));
    file_.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
    if (file_.bad()) throw Failure(name_, fmt::format("reading at offset {} failed", offset));
  }

 private:
  std::string name_;
  std::ifstream file_;
  std::uint64_t size_ = 0;
};

// Standard input as a raw source: spooled into a sparse temporary file first (a disk target
// needs the size before the first write).
fs::path SpoolStdin(const fs::path& beside) {
  const fs::path dir = beside.parent_path().empty() ? fs::path(".") : beside.parent_path();
  const fs::path spool = dir / fmt::format(".vdisk-stdin-{}.raw", static_cast<unsigned>(std::rand()));
  auto in = InputStream::Open("-");
  auto out = OutputStream::Create(spool.string(), /*sparse=*/true);
  WorkBuffer buffer;
  std::uint64_t total = 0;
  for (;;) {
    const std::size_t n = in->Read(buffer.first(buffer.size()));
    if (n == 0) break;
    out->Write(total, buffer.first(n));
    total += n;
  }
  out->Finish(total);
  return spool;
}

// The target, written chunk by chunk; all-zero chunks are never passed to it.
class Target {
 public:
  virtual ~Target() = default;
  virtual void Write(std::uint64_t offset, std::span<const std::byte> data) = 0;
  virtual void Finish() = 0;
};

class DiskTarget : public Target {
 public:
  DiskTarget(const fs::path& path, ImageFormat format, std::uint64_t size, bool fixed,
             std::uint64_t block_size)
      : path_(path) {
    const ULONG device =
        format == ImageFormat::kVhd ? VIRTUAL_STORAGE_TYPE_DEVICE_VHD : VIRTUAL_STORAGE_TYPE_DEVICE_VHDX;
    VIRTUAL_STORAGE_TYPE type = StorageType(device);
    CREATE_VIRTUAL_DISK_PARAMETERS parameters{};
    parameters.Version = CREATE_VIRTUAL_DISK_VERSION_2;
    parameters.Version2.MaximumSize = size;
    parameters.Version2.BlockSizeInBytes = fixed ? 0 : static_cast<ULONG>(block_size);
    const WString wide = ToWide(path);
    OwnedHandle created;
    Check(CreateVirtualDisk(&type, wide.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                            fixed ? CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION
                                  : CREATE_VIRTUAL_DISK_FLAG_NONE,
                            0, &parameters, nullptr, created.Receive()),
          path.string(), "creating");
    created_ = true;
    created.Close(path.string());
    disk_ = std::make_unique<RawDisk>(path, true);
  }
  ~DiskTarget() override {
    if (!finished_) {
      disk_.reset();
      std::error_code ec;
      if (created_) fs::remove(path_, ec);
    }
  }
  void Write(std::uint64_t offset, std::span<const std::byte> data) override {
    disk_->Write(offset, data);
  }
  void Finish() override {
    disk_->Close();
    finished_ = true;
  }

 private:
  fs::path path_;
  bool created_ = false;
  bool finished_ = false;
  std::unique_ptr<RawDisk> disk_;
};

class RawTarget : public Target {
 public:
  RawTarget(const std::string& path, std::uint64_t size)
      : out_(OutputStream::Create(path, /*sparse=*/path != "-")), size_(size) {}
  void Write(std::uint64_t offset, std::span<const std::byte> data) override { out_->Write(offset, data); }
  void Finish() override { out_->Finish(size_); }

 private:
  std::unique_ptr<OutputStream> out_;
  std::uint64_t size_;
};

int RunConvert(const ConvertOptions& o) {
  ImageFormat target_format = o.type.empty() ? FormatFromName(o.target) : ParseFormat("--type", o.type);
  if (IsStdio(o.target) && o.type.empty()) target_format = ImageFormat::kRaw;
  if (target_format == ImageFormat::kUnknown) {
    throw UsageError(fmt::format("cannot tell the target format from '{}': name it .vhd, .vhdx, "
                                 ".raw or .img, or give --type vhd|vhdx|raw", o.target));
  }
  if (IsStdio(o.target) && target_format != ImageFormat::kRaw) {
    throw UsageError("only a raw image can be written to standard output");
  }
  if (o.fixed && target_format == ImageFormat::kRaw) throw UsageError("--fixed is for VHD and VHDX targets");
  if (!IsStdio(o.target)) {
    std::error_code ec;
    if (fs::exists(o.target, ec)) {
      throw Failure(o.target, "creating", ERROR_FILE_EXISTS, "the target already exists; remove it first");
    }
  }
  // Convert makes small blocks by default: the target then holds little beyond the data.
  const std::uint64_t block_size = o.block_size.empty() ? (2u << 20) : ParseSize("--block-size", o.block_size);

  fs::path spool;
  struct SpoolRemover {
    fs::path* path;
    ~SpoolRemover() {
      std::error_code ec;
      if (!path->empty()) fs::remove(*path, ec);
    }
  } remover{&spool};
  std::unique_ptr<Source> source;
  if (IsStdio(o.source)) {
    spool = SpoolStdin(IsStdio(o.target) ? fs::path("x") : fs::path(o.target));
    source = std::make_unique<RawSource>(spool);
  } else {
    std::error_code ec;
    if (!fs::exists(o.source, ec)) throw Failure(o.source, "opening", ERROR_FILE_NOT_FOUND, "no such file");
    if (fs::is_directory(o.source, ec)) throw Failure(o.source, "opening", ERROR_DIRECTORY, "is a directory");
    const ImageFormat named = FormatFromName(o.source);
    const bool raw = named == ImageFormat::kRaw ||
                     (!IsIso(o.source) && named == ImageFormat::kUnknown && SniffFormat(o.source) == ImageFormat::kRaw);
    if (raw) {
      source = std::make_unique<RawSource>(o.source);
    } else {
      source = std::make_unique<DiskSource>(o.source);
    }
  }
  const std::uint64_t size = source->size();
  const std::uint64_t disk_size = (size + kMinimumSector - 1) / kMinimumSector * kMinimumSector;
  std::unique_ptr<Target> target;
  if (target_format == ImageFormat::kRaw) {
    target = std::make_unique<RawTarget>(o.target, size);
  } else {
    target = std::make_unique<DiskTarget>(o.target, target_format, disk_size, o.fixed, block_size);
  }
  InstallInterruptHandlers();
  ProgressBar bar("convert", o.progress ? ProgressBar::Mode::kForced : ProgressBar::Mode::kOff);
  WorkBuffer buffer;
  std::uint64_t written = 0;
  for (const DiskRange& range : source->DataRanges()) {
    for (std::uint64_t at = range.offset; at < range.offset + range.length;) {
      if (const int signal = InterruptSignal()) {
        bar.Finish(false);
        target.reset();  // removes the unfinished target
        std::fprintf(stderr, "vdisk: convert interrupted; %s removed\n", o.target.c_str());
        return kExitSignalBase + signal;
      }
      const std::uint64_t end = std::min(range.offset + range.length, disk_size);
      const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), end - at));
      if (chunk == 0) break;
      const auto bytes = buffer.first(chunk);
      source->Read(at, bytes);
      if (!AllZero(bytes)) {
        // A raw target keeps the source's exact length; a disk's last sector is padded.
        const std::size_t keep = target_format == ImageFormat::kRaw
                                     ? static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - at))
                                     : chunk;
        target->Write(at, bytes.first(keep));
        written += keep;
      }
      at += chunk;
      bar.Update(at, disk_size);
    }
  }
  target->Finish();
  bar.Finish(true);
  if (!IsStdio(o.target)) {
    fmt::print("converted {} to {} ({}): {} of data written, the rest left unallocated\n",
               o.source, o.target, FormatName(target_format), HumanBytes(written));
  }
  return 0;
}

}  // namespace

void AddConvertCommand(CLI::App& app, RunState& state) {
  auto o = std::make_shared<ConvertOptions>();
  auto* cmd = app.add_subcommand("convert", "Copy a disk into another format (raw, VHD, VHDX), sparsely");
  cmd->add_option("SRC", o->source, "Source: VHD, VHDX, ISO or raw (by extension or content; '-': raw from standard input)")->required();
  cmd->add_option("DST", o->target, "Target, created ('-': raw to standard output)")->required();
  cmd->add_option("-t,--type", o->type, "vhd, vhdx or raw (default: from DST's extension)");
  cmd->add_flag("--fixed", o->fixed, "Make a fixed VHD/VHDX");
  cmd->add_option("--block-size", o->block_size, "Block size of a VHD/VHDX target (default 2M)");
  cmd->add_flag("-p,--progress", o->progress, "Show progress");
  cmd->callback([o, &state] { state.exit_code = RunConvert(*o); });
}

}  // namespace vdisk_tool
