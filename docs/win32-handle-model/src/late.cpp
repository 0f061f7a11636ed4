// late.dll: loaded only after the hooks are installed; calls ReadFile/WriteFile through its own imports.
#include <windows.h>
extern "C" __declspec(dllexport) BOOL late_read(HANDLE h, void* buf, DWORD n, DWORD* got, OVERLAPPED* ov) { return ReadFile(h, buf, n, got, ov); }
extern "C" __declspec(dllexport) void* late_iat_readfile() { return (void*)&ReadFile; }
