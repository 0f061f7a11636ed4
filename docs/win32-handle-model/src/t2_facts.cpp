// Where do kernel32 I/O exports resolve under Wine, and what do their first bytes look like?
#include "common.h"
static void exp_info(HMODULE m, const char* modname, const char* fn) {
    auto base = (BYTE*)m;
    auto nt = (IMAGE_NT_HEADERS*)(base + ((IMAGE_DOS_HEADER*)base)->e_lfanew);
    auto& dd = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
    auto ed = (IMAGE_EXPORT_DIRECTORY*)(base + dd.VirtualAddress);
    auto names = (DWORD*)(base + ed->AddressOfNames); auto ords = (WORD*)(base + ed->AddressOfNameOrdinals);
    auto funcs = (DWORD*)(base + ed->AddressOfFunctions);
    for (DWORD i = 0; i < ed->NumberOfNames; ++i) if (!strcmp((char*)base + names[i], fn)) {
        DWORD rva = funcs[ords[i]];
        bool fwd = rva >= dd.VirtualAddress && rva < dd.VirtualAddress + dd.Size;
        MEMORY_BASIC_INFORMATION mbi; VirtualQuery(&funcs[ords[i]], &mbi, sizeof mbi);
        printf("  %s!%s: rva=0x%lx %s%s  (EAT page protect=0x%lx)\n", modname, fn, rva, fwd ? "FORWARDER -> " : "code", fwd ? (char*)base + rva : "", mbi.Protect);
        return;
    }
    printf("  %s!%s: not exported\n", modname, fn);
}
int main() {
    HMODULE k32 = GetModuleHandleW(L"kernel32.dll"), kb = GetModuleHandleW(L"kernelbase.dll"), nt = GetModuleHandleW(L"ntdll.dll");
    printf("kernel32=%p kernelbase=%p ntdll=%p exe=%p\n", k32, kb, nt, GetModuleHandleW(NULL));
    const char* fns[] = {"ReadFile", "WriteFile", "ReadFileEx", "WriteFileEx", "GetOverlappedResult", "CancelIo", "CancelIoEx", "CloseHandle", "DeviceIoControl", "CreateIoCompletionPort"};
    for (auto f : fns) {
        void* a = (void*)GetProcAddress(k32, f); void* b = kb ? (void*)GetProcAddress(kb, f) : nullptr;
        printf("%-24s GetProcAddress kernel32=%p kernelbase=%p %s\n", f, a, b, a == b ? "(same)" : "(different)");
        exp_info(k32, "kernel32", f); if (kb) exp_info(kb, "kernelbase", f);
    }
    BYTE* p = (BYTE*)GetProcAddress(kb, "ReadFile");
    printf("kernelbase!ReadFile first bytes:"); for (int i = 0; i < 24; ++i) printf(" %02x", p[i]); printf("\n");
    p = (BYTE*)GetProcAddress(kb, "WriteFile");
    printf("kernelbase!WriteFile first bytes:"); for (int i = 0; i < 24; ++i) printf(" %02x", p[i]); printf("\n");
    p = (BYTE*)GetProcAddress(kb, "CloseHandle");
    printf("kernelbase!CloseHandle first bytes:"); for (int i = 0; i < 24; ++i) printf(" %02x", p[i]); printf("\n");
    // Our own IAT: what does the exe's import of ReadFile point to?
    auto exe = (BYTE*)GetModuleHandleW(NULL);
    auto nth = (IMAGE_NT_HEADERS*)(exe + ((IMAGE_DOS_HEADER*)exe)->e_lfanew);
    auto imp = (IMAGE_IMPORT_DESCRIPTOR*)(exe + nth->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT].VirtualAddress);
    for (; imp->Name; ++imp) {
        auto names = (IMAGE_THUNK_DATA*)(exe + imp->OriginalFirstThunk); auto iat = (IMAGE_THUNK_DATA*)(exe + imp->FirstThunk);
        for (; names->u1.AddressOfData; ++names, ++iat) {
            if (IMAGE_SNAP_BY_ORDINAL(names->u1.Ordinal)) continue;
            auto ibn = (IMAGE_IMPORT_BY_NAME*)(exe + names->u1.AddressOfData);
            if (!strcmp((char*)ibn->Name, "ReadFile")) {
                MEMORY_BASIC_INFORMATION mbi; VirtualQuery(iat, &mbi, sizeof mbi);
                printf("exe imports ReadFile from %s, IAT slot=%p value=%p (IAT page protect=0x%lx)\n", (char*)exe + imp->Name, (void*)iat, (void*)iat->u1.Function, mbi.Protect);
            }
        }
    }
    // free address space right above kernelbase/kernel32 (needed for EAT stubs: RVA is 32 bits)
    for (HMODULE m : {k32, kb}) {
        auto nth2 = (IMAGE_NT_HEADERS*)((BYTE*)m + ((IMAGE_DOS_HEADER*)m)->e_lfanew);
        BYTE* want = (BYTE*)m + ((nth2->OptionalHeader.SizeOfImage + 0xFFFF) & ~0xFFFF);
        void* got = nullptr;
        for (int i = 0; i < 4096 && !got; ++i, want += 0x10000) got = VirtualAlloc(want, 4096, MEM_RESERVE | MEM_COMMIT, PAGE_EXECUTE_READWRITE);
        printf("stub page near %p: %p (delta 0x%llx)\n", (void*)m, got, (unsigned long long)((BYTE*)got - (BYTE*)m));
    }
    return 0;
}
