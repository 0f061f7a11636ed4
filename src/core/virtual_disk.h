// VirtualDisk: an opened disk, i.e. a chain of images (top first) read through parents.
//
// All I/O on a disk goes through one VirtualDisk object, whatever handle or path it came from,
// so that writes are seen by everything reading the disk (raw I/O, exports, a running mirror).
// Thread safety: Read, Write and Flush may be called concurrently. A read that overlaps a write
// in flight returns each sector wholly as before the write or wholly as after it, and
// overlapping writes apply one after the other, as on a disk (core/range_lock.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "formats/image.h"
#include "core/range_lock.h"
#include "base/status.h"
#include "formats/registry/registry.h"

namespace vdisk {

// The most files a differencing chain may have, top and base included. Create refuses a child
// that would make its chain longer and Open refuses a longer chain, both with kVhdChainTooDeep
// (a real loop is kVhdChainCycle, found by file identity).
inline constexpr std::size_t kMaxChainDepth = 256;

struct DiskOpenRequest {
  std::filesystem::path path;
  DiskFormat format = DiskFormat::kUnknown;  // kUnknown: detect as Windows does
  OpenOptions options;
  // OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS: open only the top image; reads of ranges it does not
  // hold return zeros.
  bool no_parents = false;
  // Open read-only without taking the images' lock: a view of a disk that another process
  // serves (OpenDisk::HandOver). Its metadata is right; its data may change underneath it.
  bool without_lock = false;
  // OPEN_VIRTUAL_DISK_FLAG_CUSTOM_DIFF_CHAIN: the parents are not found through the locators
  // but given by the caller (AddVirtualDiskParent), top's parent first. Each must be the image
  // its child was created against (Image::CheckParent).
  bool custom_chain = false;
  std::vector<std::filesystem::path> custom_parents;
};

struct DiskCreateRequest {
  std::filesystem::path path;
  DiskFormat format = DiskFormat::kVhd;
  CreateOptions options;  // options.parent is filled in from parent_path
  std::filesystem::path parent_path;  // non-empty: a differencing disk
  std::filesystem::path source_path;  // non-empty: fill the new disk with this disk's data
};

class VirtualDisk {
 public:
  static Result<std::unique_ptr<VirtualDisk>> Open(const ProviderRegistry& registry,
                                                   const DiskOpenRequest& request);
  // Creates the file and returns it open read-write. On failure no file is left behind.
  static Result<std::unique_ptr<VirtualDisk>> Create(const ProviderRegistry& registry,
                                                     const DiskCreateRequest& request);

  explicit VirtualDisk(std::vector<std::unique_ptr<Image>> chain);
  // Opens one image file as Open opens each file of a chain (format detected when kUnknown,
  // the images' lock taken when `lock`), without its parents.
  static Result<std::unique_ptr<Image>> OpenImageFile(const ProviderRegistry& registry,
                                                      const std::filesystem::path& path,
                                                      DiskFormat format,
                                                      const OpenOptions& options, bool lock);

  Image& top() const { return *chain_.front(); }
  // Top first; the last one is the base.
  const std::vector<std::unique_ptr<Image>>& chain() const { return chain_; }
  std::uint64_t size() const { return top().virtual_size(); }
  std::uint32_t sector_size() const { return top().logical_sector_size(); }
  bool read_only() const { return top().read_only(); }

  // REQUIRES for both: offset and size multiples of sector_size(), range inside the disk
  // (otherwise kInvalidParameter).
  Status Read(std::uint64_t offset, std::span<std::byte> out);
  Status Write(std::uint64_t offset, std::span<const std::byte> data);
  Status Flush();
  // kInvalidParameter unless [offset, offset+length) is sector-aligned and inside the disk.
  Status CheckRange(std::uint64_t offset, std::uint64_t length) const;
  // Reads the disk as the chain from `level` down shows it (level 0: as Read), without the
  // range lock: for operations that own the disk (a merge reads the images it merges).
  // REQUIRES: level < chain().size(), range as for Read.
  Status ReadFromLevel(std::size_t level, std::uint64_t offset, std::span<std::byte> out);

 private:
  Status ReadLayer(std::size_t level, std::uint64_t offset, std::span<std::byte> out);

  std::vector<std::unique_ptr<Image>> chain_;
  // Only the top image is ever written, and only through Write, so a disk opened read-only
  // needs no lock at all. Images written outside Write: a mirror target while the copy fills
  // it, which nothing reads until the switch (mirror_job.h).
  const bool writable_;
  StripedRangeLock ranges_;
};

}  // namespace vdisk
