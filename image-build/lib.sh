# Shared settings of the image-build scripts (sourced, not run).
# shellcheck shell=bash

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# Downloads and built rootfs tarballs, kept between runs on one machine, never in git.
CACHE=${BORUTA_IMAGE_CACHE:-/var/cache/boruta-image-build}
# Only the main suite, given explicitly: without a mirror argument mmdebstrap adds
# -security and -updates, whose Release files this lab's mirror lets expire.
# shellcheck disable=SC2034 # used by the scripts that source this file
MIRROR=${BORUTA_MIRROR:-http://deb.debian.org/debian}
# shellcheck disable=SC2034 # used by the scripts that source this file
OUT=${BORUTA_IMAGE_OUT:-$REPO/image-build/out}

# gpiozero 2 is the one Python dependency Debian trixie lacks (it has 1.6.2).
# Pinned by version and hash: the build fails rather than take another file.
GPIOZERO_WHEEL=gpiozero-2.0.1.post3-py3-none-any.whl
GPIOZERO_SHA256=d491734803a9bc6036602e6b8bbd73fb25c33da88de0fcd11a40e890b8bc2d3b

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A file, verified against its hash, fetched once into the cache.
cached_wheel() {
    local dir="$CACHE/wheels" file
    file="$dir/$GPIOZERO_WHEEL"
    mkdir -p "$dir"
    if [ ! -e "$file" ]; then
        local tmp
        tmp=$(mktemp -d)
        # The project's venv has pip (scripts/install.sh makes it).
        "$REPO/.venv/bin/pip" download --quiet --no-deps --only-binary=:all: \
            --dest "$tmp" "gpiozero==2.0.1.post3"
        mv "$tmp/$GPIOZERO_WHEEL" "$file"
        rm -rf "$tmp"
    fi
    echo "$GPIOZERO_SHA256  $file" | sha256sum --check --quiet - ||
        die "$file does not match its pinned hash"
    echo "$file"
}
