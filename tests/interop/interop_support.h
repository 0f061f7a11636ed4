// Helpers for the interop tests: running the peer tools (qemu-img, qemu-io, genisoimage,
// isoinfo), scratch directories, deterministic patterns, and the library's API used the way a
// Win32 client uses it (Microsoft's RawIO sample: open, attach NO_LOCAL_HOST, ReadFile/WriteFile).
//
// The peers are the oracles: a test states what a peer says and checks that we agree, never
// the other way round.
#pragma once

#include <virtdisk.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "libvhdi_reader.h"
#include "pattern.h"

namespace vdisk_interop {

using Bytes = std::vector<std::uint8_t>;
using WString = std::basic_string<WCHAR>;

// --- processes -----------------------------------------------------------------------------------

struct CommandResult {
  int exit_code = -1;  // -1: could not run, 128+N: killed by signal N
  std::string out;
  std::string err;
  // "argv[0] ... => exit N\nstdout\nstderr", for assertion messages.
  std::string Describe() const;
  std::string command;
};

// Runs argv (argv[0] looked up in PATH) with stdin from /dev/null and collects its output.
CommandResult RunTool(const std::vector<std::string>& argv);

// Whether `name` is an executable in PATH.
bool HaveTool(std::string_view name);

// Skips the current test when a peer tool is not installed (CI installs them all).
#define INTEROP_REQUIRE_TOOL(name)                                                         \
  do {                                                                                     \
    if (!::vdisk_interop::HaveTool(name)) GTEST_SKIP() << (name) << " is not installed"; \
  } while (0)

// --- files ---------------------------------------------------------------------------------------

// A fresh directory under $TMPDIR (or /tmp), removed at destruction unless
// VIRTDISK_KEEP_TEST_FILES is set in the environment (then its path is printed).
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

Bytes ReadWholeFile(const std::filesystem::path& path);
void WriteWholeFile(const std::filesystem::path& path, std::span<const std::uint8_t> data);
// Writes `data` at `offset` (the file grows as needed; a new file is sparse).
void WriteFileAt(const std::filesystem::path& path, std::uint64_t offset,
                 std::span<const std::uint8_t> data);

// Index of the first differing byte of two equally long ranges, or nullopt when equal.
std::optional<std::size_t> FirstDifference(std::span<const std::uint8_t> a,
                                           std::span<const std::uint8_t> b);
// "equal" or "differ at byte N (0xAA vs 0xBB); sizes X and Y", for assertion messages.
std::string CompareBytes(std::span<const std::uint8_t> actual,
                         std::span<const std::uint8_t> expected);

// --- qemu ----------------------------------------------------------------------------------------

// "virtual-size" of `qemu-img info --output=json -f <format> path`, or nullopt if it failed.
std::optional<std::uint64_t> QemuVirtualSize(const std::filesystem::path& image,
                                             std::string_view format);
// The whole disk as qemu reads it (`qemu-img convert -O raw`), or nullopt with the reason in
// `error`.
std::optional<Bytes> QemuReadAll(const std::filesystem::path& image, std::string_view format,
                                 const std::filesystem::path& scratch, std::string* error);

// What `qemu-img check -f vpc` said. qemu 7.2's vpc driver has no check callback: the command
// prints "This image format does not support checks" and exits 63. Callers then rely on
// `qemu-img compare` and libvhdi for structural validation; `supported` says which case it was.
struct QemuCheck {
  bool supported = false;
  bool passed = false;
  std::string detail;
};
QemuCheck QemuCheckVpc(const std::filesystem::path& image);

// --- the library under test ----------------------------------------------------------------------

WString Wide(const std::filesystem::path& path);
VIRTUAL_STORAGE_TYPE StorageType(ULONG device, bool microsoft);

// Owns a HANDLE from the library and closes it.
class Handle {
 public:
  Handle() = default;
  explicit Handle(HANDLE h) : h_(h) {}
  ~Handle() { Close(); }
  Handle(Handle&& other) noexcept : h_(other.h_) { other.h_ = nullptr; }
  Handle& operator=(Handle&& other) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  HANDLE get() const { return h_; }
  HANDLE* out() {
    Close();
    return &h_;
  }
  // CloseHandle; false if it failed.
  bool Close();
  explicit operator bool() const { return h_ != nullptr; }

 private:
  HANDLE h_ = nullptr;
};

// OpenVirtualDisk with V2 parameters and VIRTUAL_DISK_ACCESS_NONE, as the RawIO sample does.
DWORD OpenV2(const std::filesystem::path& path, VIRTUAL_STORAGE_TYPE type, bool read_only,
             Handle& handle, OPEN_VIRTUAL_DISK_FLAG flags = OPEN_VIRTUAL_DISK_FLAG_NONE);
// OpenVirtualDisk with V1 parameters (NULL) and an access mask.
DWORD OpenV1(const std::filesystem::path& path, VIRTUAL_STORAGE_TYPE type,
             VIRTUAL_DISK_ACCESS_MASK mask, Handle& handle);

struct CreateSpec {
  std::uint64_t size = 0;          // 0 with a parent
  bool fixed = false;              // CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION
  ULONG block_size = 0;            // 0: the format's default
  std::filesystem::path parent;    // non-empty: a differencing disk
};
// CreateVirtualDisk with V2 parameters; the handle is open read-write.
DWORD CreateVhd(const std::filesystem::path& path, const CreateSpec& spec, Handle& handle);

// AttachVirtualDisk(NO_LOCAL_HOST [| READ_ONLY]) with V1 parameters.
DWORD AttachRaw(HANDLE handle, bool read_only);

// ReadFile/WriteFile with an OVERLAPPED offset, then GetOverlappedResult(wait); returns the
// error (ERROR_SUCCESS on success) and checks the byte count.
DWORD ReadAt(HANDLE handle, std::uint64_t offset, std::span<std::uint8_t> out);
DWORD WriteAt(HANDLE handle, std::uint64_t offset, std::span<const std::uint8_t> data);
// SetFilePointerEx + ReadFile/WriteFile with a NULL OVERLAPPED (synchronous).
DWORD ReadSync(HANDLE handle, std::uint64_t offset, std::span<std::uint8_t> out);
DWORD WriteSync(HANDLE handle, std::uint64_t offset, std::span<const std::uint8_t> data);
// The whole disk through ReadAt in chunks; nullopt (and the error) on failure.
std::optional<Bytes> ReadAll(HANDLE handle, std::uint64_t size, DWORD* error);

// GET_VIRTUAL_DISK_INFO_SIZE; nullopt (and the error) on failure.
struct SizeInfo {
  std::uint64_t virtual_size = 0;
  std::uint64_t physical_size = 0;
  std::uint32_t block_size = 0;
  std::uint32_t sector_size = 0;
};
std::optional<SizeInfo> QuerySize(HANDLE handle, DWORD* error);
std::optional<VIRTUAL_STORAGE_TYPE> QueryStorageType(HANDLE handle, DWORD* error);

// Opens `path` read-only (V2, type UNKNOWN), attaches read-only, reads the whole disk.
// nullopt with the failing step in `error`.
std::optional<Bytes> ReadImageThroughApi(const std::filesystem::path& path, std::string* error);

}  // namespace vdisk_interop
