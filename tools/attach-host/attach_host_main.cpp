// virtdisk-attach-host: serves one PERMANENT_LIFETIME attachment (src/attach/attach_host.h).
// The library starts it from AttachVirtualDisk; it is not meant to be run by hand.
// Arguments are UTF-8: as given on POSIX, converted from the UTF-16 command line on Windows.
#include <filesystem>
#include <string>
#include <vector>

#include "attach/attach_host.h"

#ifdef _WIN32
int wmain(int argc, wchar_t** argv) {
  std::vector<std::string> arguments;
  for (int i = 1; i < argc; ++i) {
    const std::u8string utf8 = std::filesystem::path(argv[i]).u8string();
    arguments.emplace_back(utf8.begin(), utf8.end());
  }
  return vdisk::attach::RunAttachHost(arguments);
}
#else
int main(int argc, char** argv) {
  return vdisk::attach::RunAttachHost(std::vector<std::string>(argv + 1, argv + argc));
}
#endif
