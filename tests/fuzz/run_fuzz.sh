#!/bin/sh
# run_fuzz.sh SECONDS: builds the VHDX fuzzer with clang (build/fuzz), generates its seed corpus
# (our writer, plus qemu-img when installed), and fuzzes for SECONDS. Fails on any crash, leak,
# sanitizer report or timeout; the reproducer is left in build/fuzz/artifacts/.
set -eu
seconds=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build/fuzz"
cc=${CC:-clang}
cxx=${CXX:-clang++}

cmake -S "$root/tests/fuzz" -B "$build" -G Ninja -DVIRTDISK_FUZZ=ON \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target vhdx_fuzz vhdx_seed_gen

corpus="$build/corpus/vhdx"
mkdir -p "$corpus" "$build/artifacts"
"$build/vhdx_seed_gen" "$corpus/seeds"
cp "$corpus/seeds/"* "$corpus/" && rm -rf "$corpus/seeds"
if command -v qemu-img >/dev/null 2>&1; then
  # qemu pads new files to 8 MiB; everything it writes lies in the first 4 MiB (a "fixed" file
  # with block_state_zero=on has no payload block yet), so the truncated files stay valid.
  rm -f "$corpus/qemu-dynamic.vhdx" "$corpus/qemu-fixed-zero.vhdx"
  qemu-img create -q -f vhdx -o subformat=dynamic,block_size=1M "$corpus/qemu-dynamic.vhdx" 64M
  qemu-img create -q -f vhdx -o subformat=fixed,block_size=1M,block_state_zero=on \
    "$corpus/qemu-fixed-zero.vhdx" 1M
  truncate -s 4M "$corpus/qemu-dynamic.vhdx" "$corpus/qemu-fixed-zero.vhdx"
fi

# -max_len: the seeds are 4 MiB (the smallest VHDX layout: header section, log, metadata, BAT).
exec "$build/vhdx_fuzz" "$corpus" -max_total_time="$seconds" -max_len=4194304 \
  -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 -artifact_prefix="$build/artifacts/"
