#include "formats/vhdx/vhdx_log.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "base/bytes.h"

namespace vdisk::vhdx {
namespace {

std::size_t DescriptorSectors(std::size_t descriptors) {
  return (sizeof(LogEntryHeader) + descriptors * kLogDescriptorSize + kLogSectorSize - 1) /
         kLogSectorSize;
}

// Copies `length` bytes of the ring `log` starting at `position`, wrapping at its end.
std::vector<std::byte> ReadRing(std::span<const std::byte> log, std::size_t position,
                                std::size_t length) {
  std::vector<std::byte> out(length);
  std::size_t done = 0;
  while (done < length) {
    const std::size_t at = (position + done) % log.size();
    const std::size_t n = std::min(length - done, log.size() - at);
    std::memcpy(out.data() + done, log.data() + at, n);
    done += n;
  }
  return out;
}

std::string At(std::size_t position) {
  return "log entry at log offset " + std::to_string(position);
}

struct Entry {
  std::uint32_t position = 0;
  std::uint32_t length = 0;
  std::uint32_t tail = 0;
  std::uint64_t sequence_number = 0;
  std::uint64_t flushed_file_offset = 0;
  std::uint64_t last_file_offset = 0;
  std::vector<LogUpdate> updates;
};

// Validates the entry at `position` (§2.3.1): header fields, CRC-32C over the whole entry, every
// descriptor and data sector. Returns nullopt, with the reason in `problem` when the sector
// looked like an entry, if it is not a valid entry of `log_guid`.
std::optional<Entry> ReadEntry(std::span<const std::byte> log, std::size_t position,
                               const Guid& log_guid, std::string& problem) {
  const auto header_bytes = ReadRing(log, position, sizeof(LogEntryHeader));
  const auto header = LoadAs<LogEntryHeader>(header_bytes);
  if (header.signature.get() != kLogEntrySignature) return std::nullopt;  // not an entry
  const std::uint32_t length = header.entry_length.get();
  if (length == 0 || length % kLogSectorSize != 0 || length > log.size()) {
    problem = At(position) + ": entry length " + std::to_string(length) +
              " is not a multiple of 4 KiB within the log";
    return std::nullopt;
  }
  if (!(header.log_guid == log_guid)) {
    problem = At(position) + ": LogGuid " + header.log_guid.ToString() + " is not the header's " +
              log_guid.ToString();
    return std::nullopt;
  }
  const std::uint32_t tail = header.tail.get();
  if (tail % kLogSectorSize != 0 || tail >= log.size()) {
    problem = At(position) + ": tail " + std::to_string(tail) + " is not a log sector";
    return std::nullopt;
  }
  const std::uint64_t sequence = header.sequence_number.get();
  if (sequence == 0) {
    problem = At(position) + ": sequence number 0";
    return std::nullopt;
  }
  const std::uint64_t descriptors = header.descriptor_count.get();
  const std::uint64_t descriptor_sectors =
      (sizeof(LogEntryHeader) + descriptors * kLogDescriptorSize + kLogSectorSize - 1) /
      kLogSectorSize;
  if (descriptor_sectors * kLogSectorSize > length) {
    problem = At(position) + ": " + std::to_string(descriptors) +
              " descriptors do not fit in an entry of " + std::to_string(length) + " bytes";
    return std::nullopt;
  }
  // An entry that does not wrap is checked in place; one that wraps is copied out first.
  std::vector<std::byte> copy;
  std::span<const std::byte> bytes;
  if (position + length <= log.size()) {
    bytes = log.subspan(position, length);
  } else {
    copy = ReadRing(log, position, length);
    bytes = copy;
  }
  const std::uint32_t crc = Crc32cWithZeroedField(bytes, offsetof(LogEntryHeader, checksum));
  if (crc != header.checksum.get()) {
    problem = At(position) + ": CRC-32C mismatch (stored " + std::to_string(header.checksum.get()) +
              ", computed " + std::to_string(crc) + ")";
    return std::nullopt;
  }

  Entry entry;
  entry.position = static_cast<std::uint32_t>(position);
  entry.length = length;
  entry.tail = tail;
  entry.sequence_number = sequence;
  entry.flushed_file_offset = header.flushed_file_offset.get();
  entry.last_file_offset = header.last_file_offset.get();
  std::size_t data_sector = descriptor_sectors;
  const std::size_t sectors = length / kLogSectorSize;
  for (std::uint64_t i = 0; i < descriptors; ++i) {
    const std::size_t at = sizeof(LogEntryHeader) + i * kLogDescriptorSize;
    const auto signature = LoadAs<Le32>(bytes, at).get();
    const std::string which = At(position) + ", descriptor " + std::to_string(i);
    if (signature == kZeroDescriptorSignature) {
      const auto d = LoadAs<LogZeroDescriptor>(bytes, at);
      if (d.sequence_number.get() != sequence) {
        problem = which + ": sequence number does not match the entry's";
        return std::nullopt;
      }
      if (d.file_offset.get() % kLogSectorSize != 0 || d.zero_length.get() % kLogSectorSize != 0 ||
          d.zero_length.get() == 0 ||
          d.file_offset.get() + d.zero_length.get() < d.file_offset.get()) {
        problem = which + ": zero range is not made of whole 4 KiB sectors";
        return std::nullopt;
      }
      entry.updates.push_back(LogUpdate::Zero(d.file_offset.get(), d.zero_length.get()));
    } else if (signature == kDataDescriptorSignature) {
      const auto d = LoadAs<LogDataDescriptor>(bytes, at);
      if (d.sequence_number.get() != sequence) {
        problem = which + ": sequence number does not match the entry's";
        return std::nullopt;
      }
      if (d.file_offset.get() % kLogSectorSize != 0) {
        problem = which + ": file offset " + std::to_string(d.file_offset.get()) +
                  " is not a multiple of 4 KiB";
        return std::nullopt;
      }
      if (data_sector >= sectors) {
        problem = which + ": no data sector left in the entry";
        return std::nullopt;
      }
      const auto sector_bytes =
          std::span(bytes).subspan(data_sector * kLogSectorSize, kLogSectorSize);
      const auto s = LoadAs<LogDataSector>(sector_bytes);
      if (s.signature.get() != kDataSectorSignature ||
          s.sequence_high.get() != static_cast<std::uint32_t>(sequence >> 32) ||
          s.sequence_low.get() != static_cast<std::uint32_t>(sequence)) {
        problem = At(position) + ", data sector " + std::to_string(data_sector) +
                  ": signature or sequence number does not match (torn write)";
        return std::nullopt;
      }
      LogUpdate update;
      update.file_offset = d.file_offset.get();
      update.data.resize(kLogSectorSize);
      const auto out = std::span(update.data);
      StoreAs(out, 0, d.leading_bytes);
      std::memcpy(out.data() + 8, s.data.data(), s.data.size());
      StoreAs(out, kLogSectorSize - 4, d.trailing_bytes);
      entry.updates.push_back(std::move(update));
      ++data_sector;
    } else {
      problem = which + ": unknown descriptor signature";
      return std::nullopt;
    }
  }
  if (data_sector != sectors) {
    problem = At(position) + ": " + std::to_string(sectors) + " sectors long but describes " +
              std::to_string(data_sector);
    return std::nullopt;
  }
  return entry;
}

}  // namespace

LogUpdate LogUpdate::Data(std::uint64_t file_offset, std::span<const std::byte> sector) {
  LogUpdate u;
  u.file_offset = file_offset;
  u.data.assign(sector.begin(), sector.end());
  u.data.resize(kLogSectorSize);
  return u;
}

LogUpdate LogUpdate::Zero(std::uint64_t file_offset, std::uint64_t length) {
  LogUpdate u;
  u.file_offset = file_offset;
  u.zero_length = length;
  return u;
}

LogScan FindActiveSequence(std::span<const std::byte> log, const Guid& log_guid) {
  LogScan scan;
  if (log.empty() || log.size() % kLogSectorSize != 0) {
    scan.first_problem = "log of " + std::to_string(log.size()) + " bytes";
    return scan;
  }
  const std::size_t size = log.size();
  std::vector<Entry> candidate;
  std::uint64_t candidate_sequence = 0;
  std::size_t current_tail = 0;
  std::size_t old_tail = 0;
  const std::size_t max_entries = size / kLogSectorSize;
  for (;;) {
    // Extend a sequence from current_tail while entries are valid and numbered consecutively.
    std::vector<Entry> sequence;
    std::size_t head = current_tail;
    while (sequence.size() < max_entries) {
      std::string problem;
      auto entry = ReadEntry(log, head, log_guid, problem);
      if (!entry) {
        if (scan.first_problem.empty() && !problem.empty()) scan.first_problem = problem;
        break;
      }
      if (!sequence.empty() && entry->sequence_number != sequence.back().sequence_number + 1) break;
      head = (head + entry->length) % size;
      sequence.push_back(std::move(*entry));
    }
    // Valid if the head entry's tail lies within the sequence; the sequence proper starts there.
    std::size_t tail_index = sequence.size();
    if (!sequence.empty()) {
      for (std::size_t i = 0; i < sequence.size(); ++i) {
        if (sequence[i].position == sequence.back().tail) {
          tail_index = i;
          break;
        }
      }
    }
    const bool valid = tail_index < sequence.size();
    if (valid && sequence.back().sequence_number > candidate_sequence) {
      candidate_sequence = sequence.back().sequence_number;
      candidate.assign(std::make_move_iterator(sequence.begin() + tail_index),
                       std::make_move_iterator(sequence.end()));
    }
    if (!valid) {
      current_tail += kLogSectorSize;
      if (current_tail == size) current_tail = 0;
    } else {
      current_tail = head;
    }
    if (current_tail <= old_tail) break;  // wrapped: the whole ring has been scanned
    old_tail = current_tail;
  }
  if (candidate.empty()) return scan;

  LogSequence active;
  for (Entry& e : candidate) {
    for (LogUpdate& u : e.updates) active.updates.push_back(std::move(u));
  }
  const Entry& head_entry = candidate.back();
  active.flushed_file_offset = head_entry.flushed_file_offset;
  active.last_file_offset = head_entry.last_file_offset;
  active.head_sequence_number = head_entry.sequence_number;
  active.entry_count = static_cast<std::uint32_t>(candidate.size());
  active.tail_position = candidate.front().position;
  active.end_position =
      static_cast<std::uint32_t>((head_entry.position + head_entry.length) % size);
  scan.active = std::move(active);
  return scan;
}

std::uint64_t LogEntryLength(std::size_t data_descriptors, std::size_t zero_descriptors) {
  return (DescriptorSectors(data_descriptors + zero_descriptors) + data_descriptors) *
         kLogSectorSize;
}

std::vector<std::byte> BuildLogEntry(const Guid& log_guid, std::uint64_t sequence_number,
                                     std::uint32_t tail, std::span<const LogUpdate> updates,
                                     std::uint64_t flushed_file_offset,
                                     std::uint64_t last_file_offset) {
  std::size_t data_count = 0;
  for (const LogUpdate& u : updates) data_count += u.zero_length == 0 ? 1 : 0;
  const std::size_t descriptor_sectors = DescriptorSectors(updates.size());
  const std::size_t length = (descriptor_sectors + data_count) * kLogSectorSize;
  std::vector<std::byte> bytes(length);
  const auto out = std::span(bytes);

  LogEntryHeader header{};
  header.signature.set(kLogEntrySignature);
  header.entry_length.set(static_cast<std::uint32_t>(length));
  header.tail.set(tail);
  header.sequence_number.set(sequence_number);
  header.descriptor_count.set(static_cast<std::uint32_t>(updates.size()));
  header.log_guid = log_guid;
  header.flushed_file_offset.set(flushed_file_offset);
  header.last_file_offset.set(last_file_offset);

  std::size_t data_sector = descriptor_sectors;
  for (std::size_t i = 0; i < updates.size(); ++i) {
    const LogUpdate& u = updates[i];
    const std::size_t at = sizeof(LogEntryHeader) + i * kLogDescriptorSize;
    if (u.zero_length != 0) {
      LogZeroDescriptor d{};
      d.signature.set(kZeroDescriptorSignature);
      d.zero_length.set(u.zero_length);
      d.file_offset.set(u.file_offset);
      d.sequence_number.set(sequence_number);
      StoreAs(out, at, d);
      continue;
    }
    const auto data = std::span(u.data);
    LogDataDescriptor d{};
    d.signature.set(kDataDescriptorSignature);
    d.trailing_bytes = LoadAs<Le32>(data, kLogSectorSize - 4);
    d.leading_bytes = LoadAs<Le64>(data, 0);
    d.file_offset.set(u.file_offset);
    d.sequence_number.set(sequence_number);
    StoreAs(out, at, d);
    LogDataSector s{};
    s.signature.set(kDataSectorSignature);
    s.sequence_high.set(static_cast<std::uint32_t>(sequence_number >> 32));
    std::memcpy(s.data.data(), data.data() + 8, s.data.size());
    s.sequence_low.set(static_cast<std::uint32_t>(sequence_number));
    StoreAs(out, data_sector * kLogSectorSize, s);
    ++data_sector;
  }
  StoreAs(out, 0, header);
  header.checksum.set(Crc32cWithZeroedField(bytes, offsetof(LogEntryHeader, checksum)));
  StoreAs(out, 0, header);
  return bytes;
}

void LogOverlay::Apply(const LogUpdate& update) {
  if (update.zero_length == 0) {
    sectors_[update.file_offset] = update.data;
    return;
  }
  std::uint64_t start = update.file_offset;
  std::uint64_t end = update.file_offset + update.zero_length;
  sectors_.erase(sectors_.lower_bound(start), sectors_.lower_bound(end));
  // Merge with every zero range that touches [start, end).
  auto it = zeros_.upper_bound(start);
  if (it != zeros_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= start) it = prev;
  }
  while (it != zeros_.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    it = zeros_.erase(it);
  }
  zeros_[start] = end;
}

void LogOverlay::Patch(std::uint64_t offset, std::span<std::byte> out) const {
  const std::uint64_t end = offset + out.size();
  auto z = zeros_.upper_bound(offset);
  if (z != zeros_.begin()) --z;
  for (; z != zeros_.end() && z->first < end; ++z) {
    const std::uint64_t a = std::max(offset, z->first);
    const std::uint64_t b = std::min(end, z->second);
    if (a < b) std::memset(out.data() + (a - offset), 0, b - a);
  }
  auto s = sectors_.upper_bound(offset);
  if (s != sectors_.begin()) --s;
  for (; s != sectors_.end() && s->first < end; ++s) {
    const std::uint64_t a = std::max(offset, s->first);
    const std::uint64_t b = std::min(end, s->first + kLogSectorSize);
    if (a < b) std::memcpy(out.data() + (a - offset), s->second.data() + (a - s->first), b - a);
  }
}

bool LogOverlay::Touches(std::uint64_t offset, std::uint64_t length) const {
  const std::uint64_t end = offset + length;
  auto z = zeros_.upper_bound(offset);
  if (z != zeros_.begin()) --z;
  for (; z != zeros_.end() && z->first < end; ++z) {
    if (z->second > offset) return true;
  }
  auto s = sectors_.upper_bound(offset);
  if (s != sectors_.begin()) --s;
  for (; s != sectors_.end() && s->first < end; ++s) {
    if (s->first + kLogSectorSize > offset) return true;
  }
  return false;
}

void StructureReader::SetOverlay(LogOverlay overlay, std::uint64_t physical_size,
                                 std::uint64_t logical_size) {
  overlay_ = std::move(overlay);
  physical_size_ = physical_size;
  logical_size_ = std::max(logical_size, physical_size);
  has_overlay_ = true;
}

Status StructureReader::Read(std::uint64_t offset, std::span<std::byte> out) const {
  if (!has_overlay_) return file_->ReadAt(offset, out);
  const std::uint64_t end = offset + out.size();
  if (end > logical_size_ || end < offset) {
    return Status(Code::kFileCorrupt,
                  file_->path().string() + ": file ends before offset " + std::to_string(end));
  }
  // The part past the physical end reads as the zeros that extending the file would give.
  if (offset < physical_size_) {
    const std::uint64_t n = std::min<std::uint64_t>(out.size(), physical_size_ - offset);
    VDISK_RETURN_IF_ERROR(file_->ReadAt(offset, out.first(static_cast<std::size_t>(n))));
    std::memset(out.data() + n, 0, out.size() - n);
  } else {
    std::memset(out.data(), 0, out.size());
  }
  overlay_.Patch(offset, out);
  return Status::Ok();
}

}  // namespace vdisk::vhdx
