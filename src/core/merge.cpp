#include "core/merge.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace vdisk {
namespace {

// The disk is merged in windows of this many bytes: cancellation and progress are checked
// between windows, and a window of several merged images is read through the chain at once.
constexpr std::uint64_t kWindow = 4u << 20;


Status Aborted(const VirtualDisk& chain) {
  return Status(Code::kOperationAborted,
                chain.top().file().path().string() +
                    ": merge cancelled; the chain reads as before and a new merge completes it");
}

// One merged image above the target: its data extents go straight to the target, a file range
// copied by the kernel where the files allow it (Image::WriteFromFile).
Status CopyOneImage(Image& source, Image& target, std::uint64_t offset, std::uint64_t length,
                    std::vector<std::byte>& buffer) {
  const std::uint64_t end = offset + length;
  while (offset < end) {
    VDISK_ASSIGN_OR_RETURN(const Extent e, source.Map(offset, end - offset));
    const std::uint64_t n = std::min(e.length, end - offset);
    if (n == 0) return Status(Code::kInternal, "image mapped an empty extent");
    if (e.kind == Extent::Kind::kData && source.data_in_file()) {
      VDISK_ASSIGN_OR_RETURN(const auto method,
                             target.WriteFromFile(offset, n, source.file(), e.file_offset));
      (void)method;
    } else if (e.kind != Extent::Kind::kParent) {
      for (std::uint64_t done = 0; done < n;) {
        const auto piece_size = std::min<std::uint64_t>(buffer.size(), n - done);
        auto piece = std::span(buffer).first(static_cast<std::size_t>(piece_size));
        if (e.kind == Extent::Kind::kData) {
          VDISK_RETURN_IF_ERROR(source.ReadData(e.file_offset + done, piece));
        } else {
          std::fill(piece.begin(), piece.end(), std::byte{0});
        }
        VDISK_RETURN_IF_ERROR(target.Write(offset + done, piece));
        done += piece_size;
      }
    }
    offset += n;
  }
  return Status::Ok();
}

// Several merged images: the sectors any of them holds are read through the chain from the
// source level (the upper image wins) and written to the target.
Status CopyImages(VirtualDisk& chain, const MergeRequest& request, std::uint64_t offset,
                  std::uint64_t length, std::vector<std::byte>& buffer) {
  const std::uint32_t sector = chain.sector_size();
  std::vector<bool> covered(static_cast<std::size_t>(length / sector), false);
  for (std::size_t level = request.source_level; level < request.target_level; ++level) {
    Image& image = *chain.chain()[level];
    for (std::uint64_t at = offset; at < offset + length;) {
      VDISK_ASSIGN_OR_RETURN(const Extent e, image.Map(at, offset + length - at));
      const std::uint64_t n = std::min(e.length, offset + length - at);
      if (n == 0) return Status(Code::kInternal, "image mapped an empty extent");
      if (e.kind != Extent::Kind::kParent) {
        std::fill_n(covered.begin() + static_cast<std::ptrdiff_t>((at - offset) / sector),
                    static_cast<std::ptrdiff_t>(n / sector), true);
      }
      at += n;
    }
  }
  Image& target = *chain.chain()[request.target_level];
  for (std::size_t i = 0; i < covered.size();) {
    if (!covered[i]) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < covered.size() && covered[j]) ++j;
    const std::uint64_t at = offset + std::uint64_t{i} * sector;
    auto piece = std::span(buffer).first(static_cast<std::size_t>((j - i) * sector));
    VDISK_RETURN_IF_ERROR(chain.ReadFromLevel(request.source_level, at, piece));
    VDISK_RETURN_IF_ERROR(target.Write(at, piece));
    i = j;
  }
  return Status::Ok();
}

}  // namespace

Status CheckMerge(const VirtualDisk& disk, const MergeRequest& request) {
  const std::size_t levels = disk.chain().size();
  if (request.source_level >= request.target_level || request.target_level >= levels) {
    return Status(Code::kInvalidParameter,
                  disk.top().file().path().string() + ": cannot merge depth " +
                      std::to_string(request.source_level + 1) + " into depth " +
                      std::to_string(request.target_level + 1) + ": the chain has " +
                      std::to_string(levels) + (levels == 1 ? " file" : " files") +
                      " (depth 1 is the top; the target must be below the source)");
  }
  return Status::Ok();
}

Status CopyMergedData(VirtualDisk& chain, const MergeRequest& request,
                      OperationControl& control) {
  VDISK_RETURN_IF_ERROR(CheckMerge(chain, request));
  Image& target = *chain.chain()[request.target_level];
  if (target.read_only()) {
    return Status(Code::kWriteProtect,
                  target.file().path().string() + ": merge target opened read-only");
  }
  const std::uint64_t size = chain.size();
  std::vector<std::byte> buffer(static_cast<std::size_t>(kWindow));
  const bool one_image = request.target_level == request.source_level + 1;
  for (std::uint64_t offset = 0; offset < size; offset += kWindow) {
    if (control.cancelled()) {
      VDISK_RETURN_IF_ERROR(target.Flush());
      return Aborted(chain);
    }
    const std::uint64_t length = std::min(kWindow, size - offset);
    Status status = one_image ? CopyOneImage(*chain.chain()[request.source_level], target, offset,
                                             length, buffer)
                              : CopyImages(chain, request, offset, length, buffer);
    if (!status.ok()) return status.WithContext("merging into " + target.file().path().string());
    control.SetProgress(offset + length, size);
  }
  return target.Flush();
}

namespace {

// Reopens `disk` with the same files, those at `writable` levels open for writing (a merge target
// keeping its DataWriteGuid when `keep_guid_level` names it).
Status ReopenWritable(OpenDisk& disk, const ProviderRegistry& registry,
                      const DiskOpenRequest& asked, const std::vector<std::filesystem::path>& paths,
                      const std::vector<DiskFormat>& formats,
                      const std::vector<std::size_t>& writable, std::size_t keep_guid_level) {
  return disk.Reopen([&]() -> Result<std::unique_ptr<VirtualDisk>> {
    std::vector<std::unique_ptr<Image>> chain;
    for (std::size_t level = 0; level < paths.size(); ++level) {
      OpenOptions options = asked.options;
      const bool write = std::find(writable.begin(), writable.end(), level) != writable.end() ||
                         (level == 0 && !asked.options.read_only);
      options.read_only = !write;
      options.keep_data_write_guid = level == keep_guid_level;
      VDISK_ASSIGN_OR_RETURN(
          auto image, VirtualDisk::OpenImageFile(registry, paths[level], formats[level], options,
                                                 /*lock=*/true));
      chain.push_back(std::move(image));
    }
    return std::make_unique<VirtualDisk>(std::move(chain));
  });
}

void ChainFiles(const VirtualDisk& disk, std::vector<std::filesystem::path>& paths,
                std::vector<DiskFormat>& formats) {
  for (const auto& image : disk.chain()) {
    paths.push_back(image->file().path());
    formats.push_back(image->format());
  }
}

}  // namespace

Status RepointLevel(OpenDisk& disk, const ProviderRegistry& registry, std::size_t level,
                    const std::filesystem::path& parent_path) {
  const DiskOpenRequest asked = disk.request();
  std::vector<std::filesystem::path> paths;
  std::vector<DiskFormat> formats;
  {
    const auto current = disk.disk();
    if (level >= current->chain().size() || !current->chain()[level]->parent()) {
      return Status(Code::kInvalidParameter,
                    current->top().file().path().string() + ": no differencing disk at depth " +
                        std::to_string(level + 1) + " of its chain (" +
                        std::to_string(current->chain().size()) + " files open)");
    }
    ChainFiles(*current, paths, formats);
  }
  DiskOpenRequest parent_request;
  parent_request.path = parent_path;
  parent_request.no_parents = true;
  VDISK_ASSIGN_OR_RETURN(auto parent, VirtualDisk::Open(registry, parent_request));
  // The re-pointed image's old parents are not opened again: they may be what moved.
  paths.resize(level + 1);
  formats.resize(level + 1);
  VDISK_RETURN_IF_ERROR(ReopenWritable(disk, registry, asked, paths, formats, {level},
                                       /*keep_guid_level=*/paths.size()));
  Status status;
  {
    const auto chain = disk.disk();
    Image& child = *chain->chain()[level];
    status = child.SetParentLocation(parent_path, parent->top());
    if (status.ok()) status = child.Flush();
  }
  parent.reset();
  const Status reopened = disk.Reopen([&]() { return VirtualDisk::Open(registry, asked); });
  return status.ok() ? reopened : status;
}

Status MergeDisk(OpenDisk& disk, const ProviderRegistry& registry, const MergeRequest& request,
                 OperationControl& control) {
  const DiskOpenRequest asked = disk.request();
  std::vector<std::filesystem::path> paths;
  std::vector<DiskFormat> formats;
  {
    const auto current = disk.disk();  // released before Reopen, which closes the images
    VDISK_RETURN_IF_ERROR(CheckMerge(*current, request));
    ChainFiles(*current, paths, formats);
  }
  const bool relink = request.source_level > 0;
  // The same files, the target (and the image to re-point) writable.
  std::vector<std::size_t> writable = {request.target_level};
  if (relink) writable.push_back(request.source_level - 1);
  VDISK_RETURN_IF_ERROR(
      ReopenWritable(disk, registry, asked, paths, formats, writable, request.target_level));

  Status status;
  {
    const auto chain = disk.disk();
    status = CopyMergedData(*chain, request, control);
    if (status.ok() && relink) {
      Image& child = *chain->chain()[request.source_level - 1];
      Image& target = *chain->chain()[request.target_level];
      status = child.SetParentLocation(target.file().path(), target);
      if (status.ok()) status = child.Flush();
    }
  }
  // Every handle sees the chain as it opens now.
  const Status reopened = disk.Reopen([&]() { return VirtualDisk::Open(registry, asked); });
  return status.ok() ? reopened : status;
}

}  // namespace vdisk
