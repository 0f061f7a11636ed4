// Whether the test program is built with AddressSanitizer or ThreadSanitizer (GCC and Clang spell
// it differently). Both replace malloc, so heap and resident-memory figures mean nothing there,
// and both run the code several times slower.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VIRTDISK_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define VIRTDISK_TEST_SANITIZED 1
#endif
#endif

namespace vdisk_testing {
#ifdef VIRTDISK_TEST_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
}  // namespace vdisk_testing
