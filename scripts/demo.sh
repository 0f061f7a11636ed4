#!/usr/bin/env bash
# demo.sh - build the vdisk tool and show the library at work, with qemu as the referee.
#
# Runs non-interactively on a fresh Debian 12 as root (or with sudo): installs what is missing,
# builds vdisk with the `linux` preset, then in a temporary directory creates a VHDX, writes and
# reads it, converts a sparse raw image, attaches the disk and reads it with qemu-io through its
# NBD URI, mirrors it with the progress bar, and checks it; qemu-img / qemu-io confirm each step.
# Any disagreement stops the demo with a nonzero exit status; a good run ends with where vdisk
# is, three commands to try, and "demo: OK".
set -euo pipefail
set -o errtrace

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VDISK="$ROOT/build/linux/tools/vdisk/vdisk"
SIZE=$((256 << 20))         # the disk: 256 MiB

WORK=""
ok=0
attach_pid=""
cleanup() {
  if [[ -n "$attach_pid" ]]; then kill -INT "$attach_pid" 2>/dev/null || true; wait "$attach_pid" 2>/dev/null || true; fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    if ((ok)); then rm -rf "$WORK"; else echo "demo: files kept in $WORK" >&2; fi
  fi
}
trap cleanup EXIT
# Reports a failed command once, by the line of this script that ran it (not from inside the
# helpers or a $(...) subshell, which errtrace also reaches).
on_error() {
  ((BASH_SUBSHELL == 0)) || return 0
  local line="${BASH_LINENO[-2]}"
  echo "demo: FAILED at line $line: $(sed -n "${line}s/^ *//p" "$ROOT/scripts/demo.sh")" >&2
}
trap on_error ERR

section() { printf '\n==== %s ====\n' "$*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
# Shows a command as a user would type it, then runs it.
run() {
  local shown="" arg
  for arg in "$@"; do
    if [[ "$arg" == *[[:space:]]* ]]; then shown+=" '$arg'"; else shown+=" $arg"; fi
  done
  printf '$%s\n' "$shown"
  "$@"
}
vdisk() { "$VDISK" "$@"; }
# expect_in TEXT NEEDLE WHAT: fails unless TEXT contains NEEDLE.
expect_in() { [[ "$1" == *"$2"* ]] || fail "$3: expected to find '$2'"; }

section "1. Dependencies"
source "$ROOT/scripts/packages.sh"
if ((EUID != 0)) && ! command -v sudo >/dev/null; then
  echo "note: not root and no sudo: the packages must already be installed" >&2
fi
ensure_packages "${BUILD_PACKAGES[@]}" qemu-utils libnbd-bin
echo "build packages, qemu-utils and libnbd-bin present"

section "2. Build (preset linux)"
cd "$ROOT"
run cmake --preset linux
run cmake --build --preset linux --target vdisk virtdisk-attach-host
[[ -x "$VDISK" ]] || fail "the build did not produce $VDISK"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vdisk-demo.XXXXXX")"
cd "$WORK"
echo "working in $WORK"

section "3. A 256 MiB dynamic VHDX: create, write, read, info"
run vdisk create disk.vhdx --size 256M
run vdisk write disk.vhdx --offset 1M --length 64K --pattern 0xAB
out="$(run vdisk read disk.vhdx --offset 1M --length 64K)"
echo "$out"
expect_in "$out" "all 65536 bytes = 0xAB" "pattern read back"
out="$(run vdisk info disk.vhdx)"
echo "$out"
expect_in "$out" "virtual size:         $SIZE bytes" "vdisk info virtual size"
expect_in "$out" "type:                 dynamic" "vdisk info type"
qemu_size="$(qemu-img info -f vhdx --output=json disk.vhdx |
             sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p')"
[[ "$qemu_size" == "$SIZE" ]] || fail "qemu-img sees virtual size '$qemu_size', expected $SIZE"
echo "qemu-img: virtual size $qemu_size bytes, exactly as requested"
run qemu-io -r -f vhdx -c 'read -P 0xab 1M 64k' disk.vhdx

section "4. Convert a sparse raw image (64 MiB, 16 MiB of data) to VHDX and back"
truncate -s 64M data.raw
head -c $((16 << 20)) /dev/urandom | dd of=data.raw bs=1M seek=20 conv=notrunc status=none
run vdisk convert data.raw data.vhdx -p
echo "data.vhdx: $(stat -c %s data.vhdx) bytes"
out="$(run qemu-img compare -f raw -F vhdx data.raw data.vhdx)"
echo "$out"
expect_in "$out" "Images are identical" "qemu-img compare raw/VHDX"
run vdisk convert data.vhdx back.raw
run cmp data.raw back.raw
echo "back.raw: $(du -k back.raw | cut -f1) KiB allocated of 65536 KiB (holes kept)"

section "5. Attach: the disk as an NBD export, read and written by qemu-io"
mkfifo attach.out
"$VDISK" attach disk.vhdx >attach.out 2>&1 &
attach_pid=$!
uri=""
while IFS= read -r line; do
  echo "$line"
  [[ "$line" == "attached "*" at "* ]] && uri="${line##* at }"
  [[ "$line" == *"until Ctrl-C"* ]] && break
done <attach.out
[[ -n "$uri" ]] || fail "vdisk attach printed no URI"
cat attach.out >/dev/null &   # keep draining what it prints
run qemu-io -f raw -c 'read -P 0xab 1M 64k' -c 'write -P 0x5a 8M 1M' "$uri"
run nbdinfo "$uri"
run vdisk list
kill -INT "$attach_pid"
wait "$attach_pid" || fail "vdisk attach did not end cleanly on Ctrl-C"
attach_pid=""
run qemu-io -r -f vhdx -c 'read -P 0x5a 8M 1M' disk.vhdx
echo "the write through the NBD export is in the file"

section "6. Mirror with the progress bar (a copy made while the disk stays usable)"
run qemu-io -f vhdx -c 'write -P 0x3c 16M 128M' disk.vhdx >/dev/null
run vdisk mirror -p disk.vhdx copy.vhdx
out="$(run qemu-img compare -f vhdx -F vhdx disk.vhdx copy.vhdx)"
echo "$out"
expect_in "$out" "Images are identical" "qemu-img compare after mirror"

section "7. Resize and compact"
run vdisk resize copy.vhdx 512M
out="$(run qemu-img info copy.vhdx)"
expect_in "$out" "virtual size: 512 MiB" "qemu-img info after resize"
run vdisk compact copy.vhdx
out="$(run qemu-img check copy.vhdx)"
expect_in "$out" "No errors were found" "qemu-img check after compact"

section "8. Check, with qemu-img as the referee"
run vdisk check disk.vhdx
run vdisk check copy.vhdx
run qemu-img check -f vhdx copy.vhdx

ok=1
echo
echo "vdisk is $VDISK"
echo "try:"
echo "  $VDISK create my.vhdx --size 1G"
echo "  $VDISK attach my.vhdx          # then: qemu-io -f raw -c 'read -v 0 512' '<the URI it prints>'"
echo "  $VDISK --help                  # every command; vdisk COMMAND --help for one"
echo
echo "demo: OK"
