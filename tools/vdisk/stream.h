// Plain files and standard input/output as sources and targets of raw bytes ("-").
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace vdisk_tool {

class InputStream {
 public:
  // A file, or standard input for "-". Throws a Failure naming the file.
  static std::unique_ptr<InputStream> Open(const std::string& path);
  ~InputStream();
  // Reads up to out.size() bytes; fewer only at the end.
  std::size_t Read(std::span<std::byte> out);
  std::optional<std::uint64_t> size() const { return size_; }

 private:
  InputStream(std::string name, std::FILE* file, bool owned, std::optional<std::uint64_t> size)
      : name_(std::move(name)), file_(file), owned_(owned), size_(size) {}
  std::string name_;
  std::FILE* file_;
  bool owned_;
  std::optional<std::uint64_t> size_;
};

class OutputStream {
 public:
  // A new or truncated file, or standard output for "-". A sparse file skips all-zero writes
  // (they stay holes); a pipe cannot, so standard output gets every byte.
  static std::unique_ptr<OutputStream> Create(const std::string& path, bool sparse);
  ~OutputStream();
  // Writes at `offset`, which only grows (streams write in order).
  void Write(std::uint64_t offset, std::span<const std::byte> data);
  // Gives the output its full length (holes at the end included) and closes it.
  void Finish(std::uint64_t length);
  // Removes a file that was not finished (a failed or interrupted command).
  void Abandon();
  bool is_stdout() const { return file_ == stdout; }

 private:
  OutputStream(std::string name, std::FILE* file, bool sparse)
      : name_(std::move(name)), file_(file), sparse_(sparse) {}
  void Pad(std::uint64_t offset);
  std::string name_;
  std::FILE* file_;
  bool sparse_;
  std::uint64_t position_ = 0;
  bool finished_ = false;
};

}  // namespace vdisk_tool
