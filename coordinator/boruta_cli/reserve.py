"""``boruta reserve`` (wait with a live line, then print the access or open ``ssh``) and
``boruta ssh-config``."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from coordinator.boruta_cli import keys, known_hosts, output
from coordinator.boruta_cli.commands import Refused, ended, parse_caps, parse_when
from coordinator.client import Client
from coordinator.domain.ids import RequestID
from coordinator.domain.model import AccessInfo, KeyType
from coordinator.domain.states import RequestState
from coordinator.errors import WorkerNotAssigned

TICK_TTY = 1.0  # seconds per long poll on a terminal: the elapsed time moves every second
TICK_LOG = 10.0  # without a terminal only changes are logged, so fewer calls do


_LIVE = (RequestState.WAITING, RequestState.IN_PROGRESS)


class Ended(Exception):
    """The request ended without a worker (cancelled elsewhere, timed out, invalid)."""


def reserve(client: Client, args: Any) -> int:
    caps = parse_caps(args.caps)
    rid = client.new_request(
        args.priority, caps, deadline=parse_when(args.deadline), key_type=KeyType(args.key_type)
    )
    if not (args.wait or args.ssh):
        # The coordinator decides INVALID as it creates the request: say so now, as
        # waiting would, rather than hand out the ID of a request that is already over.
        info = client.get_request(rid)
        if info.state not in _LIVE:
            output.say(ended(info), err=True)
            return 1
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
                    "host_keys": list(access.host_keys),
                }
            )
        else:
            key = keys.save(rid, access.key_pem)
            known = known_hosts.save(rid, access)
            _warn_unvouched(access)
            command = shlex.join(["ssh", *ssh_options(access, str(key), str(known))])
            output.say(f"request {rid}: {command}")
            output.say(f"or as host boruta-{rid}: boruta ssh-config {rid} >> ~/.ssh/config")
        return 0
    return ssh(client, rid, access)


def wait_for_worker(client: Client, rid: RequestID, live: bool) -> AccessInfo:
    """Show state, queue position and time, then long-poll ``acquire_worker``; repeat."""
    start, last = time.monotonic(), ""
    while True:
        info = client.get_request(rid)
        if info.state not in _LIVE:
            if live:
                sys.stderr.write("\r\x1b[K")
            raise Ended(ended(info))
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
    _warn_unvouched(access)
    known = known_hosts.temporary(rid, access)
    try:
        fd, key = tempfile.mkstemp(prefix=f"boruta-{rid}-", suffix=".key")  # mode 0600
    except BaseException:
        os.unlink(known)
        raise
    try:
        with os.fdopen(fd, "wb") as sink:
            sink.write(access.key_pem)
        # A handler, not SIG_IGN: ssh must not inherit an ignored SIGINT (exec resets
        # handlers but keeps ignored signals), and our Ctrl-C belongs to the shell.
        main = threading.current_thread() is threading.main_thread()  # tests run us in threads
        previous = signal.signal(signal.SIGINT, lambda *_: None) if main else None
        try:
            status = subprocess.call([program, *ssh_options(access, key, known)])
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
    finally:
        os.unlink(key)
        os.unlink(known)
    if _confirm(f"release request {rid} (close it)? [Y/n] "):
        client.close_request(rid)
        output.say(f"request {rid} closed", err=True)
    else:
        output.say(f"request {rid} kept; `boruta requests close {rid}` releases it", err=True)
    return status


def ssh_options(access: AccessInfo, key: str, known: str) -> list[str]:
    """``ssh`` with the job ``key`` that accepts only the host keys in the ``known`` file."""
    return [
        "-i",
        key,
        "-p",
        str(access.port),
        # Only the job key: keys from an agent are offered first otherwise, and a few of
        # them use up sshd's MaxAuthTries before the job key is tried.
        "-o",
        "IdentitiesOnly=yes",
        # The keys the coordinator vouches for, in a file of this job's own: a tunnel
        # port serves another board's host key in the next job.
        *known_hosts.ssh_options(known),
        f"{access.username}@{access.host}",
    ]


def _warn_unvouched(access: AccessInfo) -> None:
    if (why := known_hosts.unvouched(access)) is not None:
        output.say(why, err=True)


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
    info = client.get_request(rid)
    if info.state is RequestState.WAITING:
        position = client.queue_position(rid)
        ahead = "" if position is None else f" ({position} ahead in the queue)"
        raise Refused(
            f"request {rid} is still WAITING for a worker{ahead}: no access yet; run this "
            f"again once `boruta requests show {rid}` says IN PROGRESS"
        )
    if info.state is not RequestState.IN_PROGRESS:
        raise Refused(f"{ended(info)}; an ended request gives no access")
    access = client.acquire_worker(rid)
    key = keys.save(rid, access.key_pem)
    known = known_hosts.save(rid, access)
    _warn_unvouched(access)
    quoted = f'"{key}"' if " " in str(key) else str(key)  # ssh_config(5) quoting
    output.say(
        f"Host boruta-{rid}\n"
        f"    HostName {access.host}\n"
        f"    Port {access.port}\n"
        f"    User {access.username}\n"
        f"    IdentityFile {quoted}\n"
        "    IdentitiesOnly yes\n"
        "    StrictHostKeyChecking yes\n"
        f"    UserKnownHostsFile {known_hosts.option_value(str(known))}"
    )
    return 0
