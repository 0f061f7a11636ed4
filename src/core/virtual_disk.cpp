#include "core/virtual_disk.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>

#include "base/bytes.h"

namespace vdisk {
namespace {

bool SameFile(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec);
}

Result<std::unique_ptr<Image>> OpenImage(const ProviderRegistry& registry,
                                         const std::filesystem::path& path, DiskFormat format,
                                         const OpenOptions& options, bool lock) {
  const auto access = !options.read_only ? platform::FileAccess::kReadWrite
                     : lock               ? platform::FileAccess::kRead
                                          : platform::FileAccess::kReadShared;
  VDISK_ASSIGN_OR_RETURN(auto file, platform::OpenFile(path, access));
  const Provider* provider = nullptr;
  if (format == DiskFormat::kUnknown) {
    VDISK_ASSIGN_OR_RETURN(provider, registry.Detect(path, *file));
  } else {
    provider = registry.Find(format);
    if (provider == nullptr) {
      return Status(Code::kProviderNotFound,
                    "no provider for device type " +
                        std::to_string(static_cast<std::uint32_t>(format)));
    }
  }
  if (lock) VDISK_RETURN_IF_ERROR(file->Lock(!options.read_only));
  return provider->Open(std::move(file), options);
}

// Opens the parents of chain.back() until the base, checking identity and loops.
Status OpenParents(const ProviderRegistry& registry, std::vector<std::unique_ptr<Image>>& chain,
                   const OpenOptions& child_options, bool lock) {
  OpenOptions parent_options = child_options;
  parent_options.read_only = true;
  // The identities of the chain's files, to find a loop with one lookup per level (comparing
  // paths pairwise made opening a deep chain quadratic in its depth).
  std::vector<std::optional<platform::FileIdentity>> identities;
  for (const auto& image : chain) identities.push_back(platform::IdentifyFile(image->file().path()));
  const auto in_chain = [&](const std::filesystem::path& candidate) {
    const auto id = platform::IdentifyFile(candidate);
    for (std::size_t i = 0; i < chain.size(); ++i) {
      if (id && identities[i] ? *id == *identities[i] : SameFile(chain[i]->file().path(), candidate))
        return true;
    }
    return false;
  };
  while (auto ref = chain.back()->parent()) {
    const Image& child = *chain.back();
    if (chain.size() >= kMaxChainDepth) {
      return Status(Code::kVhdChainTooDeep,
                    chain.front()->file().path().string() +
                        ": differencing chain too deep: more than " +
                        std::to_string(kMaxChainDepth) + " files (the limit; " +
                        child.file().path().string() + " still has a parent)");
    }
    std::string tried;
    std::unique_ptr<Image> parent;
    // A candidate that is there but is no regular file (a directory, a FIFO, ...) is skipped
    // for the next one; if no candidate opens, its reason is the error.
    Status unusable;
    for (const auto& candidate : ref->candidates) {
      tried += (tried.empty() ? "" : ", ") + candidate.string();
      std::error_code ec;
      if (!std::filesystem::exists(candidate, ec)) continue;
      if (in_chain(candidate)) {
        return Status(Code::kVhdChainCycle, child.file().path().string() + ": parent " +
                                                candidate.string() + " is already in the chain");
      }
      auto opened = OpenImage(registry, candidate, DiskFormat::kUnknown, parent_options, lock);
      if (!opened.ok() && opened.status().code() == Code::kNotRegularFile) {
        unusable = opened.status();
        continue;
      }
      if (!opened.ok()) {
        return Status(Code::kVhdChainErrorInParent,
                      std::string(opened.status().message()), opened.status().os_error());
      }
      parent = std::move(opened).value();
      break;
    }
    if (!parent && !unusable.ok()) {
      return Status(Code::kVhdChainErrorInParent,
                    child.file().path().string() + ": parent " + std::string(unusable.message()));
    }
    if (!parent) {
      return Status(Code::kVhdParentNotFound,
                    child.file().path().string() + ": parent not found (tried: " +
                        (tried.empty() ? std::string("no locator") : tried) + ")");
    }
    VDISK_RETURN_IF_ERROR(child.CheckParent(*parent));
    identities.push_back(platform::IdentifyFile(parent->file().path()));
    chain.push_back(std::move(parent));
  }
  return Status::Ok();
}

}  // namespace

VirtualDisk::VirtualDisk(std::vector<std::unique_ptr<Image>> chain)
    : chain_(std::move(chain)), writable_(!chain_.front()->read_only()) {}

Result<std::unique_ptr<VirtualDisk>> VirtualDisk::Open(const ProviderRegistry& registry,
                                                       const DiskOpenRequest& request) {
  std::vector<std::unique_ptr<Image>> chain;
  OpenOptions options = request.options;
  if (request.without_lock) options.read_only = true;
  const bool lock = !request.without_lock;
  VDISK_ASSIGN_OR_RETURN(auto top, OpenImage(registry, request.path, request.format, options, lock));
  chain.push_back(std::move(top));
  if (request.custom_chain) {
    OpenOptions parent_options = options;
    parent_options.read_only = true;
    for (const auto& path : request.custom_parents) {
      const Image& child = *chain.back();
      if (!child.parent()) {
        return Status(Code::kVhdInvalidType, child.file().path().string() +
                                                 " is not a differencing disk: it has no parent");
      }
      if (chain.size() >= kMaxChainDepth) {
        return Status(Code::kVhdChainTooDeep,
                      request.path.string() + ": differencing chain too deep: more than " +
                          std::to_string(kMaxChainDepth) + " files");
      }
      const auto id = platform::IdentifyFile(path);
      for (const auto& image : chain) {
        const auto other = platform::IdentifyFile(image->file().path());
        if (id && other ? *id == *other : SameFile(image->file().path(), path)) {
          return Status(Code::kVhdChainCycle, child.file().path().string() + ": parent " +
                                                  path.string() + " is already in the chain");
        }
      }
      VDISK_ASSIGN_OR_RETURN(auto parent, OpenImage(registry, path, DiskFormat::kUnknown,
                                                    parent_options, lock));
      VDISK_RETURN_IF_ERROR(child.CheckParent(*parent));
      chain.push_back(std::move(parent));
    }
  } else if (!request.no_parents) {
    VDISK_RETURN_IF_ERROR(OpenParents(registry, chain, options, lock));
  }
  return std::make_unique<VirtualDisk>(std::move(chain));
}

Result<std::unique_ptr<VirtualDisk>> VirtualDisk::Create(const ProviderRegistry& registry,
                                                         const DiskCreateRequest& request) {
  const Provider* provider = registry.Find(request.format);
  if (provider == nullptr) {
    return Status(Code::kProviderNotFound,
                  "no provider can create device type " +
                      std::to_string(static_cast<std::uint32_t>(request.format)));
  }
  CreateOptions options = request.options;
  std::unique_ptr<VirtualDisk> parent;
  if (!request.parent_path.empty()) {
    DiskOpenRequest parent_request;
    parent_request.path = request.parent_path;
    auto opened = Open(registry, parent_request);
    if (!opened.ok()) {
      const Code code = opened.status().code() == Code::kFileNotFound ? Code::kVhdParentNotFound
                                                                        : opened.status().code();
      return Status(code, std::string(opened.status().message()), opened.status().os_error());
    }
    parent = std::move(opened).value();
    if (parent->chain().size() >= kMaxChainDepth) {
      return Status(Code::kVhdChainTooDeep,
                    request.path.string() + ": differencing chain too deep: its parent " +
                        request.parent_path.string() + " already has " +
                        std::to_string(parent->chain().size()) + " files, the limit is " +
                        std::to_string(kMaxChainDepth));
    }
    options.subtype = DiskSubtype::kDifferencing;
    options.parent = &parent->top();
    options.parent_path = request.parent_path;
    if (options.virtual_size == 0) options.virtual_size = parent->size();
    if (options.logical_sector_size == 0)
      options.logical_sector_size = parent->top().logical_sector_size();
    // Block size 0 of a differencing VHD is the parent's when the parent has blocks, as
    // Microsoft's storage sample states Windows' defaults (Samples/Hyper-V/Storage/cpp/
    // CreateVirtualDisk.cpp: "Differencing VHD: ... if parent is fixed, default is 2mb; if parent
    // is dynamic or differencing, default is parent blocksize"; "Differencing VHDX: ... 2mb
    // (default)", which vhdx_create.cpp applies).
    if (options.block_size == 0 && request.format == DiskFormat::kVhd &&
        parent->top().format() == DiskFormat::kVhd)
      options.block_size = parent->top().block_size();
  }
  std::unique_ptr<VirtualDisk> source;
  if (!request.source_path.empty()) {
    DiskOpenRequest source_request;
    source_request.path = request.source_path;
    VDISK_ASSIGN_OR_RETURN(source, Open(registry, source_request));
    if (options.virtual_size == 0) options.virtual_size = source->size();
    if (options.virtual_size < source->size()) {
      return Status(Code::kInvalidParameter,
                    "MaximumSize " + std::to_string(options.virtual_size) +
                        " is smaller than the source disk (" + std::to_string(source->size()) + ")");
    }
  }

  // Before the image: a failure below (an error or an exception) closes it, then removes it.
  platform::NewFileGuard created(request.path);
  VDISK_ASSIGN_OR_RETURN(auto image, provider->Create(request.path, options));
  created.Arm();
  std::vector<std::unique_ptr<Image>> chain;
  chain.push_back(std::move(image));
  if (parent) {
    for (auto& p : parent->chain_) chain.push_back(std::move(p));
  }
  auto disk = std::make_unique<VirtualDisk>(std::move(chain));

  if (source) {
    // Copies in 1 MiB pieces and leaves all-zero pieces unwritten, so that a dynamic target
    // stays sparse.
    constexpr std::uint64_t kPiece = 1 << 20;
    std::vector<std::byte> buffer(kPiece);
    Status status;
    for (std::uint64_t offset = 0; offset < source->size() && status.ok(); offset += kPiece) {
      const auto n = std::min<std::uint64_t>(kPiece, source->size() - offset);
      auto piece = std::span(buffer).first(n);
      status = source->Read(offset, piece);
      if (status.ok() && !AllZero(piece)) status = disk->Write(offset, piece);
    }
    if (status.ok()) status = disk->Flush();
    if (!status.ok()) {
      disk.reset();
      return status.WithContext("copying from " + request.source_path.string());
    }
  }
  created.Keep();
  return disk;
}

Status VirtualDisk::CheckRange(std::uint64_t offset, std::uint64_t length) const {
  const std::uint32_t sector = sector_size();
  if (offset % sector != 0 || length % sector != 0) {
    return Status(Code::kInvalidParameter, "offset " + std::to_string(offset) + " and length " +
                                               std::to_string(length) +
                                               " must be multiples of the sector size " +
                                               std::to_string(sector));
  }
  if (offset > size() || length > size() - offset) {
    return Status(Code::kInvalidParameter, "range at " + std::to_string(offset) + " of " +
                                               std::to_string(length) +
                                               " bytes ends past the disk size " +
                                               std::to_string(size()));
  }
  return Status::Ok();
}

Status VirtualDisk::ReadLayer(std::size_t level, std::uint64_t offset, std::span<std::byte> out) {
  if (level == chain_.size()) {
    std::memset(out.data(), 0, out.size());
    return Status::Ok();
  }
  Image& image = *chain_[level];
  while (!out.empty()) {
    VDISK_ASSIGN_OR_RETURN(const Extent extent, image.Map(offset, out.size()));
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(extent.length, out.size()));
    if (n == 0) return Status(Code::kInternal, "image mapped an empty extent");
    auto piece = out.first(n);
    switch (extent.kind) {
      case Extent::Kind::kData:
        VDISK_RETURN_IF_ERROR(image.ReadData(extent.file_offset, piece));
        break;
      case Extent::Kind::kZero:
        std::memset(piece.data(), 0, piece.size());
        break;
      case Extent::Kind::kParent:
        VDISK_RETURN_IF_ERROR(ReadLayer(level + 1, offset, piece));
        break;
    }
    offset += n;
    out = out.subspan(n);
  }
  return Status::Ok();
}

Result<std::unique_ptr<Image>> VirtualDisk::OpenImageFile(const ProviderRegistry& registry,
                                                         const std::filesystem::path& path,
                                                         DiskFormat format,
                                                         const OpenOptions& options, bool lock) {
  return OpenImage(registry, path, format, options, lock);
}

Status VirtualDisk::ReadFromLevel(std::size_t level, std::uint64_t offset,
                                  std::span<std::byte> out) {
  VDISK_RETURN_IF_ERROR(CheckRange(offset, out.size()));
  return ReadLayer(level, offset, out);
}

Status VirtualDisk::Read(std::uint64_t offset, std::span<std::byte> out) {
  VDISK_RETURN_IF_ERROR(CheckRange(offset, out.size()));
  if (!writable_) return ReadLayer(0, offset, out);
  const auto guard = ranges_.Shared(offset, out.size());
  return ReadLayer(0, offset, out);
}

Status VirtualDisk::Write(std::uint64_t offset, std::span<const std::byte> data) {
  VDISK_RETURN_IF_ERROR(CheckRange(offset, data.size()));
  if (read_only()) {
    return Status(Code::kWriteProtect, top().file().path().string() + ": opened read-only");
  }
  if (data.empty()) return Status::Ok();
  const auto guard = ranges_.Exclusive(offset, data.size());
  return top().Write(offset, data);
}

Status VirtualDisk::Flush() {
  if (read_only()) return Status::Ok();
  return top().Flush();
}

}  // namespace vdisk
