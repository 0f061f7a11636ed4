// Provider: one virtual disk format (VHD, VHDX, ISO) as the registry sees it.
//
// A provider scores a file's first and last bytes (Probe), opens an image from an open file,
// and creates new images. Providers are registered explicitly by RegisterBuiltinProviders(),
// cheap probes first, as libarchive registers its formats.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "base/status.h"
#include "formats/image.h"
#include "platform/file.h"

namespace vdisk {

struct OpenOptions {
  bool read_only = true;
  // OPEN_VIRTUAL_DISK_FLAG_NO_WRITE_HARDENING: metadata updates are not flushed in order.
  bool no_write_hardening = false;
  // OPEN_VIRTUAL_DISK_FLAG_IGNORE_RELATIVE_PARENT_LOCATOR.
  bool ignore_relative_parent_locator = false;
  // A merge target (core/merge.h): it receives data its children already show, so the identity
  // they recorded of it stays valid. VHDX keeps its DataWriteGuid (the parent_linkage of its
  // children) instead of changing it before the first data write (MS-VHDX §2.2.2).
  bool keep_data_write_guid = false;
};

struct CreateOptions {
  DiskSubtype subtype = DiskSubtype::kDynamic;
  std::uint64_t virtual_size = 0;          // bytes; for differencing: the parent's size
  std::uint32_t block_size = 0;            // 0: the format's default
  std::uint32_t logical_sector_size = 0;   // 0: the format's default
  std::uint32_t physical_sector_size = 0;  // 0: the format's default
  Guid unique_id;                          // zero: a random one
  // Differencing: the opened parent and the path to record in the locators.
  const Image* parent = nullptr;
  std::filesystem::path parent_path;
  // Fixed images: reserve real storage instead of leaving a sparse file.
  bool full_physical_allocation = false;
  bool no_write_hardening = false;
};

// The first and last bytes of a file, for probing.
struct ProbeData {
  std::span<const std::byte> head;  // up to the first kProbeHeadBytes
  std::span<const std::byte> tail;  // up to the last kProbeTailBytes
  std::uint64_t file_size = 0;
};

class Provider {
 public:
  virtual ~Provider() = default;
  virtual DiskFormat format() const = 0;
  virtual std::string_view name() const = 0;
  // File extensions (lower case, with the dot) that select this provider, e.g. ".vhd".
  virtual std::span<const std::string_view> extensions() const = 0;
  // 0: not this format; higher is more certain.
  virtual int Probe(const ProbeData& data) const = 0;
  virtual Result<std::unique_ptr<Image>> Open(std::unique_ptr<platform::File> file,
                                              const OpenOptions& options) const = 0;
  // Creates `path` (which must not exist) and returns it opened read-write. On failure the
  // partly written file is removed.
  virtual Result<std::unique_ptr<Image>> Create(const std::filesystem::path& path,
                                                const CreateOptions& options) const = 0;
};

// A provider whose format, name and extensions are given once, at construction (the built-in
// providers).
class NamedProvider : public Provider {
 public:
  NamedProvider(DiskFormat format, std::string_view name,
                std::span<const std::string_view> extensions)
      : format_(format), name_(name), extensions_(extensions) {}
  DiskFormat format() const final { return format_; }
  std::string_view name() const final { return name_; }
  std::span<const std::string_view> extensions() const final { return extensions_; }

 private:
  const DiskFormat format_;
  const std::string_view name_;
  const std::span<const std::string_view> extensions_;
};

// What a provider's Open does: ImageT::Open(file, options), as an Image.
template <typename ImageT>
Result<std::unique_ptr<Image>> OpenImageAs(std::unique_ptr<platform::File> file,
                                           const OpenOptions& options) {
  if (file == nullptr) return Status(Code::kInvalidParameter, "an image open without a file");
  VDISK_ASSIGN_OR_RETURN(auto image, ImageT::Open(std::move(file), options));
  return std::unique_ptr<Image>(std::move(image));
}

// The provider of a format this library writes: ImageT::Open opens its images, `create` makes
// new ones; the format's own class adds Probe.
template <typename ImageT>
class ImageProvider : public NamedProvider {
 public:
  using Creator = Result<std::unique_ptr<Image>> (*)(const std::filesystem::path&,
                                                     const CreateOptions&);
  ImageProvider(DiskFormat format, std::string_view name,
                std::span<const std::string_view> extensions, Creator create)
      : NamedProvider(format, name, extensions), create_(create) {}

  Result<std::unique_ptr<Image>> Open(std::unique_ptr<platform::File> file,
                                      const OpenOptions& options) const final {
    return OpenImageAs<ImageT>(std::move(file), options);
  }
  Result<std::unique_ptr<Image>> Create(const std::filesystem::path& path,
                                        const CreateOptions& options) const final {
    return create_(path, options);
  }

 private:
  const Creator create_;
};

// What a provider's Create does around writing a new image: creates `path` (which must not
// exist), locks it, writes the image with `write`, and opens it read-write with `open`. On any
// failure, an exception included, the file is removed; the error names the path.
using ImageOpener = std::function<Result<std::unique_ptr<Image>>(std::unique_ptr<platform::File>,
                                                                 const OpenOptions&)>;
Result<std::unique_ptr<Image>> CreateImageFile(const std::filesystem::path& path,
                                               const CreateOptions& options,
                                               const std::function<Status(platform::File&)>& write,
                                               const ImageOpener& open);

}  // namespace vdisk
