#include "api/trace.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>

#include "api/strings.h"

namespace vdisk::api {
namespace {

thread_local std::string last_failure;

struct TraceSink {
  bool enabled = false;
  FILE* out = nullptr;
  std::mutex mutex;
  TraceSink() {
    const char* value = std::getenv("VIRTDISK_TRACE");
    if (value == nullptr || *value == '\0' || std::string_view(value) == "0") return;
    enabled = true;
    if (std::string_view(value) == "1") {
      out = stderr;
    } else {
      out = std::fopen(value, "a");
      if (out == nullptr) out = stderr;
    }
  }
};

// Never destroyed (exports may run during process exit), and made without allocating, so that
// TraceEnabled cannot throw.
TraceSink& Sink() {
  alignas(TraceSink) static unsigned char storage[sizeof(TraceSink)];
  static TraceSink* sink = new (storage) TraceSink;
  return *sink;
}

}  // namespace

bool TraceEnabled() noexcept { return Sink().enabled; }

void TraceLine(std::string_view text) noexcept {
  auto& sink = Sink();
  if (!sink.enabled) return;
  std::lock_guard lock(sink.mutex);
  std::fprintf(sink.out, "virtdisk: %.*s\n", static_cast<int>(text.size()), text.data());
  std::fflush(sink.out);
}

void TraceCall(const char* name, const std::string& args, DWORD result) noexcept {
  if (!TraceEnabled()) return;
  try {
    std::string line = std::string(name) + "(" + args + ") -> " + std::to_string(result);
    if (result != ERROR_SUCCESS && !last_failure.empty()) line += " [" + last_failure + "]";
    TraceLine(line);
  } catch (...) {
  }
}

void SetLastFailureMessage(std::string_view message) noexcept {
  try {
    last_failure.assign(message);
  } catch (...) {
  }
}

void ClearLastFailureMessage() noexcept { last_failure.clear(); }
const char* LastFailureMessage() noexcept { return last_failure.c_str(); }

std::string Hex(unsigned long long value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", value);
  return text;
}

std::string Hex(const void* pointer) { return Hex(reinterpret_cast<std::uintptr_t>(pointer)); }

std::string Quote(PCWSTR text) {
  if (text == nullptr) return "NULL";
  return "\"" + ToUtf8(text) + "\"";
}

}  // namespace vdisk::api

namespace vdisk::api {

void TraceException(const char* name, const char* what) noexcept {
  SetLastFailureMessage(std::string_view(what));
  try {
    // Always logged, traced or not: an exception at the boundary is a defect worth seeing.
    std::fprintf(stderr, "virtdisk: %s: unexpected exception: %s\n", name, what);
  } catch (...) {
  }
}

void TraceOutOfMemory(const char* name) noexcept {
  SetLastFailureMessage("out of memory");
  if (!TraceEnabled()) return;
  char line[160];
  std::snprintf(line, sizeof line, "%s: out of memory", name);
  TraceLine(line);
}

}  // namespace vdisk::api
