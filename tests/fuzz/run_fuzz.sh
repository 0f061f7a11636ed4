#!/bin/sh
# run_fuzz.sh [SECONDS [TARGET...]]: builds the libFuzzer targets with clang (build/fuzz),
# writes their seed corpora, and fuzzes each target for its share of SECONDS (default 60, split
# evenly; one process at a time, so one core). Targets: vhd vhdx iso nbd sd (default: all).
#
# Fails on any crash, leak, sanitizer report or timeout; the reproducer is left in
# build/fuzz/artifacts/ (its name starts with the target's). Each target's final stats
# (exec/s, cov:, ft:, runs) are printed as it ends.
#
# Seeds: our writer (VHD, VHDX), qemu-img (VHD, VHDX), genisoimage and xorriso (ISO 9660 plain,
# Joliet, Rock Ridge, with UDF), mkudffs (UDF), NBD client traffic recorded from nbdinfo,
# qemu-io, qemu-img and nbdcopy (tests/fuzz/seeds/nbd, see capture_nbd_seeds.sh), and
# hand-built security descriptors. A producer that is not installed is skipped.
set -eu
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-vhd vhdx iso nbd sd}
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/fuzz"
build="$root/build/fuzz"
cc=${CC:-clang}
cxx=${CXX:-clang++}
launcher=""
command -v ccache >/dev/null 2>&1 && launcher="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
has() { command -v "$1" >/dev/null 2>&1; }

cmake -S "$here" -B "$build" -G Ninja -DVIRTDISK_FUZZ=ON $launcher \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
build_targets="vhdx_seed_gen seed_gen"
for t in $targets; do build_targets="$build_targets ${t}_fuzz"; done
cmake --build "$build" --target $build_targets

mkdir -p "$build/artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Each seed directory is made fresh; what the fuzzer adds to build/fuzz/corpus/<target> stays.
seeds_vhdx() {
  "$build/vhdx_seed_gen" "$1" >/dev/null
  if has qemu-img; then
    # qemu pads new files to 8 MiB; everything it writes lies in the first 4 MiB (a "fixed" file
    # with block_state_zero=on has no payload block yet), so the truncated files stay valid.
    qemu-img create -q -f vhdx -o subformat=dynamic,block_size=1M "$1/qemu-dynamic.vhdx" 64M
    qemu-img create -q -f vhdx -o subformat=fixed,block_size=1M,block_state_zero=on \
      "$1/qemu-fixed-zero.vhdx" 1M
    truncate -s 4M "$1/qemu-dynamic.vhdx" "$1/qemu-fixed-zero.vhdx"
  fi
}
seeds_vhd() {
  "$build/seed_gen" vhd "$1" >/dev/null
  if has qemu-img; then
    qemu-img create -q -f vpc -o subformat=dynamic "$1/qemu-dynamic.vhd" 64M
    qemu-img create -q -f vpc -o subformat=fixed "$1/qemu-fixed.vhd" 128K
  fi
}
seeds_iso() {
  tree="$scratch/tree"
  mkdir -p "$tree/dir/sub"
  echo one > "$tree/readme.txt"
  echo two > "$tree/dir/sub/a-rather-long-file-name.data"
  # -no-pad: no 300 KiB of trailing zeros (the volume size then ends at the last file).
  if has genisoimage; then
    genisoimage -quiet -no-pad -o "$1/plain.iso" "$tree"
    genisoimage -quiet -no-pad -J -o "$1/joliet.iso" "$tree"
    genisoimage -quiet -no-pad -R -J -o "$1/rockridge-joliet.iso" "$tree"
    genisoimage -quiet -no-pad -udf -o "$1/iso-udf-bridge.iso" "$tree"
  fi
  if has xorriso; then
    xorriso -as mkisofs -quiet -no-pad -R -J -o "$1/xorriso.iso" "$tree" 2>/dev/null
  fi
  if has mkudffs; then
    # 260 sectors: mkudffs warns below 258 (anchors at 256 and at the last sector).
    truncate -s 520K "$1/udf.iso"
    mkudffs --media-type=hd --blocksize=2048 "$1/udf.iso" >/dev/null 2>&1
  fi
}
seeds_nbd() { cp "$here/seeds/nbd/"* "$1/"; }
seeds_sd() { "$build/seed_gen" sd "$1" >/dev/null; }

# -max_len: a little above the largest seed (VHDX: 4 MiB, the smallest VHDX layout; VHD: one
# 512 KiB block; ISO: the UDF bridge). nbd: -malloc_limit_mb, so that a request that makes the
# server buffer without bound is reported.
options_vhd="-max_len=1048576"
options_vhdx="-max_len=4194304"
options_iso="-max_len=1048576"
options_nbd="-max_len=65536 -malloc_limit_mb=256"
options_sd="-max_len=4096"

count=$(echo $targets | wc -w)
share=$((seconds / count))
[ "$share" -ge 1 ] || share=1
status=0
for t in $targets; do
  corpus="$build/corpus/$t"
  seeds="$scratch/seeds-$t"
  mkdir -p "$corpus" "$seeds"
  "seeds_$t" "$seeds"
  eval "options=\$options_$t"
  echo "=== ${t}_fuzz: $share s ($(ls "$seeds" | wc -l) seeds) ==="
  log="$build/$t.log"
  # The first directory is where new inputs go; the seeds are read from the second.
  # shellcheck disable=SC2086
  if ! "$build/${t}_fuzz" "$corpus" "$seeds" -max_total_time="$share" $options \
      -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/${t}-" > "$log" 2>&1; then
    status=1
    tail -n 60 "$log"
    echo "${t}_fuzz FAILED: reproducer in $build/artifacts/ (full log: $log)"
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
    "$log" || true
done
exit $status
