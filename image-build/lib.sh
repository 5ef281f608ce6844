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

# What Debian trixie lacks, installed into the dryad's venv (pure-Python wheels, each
# pinned by version and hash: the build fails rather than take another file):
#   gpiozero 2 - trixie has 1.6.2;
#   anyio >= 4.10 - dryad.control uses SocketListener.from_socket; trixie has 4.8.0.
#     (4.11 rather than the newest: from 4.12 on it wants typing_extensions newer
#     than trixie's on Python 3.13.)
PINNED_WHEELS=(
    "gpiozero-2.0.1.post3-py3-none-any.whl d491734803a9bc6036602e6b8bbd73fb25c33da88de0fcd11a40e890b8bc2d3b"
    "anyio-4.11.0-py3-none-any.whl 0287e96f4d26d4149305414d4e3bc32f0dcd0862365a4bddea19d7a1ec38c4fc"
)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The pinned wheels, fetched once into the cache and checked; prints their paths.
cached_wheels() {
    local dir="$CACHE/wheels" entry name sha file requirement tmp
    mkdir -p "$dir"
    for entry in "${PINNED_WHEELS[@]}"; do
        name=${entry% *} sha=${entry#* }
        file="$dir/$name"
        if [ ! -e "$file" ]; then
            # gpiozero-2.0.1.post3-py3-none-any.whl -> gpiozero==2.0.1.post3
            requirement=${name%%-py3-*}
            requirement=${requirement/-/==}
            tmp=$(mktemp -d)
            # The project's venv has pip (scripts/install.sh makes it).
            "$REPO/.venv/bin/pip" download --quiet --no-deps --only-binary=:all: \
                --dest "$tmp" "$requirement"
            mv "$tmp/$name" "$file"
            rm -rf "$tmp"
        fi
        echo "$sha  $file" | sha256sum --check --quiet - ||
            die "$file does not match its pinned hash"
        echo "$file"
    done
}
