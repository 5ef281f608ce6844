#!/usr/bin/env bash
# Installs what this project needs on a Debian machine, and skips what is there.
#
#   install.sh --farm   only what scripts/farm.sh needs to run a local farm: Python with venv,
#                       the OpenSSH client (for `boruta reserve --ssh`), and .venv with the
#                       coordinator and the dryad (no test tools, no PostgreSQL, no browser)
#   install.sh          everything the tests need too: PostgreSQL for the store tests, wrk for
#                       the latency bench, Chromium for the dashboard test, HAProxy for the
#                       several-coordinators test, mmdebstrap, QEMU and friends for the image
#                       build, shellcheck, and .venv with the tools
#
# A package manager busy elsewhere (unattended upgrades) is waited for, not failed on.
set -euo pipefail
cd "$(dirname "$0")/.."

scope=full
case "${1:-}" in
    --farm) scope=farm ;;
    "") ;;
    *) echo "usage: $0 [--farm]" >&2; exit 2 ;;
esac

# PACKAGE:PATH pairs; the package is installed when PATH is missing.
farm_apt=(python3:/usr/bin/python3 openssh-client:/usr/bin/ssh)
test_apt=(postgresql:/usr/lib/postgresql wrk:/usr/bin/wrk openssh-server:/usr/sbin/sshd
          sqlite3:/usr/bin/sqlite3 chromium:/usr/bin/chromium
          mmdebstrap:/usr/bin/mmdebstrap qemu-user-static:/usr/bin/qemu-arm-static
          arch-test:/usr/bin/arch-test device-tree-compiler:/usr/bin/dtc
          dosfstools:/usr/sbin/mkfs.vfat mtools:/usr/bin/mcopy fdisk:/usr/sbin/sfdisk
          e2fsprogs:/usr/sbin/mke2fs bmap-tools:/usr/bin/bmaptool xz-utils:/usr/bin/xz
          lintian:/usr/bin/lintian qemu-system-arm:/usr/bin/qemu-system-arm
          shellcheck:/usr/bin/shellcheck haproxy:/usr/sbin/haproxy)
pairs=("${farm_apt[@]}")
[ "$scope" = farm ] || pairs+=("${test_apt[@]}")

need_apt=()
for pair in "${pairs[@]}"; do
    pkg=${pair%%:*} path=${pair#*:}
    [ -e "$path" ] || need_apt+=("$pkg")
done
PY=${PYTHON:-python3}
# Debian ships venv's pip bootstrap (ensurepip) apart from Python, in python3-venv.
if [ ! -x .venv/bin/python ] && ! "$PY" -c 'import ensurepip' 2>/dev/null; then
    need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install: apt-get install ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # Wait up to 10 minutes for another apt or dpkg (unattended upgrades) to finish.
    wait_lock=(-o DPkg::Lock::Timeout=600)
    $SUDO apt-get "${wait_lock[@]}" update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${wait_lock[@]}" install -y -q "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# One stamp per scope and pyproject.toml; a full install serves the farm too. (A stamp
# without a scope is from before the split: a full install.)
hash=$(sha256sum pyproject.toml | cut -c1-16)
full_stamp=.venv/.installed-full-$hash
farm_stamp=.venv/.installed-farm-$hash
if [ -e "$full_stamp" ] || [ -e ".venv/.installed-$hash" ]; then
    exit 0
fi
if [ "$scope" = farm ] && [ -e "$farm_stamp" ]; then
    exit 0
fi
.venv/bin/pip install -q --upgrade pip
if [ "$scope" = farm ]; then
    .venv/bin/pip install -q -e '.[dryad]'
    rm -f .venv/.installed-farm-*
    touch "$farm_stamp"
else
    .venv/bin/pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$full_stamp"
fi
