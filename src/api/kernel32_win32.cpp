// Windows side of the kernel-object layer. The real kernel32 serves events, waits and ports;
// disk handles are kernel handles of the DLL's own (see handle_table.cpp). Completion packets
// for disk handles need the port association that the Windows handle layer will add; until
// then no port can be associated (KernelObject::AssociatePort refuses) and none is posted.
#ifdef _WIN32

#include "api/overlapped.h"

namespace vdisk::api {

void PostToPort(KernelObject&, DWORD, ULONG_PTR, OVERLAPPED*) noexcept {}

}  // namespace vdisk::api

#endif  // _WIN32
