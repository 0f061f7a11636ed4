// The ABI side of the library: the public header plus what every export needs.
//
// Conventions of src/api (how things cross the C boundary):
//  1. Every export is noexcept: GuardedCall runs the body and turns std::bad_alloc into
//     ERROR_NOT_ENOUGH_MEMORY and any other exception into ERROR_INTERNAL_ERROR (logged).
//  2. Arguments are validated in Windows' order: NULL pointers, then flag bits, then
//     versions, then the file itself.
//  3. Handles are looked up in the HandleTable; a stale or foreign handle is
//     ERROR_INVALID_HANDLE.
//  4. Strings arrive as PCWSTR and become std::filesystem::path / UTF-8 in strings.h.
//  5. Core failures become Win32 codes in exactly one place, error_map.cpp.
#pragma once

#include <virtdisk.h>

#include <cstring>
#include <exception>
#include <new>
#include <string>

namespace vdisk::api {

// ORs flag enumerators as plain DWORDs. (The SDK's DEFINE_ENUM_FLAG_OPERATORS are not
// constexpr in every Windows header set, so constant masks are built with this.)
template <typename... Flags>
constexpr DWORD Bits(Flags... flags) {
  return (DWORD{0} | ... | static_cast<DWORD>(flags));
}

// The value of an enum-typed field a caller filled in, read as the 32-bit integer it is.
// Callers may store any value there (that is what validation is for), and loading an
// out-of-range value through the enum type is undefined behaviour in C++.
template <typename Enum>
DWORD Raw(const Enum& field) {
  static_assert(sizeof(Enum) == sizeof(DWORD));
  DWORD value;
  std::memcpy(&value, &field, sizeof value);
  return value;
}

// An exception stopped export `name`: the thread's failure message says so. An unexpected one
// (not std::bad_alloc) is a defect and always logged to stderr; running out of memory is traced
// only when tracing is on.
void TraceException(const char* name, const char* what) noexcept;
void TraceOutOfMemory(const char* name) noexcept;

template <typename Body>
DWORD GuardedCall(const char* name, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    TraceOutOfMemory(name);
    return ERROR_NOT_ENOUGH_MEMORY;
  } catch (const std::exception& e) {
    TraceException(name, e.what());
    return ERROR_INTERNAL_ERROR;
  } catch (...) {
    TraceException(name, "unknown exception");
    return ERROR_INTERNAL_ERROR;
  }
}

}  // namespace vdisk::api
