#!/usr/bin/env bash
# Installs what is missing, builds the Linux library (plain and with ASan/UBSan) and the Windows
# DLL (mingw-w64), and runs every test: Linux suites natively, Windows suites under Wine in a
# prefix of the build's own. Fails on the first failing step.
#
#   scripts/test.sh            everything
#   SKIP_ASAN=1 scripts/test.sh   without the sanitizer build (quicker local runs)
#   SKIP_WINDOWS=1 scripts/test.sh without the mingw/Wine part (both Windows builds)
#   SKIP_X86=1 scripts/test.sh     without the 32-bit Windows build
#   SKIP_FUZZ=1 / FUZZ_SECONDS=N   without, or with a different length of, the fuzzing run
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh

ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" "${WINDOWS_PACKAGES[@]}"

jobs=$(nproc)
# A compiler cache left on the machine by earlier builds would make CI's times those of a warm
# cache; CI measures a cold build, as on a new machine.
if [[ -n "${CI:-}" ]]; then export CCACHE_DISABLE=1; fi
# The unit tests' oracles (qemu-img, libvhdi, genisoimage, ...) are installed above: a test that
# finds one missing fails instead of skipping.
export VIRTDISK_REQUIRE_ORACLES=1
# Whatever runs in the background (a build, the fuzzers) ends with the script.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
section() { printf '\n=== %s (at %d s) ===\n' "$*" "$SECONDS"; }

section "Linux build"
cmake --preset linux
cmake --build --preset linux -j "$jobs"

# The sanitizer build compiles alongside the Linux tests, at a lower priority: the tests wait on
# child processes, fsync and timeouts often enough that a second job finds idle time, and the
# tests keep the CPU when they need it (the killed-writer tests time their kills).
asan_build_pid=""
if [[ "${SKIP_ASAN:-0}" != 1 ]]; then
  (cmake --preset linux-asan && nice -n 15 cmake --build --preset linux-asan -j "$jobs") \
    > build/asan-build.log 2>&1 &
  asan_build_pid=$!
fi

section "Linux tests${asan_build_pid:+ (the sanitizer build compiles alongside)}"
# The reruns of the mirror suites on the engine's other data paths (label "rerun") run once, in
# the sanitizer build below, where they also check the buffer pool's memory use.
rerun_filter=()
if [[ "${SKIP_ASAN:-0}" != 1 ]]; then rerun_filter=(-LE rerun); fi
ctest --preset linux -j "$jobs" --timeout 900 "${rerun_filter[@]}"

if [[ "${SKIP_ASAN:-0}" != 1 ]]; then
  section "Linux build with AddressSanitizer and UndefinedBehaviorSanitizer: finishing"
  status=0
  wait "$asan_build_pid" || status=$?
  tail -n 3 build/asan-build.log
  if ((status != 0)); then
    cat build/asan-build.log >&2
    echo "the sanitizer build failed (exit status $status)" >&2
    exit 1
  fi
  section "Linux tests under AddressSanitizer and UndefinedBehaviorSanitizer"
  # The unit and C API suites run here, one process per suite (a process start under the
  # sanitizers is costly), with the preset's VIRTDISK_TEST_EXCLUDE left out: the unit suite's
  # qemu/libvhdi cases (VhdxInterop; their oracles are external programs, already run against
  # the plain build, and they take minutes under the sanitizers), the resident-memory tests
  # (sanitizer shadow memory makes VmRSS meaningless) and the killed-writer test (its 60 kills
  # take minutes; the fault-injection crash tests stay). The interop suite is not built here:
  # its killed-writer tests time SIGKILLs against a writer's progress, which sanitizers slow
  # several-fold.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset linux-asan -j "$jobs" --timeout 900
fi

# The fuzzers (VHD, VHDX, ISO/UDF, NBD server, security descriptors) run one process at a time,
# 60 s in all, each for its share: alongside the Windows build (with the Wine prefix's creation),
# which has the other core; their output follows the build's.
fuzz_pid=""
if [[ "${SKIP_FUZZ:-0}" != 1 ]]; then
  section "Fuzzing the parsers (libFuzzer, ${FUZZ_SECONDS:-60} s in all) in the background"
  bash tests/fuzz/run_fuzz.sh "${FUZZ_SECONDS:-60}" > build/fuzz.log 2>&1 &
  fuzz_pid=$!
fi
# check_windows_build DIR x64|x86 TOOL_PREFIX: the DLL's export table and imports, the attach
# host's imports, the import library's symbols (against mingw-w64's own libvirtdisk.a for the
# decorations), and that the C client imports all 29 functions by their exported names.
check_windows_build() {
  local dir=$1 arch=$2 tools=$3
  "$tools-objdump" -p "$dir/bin/VirtDisk.dll" > "$dir/VirtDisk.objdump"
  scripts/check_exports.sh "$dir/VirtDisk.objdump"
  "$tools-objdump" -p "$dir/bin/virtdisk-attach-host.exe" > "$dir/attach-host.objdump"
  scripts/check_exports.sh --imports-only "$dir/attach-host.objdump"
  "$tools-nm" "$dir/libVirtDisk.a" > "$dir/libVirtDisk.nm"
  "$tools-nm" "$("$tools-gcc-posix" -print-file-name=libvirtdisk.a)" > "$dir/mingw-libvirtdisk.nm"
  scripts/check_exports.sh --import-library "$arch" "$dir/libVirtDisk.nm" "$dir/mingw-libvirtdisk.nm"
  "$tools-objdump" -p "$dir/bin/c_client_test.exe" > "$dir/c_client_test.objdump"
  scripts/check_exports.sh --client "$dir/c_client_test.objdump"
}

finish_fuzz() {
  [[ -n "$fuzz_pid" ]] || return 0
  local status=0
  wait "$fuzz_pid" || status=$?
  fuzz_pid=""
  section "Fuzzing the parsers: their output"
  cat build/fuzz.log
  if ((status != 0)); then
    echo "fuzzing failed (exit status $status)" >&2
    exit 1
  fi
}

if [[ "${SKIP_WINDOWS:-0}" != 1 ]]; then
  section "Windows build (mingw-w64)"
  export WINEPREFIX="$PWD/build/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
  prefix_pid=""
  if [[ ! -f "$WINEPREFIX/system.reg" ]]; then
    (wineboot --init >/dev/null 2>&1 || true) &
    prefix_pid=$!
  fi
  cmake --preset mingw
  cmake --build --preset mingw -j "$jobs"
  check_windows_build build/mingw x64 x86_64-w64-mingw32
  finish_fuzz

  # The 32-bit DLL is built and checked, never run: these machines cannot start 32-bit
  # programs (docs/testing-under-wine.md says why). Only what the checks need is built: the DLL, its attach host,
  # the C client, the layout tests (their x86 numbers are static assertions), and the C API
  # suite and vdisk, which must compile and link for i686. It compiles alongside the Wine tests,
  # at a lower priority: Wine's processes wait on wineserver often enough to leave idle time.
  x86_pid=""
  if [[ "${SKIP_X86:-0}" != 1 ]]; then
    (cmake --preset mingw-x86 &&
       nice -n 15 cmake --build --preset mingw-x86 -j "$jobs" --target virtdisk \
         virtdisk-attach-host c_client_test layout_test header_cxx_test api_tests vdisk) \
      > build/mingw-x86-build.log 2>&1 &
    x86_pid=$!
  fi

  section "Windows tests under Wine${x86_pid:+ (the 32-bit DLL compiles alongside)}"
  if [[ -n "$prefix_pid" ]]; then
    wait "$prefix_pid" || true
    wineserver --wait || true
  fi
  # A test process that Wine fails to start (seen once: a 0.01 s failure with no output, which
  # passed on every rerun) gets one more try; a test that fails twice fails the run.
  # Every case runs in seconds under Wine; 300 s stops a hung one early enough for its retry.
  ctest --preset mingw -j "$jobs" --timeout 300 --repeat until-pass:2

  if [[ -n "$x86_pid" ]]; then
    section "Windows 32-bit build (mingw-w64 i686): built and checked, not run"
    status=0
    wait "$x86_pid" || status=$?
    tail -n 3 build/mingw-x86-build.log
    if ((status != 0)); then
      cat build/mingw-x86-build.log >&2
      echo "the 32-bit Windows build failed (exit status $status)" >&2
      exit 1
    fi
    check_windows_build build/mingw-x86 x86 i686-w64-mingw32
  fi
fi
finish_fuzz

section "Done"
