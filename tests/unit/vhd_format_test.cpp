// VHD on-disk structures: checksum, CHS geometry, big-endian fields, UTF-16 strings, probing.
#include "formats/vhd/vhd_format.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "formats/registry/provider.h"
#include "formats/vhd/vhd_provider.h"

namespace vdisk::vhd {
namespace {

std::vector<std::byte> Bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

TEST(VhdFormat, BigEndianFieldsStoreMostSignificantByteFirst) {
  Be32 v;
  v.set(0x01020304);
  std::array<std::uint8_t, 4> raw;
  std::memcpy(raw.data(), &v, 4);
  EXPECT_EQ(raw, (std::array<std::uint8_t, 4>{1, 2, 3, 4}));
  EXPECT_EQ(v.get(), 0x01020304u);
  Be64 w;
  w.set(0x1122334455667788ull);
  EXPECT_EQ(w.get(), 0x1122334455667788ull);
}

TEST(VhdFormat, ChecksumIsOnesComplementOfByteSumSkippingTheField) {
  std::vector<std::byte> data(16, std::byte{0});
  data[0] = std::byte{0x10};
  data[15] = std::byte{0x01};
  data[4] = std::byte{0xFF};  // inside the checksum field: ignored
  EXPECT_EQ(ComputeChecksum(data, 4), ~std::uint32_t{0x11});
}

TEST(VhdFormat, GeometryFollowsTheSpecAlgorithm) {
  // Worked by hand from the spec's appendix "CHS Calculation".
  EXPECT_EQ(ComputeGeometry(10ull << 20), (Geometry{301, 4, 17}));
  EXPECT_EQ(ComputeGeometry(64ull << 20), (Geometry{963, 8, 17}));
  EXPECT_EQ(ComputeGeometry(1ull << 30), (Geometry{2080, 16, 63}));
  EXPECT_EQ(ComputeGeometry(32ull << 30), (Geometry{16448, 16, 255}));
  // 127 GiB: 266338304 sectors, past 65535*16*63.
  EXPECT_EQ(ComputeGeometry(127ull << 30), (Geometry{65278, 16, 255}));
}

TEST(VhdFormat, GeometryIsCappedForLargeDisks) {
  EXPECT_EQ(ComputeGeometry(kMaxDiskSize), (Geometry{65535, 16, 255}));
  EXPECT_EQ(ComputeGeometry(200ull << 30), (Geometry{65535, 16, 255}));
}

TEST(VhdFormat, BitmapBytesArePaddedToASector) {
  EXPECT_EQ(BitmapBytes(2u << 20), 512u);    // 4096 sectors -> 512 bytes
  EXPECT_EQ(BitmapBytes(512u << 10), 512u);  // 1024 sectors -> 128 bytes, padded
  EXPECT_EQ(BitmapBytes(16u << 20), 4096u);
  EXPECT_EQ(BitmapBytes(512), 512u);
}

TEST(VhdFormat, Utf16RoundTripsBothByteOrders) {
  const std::string text = "C:\\d\xC3\xA9j\xC3\xA0\\\xF0\x9F\x98\x80.vhd";  // é, à, an emoji
  for (bool big_endian : {false, true}) {
    const auto utf16 = Utf8ToUtf16(text, big_endian);
    EXPECT_EQ(utf16.size(), 2 * 14u);
    EXPECT_EQ(Utf16ToUtf8(utf16, big_endian), text);
  }
  EXPECT_EQ(Utf8ToUtf16("A", false), Bytes({0x41, 0}));
  EXPECT_EQ(Utf8ToUtf16("A", true), Bytes({0, 0x41}));
}

TEST(VhdFormat, Utf16DecodingStopsAtNulAndReplacesLoneSurrogates) {
  EXPECT_EQ(Utf16ToUtf8(Bytes({0, 'a', 0, 'b', 0, 0, 0, 'c'}), true), "ab");
  EXPECT_EQ(Utf16ToUtf8(Bytes({0xD8, 0x00, 0, 'x'}), true), "\xEF\xBF\xBDx");
}

TEST(VhdProbe, RecognisesFootersAtTheEndOrTheStart) {
  const auto provider = MakeVhdProvider();
  std::vector<std::byte> tail(512);
  std::memcpy(tail.data(), "conectix", 8);
  std::vector<std::byte> nothing(512);
  EXPECT_GT(provider->Probe({nothing, tail, 4096}), 0);
  // An old Virtual PC footer of 511 bytes.
  std::vector<std::byte> old_tail(512);
  std::memcpy(old_tail.data() + 1, "conectix", 8);
  EXPECT_GT(provider->Probe({nothing, old_tail, 4096}), 0);
  // Only the copy at offset 0 of a dynamic image.
  EXPECT_GT(provider->Probe({tail, nothing, 4096}), 0);
  EXPECT_EQ(provider->Probe({nothing, nothing, 4096}), 0);
  EXPECT_EQ(provider->Probe({{}, {}, 0}), 0);
  const auto exts = provider->extensions();
  EXPECT_NE(std::find(exts.begin(), exts.end(), ".vhd"), exts.end());
  EXPECT_NE(std::find(exts.begin(), exts.end(), ".avhd"), exts.end());
}

}  // namespace
}  // namespace vdisk::vhd
