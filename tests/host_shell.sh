#!/usr/bin/env bash
# The host side of the tests' shell bridge (tests/unit/host_shell.h): lets a test program running
# under Wine run the Linux tools that serve as its oracles (genisoimage, isoinfo, mkudffs,
# udfinfo, qemu-img). A request is a shell script dropped into the spool directory as ID.sh; the
# answer is ID.out (standard output and error) and then ID.rc (the exit status).
#
#   host_shell.sh start DIR   empty DIR and serve it from a background process (ctest fixture)
#   host_shell.sh stop DIR    stop that process and remove DIR
#   host_shell.sh serve DIR   serve DIR in the foreground (ends after 30 idle minutes)
set -uo pipefail
command=${1:?start, stop or serve}
spool=${2:?spool directory}

case "$command" in
start)
  rm -rf "$spool" && mkdir -p "$spool"
  setsid bash "$0" serve "$spool" </dev/null >/dev/null 2>&1 &
  echo $! >"$spool/server.pid"
  echo "host shell serving $spool (pid $!)"
  ;;
stop)
  if [[ -f "$spool/server.pid" ]]; then kill "$(cat "$spool/server.pid")" 2>/dev/null; fi
  rm -rf "$spool"
  echo "host shell stopped"
  ;;
serve)
  shopt -s nullglob
  # Polls without starting a process per look (read -t on a pipe nobody writes), so that the
  # server costs the tests it serves nothing measurable.
  exec {never}<> <(:)
  idle=0
  while [[ -d "$spool" ]] && ((idle < 36000)); do
    requests=("$spool"/*.sh)
    if ((${#requests[@]} == 0)); then
      read -r -t 0.05 -u "$never" || true
      idle=$((idle + 1))
      continue
    fi
    idle=0
    for request in "${requests[@]}"; do
      id=${request%.sh}
      mv "$request" "$id.running" 2>/dev/null || continue
      (
        cd "$spool" && sh "$id.running" >"$id.out" 2>&1
        echo $? >"$id.rc.tmp" && mv "$id.rc.tmp" "$id.rc"
        rm -f "$id.running"
      ) &
    done
  done
  ;;
*)
  echo "usage: $0 start|stop|serve DIR" >&2
  exit 2
  ;;
esac
