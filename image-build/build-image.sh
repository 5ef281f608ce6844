#!/usr/bin/env bash
# Builds the MuxPi (NanoPi NEO) SD-card image with the dryad, as root, from Debian
# packages only (no Docker, no loop mounts). Prints the raw image's path.
#
#   image-build/build-image.sh            # -> image-build/out/muxpi-dryad-VERSION.img
#
# Output in $OUT (BORUTA_IMAGE_OUT, default image-build/out):
#   muxpi-dryad-VERSION.img      raw image (kept for the tests and QEMU)
#   muxpi-dryad-VERSION.img.xz   what a lab flashes (dd or bmaptool)
#   muxpi-dryad-VERSION.img.bmap bmaptool's block map of the raw image
#   muxpi-dryad-VERSION.manifest every Debian package and version in the image
#   SHA256SUMS                   of the three files above
#
# Layout (MBR; GPT's partition array would overlap U-Boot at 8 KiB):
#   8 KiB      U-Boot SPL + U-Boot (u-boot-sunxi, nanopi_neo), where the H3 boot ROM looks
#   4 MiB      p1 FAT32 "MUXPI-BOOT" (bootable): extlinux, kernel, initramfs, merged DTBs,
#              boruta-seed.toml (edited on any computer), boruta-identity.txt (first boot)
#   p1 end     p2 ext4 root, grown to the card's end at first boot
# The whole image is a power of two in size, as QEMU's SD card model requires.
set -euo pipefail
# shellcheck source=image-build/lib.sh
. "$(dirname "$0")/lib.sh"

# "stable" rather than "trixie": on this lab's mirror the trixie path's armhf index has
# been out of step with its Release file; the guard below fails the build when
# stable stops being trixie, so that move is a decision, not a surprise.
SUITE=${BORUTA_SUITE:-stable}
CODENAME=trixie
BOOT_MIB=128

[ "$(id -u)" -eq 0 ] || die "run as root (chroot, file owners in the image)"
start=$SECONDS
deb=$("$HERE/build-deb.sh")
version=$(dpkg-deb --field "$deb" Version)
tarball=$("$HERE/rootfs.sh" armhf "$SUITE" "$HERE/packages-armhf.list")

# U-Boot: only one file of u-boot-sunxi is needed, so extract the package rather than
# install its 35 MB of other boards (no maintainer scripts, no emulation).
uboot_key=$(printf '%s\n' 1 "$SUITE" "$MIRROR" | sha256sum | cut -c1-16)
uboot="$CACHE/u-boot/$uboot_key/u-boot-sunxi-with-spl.bin"
if [ ! -e "$uboot" ]; then
    log "u-boot: extracting u-boot-sunxi ($SUITE armhf)"
    dir=$(dirname "$uboot")
    mkdir -p "$dir"
    tree=$(mktemp -d)
    mmdebstrap --quiet --variant=extract --arch=armhf --include=u-boot-sunxi \
        "$SUITE" "$tree" "$MIRROR"
    ub_version=$(zcat "$tree/usr/share/doc/u-boot-sunxi/changelog.Debian.gz" |
        sed -n '1s/^u-boot (\([^)]*\)).*/\1/p')
    printf 'u-boot-sunxi\t%s\tarmhf\n' "$ub_version" > "$dir/manifest"
    cp "$tree/usr/lib/u-boot/nanopi_neo/u-boot-sunxi-with-spl.bin" "$uboot"
    rm -rf "$tree"
fi

work=$(mktemp -d /var/tmp/boruta-image.XXXXXX)
root="$work/root"
cleanup() {
    # Unmount before removing, or rm would walk into the host's /proc.
    if mountpoint -q "$root/proc"; then umount "$root/proc"; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$root"
log "image: unpacking $tarball"
tar -C "$root" --numeric-owner -xpf "$tarball"
grep -qx "VERSION_CODENAME=$CODENAME" "$root/etc/os-release" ||
    die "$SUITE is no longer $CODENAME: review the package list, then set CODENAME"

# Per-image identifiers, derived from the version so a rebuild gives the same ones.
hash=$(printf '%s' "$version" | sha256sum)
disk_id=${hash:0:8}
root_uuid="${hash:8:8}-${hash:16:4}-4${hash:21:3}-8${hash:25:3}-${hash:28:12}"
fat_id=${hash:40:8}

log "image: installing $(basename "$deb") (maintainer scripts under qemu-user)"
mount -t proc proc "$root/proc"  # systemd-sysusers and update-initramfs want it
cp "$deb" "$root/tmp/dryad.deb"
chroot "$root" dpkg -i /tmp/dryad.deb
rm "$root/tmp/dryad.deb"

log "image: overlay and configuration"
tar -C "$HERE/overlay" --owner=0 --group=0 -c . | tar -C "$root" -x --no-same-owner
mkdir -p "$root/etc/muxpi"
echo "root=PARTUUID=$disk_id-02 rootwait rw console=ttyS0,115200 panic=10" \
    > "$root/etc/muxpi/cmdline"
cat > "$root/etc/fstab" <<EOF
# The FAT boot partition is 0700 to anyone but root: the seed file holds a token.
# nofail: a FAT damaged on some computer must not keep the board from booting.
PARTUUID=$disk_id-02  /               ext4  defaults,noatime,commit=60  0  1
PARTUUID=$disk_id-01  /boot/firmware  vfat  defaults,noatime,umask=0077,nofail  0  2
EOF
echo muxpi > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmuxpi\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    > "$root/etc/hosts"
# Made per board at first boot, not shared by every board flashed from this image.
echo uninitialized > "$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub
rm -f "$root/var/lib/dbus/machine-id"
systemctl --root="$root" enable muxpi-firstboot.service systemd-networkd.service \
    systemd-resolved.service systemd-timesyncd.service ssh.service >/dev/null 2>&1
systemctl --root="$root" is-enabled dryad.service dryad-seed.service >/dev/null
# Again, with the overlay's initramfs-tools/modules (its hook also updates the boot files).
chroot "$root" update-initramfs -u -k all >&2
umount "$root/proc"
"$HERE/overlay/usr/sbin/muxpi-update-boot" "$root" >&2
dpkg-query --admindir="$root/var/lib/dpkg" -W \
    -f='${Package}\t${Version}\t${Architecture}\n' > "$work/manifest"
cat "$(dirname "$uboot")/manifest" >> "$work/manifest"

# The FAT partition's files leave the root tree; its mount point stays.
mv "$root/boot/firmware" "$work/fat"
mkdir -m 0755 "$root/boot/firmware"

log "image: file systems"
export E2FSPROGS_FAKE_TIME=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct)}
used_mib=$(du -sm --apparent-size "$root" | cut -f1)
# Room for the first boot (keys, journal, venv byte code) before the partition grows.
root_mib=$((used_mib * 13 / 10 + 256))
total_mib=4
while [ "$total_mib" -lt $((4 + BOOT_MIB + root_mib)) ]; do total_mib=$((total_mib * 2)); done
root_mib=$((total_mib - 4 - BOOT_MIB))
mke2fs -q -t ext4 -L muxpi-root -U "$root_uuid" -E "root_owner=0:0,hash_seed=$root_uuid" \
    -d "$root" "$work/root.ext4" "${root_mib}M"
mkfs.vfat -C -F 32 -n MUXPI-BOOT -i "$fat_id" "$work/boot.vfat" $((BOOT_MIB * 1024)) >/dev/null
mcopy -s -p -m -i "$work/boot.vfat" "$work/fat"/* ::/

mkdir -p "$OUT"
name="muxpi-dryad-$version"
img="$OUT/$name.img"
rm -f "$OUT"/muxpi-dryad-*.img* "$OUT"/muxpi-dryad-*.manifest "$OUT/SHA256SUMS"
truncate -s "${total_mib}M" "$img"
sfdisk --quiet "$img" <<EOF
label: dos
label-id: 0x$disk_id
start=4MiB, size=${BOOT_MIB}MiB, type=c, bootable
start=$((4 + BOOT_MIB))MiB, type=83
EOF
dd if="$work/boot.vfat" of="$img" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$img" bs=1M seek=$((4 + BOOT_MIB)) conv=notrunc,sparse status=none
# The H3 boot ROM reads the SPL from sector 16 (8 KiB); U-Boot proper follows it.
dd if="$uboot" of="$img" bs=1024 seek=8 conv=notrunc status=none

log "image: compressing"
cp "$work/manifest" "$OUT/$name.manifest"
bmaptool -q create -o "$OUT/$name.img.bmap" "$img"
xz -T0 -6 -k -c "$img" > "$OUT/$name.img.xz"
(cd "$OUT" && sha256sum "$name.img.xz" "$name.img.bmap" "$name.manifest" > SHA256SUMS)
log "image: done in $((SECONDS - start)) s: $(du -h --apparent-size "$img" | cut -f1) raw," \
    "$(du -h "$OUT/$name.img.xz" | cut -f1) compressed"
echo "$img"
