#!/usr/bin/env bash
# demo.sh - build the vdisk tool and show the library at work, with qemu as the referee.
#
# Runs non-interactively on a fresh Debian 12 as root: installs what is missing, builds the
# `linux` preset, then in a temporary directory creates a dynamic VHD, writes and reads it back
# through the VirtDisk API (raw I/O on an attached handle), and has qemu-img / qemu-io confirm
# that the file is a VHD they read the same way. Any disagreement stops the demo with a nonzero
# exit status; the last line of a good run is "demo: OK".
set -euo pipefail
set -o errtrace

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VDISK="$ROOT/build/linux/tools/vdisk/vdisk"
SIZE=$((64 << 20))          # the disk: 64 MiB
RANDOM_SIZE=$((3 << 20))    # random data at 10 MiB: 3 MiB, across a 2 MiB block boundary

WORK=""
ok=0
cleanup() {
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
  echo "demo: FAILED at line $line: $(sed -n "${line}s/^ *//p" "${BASH_SOURCE[-1]}")" >&2
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

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    fail "must run as root (or with sudo) to install: $*"
  fi
}

section "1. Dependencies"
packages=(cmake ninja-build g++ pkg-config libgtest-dev libgmock-dev libmsgsl-dev liburing-dev
          qemu-utils)
missing=()
for package in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done
if ((${#missing[@]} > 0)); then
  echo "installing: ${missing[*]}"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "all present: ${packages[*]}"
fi

section "2. Build (preset linux)"
cd "$ROOT"
run cmake --preset linux
run cmake --build --preset linux --target vdisk
[[ -x "$VDISK" ]] || fail "the build did not produce $VDISK"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vdisk-demo.XXXXXX")"
cd "$WORK"
echo "working in $WORK"

section "3. Create a 64 MiB dynamic VHD"
run vdisk create disk.vhd --size 64M

section "4. Write: 64 KiB of 0xAB at 1 MiB, 3 MiB of random data at 10 MiB"
head -c "$RANDOM_SIZE" /dev/urandom >random.bin
run vdisk write disk.vhd --offset 1M --length 64K --pattern 0xAB
run vdisk write disk.vhd --offset 10M --from random.bin

section "5. Read back"
out="$(run vdisk read disk.vhd --offset 1M --length 64K)"
echo "$out"
expect_in "$out" "all 65536 bytes = 0xAB" "pattern read back"
run vdisk read disk.vhd --offset 10M --length 3M --to back.bin
run cmp random.bin back.bin
echo "random data read back identical"
out="$(run vdisk read disk.vhd --offset 32M --length 1M)"
echo "$out"
expect_in "$out" "all 1048576 bytes = 0x00" "never-written space reads as zeros"

section "6. vdisk info"
out="$(run vdisk info disk.vhd)"
echo "$out"
expect_in "$out" "virtual size:            $SIZE bytes" "vdisk info virtual size"
expect_in "$out" "provider subtype:        dynamic" "vdisk info subtype"
expect_in "$out" "storage type:            VHD" "vdisk info storage type"

section "7. qemu agrees"
run qemu-img info -f vpc disk.vhd
qemu_size="$(qemu-img info -f vpc --output=json disk.vhd |
             sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p')"
[[ "$qemu_size" == "$SIZE" ]] ||
  fail "qemu-img sees virtual size '$qemu_size', expected exactly $SIZE"
echo "qemu-img: virtual size $qemu_size bytes, exactly as requested"
out="$(run qemu-io -r -f vpc -c 'read -P 0xab 1M 64k' disk.vhd)"
echo "$out"
[[ "$out" != *"verification failed"* ]] || fail "qemu-io does not see 0xAB at 1 MiB"
out="$(run qemu-io -r -f vpc -c 'read -P 0 32M 1M' disk.vhd)"
echo "$out"
[[ "$out" != *"verification failed"* ]] || fail "qemu-io does not see zeros at 32 MiB"

section "8. Export to raw; qemu-img compare"
run vdisk export disk.vhd disk.raw
raw_size="$(stat -c %s disk.raw)"
[[ "$raw_size" == "$SIZE" ]] || fail "disk.raw is $raw_size bytes, expected $SIZE"
echo "disk.raw: $raw_size bytes, $(du -k disk.raw | cut -f1) KiB allocated (sparse)"
run cmp -n "$RANDOM_SIZE" disk.raw random.bin $((10 << 20)) 0
out="$(run qemu-img compare -f vpc -F raw disk.vhd disk.raw)"
echo "$out"
expect_in "$out" "Images are identical" "qemu-img compare"

section "9. A differencing child"
run vdisk create child.vhd --parent disk.vhd
out="$(run vdisk info child.vhd)"
echo "$out"
expect_in "$out" "provider subtype:        differencing" "child subtype"
expect_in "$out" "parent location:         $WORK/disk.vhd" "child parent location"
expect_in "$out" "virtual size:            $SIZE bytes" "child virtual size"
out="$(run vdisk read child.vhd --offset 1M --length 64K)"
echo "$out"
expect_in "$out" "all 65536 bytes = 0xAB" "the child reads its parent's data"
run vdisk write child.vhd --offset 1M --length 4K --pattern 0xCD
out="$(run vdisk read child.vhd --offset 1M --length 4K)"
echo "$out"
expect_in "$out" "all 4096 bytes = 0xCD" "the child reads its own write"
out="$(run qemu-io -r -f vpc -c 'read -P 0xab 1M 64k' disk.vhd)"
echo "$out"
[[ "$out" != *"verification failed"* ]] || fail "writing the child changed its parent"
echo "the parent still holds 0xAB: the child's write went to the child"

ok=1
echo
echo "demo: OK"
