#!/usr/bin/env bash
# Starts and stops the Wine session the Windows tests run in (a ctest fixture, wine_session).
#
# The first Wine program of a session starts wineserver and the prefix's services, and they keep
# that program's standard output and error open. Under ctest those are the test's pipes, which
# ctest reads to their end: the test would last as long as the session, until every other Wine
# test had finished (seen: a 10 s suite reported at 101 s, the other -j slot idle meanwhile).
# Started here first, with no output to hold, the session outlives any test that uses it.
#
#   wine_session.sh start EMULATOR   a persistent wineserver, and the services it starts
#   wine_session.sh stop             ends the session (wineserver -k)
set -uo pipefail
case "${1:?start or stop}" in
start)
  emulator=${2:?the emulator, e.g. wine}
  # A server that is about to end (ctest's own listing of the suites starts one) is let go
  # first, or it would serve the tests without being persistent.
  timeout 30 wineserver --wait </dev/null >/dev/null 2>&1 || true
  wineserver -p </dev/null >/dev/null 2>&1
  # Any program will do: it makes the session start the prefix's services.
  "$emulator" cmd.exe /c exit </dev/null >/dev/null 2>&1
  echo "wine session started (WINEPREFIX=${WINEPREFIX:-~/.wine})"
  ;;
stop)
  wineserver -k </dev/null >/dev/null 2>&1
  echo "wine session stopped"
  ;;
*)
  echo "usage: $0 start EMULATOR | stop" >&2
  exit 2
  ;;
esac
