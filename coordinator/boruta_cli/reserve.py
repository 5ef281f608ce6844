"""``boruta reserve`` (wait with a live line, then print the access or open ``ssh``) and
``boruta ssh-config``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from coordinator.boruta_cli import output
from coordinator.boruta_cli.commands import parse_caps, parse_when
from coordinator.client import Client
from coordinator.domain.ids import RequestID
from coordinator.domain.model import AccessInfo
from coordinator.domain.states import RequestState
from coordinator.errors import WorkerNotAssigned

TICK_TTY = 1.0  # seconds per long poll on a terminal: the elapsed time moves every second
TICK_LOG = 10.0  # without a terminal only changes are logged, so fewer calls do


class Ended(Exception):
    """The request ended without a worker (cancelled elsewhere, timed out, invalid)."""


def reserve(client: Client, args: Any) -> int:
    caps = parse_caps(args.caps)
    rid = client.new_request(args.priority, caps, deadline=parse_when(args.deadline))
    if not (args.wait or args.ssh):
        output.dump({"id": rid}) if args.json else output.say(str(rid))
        return 0
    output.say(f"request {rid} created for {output.caps_text(caps)}", err=True)
    try:
        access = wait_for_worker(client, rid, sys.stderr.isatty())
    except KeyboardInterrupt:
        client.close_request(rid)
        output.say(f"\ninterrupted: request {rid} closed", err=True)
        return 130
    except Ended as exc:
        output.say(str(exc), err=True)
        return 1
    if args.wait:
        if args.json:
            output.dump(
                {
                    "id": rid,
                    "host": access.host,
                    "port": access.port,
                    "username": access.username,
                    "key": access.key_pem.decode(),
                }
            )
        else:
            output.say(f"request {rid}: ssh -p {access.port} {access.username}@{access.host}")
            output.say(f"key and host entry: boruta ssh-config {rid}")
        return 0
    return ssh(client, rid, access)


def wait_for_worker(client: Client, rid: RequestID, live: bool) -> AccessInfo:
    """Show state, queue position and time, then long-poll ``acquire_worker``; repeat."""
    start, last = time.monotonic(), ""
    while True:
        info = client.get_request(rid)
        if info.state not in (RequestState.WAITING, RequestState.IN_PROGRESS):
            if live:
                sys.stderr.write("\r\x1b[K")
            reason = f": {info.reason}" if info.reason else ""
            raise Ended(f"request {rid} is {info.state.value}{reason}")
        position = client.queue_position(rid)
        ahead = "" if position is None else f", {position} ahead in the queue"
        why = f" ({info.reason})" if info.reason else ""  # over quota (docs/scheduling.md)
        status = f"request {rid} {info.state.value}{ahead}{why}"
        elapsed = int(time.monotonic() - start)
        if live:
            sys.stderr.write(f"\r\x1b[K{status}, {elapsed // 60}:{elapsed % 60:02d} elapsed")
            sys.stderr.flush()
        elif status != last:
            output.say(f"{time.strftime('%H:%M:%S')} {status}", err=True)
        last = status
        tick, asked = (TICK_TTY if live else TICK_LOG), time.monotonic()
        try:
            access = client.acquire_worker(rid, wait=tick)
        except WorkerNotAssigned:
            # The coordinator answers at once when waiting cannot help (a job whose
            # tunnel is not open yet): pace the polls instead of spinning.
            time.sleep(max(0.0, tick - (time.monotonic() - asked)))
            continue
        if live:
            sys.stderr.write("\r\x1b[K")
        return access


def ssh(client: Client, rid: RequestID, access: AccessInfo) -> int:
    """Run ``ssh`` with the job key in a private temp file; then offer to release."""
    program = shutil.which("ssh")
    if program is None:
        output.say("ssh not found on PATH; request kept open", err=True)
        return 1
    fd, key = tempfile.mkstemp(prefix=f"boruta-{rid}-", suffix=".key")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as sink:
            sink.write(access.key_pem)
        # A handler, not SIG_IGN: ssh must not inherit an ignored SIGINT (exec resets
        # handlers but keeps ignored signals), and our Ctrl-C belongs to the shell.
        main = threading.current_thread() is threading.main_thread()  # tests run us in threads
        previous = signal.signal(signal.SIGINT, lambda *_: None) if main else None
        try:
            status = subprocess.call([program, *ssh_options(access, key)])
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
    finally:
        os.unlink(key)
    if _confirm(f"release request {rid} (close it)? [Y/n] "):
        client.close_request(rid)
        output.say(f"request {rid} closed", err=True)
    else:
        output.say(f"request {rid} kept; `boruta requests close {rid}` releases it", err=True)
    return status


def ssh_options(access: AccessInfo, key: str) -> list[str]:
    return [
        "-i",
        key,
        "-p",
        str(access.port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        f"{access.username}@{access.host}",
    ]


def _confirm(question: str) -> bool:
    """Yes unless a person at a terminal says no; without one, release."""
    if not sys.stdin.isatty():
        return True
    try:
        answer = input(question)
    except EOFError:
        return True
    return answer.strip().lower() not in ("n", "no")


def ssh_config(client: Client, args: Any) -> int:
    rid = RequestID(args.id)
    access = client.acquire_worker(rid)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "boruta"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = folder / f"boruta-{rid}.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as sink:
        os.fchmod(sink.fileno(), 0o600)  # an older file may have had looser bits
        sink.write(access.key_pem)
    output.say(
        f"Host boruta-{rid}\n"
        f"    HostName {access.host}\n"
        f"    Port {access.port}\n"
        f"    User {access.username}\n"
        f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        "    StrictHostKeyChecking no\n"
        "    UserKnownHostsFile /dev/null"
    )
    return 0
