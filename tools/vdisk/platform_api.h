// The public VirtDisk API, as any program includes it: <windows.h> first on Windows.
#pragma once

#ifdef _WIN32
#include <windows.h>
#endif
#include <virtdisk.h>
