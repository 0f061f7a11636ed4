#include "formats/image.h"

#include <algorithm>
#include <memory>

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
  constexpr std::uint64_t kBufferBytes = 1 << 20;
  const auto buffer_bytes = static_cast<std::size_t>(std::min(length, kBufferBytes));
  auto buffer = std::make_unique_for_overwrite<std::byte[]>(buffer_bytes);
  for (std::uint64_t done = 0; done < length;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer_bytes, length - done));
    const std::span<std::byte> piece(buffer.get(), n);
    VDISK_RETURN_IF_ERROR(source.ReadAt(source_offset + done, piece));
    VDISK_RETURN_IF_ERROR(Write(offset + done, piece));
    done += n;
  }
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
    return Status(Code::kVhdChildParentSizeMismatch,
                  file().path().string() + ": parent size " +
                      std::to_string(parent.virtual_size()) + " differs from " +
                      std::to_string(virtual_size()));
  }
  return Status::Ok();
}

}  // namespace vdisk
