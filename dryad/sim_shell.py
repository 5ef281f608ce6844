"""One SSH session of the simulated board: a shell or command as this process's user.

The child runs in its own session (``setsid``), in the job's home, with a pseudo-terminal
when the client asked for one and pipes otherwise, as OpenSSH's sshd does
(docs/simulated-board.md §Sessions).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import pwd
import signal
import struct
import termios
from collections.abc import Mapping
from pathlib import Path

import anyio
import asyncssh

logger = logging.getLogger(__name__)

CHUNK = 65536
# Marks every process of a job, however it detaches (setsid, nohup, a double fork):
# the environment is inherited, so revoking kills what carries the job's mark.
MARK = "BORUTA_SIM_JOB"


def login_shell() -> str:
    """This user's login shell, as sshd would run it; /bin/sh when it has none."""
    try:
        shell = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        shell = ""
    return shell if shell and os.access(shell, os.X_OK) else "/bin/sh"


def argv_for(shell: str, command: str | None) -> list[str]:
    """sshd's: a login shell for ``shell`` requests, ``SHELL -c COMMAND`` for ``exec``."""
    return [shell, "-l"] if command is None else [shell, "-c", command]


async def run_session(
    process: asyncssh.SSHServerProcess[bytes],
    *,
    home: Path,
    env: Mapping[str, str],
    started: set[asyncio.subprocess.Process],
) -> None:
    """Serve ``process`` until its child exits; the exit status goes back to the client."""
    shell = login_shell()
    full_env = {**env, "SHELL": shell}
    term = process.get_terminal_type()
    if term:
        full_env["TERM"] = term
    argv = argv_for(shell, process.command)
    try:
        if term:
            code = await _with_pty(process, argv, home, full_env, started)
        else:
            code = await _with_pipes(process, argv, home, full_env, started)
    except OSError as exc:
        logger.warning("simulated sshd: cannot start %s: %s", argv[0], exc)
        process.stderr.write(f"cannot start {argv[0]}: {exc.strerror or exc}\r\n".encode())
        code = 127
    # A child killed by a signal reports -N; sshd reports 128+N, as shells do.
    process.exit(code if code >= 0 else 128 - code)


async def _with_pipes(
    process: asyncssh.SSHServerProcess[bytes],
    argv: list[str],
    home: Path,
    env: dict[str, str],
    started: set[asyncio.subprocess.Process],
) -> int:
    child = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=home,
        env=env,
        start_new_session=True,
    )
    started.add(child)
    assert child.stdin and child.stdout and child.stderr
    stdin, stdout, stderr = child.stdin, child.stdout, child.stderr

    async def feed() -> None:
        try:
            while data := await process.stdin.read(CHUNK):
                stdin.write(data)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
            pass  # the child stopped reading: the rest of the input has nowhere to go
        finally:
            stdin.close()

    async def copy(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        while data := await source.read(CHUNK):
            sink.write(data)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            async with anyio.create_task_group() as out:
                out.start_soon(copy, stdout, process.stdout)
                out.start_soon(copy, stderr, process.stderr)
            code = await child.wait()
            tg.cancel_scope.cancel()  # the input stops mattering when the child is gone
    finally:
        started.discard(child)
    return code


async def _with_pty(
    process: asyncssh.SSHServerProcess[bytes],
    argv: list[str],
    home: Path,
    env: dict[str, str],
    started: set[asyncio.subprocess.Process],
) -> int:
    master, slave = os.openpty()
    try:
        _set_size(master, process.get_terminal_size())
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=home,
            env=env,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # the child has its copies; ours would keep the terminal open
    started.add(child)
    os.set_blocking(master, False)

    async def feed() -> None:
        while True:
            try:
                data = await process.stdin.read(CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                _set_size(master, change.term_size)
                continue  # the kernel sends SIGWINCH to the terminal's foreground group
            except asyncssh.BreakReceived:
                data = b"\x03"
            except asyncssh.SignalReceived as sig:
                _signal(child, sig.signal)
                continue
            if not data:
                return  # EOF on the channel; the shell sees it when the user types ^D
            while data:
                await anyio.wait_writable(master)
                try:
                    data = data[os.write(master, data) :]
                except BlockingIOError:
                    continue

    async def drain_output() -> None:
        while True:
            try:
                data = os.read(master, CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(master)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave end closed: the session is over
                    return
                raise
            if not data:
                return
            process.stdout.write(data)

    done = anyio.Event()

    async def output() -> None:
        await drain_output()
        done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            tg.start_soon(output)
            code = await child.wait()
            # What the shell wrote just before exiting is still in the terminal; a
            # background process holding the terminal open must not keep us forever.
            with anyio.move_on_after(0.5):
                await done.wait()
            tg.cancel_scope.cancel()
    finally:
        started.discard(child)
        os.close(master)
    return code


def _take_terminal() -> None:
    """In the child, after setsid: make its stdin terminal the controlling one."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_size(fd: int, size: tuple[int, int, int, int]) -> None:
    width, height, pixwidth, pixheight = size
    if width and height:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


def _signal(child: asyncio.subprocess.Process, name: str) -> None:
    number = getattr(signal, f"SIG{name}", None)
    if isinstance(number, signal.Signals) and child.returncode is None:
        try:
            os.killpg(child.pid, number)
        except ProcessLookupError:
            pass
