#include "formats/image.h"

#include <algorithm>
#include <memory>
#include <string>

namespace vdisk {

WritePayload WritePayload::Sub(std::uint64_t from, std::uint64_t n) const {
  WritePayload sub = *this;
  sub.size_ = n;
  if (source_ != nullptr) {
    sub.source_offset_ = source_offset_ + from;
  } else {
    sub.data_ = data_.subspan(static_cast<std::size_t>(from), static_cast<std::size_t>(n));
  }
  return sub;
}

Status WritePayload::WriteTo(platform::File& file, std::uint64_t offset) const {
  if (source_ == nullptr) return file.WriteAt(offset, data_);
  VDISK_ASSIGN_OR_RETURN(const platform::CopyMethod method,
                         file.CopyFrom(*source_, source_offset_, offset, size_));
  (method == platform::CopyMethod::kKernel ? tally_->kernel_bytes : tally_->buffered_bytes) +=
      size_;
  return Status::Ok();
}

Result<platform::CopyMethod> Image::WriteFromFile(std::uint64_t offset, std::uint64_t length,
                                                  platform::File& source,
                                                  std::uint64_t source_offset) {
  VDISK_RETURN_IF_ERROR(platform::CopyThroughBuffer(
      source, source_offset, length, [&](std::uint64_t done, std::span<const std::byte> piece) {
        return Write(offset + done, piece);
      }));
  return platform::CopyMethod::kBuffered;
}

Status Image::CheckParent(const Image& parent) const {
  const auto ref = this->parent();
  if (!ref) return Status::Ok();
  if (!(ref->parent_id == parent.unique_id())) {
    return Status(Code::kVhdChildParentIdMismatch,
                  file().path().string() + ": parent " + parent.file().path().string() +
                      " has id " + parent.unique_id().ToString() + ", the child expects " +
                      ref->parent_id.ToString());
  }
  if (parent.virtual_size() != virtual_size()) {
    return Status(Code::kVhdChildParentSizeMismatch, file().path().string() + ": parent size " +
                                                         std::to_string(parent.virtual_size()) +
                                                         " differs from " +
                                                         std::to_string(virtual_size()));
  }
  return Status::Ok();
}

Status CheckResize(const Image& image, std::uint64_t new_size, std::uint32_t sector_size,
                   std::uint64_t max_size, std::string_view limit,
                   const OperationControl& control) {
  const std::string path = image.file().path().string();
  if (image.read_only()) return Status(Code::kWriteProtect, path + ": opened read-only");
  if (image.subtype() == DiskSubtype::kDifferencing) {
    return Status(Code::kVhdInvalidType,
                  path +
                      ": a differencing disk cannot be resized; only fixed and dynamic disks "
                      "can (resizing its parent invalidates the chain)");
  }
  if (new_size == 0 || new_size % sector_size != 0 || new_size > max_size) {
    return Status(Code::kInvalidParameter,
                  path + ": new size " + std::to_string(new_size) + " is not a multiple of the " +
                      std::to_string(sector_size) + "-byte sector between one sector and " +
                      std::string(limit));
  }
  if (control.cancelled()) return ResizeCancelled(image.file());
  return Status::Ok();
}

Status ResizeCancelled(const platform::File& file) {
  return Status(Code::kOperationAborted,
                file.path().string() + ": resize cancelled; the disk keeps its old size");
}

Status PayloadImage::Write(std::uint64_t offset, std::span<const std::byte> data) {
  return WritePayloadAt(offset, WritePayload(data));
}

Result<platform::CopyMethod> PayloadImage::WriteFromFile(std::uint64_t offset, std::uint64_t length,
                                                         platform::File& source,
                                                         std::uint64_t source_offset) {
  WritePayload::CopyTally tally;
  VDISK_RETURN_IF_ERROR(WritePayloadAt(offset, WritePayload(source, source_offset, length, tally)));
  return tally.buffered_bytes == 0 ? platform::CopyMethod::kKernel
                                   : platform::CopyMethod::kBuffered;
}

}  // namespace vdisk
