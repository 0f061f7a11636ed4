#!/bin/sh
# capture_nbd_seeds.sh BUILD_DIR OUT_DIR: records what real NBD clients send to our server (via
# nbd_capture's proxy) as seeds for nbd_fuzz: nbdinfo (info, --list, --map), qemu-io (reads,
# writes, write-zeroes, discard, flush), qemu-img (map, convert) and nbdcopy. The committed seeds
# in seeds/nbd/ were made with it; rerun it when the server's negotiation changes.
set -eu
build=$1
out=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkfifo "$scratch/in"
"$build/nbd_capture" "$scratch" "$out" < "$scratch/in" > "$scratch/uri" &
pid=$!
exec 3> "$scratch/in"
while [ ! -s "$scratch/uri" ]; do sleep 0.1; done
uri=$(head -n1 "$scratch/uri")
sock=${uri#*socket=}
qemu_uri="nbd+unix:///fuzz?socket=$sock"
nbdinfo "$uri" > /dev/null
nbdinfo --list "$uri" > /dev/null
nbdinfo --map "$uri" > /dev/null
qemu-io -f raw -c 'read 0 4096' -c 'read -v 131072 512' -c 'readv 0 512 1024' "$qemu_uri" > /dev/null
qemu-io -f raw -c 'write -P 0x5a 4096 4096' -c 'write -z 65536 65536' -c 'discard 0 4096' \
  -c 'flush' -c 'write -P 0x11 1 3' "$qemu_uri" > /dev/null
qemu-img map --output=json -f raw "$qemu_uri" > /dev/null
qemu-img convert -f raw -O raw "$qemu_uri" "$scratch/copy.raw"
nbdcopy "$uri" "$scratch/copy2.raw"
exec 3>&-
wait "$pid"
