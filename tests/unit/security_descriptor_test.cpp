// The security-descriptor parser behind AttachVirtualDisk's "who may connect" question, on
// descriptors built here byte by byte from MS-DTYP 2.4.6 (self-relative) and 2.4.5 (ACL).
#include "attach/security_descriptor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace vdisk::attach {
namespace {

constexpr std::uint16_t kDaclPresent = 0x0004;
constexpr std::uint16_t kSelfRelative = 0x8000;

void Put16(std::vector<std::uint8_t>& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
}
void Put32(std::vector<std::uint8_t>& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// An ACL with one ACCESS_ALLOWED ACE granting `mask` to S-1-<authority>-<sub>.
std::vector<std::uint8_t> OneAceAcl(std::uint32_t mask, std::uint8_t authority, std::uint32_t sub,
                                    std::uint8_t ace_flags = 0) {
  std::vector<std::uint8_t> acl = {2, 0};
  Put16(acl, 8 + 8 + 12);
  Put16(acl, 1);
  Put16(acl, 0);
  acl.push_back(0);  // ACCESS_ALLOWED_ACE_TYPE
  acl.push_back(ace_flags);
  Put16(acl, 8 + 12);
  Put32(acl, mask);
  const std::uint8_t sid[] = {1, 1, 0, 0, 0, 0, 0, authority};
  acl.insert(acl.end(), std::begin(sid), std::end(sid));
  Put32(acl, sub);
  return acl;
}

// Self-relative: a 20-byte header, then the DACL right after it (or no DACL offset).
std::vector<std::uint8_t> SelfRelative(std::uint16_t control, const std::vector<std::uint8_t>& dacl) {
  std::vector<std::uint8_t> sd = {1, 0};
  Put16(sd, control | kSelfRelative);
  Put32(sd, 0);
  Put32(sd, 0);
  Put32(sd, 0);
  Put32(sd, dacl.empty() ? 0 : 20);
  sd.insert(sd.end(), dacl.begin(), dacl.end());
  return sd;
}

std::span<const std::byte> Bytes(const std::vector<std::uint8_t>& v) {
  return std::as_bytes(std::span(v));
}

TEST(SecurityDescriptor, EveryoneReadGrantsOthersThroughBothEntryPoints) {
  const auto sd = SelfRelative(kDaclPresent, OneAceAcl(0x80000000u, 1, 0));  // (A;;GR;;;WD)
  auto bounded = DescriptorGrantsOthers(Bytes(sd));
  ASSERT_TRUE(bounded.ok()) << bounded.status().message();
  EXPECT_TRUE(bounded.value());
  auto pointer = DescriptorGrantsOthers(static_cast<const void*>(sd.data()));
  ASSERT_TRUE(pointer.ok()) << pointer.status().message();
  EXPECT_TRUE(pointer.value());
}

TEST(SecurityDescriptor, SystemOnlyAndInheritOnlyAcesGrantNobody) {
  const auto system = SelfRelative(kDaclPresent, OneAceAcl(0x10000000u, 5, 18));  // (A;;GA;;;SY)
  const auto inherit_only =
      SelfRelative(kDaclPresent, OneAceAcl(0x10000000u, 1, 0, 0x08));  // (A;IO;GA;;;WD)
  for (const auto* sd : {&system, &inherit_only}) {
    auto grants = DescriptorGrantsOthers(Bytes(*sd));
    ASSERT_TRUE(grants.ok()) << grants.status().message();
    EXPECT_FALSE(grants.value());
  }
}

TEST(SecurityDescriptor, NullDaclGrantsEveryoneAndNoDaclNobody) {
  EXPECT_TRUE(DescriptorGrantsOthers(Bytes(SelfRelative(kDaclPresent, {}))).value());
  EXPECT_FALSE(DescriptorGrantsOthers(Bytes(SelfRelative(0, {}))).value());
  EXPECT_FALSE(DescriptorGrantsOthers(static_cast<const void*>(nullptr)).value());
}

TEST(SecurityDescriptor, BoundedParseRejectsDaclPastTheEnd) {
  auto sd = SelfRelative(kDaclPresent, OneAceAcl(0x80000000u, 1, 0));
  // The ACL's size field claims 8 bytes more than the descriptor holds.
  auto too_long = sd;
  too_long[20 + 2] = static_cast<std::uint8_t>(too_long[20 + 2] + 8);
  EXPECT_EQ(DescriptorGrantsOthers(Bytes(too_long)).status().code(), Code::kInvalidParameter);
  // The DACL offset points at the descriptor's end.
  auto past = sd;
  past[16] = static_cast<std::uint8_t>(sd.size());
  EXPECT_EQ(DescriptorGrantsOthers(Bytes(past)).status().code(), Code::kInvalidParameter);
  // A truncated header.
  EXPECT_EQ(DescriptorGrantsOthers(Bytes(std::vector<std::uint8_t>(sd.begin(), sd.begin() + 12)))
                .status()
                .code(),
            Code::kInvalidParameter);
}

// sd_fuzz's first report (its harness's fault, not the parser's): bytes whose control lacks
// SE_SELF_RELATIVE, which the pointer entry point takes for an absolute descriptor's pointers.
// The bounded entry point has no pointers to follow and refuses them.
TEST(SecurityDescriptor, BoundedParseRefusesAnAbsoluteDescriptor) {
  const std::vector<std::uint8_t> bytes = {
      0x01, 0x00, 0x65, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x12,
      0x00, 0x00, 0x21, 0x02, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00,
      0x00, 0x00, 0x00, 0x10, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00,
      0x00};
  const auto grants = DescriptorGrantsOthers(Bytes(bytes));
  ASSERT_FALSE(grants.ok());
  EXPECT_EQ(grants.status().code(), Code::kInvalidParameter);
}

TEST(SecurityDescriptor, AbsoluteDescriptorIsReadThroughItsDaclPointer) {
  const auto acl = OneAceAcl(0x1u, 5, 11);  // FILE_READ_DATA to Authenticated Users
  struct {
    std::uint8_t revision = 1;
    std::uint8_t sbz1 = 0;
    std::uint16_t control = kDaclPresent;
    const void* owner = nullptr;
    const void* group = nullptr;
    const void* sacl = nullptr;
    const void* dacl = nullptr;
  } absolute;
  absolute.dacl = acl.data();
  auto grants = DescriptorGrantsOthers(static_cast<const void*>(&absolute));
  ASSERT_TRUE(grants.ok()) << grants.status().message();
  EXPECT_TRUE(grants.value());
}

}  // namespace
}  // namespace vdisk::attach
