#!/usr/bin/env bash
# An install to a prefix of the test's own (cmake --install BUILD --prefix P), used as a
# newcomer would: pkg-config's flags point into P, a C program builds with them and runs, and
# the installed vdisk runs with its man page and bash completion beside it.
#   install_test.sh BUILD_DIR
set -euo pipefail
build=$1
prefix=$(mktemp -d "${TMPDIR:-/tmp}/virtdisk-install.XXXXXX")
trap 'rm -rf "$prefix"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name virtdisk.pc -print -quit)
[[ -n "$pc" ]] || fail "no virtdisk.pc under $prefix"
export PKG_CONFIG_PATH=$(dirname "$pc")
cflags=$(pkg-config --cflags virtdisk)
libs=$(pkg-config --libs virtdisk)
cflags=${cflags% }; libs=${libs% }
include_dir=${cflags#-I}
[[ "$include_dir" == "$prefix/include" ]] || fail "pkg-config --cflags gives '$cflags', not $prefix/include"
[[ -f "$include_dir/virtdisk.h" ]] || fail "no virtdisk.h in $include_dir"
lib_dir=$(sed -n 's/^-L\([^ ]*\).*/\1/p' <<<"$libs")
[[ "$lib_dir" == "$prefix"/lib* ]] || fail "pkg-config --libs gives '$libs', not under $prefix"

cat > "$prefix/client.c" <<'C'
#include <stdio.h>
#include <virtdisk.h>
int main(void) {
  VIRTUAL_STORAGE_TYPE type = {0};
  HANDLE disk = NULL;
  DWORD error = OpenVirtualDisk(&type, L"/nonexistent/disk.vhdx", VIRTUAL_DISK_ACCESS_ALL,
                                OPEN_VIRTUAL_DISK_FLAG_NONE, NULL, &disk);
  printf("%lu\n", (unsigned long)error);
  return error == ERROR_PATH_NOT_FOUND || error == ERROR_FILE_NOT_FOUND ? 0 : 1;
}
C
cc -o "$prefix/client" "$prefix/client.c" $cflags $libs -Wl,-rpath,"$lib_dir"
"$prefix/client" >/dev/null || fail "the C client built with pkg-config's flags did not run"

"$prefix/bin/vdisk" --version >/dev/null || fail "the installed vdisk does not run"
[[ -f "$prefix/share/man/man1/vdisk.1" ]] || fail "no man page installed"
[[ -f "$prefix/share/bash-completion/completions/vdisk" ]] || fail "no bash completion installed"
[[ -f "$prefix/include/virtdisk/extensions.h" ]] || fail "no virtdisk/extensions.h installed"
echo "install to $prefix: pkg-config, C client, vdisk, man page and completion OK"
