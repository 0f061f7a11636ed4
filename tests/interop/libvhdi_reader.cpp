// libvhdi (libyal) as a second, independent VHD/VHDX reader. Kept in its own translation unit: its
// headers and virtdisk/win32.h both define Win32-looking names.
//
// Known limitation of libvhdi 20210425 (Debian 12): in a VHD differencing image it mis-reads
// sector bitmap bytes that are neither 0x00 nor 0xFF, so differencing chains are compared with
// libvhdi only when every write is 4 KiB aligned (whole bitmap bytes).
#include "libvhdi_reader.h"

#include <memory>

#ifdef VIRTDISK_HAVE_LIBVHDI
#include <libvhdi.h>
#endif

namespace vdisk_interop {

#ifdef VIRTDISK_HAVE_LIBVHDI

namespace {

std::string TakeMessage(libvhdi_error_t*& error) {
  if (error == nullptr) return "unknown libvhdi error";
  char text[2048] = {};
  libvhdi_error_backtrace_sprint(error, text, sizeof text);
  libvhdi_error_free(&error);
  return text;
}

struct FileDeleter {
  void operator()(libvhdi_file_t* file) const {
    libvhdi_file_close(file, nullptr);
    libvhdi_file_free(&file, nullptr);
  }
};
using File = std::unique_ptr<libvhdi_file_t, FileDeleter>;

}  // namespace

bool HaveLibvhdi() { return true; }

std::optional<Bytes> LibvhdiReadAll(const std::vector<std::filesystem::path>& chain,
                                    std::uint64_t* media_size, std::string* error) {
  // Open base first; each file's parent must be set before its data is read.
  std::vector<File> files;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    libvhdi_error_t* e = nullptr;
    libvhdi_file_t* raw = nullptr;
    if (libvhdi_file_initialize(&raw, &e) != 1) {
      if (error) *error = "libvhdi_file_initialize: " + TakeMessage(e);
      return std::nullopt;
    }
    File file(raw);
    if (libvhdi_file_open(file.get(), it->c_str(), LIBVHDI_OPEN_READ, &e) != 1) {
      // The deleter must not close a file that never opened.
      libvhdi_file_t* p = file.release();
      libvhdi_file_free(&p, nullptr);
      if (error) *error = "libvhdi_file_open " + it->string() + ": " + TakeMessage(e);
      return std::nullopt;
    }
    if (!files.empty() &&
        libvhdi_file_set_parent_file(file.get(), files.back().get(), &e) != 1) {
      if (error) *error = "libvhdi_file_set_parent_file " + it->string() + ": " + TakeMessage(e);
      return std::nullopt;
    }
    files.push_back(std::move(file));
  }
  libvhdi_file_t* top = files.back().get();
  libvhdi_error_t* e = nullptr;
  size64_t size = 0;
  if (libvhdi_file_get_media_size(top, &size, &e) != 1) {
    if (error) *error = "libvhdi_file_get_media_size: " + TakeMessage(e);
    return std::nullopt;
  }
  if (media_size) *media_size = size;
  Bytes data(static_cast<std::size_t>(size));
  constexpr std::size_t kChunk = 1 << 20;
  for (std::size_t offset = 0; offset < data.size(); offset += kChunk) {
    const std::size_t n = std::min(kChunk, data.size() - offset);
    const ssize_t got = libvhdi_file_read_buffer_at_offset(top, data.data() + offset, n,
                                                           static_cast<off64_t>(offset), &e);
    if (got != static_cast<ssize_t>(n)) {
      if (error)
        *error = "libvhdi_file_read_buffer_at_offset(" + std::to_string(offset) + ", " +
                 std::to_string(n) + ") returned " + std::to_string(got) + ": " +
                 TakeMessage(e);
      return std::nullopt;
    }
  }
  return data;
}

std::optional<LibvhdiIdentifiers> LibvhdiReadIdentifiers(const std::filesystem::path& path,
                                                         std::string* error) {
  libvhdi_error_t* e = nullptr;
  libvhdi_file_t* raw = nullptr;
  if (libvhdi_file_initialize(&raw, &e) != 1) {
    if (error) *error = "libvhdi_file_initialize: " + TakeMessage(e);
    return std::nullopt;
  }
  if (libvhdi_file_open(raw, path.c_str(), LIBVHDI_OPEN_READ, &e) != 1) {
    libvhdi_file_free(&raw, nullptr);
    if (error) *error = "libvhdi_file_open " + path.string() + ": " + TakeMessage(e);
    return std::nullopt;
  }
  File file(raw);
  LibvhdiIdentifiers out;
  if (libvhdi_file_get_identifier(file.get(), out.identifier.data(), out.identifier.size(), &e) !=
      1) {
    if (error) *error = "libvhdi_file_get_identifier " + path.string() + ": " + TakeMessage(e);
    return std::nullopt;
  }
  // 0 means the disk has no parent: the zeros stay.
  if (libvhdi_file_get_parent_identifier(file.get(), out.parent.data(), out.parent.size(), &e) ==
      -1) {
    if (error)
      *error = "libvhdi_file_get_parent_identifier " + path.string() + ": " + TakeMessage(e);
    return std::nullopt;
  }
  return out;
}

#else

bool HaveLibvhdi() { return false; }

std::optional<Bytes> LibvhdiReadAll(const std::vector<std::filesystem::path>&, std::uint64_t*,
                                    std::string* error) {
  if (error) *error = "built without libvhdi";
  return std::nullopt;
}

std::optional<LibvhdiIdentifiers> LibvhdiReadIdentifiers(const std::filesystem::path&,
                                                         std::string* error) {
  if (error) *error = "built without libvhdi";
  return std::nullopt;
}

#endif

}  // namespace vdisk_interop
