// libFuzzer target for the security-descriptor parser (src/attach/security_descriptor.cpp),
// which AttachVirtualDisk runs on its caller's SECURITY_DESCRIPTOR.
//
// The first byte picks the layout, the rest is the descriptor:
//  - even: a self-relative descriptor (MS-DTYP 2.4.6) of exactly the remaining bytes, through
//    the bounded entry point. Then the same bytes, zero-padded so that every length the header
//    can name is readable (the caller's contract for the pointer-only entry point), through
//    the pointer entry point (when it is marked SE_SELF_RELATIVE): when the bounded parse
//    succeeded, both must agree.
//  - odd: an absolute descriptor built here (revision 1, the input's control bits, its DACL
//    pointer aimed at the rest of the input, or NULL when the rest is empty), with the ACL
//    buffer zero-padded to the size its header declares.
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "attach/security_descriptor.h"

namespace {

std::uint16_t Le16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool absolute = (data[0] & 1) != 0;
  const std::uint8_t* sd = data + 1;
  const std::size_t length = size - 1;
  if (!absolute) {
    std::vector<std::byte> exact(length);
    if (length != 0) std::memcpy(exact.data(), sd, length);
    const auto bounded = vdisk::attach::DescriptorGrantsOthers(std::span<const std::byte>(exact));
    // Only a descriptor marked SE_SELF_RELATIVE is read through offsets; without the mark the
    // pointer entry point would take these bytes for an absolute one's pointers.
    if (length < 20 || (Le16(sd + 2) & 0x8000u) == 0) return 0;
    // Readable to the end of any DACL the header can point at: offset + 0xFFFF.
    std::uint32_t offset;
    std::memcpy(&offset, sd + 16, 4);
    if (offset > (1u << 20)) return 0;
    std::vector<std::uint8_t> padded(std::max<std::size_t>(length, offset + 0x10000u), 0);
    std::memcpy(padded.data(), sd, length);
    const auto unbounded = vdisk::attach::DescriptorGrantsOthers(padded.data());
    if (bounded.ok() && (!unbounded.ok() || bounded.value() != unbounded.value())) __builtin_trap();
    return 0;
  }
  if (length < 2) return 0;
  // SECURITY_DESCRIPTOR (x64): Revision, Sbz1, Control, then Owner, Group, Sacl, Dacl pointers.
  struct Absolute {
    std::uint8_t revision = 1;
    std::uint8_t sbz1 = 0;
    std::uint16_t control = 0;
    const void* owner = nullptr;
    const void* group = nullptr;
    const void* sacl = nullptr;
    const void* dacl = nullptr;
  } descriptor;
  static_assert(sizeof(Absolute) == 8 + 4 * sizeof(void*));
  descriptor.control = static_cast<std::uint16_t>(Le16(sd) & ~0x8000u);  // not SE_SELF_RELATIVE
  std::vector<std::uint8_t> acl(sd + 2, sd + length);
  if (!acl.empty()) {
    const std::size_t declared = acl.size() >= 4 ? Le16(acl.data() + 2) : 8;
    acl.resize(std::max({acl.size(), declared, std::size_t{8}}), 0);
    descriptor.dacl = acl.data();
  }
  (void)vdisk::attach::DescriptorGrantsOthers(static_cast<const void*>(&descriptor));
  return 0;
}
