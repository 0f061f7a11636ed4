// On-disk structures in byte buffers: the structs of the formats (vhd_format.h, vhdx_format.h,
// iso_structures.h) hold only byte arrays and endian wrappers, so any bytes are a valid object
// representation and a struct is read or written with one copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include <gsl/gsl>

namespace vdisk {

// The T stored at `offset` of `bytes`. REQUIRES: it lies inside `bytes`.
template <typename T>
T LoadAs(std::span<const std::byte> bytes, std::size_t offset = 0) {
  static_assert(std::is_trivially_copyable_v<T>);
  Expects(offset <= bytes.size() && sizeof(T) <= bytes.size() - offset);
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// Writes `value` at `offset` of `bytes`. REQUIRES: it fits inside `bytes`.
template <typename T>
void StoreAs(std::span<std::byte> bytes, std::size_t offset, const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  Expects(offset <= bytes.size() && sizeof(T) <= bytes.size() - offset);
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// `v` rounded up to a multiple of `unit`. REQUIRES: unit > 0 and the result fits.
constexpr std::uint64_t RoundUp(std::uint64_t v, std::uint64_t unit) {
  return (v + unit - 1) / unit * unit;
}

// Whether every byte of `bytes` is zero.
bool AllZero(std::span<const std::byte> bytes);

}  // namespace vdisk
