#!/usr/bin/env bash
# Makes a busybox rootfs at $1 from Debian's busybox-static.
set -euo pipefail
dest=${1:?usage: rootfs.sh DIR}
mkdir -p "$dest"/{bin,etc,tmp,proc,sys,dev,root}
cp /bin/busybox "$dest/bin/busybox"
for applet in $("$dest/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dest/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$dest/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$dest/etc/group"
