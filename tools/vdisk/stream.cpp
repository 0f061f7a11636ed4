#include "stream.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

#include "client.h"
#include "errors.h"

namespace vdisk_tool {
namespace {

std::string OsReason(int error) { return std::error_code(error, std::generic_category()).message(); }

}  // namespace

std::unique_ptr<InputStream> InputStream::Open(const std::string& path) {
  if (path == "-") {
#ifdef _WIN32
    _setmode(_fileno(stdin), _O_BINARY);
#endif
    return std::unique_ptr<InputStream>(new InputStream("standard input", stdin, false, std::nullopt));
  }
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Failure(path, "is a directory, not a file");
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) throw Failure(path, "cannot open: " + OsReason(errno));
  const auto size = fs::file_size(path, ec);
  return std::unique_ptr<InputStream>(
      new InputStream(path, file, true, ec ? std::nullopt : std::optional<std::uint64_t>(size)));
}

InputStream::~InputStream() {
  if (owned_) std::fclose(file_);
}

std::size_t InputStream::Read(std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const std::size_t n = std::fread(out.data() + done, 1, out.size() - done, file_);
    if (n == 0) {
      if (std::ferror(file_)) throw Failure(name_, "reading failed: " + OsReason(errno));
      break;
    }
    done += n;
  }
  return done;
}

std::unique_ptr<OutputStream> OutputStream::Create(const std::string& path, bool sparse) {
  if (path == "-") {
#ifdef _WIN32
    _setmode(_fileno(stdout), _O_BINARY);
#endif
    return std::unique_ptr<OutputStream>(new OutputStream("standard output", stdout, false));
  }
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Failure(path, "is a directory, not a file");
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) throw Failure(path, "cannot create: " + OsReason(errno));
  return std::unique_ptr<OutputStream>(new OutputStream(path, file, sparse));
}

OutputStream::~OutputStream() {
  if (!finished_) Abandon();
}

void OutputStream::Pad(std::uint64_t offset) {
  if (offset == position_) return;
  if (sparse_) {
#ifdef _WIN32
    const int sought = _fseeki64(file_, static_cast<long long>(offset), SEEK_SET);
#else
    const int sought = fseeko(file_, static_cast<off_t>(offset), SEEK_SET);
#endif
    if (sought != 0) {
      throw Failure(name_, "seeking failed: " + OsReason(errno));
    }
  } else {
    static const std::vector<char> zeros(1 << 20, 0);
    for (std::uint64_t left = offset - position_; left > 0;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, zeros.size()));
      if (std::fwrite(zeros.data(), 1, n, file_) != n) throw Failure(name_, "writing failed: " + OsReason(errno));
      left -= n;
    }
  }
  position_ = offset;
}

void OutputStream::Write(std::uint64_t offset, std::span<const std::byte> data) {
  if (sparse_ && AllZero(data)) return;  // a hole
  Pad(offset);
  if (std::fwrite(data.data(), 1, data.size(), file_) != data.size()) {
    throw Failure(name_, "writing failed: " + OsReason(errno));
  }
  position_ += data.size();
}

void OutputStream::Finish(std::uint64_t length) {
  if (!sparse_) Pad(length);
  if (std::fflush(file_) != 0) throw Failure(name_, "writing failed: " + OsReason(errno));
  if (file_ != stdout) {
    if (std::fclose(file_) != 0) {
      file_ = nullptr;
      throw Failure(name_, "closing failed: " + OsReason(errno));
    }
    file_ = nullptr;
    std::error_code ec;
    fs::resize_file(name_, length, ec);  // the holes at the end
    if (ec) throw Failure(name_, "setting the size failed: " + ec.message());
  }
  finished_ = true;
}

void OutputStream::Abandon() {
  finished_ = true;
  if (file_ == nullptr || file_ == stdout) return;
  std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  fs::remove(name_, ec);
}

}  // namespace vdisk_tool
