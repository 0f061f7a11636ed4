#include "formats/vhd/vhd_check.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "formats/vhd/vhd_format.h"
#include "platform/file.h"

namespace vdisk::vhd {
namespace {

std::string At(std::uint64_t offset) { return "at offset " + std::to_string(offset); }

// Why a footer is not valid, or empty when it is.
std::string FooterProblem(std::span<const std::byte> bytes) {
  Footer footer;
  std::memcpy(&footer, bytes.data(), sizeof footer);
  if (std::string_view(footer.cookie.data(), footer.cookie.size()) != kFooterCookie)
    return "no 'conectix' cookie";
  if (ComputeChecksum(bytes, kFooterChecksumOffset) != footer.checksum.get()) return "bad checksum";
  return {};
}

}  // namespace

CheckFindings CheckVhdStructures(const Image& image) {
  CheckReport report;
  platform::File& file = image.file();
  auto size = file.Size();
  if (!size.ok() || *size < kFooterSize) {
    report.Corruption("cannot read the file's size");
    return report.Take();
  }
  const std::uint64_t footer_offset = *size - kFooterSize;
  std::vector<std::byte> end_footer(kFooterSize);
  if (!file.ReadAt(footer_offset, end_footer).ok()) {
    report.Corruption("cannot read the footer " + At(footer_offset));
    return report.Take();
  }
  const std::string end_problem = FooterProblem(end_footer);
  if (!end_problem.empty()) {
    report.Corruption("footer " + At(footer_offset) + " (end of file): " + end_problem +
                      "; the copy at offset 0 is in use (--repair rewrites it)");
  }
  if (image.subtype() == DiskSubtype::kFixed) {
    const std::uint64_t expected = image.virtual_size() + kFooterSize;
    if (*size > expected) {
      report.Add({CheckFinding::Kind::kLeak,
                  std::to_string(*size - expected) + " bytes after the data and footer",
                  *size - expected});
    }
    return report.Take();
  }

  // Dynamic and differencing: the copy at offset 0 must equal the footer at the end.
  std::vector<std::byte> copy(kFooterSize);
  if (!file.ReadAt(0, copy).ok()) {
    report.Corruption("cannot read the footer copy at offset 0");
    return report.Take();
  }
  const std::string copy_problem = FooterProblem(copy);
  if (!copy_problem.empty()) {
    report.Corruption("footer copy at offset 0: " + copy_problem + " (--repair rewrites it)");
  } else if (end_problem.empty() && copy != end_footer) {
    report.Corruption("footer copy at offset 0 differs from the footer " + At(footer_offset) +
                      " (--repair rewrites it)");
  }
  const std::vector<std::byte>& good = end_problem.empty() ? end_footer : copy;
  Footer footer;
  std::memcpy(&footer, good.data(), sizeof footer);
  const std::uint64_t header_offset = footer.data_offset.get();
  DynamicHeader header;
  std::vector<std::byte> header_bytes(kDynamicHeaderSize);
  if (!file.ReadAt(header_offset, header_bytes).ok()) {
    report.Corruption("cannot read the dynamic header " + At(header_offset));
    return report.Take();
  }
  std::memcpy(&header, header_bytes.data(), sizeof header);

  // Every structure as [begin, end): the footer copy, the header, the BAT, locator data and the
  // blocks (bitmap and data).
  struct Used {
    std::uint64_t begin, end;
    std::string what;
  };
  std::vector<Used> used;
  used.push_back({0, kFooterSize, "footer copy"});
  used.push_back({header_offset, header_offset + kDynamicHeaderSize, "dynamic header"});
  const std::uint64_t table_offset = header.table_offset.get();
  const std::uint32_t entries = header.max_table_entries.get();
  const std::uint64_t table_bytes =
      (std::uint64_t{entries} * 4 + kSectorSize - 1) / kSectorSize * kSectorSize;
  used.push_back({table_offset, table_offset + table_bytes, "block allocation table"});
  for (const auto& locator : header.parent_locators) {
    if (locator.platform_code.get() == 0) continue;
    const std::uint64_t begin = locator.platform_data_offset.get();
    const std::uint64_t space = std::max<std::uint64_t>(locator.platform_data_space.get(),
                                                        locator.platform_data_length.get());
    if (begin + space <= footer_offset) used.push_back({begin, begin + space, "parent locator"});
  }
  std::vector<std::byte> table(std::uint64_t{entries} * 4);
  if (!file.ReadAt(table_offset, table).ok()) {
    report.Corruption("cannot read the block allocation table " + At(table_offset));
    return report.Take();
  }
  const std::uint32_t block_size = header.block_size.get();
  const std::uint64_t block_bytes = std::uint64_t{BitmapBytes(block_size)} + block_size;
  for (std::uint32_t i = 0; i < entries; ++i) {
    Be32 entry;
    std::memcpy(&entry, table.data() + std::size_t{i} * 4, 4);
    if (entry.get() == kUnallocated) continue;
    const std::uint64_t begin = std::uint64_t{entry.get()} * kSectorSize;
    if (begin + block_bytes > footer_offset) {
      report.Corruption("block allocation table entry " + std::to_string(i) + " points " +
                        At(begin) + ", past the end of the data area (" +
                        std::to_string(footer_offset) + ")");
      continue;
    }
    used.push_back({begin, begin + block_bytes, "block " + std::to_string(i)});
  }
  std::sort(used.begin(), used.end(),
            [](const Used& a, const Used& b) { return a.begin < b.begin; });
  std::uint64_t end = 0;
  for (std::size_t i = 0; i < used.size(); ++i) {
    if (i > 0 && used[i].begin < used[i - 1].end) {
      report.Corruption(used[i].what + " " + At(used[i].begin) + " overlaps " + used[i - 1].what +
                        " " + At(used[i - 1].begin));
    }
    end = std::max(end, used[i].end);
  }
  if (footer_offset > end) {
    report.Add({CheckFinding::Kind::kLeak,
                std::to_string(footer_offset - end) + " bytes between offset " +
                    std::to_string(end) + " and the footer that no structure uses",
                footer_offset - end});
  }
  return report.Take();
}

}  // namespace vdisk::vhd
