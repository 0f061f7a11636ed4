#!/usr/bin/env bash
# Checks VirtDisk.dll, its import library and its clients from their listings. Prints
# "exports: N passed, N failed".
#   scripts/check_exports.sh LISTING
#       `objdump -p VirtDisk.dll`: the export table holds exactly the 29 names of exports.def,
#       undecorated (x64 and x86 alike), and only system DLLs are imported.
#   scripts/check_exports.sh --imports-only LISTING
#       another program shipped with it: only system DLLs are imported.
#   scripts/check_exports.sh --import-library x64|x86 NM_LISTING [REFERENCE_NM_LISTING]
#       `nm libVirtDisk.a`: each of the 29 functions has its call thunk and its __imp_ pointer
#       under the symbol a compiler emits for a call through <virtdisk.h>: "Name" on x64,
#       "_Name@N" on x86 (stdcall, N from exports-x86.def), and on x86 no undecorated "_Name"
#       (a client would link to that only through ld's stdcall fix-up). With a reference (`nm`
#       of another import library of VirtDisk.dll, e.g. mingw-w64's libvirtdisk.a), every
#       function it has carries the same symbol in ours.
#   scripts/check_exports.sh --client LISTING
#       `objdump -p` of a program that calls all 29 functions through the import library
#       (tests/api/c_client_test.c): it imports exactly the 29 names of exports.def from
#       VirtDisk.dll, undecorated, i.e. what the DLL's export table holds.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mode=dll
case "$1" in
  --imports-only) mode=imports; shift ;;
  --import-library) mode=implib; arch=$2; shift 2 ;;
  --client) mode=client; shift ;;
esac
listing=$1
expected=$(sed -n '/^EXPORTS/,$p' "$here/exports.def" | tail -n +2 | awk 'NF{print $1}' | sort)
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "$*"; }
same_names() {  # same_names WHAT ACTUAL: ACTUAL (sorted names) is exactly exports.def's list
  if [[ "$expected" == "$2" ]]; then
    pass
  else
    fail "$1 differs from exports.def:"
    diff <(echo "$expected") <(echo "$2") || true
  fi
}

case $mode in
  dll | imports)
    if [[ $mode == dll ]]; then
      actual=$(sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' "$listing" |
        { grep -E '^[[:space:]]+\[ *[0-9]+\] ' || true; } | awk '{print $NF}' | sort)
      same_names "export table" "$actual"
      if [[ $(echo "$expected" | wc -l) == 29 ]]; then pass; else fail "exports.def does not list 29 names"; fi
    fi
    imports=$(awk '/DLL Name:/{print toupper($3)}' "$listing" | sort -u)
    system_dlls='^(KERNEL32|MSVCRT|NTDLL|ADVAPI32|WS2_32|USER32|BCRYPT|UCRTBASE|API-MS-WIN-.*)\.DLL$'
    for dll in $imports; do
      if [[ "$dll" =~ $system_dlls ]]; then pass; else fail "imports a non-system DLL: $dll"; fi
    done
    echo "imports: $(echo $imports)"
    ;;
  implib)
    symbols=$(awk 'NF >= 2 {print $(NF-1), $NF}' "$listing")
    reference=""
    if (($# > 1)); then reference=$(awk 'NF >= 2 && $(NF-1) == "T" {print $NF}' "$2"); fi
    while read -r name; do
      case $arch in
        x64) symbol=$name ;;
        x86)
          symbol=$(awk -v n="$name" '$1 ~ "^" n "@[0-9]+$" {print "_" $1}' "$here/exports-x86.def")
          if [[ -z "$symbol" ]]; then fail "exports-x86.def has no $name@N"; continue; fi
          if grep -qxF "T _$name" <<<"$symbols"; then
            fail "undecorated _$name in the import library (only a stdcall fix-up would use it)"
          fi
          ;;
        *) echo "unknown architecture: $arch" >&2; exit 2 ;;
      esac
      for wanted in "T $symbol" "I __imp_$symbol"; do
        if grep -qxF "$wanted" <<<"$symbols"; then pass; else fail "import library lacks $wanted"; fi
      done
      if [[ -n "$reference" ]]; then
        theirs=$(awk -v n="$name" '$1 ~ "^_?" n "(@[0-9]+)?$"' <<<"$reference")
        if [[ -z "$theirs" ]]; then
          :  # the reference library predates this function
        elif [[ "$theirs" == "$symbol" ]]; then
          pass
        else
          fail "$name: the reference import library has $theirs, ours $symbol"
        fi
      fi
    done <<<"$expected"
    ;;
  client)
    actual=$(sed -n '/DLL Name: VirtDisk.dll/,/^$/p' "$listing" |
      awk 'NF == 3 && $1 ~ /^[0-9a-f]+$/ {print $3}' | sort)
    same_names "functions imported from VirtDisk.dll" "$actual"
    ;;
esac
echo "exports: $passed passed, $failed failed"
((failed == 0))
