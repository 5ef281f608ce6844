#!/usr/bin/env bash
# Installs everything the farm and its tests need on a Debian machine: system packages
# (PostgreSQL for the store tests, OpenSSH, wrk for the latency bench, Chromium for the
# dashboard test, mmdebstrap/QEMU and friends for the image build) and a virtualenv
# in .venv with the project and its tools. Safe to run again; it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in postgresql:/usr/lib/postgresql wrk:/usr/bin/wrk openssh-server:/usr/sbin/sshd \
            openssh-client:/usr/bin/ssh sqlite3:/usr/bin/sqlite3 chromium:/usr/bin/chromium \
            mmdebstrap:/usr/bin/mmdebstrap qemu-user-static:/usr/bin/qemu-arm-static \
            arch-test:/usr/bin/arch-test device-tree-compiler:/usr/bin/dtc \
            dosfstools:/usr/sbin/mkfs.vfat mtools:/usr/bin/mcopy fdisk:/usr/sbin/sfdisk \
            e2fsprogs:/usr/sbin/mke2fs bmap-tools:/usr/bin/bmaptool xz-utils:/usr/bin/xz \
            lintian:/usr/bin/lintian qemu-system-arm:/usr/bin/qemu-system-arm \
            shellcheck:/usr/bin/shellcheck; do
    pkg=${pair%%:*} path=${pair#*:}
    [ -e "$path" ] || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install: apt-get install ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
