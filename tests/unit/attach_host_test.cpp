// The attach host's command line (src/attach/attach_host.h): what the attaching process sends is
// what the host reads back, and a malformed line is refused. Starting real hosts is covered by
// tests/api/attach_host_api_test.cpp and tests/interop/attach_host_interop_test.cpp.
#include "attach/attach_host.h"

#include <gtest/gtest.h>

namespace vdisk::attach {
namespace {

TEST(AttachHostArguments, RoundTripEveryOption) {
  AttachHostRequest request;
  request.registry_dir = "/run/user/1000/virtdisk";
  request.open.path = "/disks/a disk with spaces.vhdx";
  request.open.format = DiskFormat::kVhdx;
  request.open.options.read_only = false;
  request.open.options.no_write_hardening = true;
  request.open.options.ignore_relative_parent_locator = true;
  request.open.no_parents = true;
  request.attach.grants_others = true;
  request.attach.tcp = true;
  request.attach.range = DiskExportOptions::Range{1 << 20, 5ull << 30};

  auto parsed = ParseHostArguments(HostArguments(request));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->registry_dir, request.registry_dir);
  EXPECT_EQ(parsed->open.path, request.open.path);
  EXPECT_EQ(parsed->open.format, DiskFormat::kVhdx);
  EXPECT_FALSE(parsed->open.options.read_only);
  EXPECT_TRUE(parsed->open.options.no_write_hardening);
  EXPECT_TRUE(parsed->open.options.ignore_relative_parent_locator);
  EXPECT_TRUE(parsed->open.no_parents);
  EXPECT_FALSE(parsed->attach.read_only);
  EXPECT_TRUE(parsed->attach.grants_others);
  EXPECT_TRUE(parsed->attach.tcp);
  ASSERT_TRUE(parsed->attach.range.has_value());
  EXPECT_EQ(parsed->attach.range->offset, 1u << 20);
  EXPECT_EQ(parsed->attach.range->length, 5ull << 30);
  EXPECT_FALSE(parsed->attach.permanent) << "the host sets that itself";
}

TEST(AttachHostArguments, DefaultsOpenReadWriteWithoutExtras) {
  AttachHostRequest request;
  request.registry_dir = "/r";
  request.open.path = "/d.vhd";
  request.open.options.read_only = false;
  auto parsed = ParseHostArguments(HostArguments(request));
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->open.options.read_only);
  EXPECT_EQ(parsed->open.format, DiskFormat::kUnknown);
  EXPECT_FALSE(parsed->attach.range.has_value());
  EXPECT_FALSE(parsed->attach.grants_others);
}

TEST(AttachHostArguments, ReadOnlyAttachmentOpensTheImageReadOnly) {
  AttachHostRequest request;
  request.registry_dir = "/r";
  request.open.path = "/d.vhdx";
  request.open.options.read_only = false;
  request.attach.read_only = true;
  auto parsed = ParseHostArguments(HostArguments(request));
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->attach.read_only);
  EXPECT_TRUE(parsed->open.options.read_only);
}

TEST(AttachHostArguments, MalformedLinesAreRefused) {
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"--registry", "/r"},
      {"--disk", "/d"},
      {"--registry", "/r", "--disk", "/d", "--format", "9"},
      {"--registry", "/r", "--disk", "/d", "--range", "12"},
      {"--registry", "/r", "--disk", "/d", "--bogus"},
      {"--registry", "/r", "--disk"},
  };
  for (const auto& args : bad) {
    auto parsed = ParseHostArguments(args);
    ASSERT_FALSE(parsed.ok()) << args.size();
    EXPECT_EQ(parsed.status().code(), Code::kInvalidParameter);
  }
}

}  // namespace
}  // namespace vdisk::attach
