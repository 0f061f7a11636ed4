#!/bin/sh
# Builds every experiment with mingw-w64 and runs it under Wine; binaries, the Wine prefix and the
# *.out files go to $OUT (default /tmp/win32-handle-model). usage: sh build.sh [run]
set -e
SRC=$(cd "$(dirname "$0")" && pwd)/src
OUT=${OUT:-/tmp/win32-handle-model}
mkdir -p "$OUT" && cd "$OUT"
CXX="x86_64-w64-mingw32-g++-posix -O1 -std=c++17 -static"
for t in t1_pipe t1b_write t2_facts t4_handles t5_zero t5_onebyte t3_raw t6_ops; do $CXX -o $t.exe "$SRC/$t.cpp"; done
$CXX -shared -o rawhook.dll "$SRC/rawhook.cpp" -lpsapi
$CXX -shared -o vdhook.dll "$SRC/vdhook.cpp" -lpsapi
$CXX -shared -o late.dll "$SRC/late.cpp"
[ "$1" = run ] || exit 0
export WINEPREFIX=${WINEPREFIX:-$OUT/wineprefix} WINEDEBUG=-all
[ -d "$WINEPREFIX" ] || wineboot -i
for t in t1_pipe t1b_write t2_facts t4_handles t5_zero t5_onebyte; do wine $t.exe > $t.out 2>&1; done
for m in 0 1 2; do wine t3_raw.exe $m; done > t3_raw.out 2>&1
for m in 0 1; do RAWHOOK_DLL=vdhook.dll wine t3_raw.exe $m; done > t3_vdhook.out 2>&1
for m in 0 1; do wine t6_ops.exe $m; done > t6_ops.out 2>&1
grep -h FAIL *.out || echo "no FAIL lines"
