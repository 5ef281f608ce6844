#!/usr/bin/env bash
# Usage: rootfs.sh ARCH SUITE PACKAGE-LIST
# Prints the path of a rootfs tarball built by mmdebstrap (minbase + the list),
# cached under $CACHE/rootfs keyed by a hash of every input, with the list of
# installed package versions beside it (NAME.manifest). The .debs it downloads are
# kept in $CACHE/debs/ARCH, so a changed package list downloads only what is new.
set -euo pipefail
# shellcheck source=image-build/lib.sh
. "$(dirname "$0")/lib.sh"

arch=$1 suite=$2 list=$3
mirror=$MIRROR
packages=$(grep -v -e '^#' -e '^\s*$' "$list" | LC_ALL=C sort -u | paste -sd, -)
# Bump when the way the tarball is made changes, so old tarballs are not reused.
recipe=3
key=$(printf '%s\n' "$recipe" "$arch" "$suite" "$mirror" "$packages" | sha256sum | cut -c1-16)
tarball="$CACHE/rootfs/$suite-$arch-$key.tar"
if [ -e "$tarball" ] && [ -e "$tarball.manifest" ]; then
    log "rootfs: cached $tarball"
    echo "$tarball"
    exit 0
fi

if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    # mmdebstrap runs the foreign maintainer scripts through qemu-user; the
    # interpreter must be registered with binfmt_misc (F flag: it works in chroots).
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$arch" ] && [ "$arch" = armhf ] &&
        [ ! -e /proc/sys/fs/binfmt_misc/qemu-arm ]; then
        /usr/lib/systemd/systemd-binfmt /usr/lib/binfmt.d/qemu-arm.conf
    fi
fi

debs="$CACHE/debs/$arch"
mkdir -p "$debs" "$CACHE/rootfs"
log "rootfs: building $suite/$arch ($key); packages: $packages"
# The .tar ending makes mmdebstrap write a tarball (it picks the format by the name).
tmp="$CACHE/rootfs/.partial-$$-$(basename "$tarball")"
trap 'rm -rf "$tmp" "$tmp.manifest"' EXIT
start=$SECONDS
# Retries: deb.debian.org sometimes serves an index that does not match its Release
# file for a while (a mirror sync in progress).
# Hooks in single quotes are expanded by mmdebstrap's shell, where $1 is the rootfs.
# shellcheck disable=SC2016
mmdebstrap --variant=minbase --arch="$arch" --include="$packages" \
    --aptopt='Acquire::Retries "5"' \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $debs /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $debs" \
    --customize-hook="dpkg-query --admindir=\"\$1/var/lib/dpkg\" -W -f='\${Package}\t\${Version}\t\${Architecture}\n' > $tmp.manifest" \
    "$suite" "$tmp" "$mirror"
mv "$tmp.manifest" "$tarball.manifest"
mv "$tmp" "$tarball"
log "rootfs: built in $((SECONDS - start)) s: $tarball"
echo "$tarball"
