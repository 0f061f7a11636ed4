// virtdisk-attach-host: serves one PERMANENT_LIFETIME attachment (src/attach/attach_host.h).
// libvirtdisk starts it from AttachVirtualDisk; it is not meant to be run by hand.
#include <string>
#include <vector>

#include "attach/attach_host.h"

int main(int argc, char** argv) {
  return vdisk::attach::RunAttachHost(std::vector<std::string>(argv + 1, argv + argc));
}
