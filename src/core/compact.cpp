#include "core/compact.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "base/bytes.h"

namespace vdisk {
namespace {

// Installed on the disk's write path for the duration of a compaction: writes pass straight
// through, and no mirror can start meanwhile (OpenDisk takes one fan-out at a time), since a
// mirror copies blocks by their file offsets, which a compaction changes.
class CompactionFanout final : public WriteFanout {
 public:
  Status Write(VirtualDisk& active, std::uint64_t offset,
               std::span<const std::byte> data) override {
    return active.Write(offset, data);
  }
};

class DiskCompactEnvironment final : public CompactEnvironment {
 public:
  DiskCompactEnvironment(OpenDisk& open, VirtualDisk& disk, OperationControl& control)
      : open_(open), disk_(disk), control_(control) {}

  bool cancelled() const override { return control_.cancelled(); }
  void SetProgress(std::uint64_t done, std::uint64_t total) override {
    control_.SetProgress(done, total);
  }
  Status Exclusive(const std::function<Status()>& step) override { return open_.Drained(step); }

  Result<bool> BelowReadsZero(std::uint64_t offset, std::uint64_t length) override {
    const auto& chain = disk_.chain();
    // Opened without its parents (OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS): what lies below is
    // unknown, so nothing may fall through to it.
    if (chain.size() == 1) return !chain.front()->parent().has_value();
    return LayerReadsZero(1, offset, length);
  }

 private:
  Result<bool> LayerReadsZero(std::size_t level, std::uint64_t offset, std::uint64_t length) {
    const auto& chain = disk_.chain();
    if (level >= chain.size()) return true;
    Image& image = *chain[level];
    const std::uint64_t end = offset + length;
    while (offset < end) {
      VDISK_ASSIGN_OR_RETURN(const Extent extent, image.Map(offset, end - offset));
      switch (extent.kind) {
        case Extent::Kind::kZero:
          break;
        case Extent::Kind::kParent: {
          VDISK_ASSIGN_OR_RETURN(const bool zero, LayerReadsZero(level + 1, offset, extent.length));
          if (!zero) return false;
          break;
        }
        case Extent::Kind::kData:
          for (std::uint64_t at = 0; at < extent.length;) {
            const std::uint64_t n = std::min<std::uint64_t>(kChunk, extent.length - at);
            buffer_.resize(static_cast<std::size_t>(n));
            VDISK_RETURN_IF_ERROR(image.ReadData(extent.file_offset + at, buffer_));
            if (!AllZero(buffer_)) return false;
            at += n;
          }
          break;
      }
      offset += extent.length;
    }
    return true;
  }

  static constexpr std::uint64_t kChunk = std::uint64_t{1} << 20;
  OpenDisk& open_;
  VirtualDisk& disk_;
  OperationControl& control_;
  std::vector<std::byte> buffer_;
};

}  // namespace

Status CheckCompactable(OpenDisk& disk) {
  const std::string name = disk.key().string();
  if (disk.handed_over()) {
    return Status(Code::kDiskAlreadyOwned,
                  name + ": attached by an attach host, which must detach it before compaction");
  }
  // "To use Optimize-VHD, the virtual hard disk must not be attached or must be attached in
  // read-only mode" (Microsoft, Optimize-VHD); "A virtual disk can be compacted only if it is
  // detached, or attached and opened with read-only access" (IVdsOpenVDisk::Compact). The code
  // is Windows' "cannot be performed on the virtual disk in its current state".
  if (disk.attached() && !disk.attached_read_only()) {
    return Status(Code::kVhdInvalidState,
                  name + ": attached read-write; compaction needs the disk detached or attached "
                         "read-only");
  }
  const std::shared_ptr<VirtualDisk> active = disk.disk();
  if (active->read_only()) {
    return Status(Code::kWriteProtect, name + ": opened read-only; compaction changes the file");
  }
  if (active->top().subtype() == DiskSubtype::kFixed) {
    return Status(Code::kVhdInvalidType,
                  name + ": a fixed disk cannot be compacted (only dynamic and differencing)");
  }
  return Status::Ok();
}

Result<CompactReport> CompactDisk(OpenDisk& disk, const CompactOptions& options,
                                  OperationControl& control) {
  VDISK_RETURN_IF_ERROR(CheckCompactable(disk));
  const std::shared_ptr<VirtualDisk> active = disk.disk();
  VDISK_RETURN_IF_ERROR(disk.SetWriteFanout(std::make_shared<CompactionFanout>()));
  // Removed however the compaction ends, an exception included.
  struct FanoutRemover {
    OpenDisk& disk;
    ~FanoutRemover() { disk.ClearWriteFanout(); }
  };
  Result<CompactReport> report = Status(Code::kInternal, "compaction did not run");
  {
    FanoutRemover remover{disk};
    DiskCompactEnvironment env(disk, *active, control);
    report = active->top().Compact(options, env);
  }
  if (report.ok()) {
    // What the disk caches about its file does not change; the data is durable step by step.
    VDISK_RETURN_IF_ERROR(active->Flush());
  }
  return report;
}

}  // namespace vdisk
