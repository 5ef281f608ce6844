#!/usr/bin/env bash
# Builds the dryad .deb (Architecture: all) from this tree with plain dpkg-deb: a
# staged tree, no debhelper, no Docker. Prints the path of the .deb.
# Reproducible: every mtime is clamped to the last commit's time (SOURCE_DATE_EPOCH)
# and dpkg-deb writes root:root owners.
set -euo pipefail
# A technician's umask (077, 027) must not leak into the package: dpkg-deb refuses a
# DEBIAN directory that is not 0755-0775, and a 0600 file in the data would be
# unreadable on the board. Everything below is created with the usual modes, and the
# tree copied from the checkout (whatever its modes) is normalised by chmod.
umask 022
# shellcheck source=image-build/lib.sh
. "$(dirname "$0")/lib.sh"

cd "$REPO"
base=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
stamp=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S)
version="$base+git$stamp.$(git rev-parse --short=8 HEAD)"
# Not mapfile < <(...): a failed hash check must stop the build (set -e).
wheel_list=$(cached_wheels)
mapfile -t wheels <<< "$wheel_list"
# Whoever publishes the package sets a real address; the default is a placeholder.
maintainer=${DRYAD_MAINTAINER:-Boruta developers <boruta@localhost>}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/dryad"
cp -a "$HERE/pkg-root" "$root"

# The dryad's code, private to the package (it is an application, not a library):
# dryad, hardware, and of the coordinator only the wire package the link speaks.
py="$root/usr/lib/dryad/python"
mkdir -p "$py/coordinator"
cp -r dryad hardware "$py/"
cp coordinator/__init__.py "$py/coordinator/"
cp -r coordinator/wire "$py/coordinator/"
# Documentation in the code tree (hardware/README.md) is for developers, not the board.
find "$py" \( -name __pycache__ -o -name '*.pyc' -o -name '*.md' \) -prune -exec rm -rf {} +
for wheel in "${wheels[@]}"; do
    install -D -m 0644 "$wheel" "$root/usr/lib/dryad/wheels/${wheel##*/}"
done

doc="$root/usr/share/doc/dryad"
install -D -m 0644 "$HERE/debian/copyright" "$doc/copyright"
sed -e "s/@VERSION@/$version/" -e "s/@MAINTAINER@/$maintainer/" \
    -e "s/@DATE@/$(date -u -R -d "@$SOURCE_DATE_EPOCH")/" "$HERE/debian/changelog" |
    gzip -9n > "$doc/changelog.gz"
for page in "$HERE"/man/*.[18]; do
    section=${page##*.}
    mkdir -p "$root/usr/share/man/man$section"
    gzip -9n -c "$page" > "$root/usr/share/man/man$section/${page##*/}.gz"
done
install -D -m 0644 "$HERE/debian/lintian-overrides" "$root/usr/share/lintian/overrides/dryad"

install -d -m 0755 "$root/DEBIAN"
for f in conffiles postinst prerm postrm; do
    cp "$HERE/debian/$f" "$root/DEBIAN/$f"
done
chmod 0644 "$root/DEBIAN/conffiles"
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
find "$root" -path "$root/DEBIAN" -prune -o -type d -exec chmod 0755 {} +
find "$root" -path "$root/DEBIAN" -prune -o -type f ! -perm -u+x -exec chmod 0644 {} +
find "$root" -path "$root/DEBIAN" -prune -o -type f -perm -u+x -exec chmod 0755 {} +
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum > DEBIAN/md5sums)
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@MAINTAINER@/$maintainer/" "$HERE/debian/control" |
    sed -e "/^Architecture:/a Installed-Size: $size" > "$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
find "$root" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
rm -f "$OUT"/dryad_*_all.deb
deb="$OUT/dryad_${version}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
