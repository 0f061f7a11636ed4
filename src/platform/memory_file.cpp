#include "platform/memory_file.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

namespace vdisk::platform {

MemoryFile::MemoryFile(std::vector<std::byte> contents, std::filesystem::path path, bool writable)
    : data_(std::move(contents)), path_(std::move(path)), writable_(writable) {}

Status MemoryFile::ReadAt(std::uint64_t offset, std::span<std::byte> out) {
  std::lock_guard lock(mutex_);
  const std::uint64_t end = offset + out.size();
  const std::uint64_t limit = faults_.readable_limit != 0
                                  ? std::min<std::uint64_t>(faults_.readable_limit, data_.size())
                                  : data_.size();
  if (end < offset || end > limit) {
    return Status(Code::kFileCorrupt,
                  path_.string() + ": file ends before offset " + std::to_string(end));
  }
  if (!out.empty()) std::memcpy(out.data(), data_.data() + offset, out.size());
  return Status::Ok();
}

Status MemoryFile::NextWriteLocked(std::uint64_t new_size) {
  if (!writable_) return Status(Code::kAccessDenied, path_.string() + ": opened read-only");
  ++writes_;
  if (faults_.fail_write_number != 0 && (writes_ == faults_.fail_write_number ||
                                         (faults_.sticky && writes_ > faults_.fail_write_number))) {
    return Status(Code::kIoError,
                  path_.string() + ": injected failure of write " + std::to_string(writes_));
  }
  if (faults_.capacity != 0 && new_size > faults_.capacity && new_size > data_.size()) {
    return Status(Code::kDiskFull, path_.string() + ": no space for " + std::to_string(new_size) +
                                       " bytes (capacity " + std::to_string(faults_.capacity) +
                                       ")");
  }
  return Status::Ok();
}

Status MemoryFile::WriteAt(std::uint64_t offset, std::span<const std::byte> data) {
  std::lock_guard lock(mutex_);
  const std::uint64_t end = offset + data.size();
  if (end < offset) return Status(Code::kInvalidParameter, path_.string() + ": write overflows");
  VDISK_RETURN_IF_ERROR(NextWriteLocked(end));
  if (end > data_.size()) data_.resize(static_cast<std::size_t>(end));
  if (!data.empty()) std::memcpy(data_.data() + offset, data.data(), data.size());
  return Status::Ok();
}

Status MemoryFile::Flush() {
  std::lock_guard lock(mutex_);
  ++flushes_;
  if (faults_.fail_flush_number != 0 &&
      (flushes_ == faults_.fail_flush_number ||
       (faults_.sticky && flushes_ > faults_.fail_flush_number))) {
    return Status(Code::kIoError,
                  path_.string() + ": injected failure of flush " + std::to_string(flushes_));
  }
  return Status::Ok();
}

Result<std::uint64_t> MemoryFile::Size() {
  std::lock_guard lock(mutex_);
  return static_cast<std::uint64_t>(data_.size());
}

Status MemoryFile::Resize(std::uint64_t size) {
  std::lock_guard lock(mutex_);
  VDISK_RETURN_IF_ERROR(NextWriteLocked(size));
  data_.resize(static_cast<std::size_t>(size));
  return Status::Ok();
}

Status MemoryFile::Allocate(std::uint64_t offset, std::uint64_t length) {
  std::lock_guard lock(mutex_);
  const std::uint64_t end = offset + length;
  VDISK_RETURN_IF_ERROR(NextWriteLocked(end));
  if (end > data_.size()) data_.resize(static_cast<std::size_t>(end));
  return Status::Ok();
}

Result<std::uint64_t> MemoryFile::AllocatedBytes() {
  std::lock_guard lock(mutex_);
  return static_cast<std::uint64_t>(data_.size());
}

Status MemoryFile::Lock(bool) { return Status::Ok(); }

void MemoryFile::set_faults(const MemoryFileFaults& faults) {
  std::lock_guard lock(mutex_);
  faults_ = faults;
  writes_ = 0;
  flushes_ = 0;
}

std::vector<std::byte> MemoryFile::contents() const {
  std::lock_guard lock(mutex_);
  return data_;
}

std::uint64_t MemoryFile::writes() const {
  std::lock_guard lock(mutex_);
  return writes_;
}

std::uint64_t MemoryFile::flushes() const {
  std::lock_guard lock(mutex_);
  return flushes_;
}

}  // namespace vdisk::platform
