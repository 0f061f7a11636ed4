#!/usr/bin/env bash
# Checks an `objdump -p VirtDisk.dll` listing: the export table holds exactly the 29 names of
# exports.def, and only system DLLs are imported. Prints "exports: N passed, N failed".
#   scripts/check_exports.sh LISTING                 the DLL
#   scripts/check_exports.sh --imports-only LISTING  another program shipped with it (imports only)
set -euo pipefail
imports_only=0
if [[ "$1" == --imports-only ]]; then imports_only=1; shift; fi
listing=$1
here=$(cd "$(dirname "$0")/.." && pwd)
expected=$(sed -n '/^EXPORTS/,$p' "$here/exports.def" | tail -n +2 | awk 'NF{print $1}' | sort)
actual=$(sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' "$listing" |
  { grep -E '^[[:space:]]+\[ *[0-9]+\] ' || true; } | awk '{print $NF}' | sort)
imports=$(awk '/DLL Name:/{print toupper($3)}' "$listing" | sort -u)
passed=0 failed=0
if ((imports_only)); then
  :
elif [[ "$expected" == "$actual" ]]; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  echo "export table differs from exports.def:"
  diff <(echo "$expected") <(echo "$actual") || true
fi
if ((imports_only)); then
  :
elif [[ $(echo "$expected" | wc -l) == 29 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "exports.def does not list 29 names"; fi
system_dlls='^(KERNEL32|MSVCRT|NTDLL|ADVAPI32|WS2_32|USER32|BCRYPT|UCRTBASE|API-MS-WIN-.*)\.DLL$'
for dll in $imports; do
  if [[ "$dll" =~ $system_dlls ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "imports a non-system DLL: $dll"; fi
done
echo "imports: $(echo $imports)"
echo "exports: $passed passed, $failed failed"
((failed == 0))
