#include "attach/security_descriptor.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace vdisk::attach {
namespace {

constexpr std::uint16_t kDaclPresent = 0x0004;    // SE_DACL_PRESENT
constexpr std::uint16_t kSelfRelative = 0x8000;   // SE_SELF_RELATIVE
constexpr std::uint8_t kAccessAllowedAce = 0x00;  // ACCESS_ALLOWED_ACE_TYPE
constexpr std::uint8_t kInheritOnlyAce = 0x08;    // INHERIT_ONLY_ACE
// GENERIC_ALL | GENERIC_WRITE | GENERIC_READ, and FILE_READ_DATA | FILE_WRITE_DATA |
// FILE_APPEND_DATA: any of them lets a client use the disk.
constexpr std::uint32_t kUseRights = 0x10000000u | 0x40000000u | 0x80000000u | 0x1u | 0x2u | 0x4u;
// A DACL and its ACEs are read within this many bytes (an ACL's size is a 16-bit count).
constexpr std::size_t kMaxAcl = 0xFFFF;

template <typename T>
T Load(const std::uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

// SID: Revision(1) SubAuthorityCount(1) IdentifierAuthority(6, big-endian) SubAuthority[n](4 LE).
bool IsOtherUsersSid(const std::uint8_t* sid, std::size_t available) {
  if (available < 8) return false;
  const std::uint8_t count = sid[1];
  if (sid[0] != 1 || available < 8 + std::size_t{count} * 4) return false;
  std::uint64_t authority = 0;
  for (int i = 2; i < 8; ++i) authority = (authority << 8) | sid[i];
  auto sub = [&](int i) { return Load<std::uint32_t>(sid + 8 + i * 4); };
  if (authority == 1 && count == 1 && sub(0) == 0) return true;          // Everyone
  if (authority == 5 && count == 1 && (sub(0) == 11 || sub(0) == 4)) return true;
  if (authority == 5 && count == 2 && sub(0) == 32 && sub(1) == 545) return true;  // Users
  return false;
}

// `available`: the bytes readable at `acl` (kMaxAcl when the caller's buffer length is unknown).
Result<bool> AclGrantsOthers(const std::uint8_t* acl, std::size_t available) {
  // ACL header: AclRevision(1) Sbz1(1) AclSize(2) AceCount(2) Sbz2(2).
  if (available < 8) {
    return Status(Code::kInvalidParameter, "security descriptor: DACL past the descriptor's end");
  }
  const std::uint8_t revision = acl[0];
  const std::uint16_t size = Load<std::uint16_t>(acl + 2);
  const std::uint16_t count = Load<std::uint16_t>(acl + 4);
  if ((revision != 2 && revision != 4) || size < 8 || size > kMaxAcl) {
    return Status(Code::kInvalidParameter, "security descriptor: malformed DACL header");
  }
  if (size > available) {
    return Status(Code::kInvalidParameter, "security descriptor: DACL past the descriptor's end");
  }
  std::size_t at = 8;
  for (std::uint16_t i = 0; i < count; ++i) {
    if (at + 8 > size) return Status(Code::kInvalidParameter, "security descriptor: ACE past the DACL");
    // ACE header: AceType(1) AceFlags(1) AceSize(2); ACCESS_ALLOWED: Mask(4) Sid.
    const std::uint8_t type = acl[at];
    const std::uint8_t flags = acl[at + 1];
    const std::uint16_t ace_size = Load<std::uint16_t>(acl + at + 2);
    if (ace_size < 8 || at + ace_size > size) {
      return Status(Code::kInvalidParameter, "security descriptor: malformed ACE");
    }
    if (type == kAccessAllowedAce && (flags & kInheritOnlyAce) == 0) {
      const std::uint32_t mask = Load<std::uint32_t>(acl + at + 4);
      if ((mask & kUseRights) != 0 && IsOtherUsersSid(acl + at + 8, ace_size - 8)) return true;
    }
    at += ace_size;
  }
  return false;
}

// `limit`: the descriptor's length, or SIZE_MAX when the caller did not give one.
Result<bool> GrantsOthers(const std::uint8_t* sd, std::size_t limit) {
  // Revision(1) Sbz1(1) Control(2), then four offsets (self-relative) or pointers (absolute).
  if (limit < 4) return Status(Code::kInvalidParameter, "security descriptor: shorter than its header");
  if (sd[0] != 1) return Status(Code::kInvalidParameter, "security descriptor: revision is not 1");
  const std::uint16_t control = Load<std::uint16_t>(sd + 2);
  if ((control & kDaclPresent) == 0) return false;  // no DACL given: the default, owner only
  const std::uint8_t* dacl = nullptr;
  std::size_t available = kMaxAcl;
  if ((control & kSelfRelative) != 0) {
    if (limit < 20) return Status(Code::kInvalidParameter, "security descriptor: shorter than its header");
    const std::uint32_t offset = Load<std::uint32_t>(sd + 16);
    if (offset != 0) {
      if (offset < 20 || offset >= limit) {
        return Status(Code::kInvalidParameter, "security descriptor: bad DACL offset");
      }
      dacl = sd + offset;
      available = std::min(available, limit - offset);
    }
  } else {
    // An absolute descriptor holds pointers: only a caller's own memory can be one.
    if (limit != SIZE_MAX) {
      return Status(Code::kInvalidParameter, "security descriptor: not self-relative");
    }
    dacl = Load<const std::uint8_t*>(sd + 8 + 3 * sizeof(void*));
  }
  if (dacl == nullptr) return true;  // a NULL DACL grants everyone everything
  return AclGrantsOthers(dacl, available);
}

}  // namespace

Result<bool> DescriptorGrantsOthers(const void* descriptor) {
  if (descriptor == nullptr) return false;
  return GrantsOthers(static_cast<const std::uint8_t*>(descriptor), SIZE_MAX);
}

Result<bool> DescriptorGrantsOthers(std::span<const std::byte> descriptor) {
  if (descriptor.empty()) return false;
  return GrantsOthers(reinterpret_cast<const std::uint8_t*>(descriptor.data()), descriptor.size());
}

}  // namespace vdisk::attach
