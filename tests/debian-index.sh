# Sourced by the scripts that fetch from Debian's archive outside apt (tests/fetch-dockerd.sh,
# cross/sparc64/busybox.sh): an index file of a suite, checked as apt checks it.
#
#   debian_index SUITE PATH OUT
#
# fetches the suite's InRelease, checks it against Debian's keyring, and fetches PATH of the
# suite (main/binary-amd64/Packages.xz, say) into OUT in the current directory, checked against
# the Release's SHA256.
debian_mirror=http://deb.debian.org/debian
debian_index() {
  local suite=$1 path=$2 out=$3 sum
  curl -sSf -o InRelease "$debian_mirror/dists/$suite/InRelease"
  gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg --output Release InRelease 2>gpgv.err \
    || { cat gpgv.err >&2; return 1; }
  sum=$(awk -v f="$path" '/^SHA256:/ {s = 1; next} /^[^ ]/ {s = 0} s && $3 == f {print $1}' Release)
  [ -n "$sum" ] || { echo "$suite's Release lists no $path" >&2; return 1; }
  curl -sSf -o "$out" "$debian_mirror/dists/$suite/$path"
  echo "$sum  $out" | sha256sum -c --quiet -
}
