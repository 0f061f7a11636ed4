// The heap of the Linux test programs keeps what it is given back. The tests allocate and free
// whole disks' worth of bytes over and over (a 48 MiB image read four ways per crash trial), and
// glibc serves each allocation above 32 MiB with a fresh mmap and unmaps it when freed: every
// page is then faulted in and zeroed again, which on a virtual machine cost more than the tests'
// own work (the Linux suite: 525 CPU-seconds with glibc's defaults, 306 with these settings).
// So malloc uses only its main heap, grown 256 MiB at a time and never trimmed by itself.
//
// Only the test processes are affected (with the library code that runs in them): the programs
// the tests start (vdisk, the attach host, the writers killed mid-run, qemu-img) keep glibc's
// defaults. The tests that measure resident memory call malloc_trim(0) before they start
// measuring, so reused heap still counts as growth.
// Sanitizer builds replace malloc and are left alone.
#if defined(__linux__)
#include <malloc.h>
#endif

#include "sanitizers.h"  // beside this file: not every test program has tests/ on its include path

#if defined(__GLIBC__) && !defined(VIRTDISK_TEST_SANITIZED)
namespace {

struct KeepTheHeap {
  KeepTheHeap() {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 256 << 20);
  }
};
const KeepTheHeap keep_the_heap;

}  // namespace
#endif
