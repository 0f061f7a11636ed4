#include "core/image.h"

namespace vdisk {

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
