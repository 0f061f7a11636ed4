// The vendor GUIDs that virtdisk.h declares. On Windows, clients get them from <initguid.h> or
// mingw's libuuid, as with the SDK; elsewhere the library defines them.
#include "api/abi.h"

#ifndef _WIN32
extern "C" {
const GUID VIRTUAL_STORAGE_TYPE_VENDOR_UNKNOWN = VIRTDISK_GUID_INIT_VENDOR_UNKNOWN;
const GUID VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT =
    VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
}
#endif
