#!/usr/bin/env bash
# Generate the "images" data set of the Ferry benchmark: a few large files of another shape than
# bench/make_large.py's, built from files the Debian packages put on the machine.
#
#   bash bench/make_images.sh OUTDIR full|quick KERNEL_TARBALL
#
#   disk.img      a raw disk image (1 GiB; quick: 128 MiB) as `dd` copies a disk: every byte
#                 written, zeros included (no holes), holding an ext4 file system made by
#                 mkfs.ext4 with a fixed UUID, hash seed and time, whose one file is libs.tar:
#                 the /usr/lib/x86_64-linux-gnu/*.so* entries (quick: every 10th), in name order.
#   bin.tar       a tar of /usr/bin (quick: every 10th entry), in name order.
#   source.tar.xz an already-compressed tarball: KERNEL_TARBALL (Debian package
#                 linux-source-6.1) as it is (quick: its first 14 MiB).
#
# Tars are reproducible (sorted names, fixed mtime, owner 0), but their content depends on the
# packages installed: run.sh records each file's SHA-256 in the results.
set -euo pipefail

out=${1:?OUTDIR} mode=${2:?full|quick} tarball=${3:?KERNEL_TARBALL}
case $mode in
    full) image_mib=1024 every=1 source_bytes='' ;;
    quick) image_mib=128 every=10 source_bytes=$((14 << 20)) ;;
    *) echo "make_images.sh: mode is full or quick, not $mode" >&2; exit 2 ;;
esac
command -v mkfs.ext4 >/dev/null || { echo "make_images.sh: needs mkfs.ext4 (e2fsprogs)" >&2; exit 1; }

FIXED_TIME=1700000000
mkdir -p "$out"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# every_nth N: the lines of stdin numbered 1, 1+N, 1+2N, ...
every_nth() { awk -v n="$1" '(NR - 1) % n == 0'; }

# reproducible_tar DIR OUT: a tar of the names on stdin (relative to DIR), as they are listed.
reproducible_tar() {
    tar -C "$1" -cf "$2" --no-recursion --format=gnu --mtime="@$FIXED_TIME" \
        --owner=0 --group=0 --numeric-owner -T -
}

(cd /usr/lib/x86_64-linux-gnu && find . -maxdepth 1 -name '*.so*' \( -type f -o -type l \) -printf '%P\n' |
    LC_ALL=C sort | every_nth "$every") | reproducible_tar /usr/lib/x86_64-linux-gnu "$stage/libs.tar"
touch -d "@$FIXED_TIME" "$stage/libs.tar" "$stage"

# The image: zeros written first (a raw copy of a disk is all written, free space included), then
# the file system made in it without discarding (which would punch holes into the file).
head -c $((image_mib << 20)) /dev/zero >"$out/disk.img"
E2FSPROGS_FAKE_TIME=$FIXED_TIME mkfs.ext4 -q -F -b 4096 -L ferry-bench \
    -U 5eed5eed-0000-4000-8000-000000000001 \
    -E "nodiscard,lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0,hash_seed=1bad1bad-0000-4000-8000-000000000001" \
    -d "$stage" "$out/disk.img"
# mkfs.ext4 -d copies each file's change time, which cannot be set on the source: fix it.
for f in / /libs.tar; do
    for field in atime ctime mtime crtime; do
        printf 'set_inode_field %s %s @%s\nset_inode_field %s %s_extra 0\n' "$f" "$field" "$FIXED_TIME" "$f" "$field"
    done
done | debugfs -w -f - "$out/disk.img" >/dev/null 2>&1
blocks=$(stat -c '%b * %B' "$out/disk.img")
if (($blocks < image_mib << 20)); then
    echo "make_images.sh: disk.img has holes ($(($blocks)) bytes allocated of $((image_mib << 20)))" >&2
    exit 1
fi

(cd /usr/bin && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort | every_nth "$every") |
    reproducible_tar /usr/bin "$out/bin.tar"

if [[ -n $source_bytes ]]; then
    head -c "$source_bytes" "$tarball" >"$out/source.tar.xz"
else
    cp "$tarball" "$out/source.tar.xz"
fi
touch -d "@$FIXED_TIME" "$out/disk.img" "$out/bin.tar" "$out/source.tar.xz"
