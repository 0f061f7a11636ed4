// header_cxx_test.cpp - include/virtdisk.h as a C++ client sees it.
//
// Mostly a compile-time test: the header must build as C++, give the functions C linkage and
// the SDK's exact types, and provide the bitwise operators the SDK's DEFINE_ENUM_FLAG_OPERATORS
// gives every flag enum, so that "FLAG_A | FLAG_B" is again a flag enum. The operators are
// exercised at run time too; the program prints "header_cxx: 1 passed, 0 failed" on success.

#include <virtdisk.h>

#include <cstddef>
#include <cstdio>
#include <type_traits>

namespace {

// Function types as the SDK declares them. Top-level const on a parameter ("const PX") is not
// part of a function's type, so it is spelled "PX" here.
static_assert(
    std::is_same_v<decltype(OpenVirtualDisk),
                   DWORD WINAPI(PVIRTUAL_STORAGE_TYPE, PCWSTR, VIRTUAL_DISK_ACCESS_MASK,
                                OPEN_VIRTUAL_DISK_FLAG, POPEN_VIRTUAL_DISK_PARAMETERS, PHANDLE)>);
static_assert(std::is_same_v<decltype(CreateVirtualDisk),
                             DWORD WINAPI(PVIRTUAL_STORAGE_TYPE, PCWSTR, VIRTUAL_DISK_ACCESS_MASK,
                                          PSECURITY_DESCRIPTOR, CREATE_VIRTUAL_DISK_FLAG, ULONG,
                                          PCREATE_VIRTUAL_DISK_PARAMETERS, LPOVERLAPPED, PHANDLE)>);
static_assert(std::is_same_v<decltype(TakeSnapshotVhdSet),
                             DWORD WINAPI(HANDLE, PTAKE_SNAPSHOT_VHDSET_PARAMETERS,
                                          TAKE_SNAPSHOT_VHDSET_FLAG)>);
static_assert(std::is_same_v<decltype(ForkVirtualDisk),
                             DWORD WINAPI(HANDLE, FORK_VIRTUAL_DISK_FLAG,
                                          const FORK_VIRTUAL_DISK_PARAMETERS *, LPOVERLAPPED)>);
static_assert(std::is_same_v<decltype(SetVirtualDiskMetadata),
                             DWORD WINAPI(HANDLE, const GUID *, ULONG, const void *)>);
static_assert(std::is_same_v<decltype(&SurfaceVirtualDisk), decltype(&AttachVirtualDisk)>);

// Combining flags keeps the enum type, as with the SDK's operators.
static_assert(
    std::is_same_v<decltype(OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS | OPEN_VIRTUAL_DISK_FLAG_CACHED_IO),
                   OPEN_VIRTUAL_DISK_FLAG>);
static_assert(std::is_same_v<decltype(VIRTUAL_DISK_ACCESS_ATTACH_RO & VIRTUAL_DISK_ACCESS_READ),
                             VIRTUAL_DISK_ACCESS_MASK>);
static_assert(
    std::is_same_v<decltype(~ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY), ATTACH_VIRTUAL_DISK_FLAG>);

// x64, and x86 where pointers are 4 bytes (tests/api/layout_test.c derives both).
constexpr bool kX86 = sizeof(void *) == 4;
static_assert(sizeof(CREATE_VIRTUAL_DISK_PARAMETERS) == (kX86 ? 160 : 184));
static_assert(offsetof(CREATE_VIRTUAL_DISK_PARAMETERS, Version2.ParentPath) == (kX86 ? 44 : 48));
static_assert(sizeof(GET_VIRTUAL_DISK_INFO) == 32);
static_assert(sizeof(STORAGE_DEPENDENCY_INFO) == 8);

// Runs the operators of a few flag enums; returns the first mismatch's description, or null.
const char *ExerciseFlagOperators() {
  OPEN_VIRTUAL_DISK_FLAG open =
      OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS | OPEN_VIRTUAL_DISK_FLAG_CACHED_IO;
  if (open != 0x9) return "OPEN_VIRTUAL_DISK_FLAG: NO_PARENTS | CACHED_IO, expected 0x9";
  open |= OPEN_VIRTUAL_DISK_FLAG_BLANK_FILE;
  if (open != 0xb) return "OPEN_VIRTUAL_DISK_FLAG: |= BLANK_FILE, expected 0xb";
  open &= ~OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS;
  if (open != 0xa) return "OPEN_VIRTUAL_DISK_FLAG: &= ~NO_PARENTS, expected 0xa";
  open ^= OPEN_VIRTUAL_DISK_FLAG_CACHED_IO;
  if (open != OPEN_VIRTUAL_DISK_FLAG_BLANK_FILE) return "OPEN_VIRTUAL_DISK_FLAG: ^=, expected 0x2";

  VIRTUAL_DISK_ACCESS_MASK access =
      VIRTUAL_DISK_ACCESS_ATTACH_RO | VIRTUAL_DISK_ACCESS_DETACH | VIRTUAL_DISK_ACCESS_GET_INFO;
  if (access != VIRTUAL_DISK_ACCESS_READ) return "VIRTUAL_DISK_ACCESS_MASK: expected READ";
  if ((VIRTUAL_DISK_ACCESS_ALL & VIRTUAL_DISK_ACCESS_WRITABLE) != VIRTUAL_DISK_ACCESS_WRITABLE) {
    return "VIRTUAL_DISK_ACCESS_MASK: ALL & WRITABLE, expected WRITABLE";
  }

  ATTACH_VIRTUAL_DISK_FLAG attach =
      ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY | ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME;
  if ((attach & ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME) == 0) {
    return "ATTACH_VIRTUAL_DISK_FLAG: PERMANENT_LIFETIME bit lost";
  }
  CREATE_VIRTUAL_DISK_FLAG create =
      CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION | CREATE_VIRTUAL_DISK_FLAG_SPARSE_FILE;
  if (create != 0x81) return "CREATE_VIRTUAL_DISK_FLAG: expected 0x81";
  MIRROR_VIRTUAL_DISK_FLAG mirror =
      MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE ^ MIRROR_VIRTUAL_DISK_FLAG_IS_LIVE_MIGRATION;
  if (mirror != 0x9) return "MIRROR_VIRTUAL_DISK_FLAG: expected 0x9";
  return nullptr;
}

}  // namespace

int main() {
  const char *failure = ExerciseFlagOperators();
  if (failure != nullptr) std::printf("FAIL %s\n", failure);
  std::printf("header_cxx: %d passed, %d failed\n", failure ? 0 : 1, failure ? 1 : 0);
  return failure ? 1 : 0;
}
