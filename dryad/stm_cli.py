"""The ``stm`` command: the original's flags, spoken to the dryad's control socket.

Stdlib only at import time: a job runs ``stm -dut`` over SSH many times, so start-up
must stay cheap (no anyio, no pyserial, no hardware package).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

USER_SOCKET: Final = "/run/boruta/stm-user.socket"
ADMIN_SOCKET: Final = "/run/boruta/stm.socket"
# Set in a simulated board's SSH sessions: its dryad's socket (docs/simulated-board.md).
SOCKET_ENV: Final = "BORUTA_STM_SOCKET"
LINE_MAX: Final = 64 * 1024  # one request or reply line; a longer one is refused
REPLY_TIMEOUT: Final = 30.0  # beyond the operation's own duration (a tick)

EXIT_FAILED: Final = 1  # Go's log.Fatal
EXIT_USAGE: Final = 2  # Go's flag package on a bad flag


class ControlError(Exception):
    """The dryad refused or failed an operation; the message is for people."""


class ControlUnreachable(ControlError, ConnectionError):
    """The control socket cannot be reached at all."""


class ControlClient:
    """One connection to the dryad's control socket: one request, one reply line.

    :param path: the socket; the group ``stm`` may use the user socket, root the admin one.
    :param group: named in the hint when permission is denied.
    """

    def __init__(self, path: str, *, group: str = "stm") -> None:
        self.path = path
        self.group = group
        self._sock: socket.socket | None = None
        self._buffer = b""

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(self, op: str, *, wait: float = 0.0, **args: Any) -> Any:
        """Run *op* on the dryad and return its value.

        :param wait: seconds the operation itself takes (a power tick), added to the timeout.
        :raises ControlUnreachable: no dryad behind the socket, or no permission to use it.
        :raises ControlError: the dryad refused the request or the hardware failed.
        """
        sock = self._connect()
        sock.settimeout(REPLY_TIMEOUT + wait)
        try:
            sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            line = self._read_line(sock)
        except TimeoutError:
            raise ControlError(f"the dryad did not answer {op!r} in time") from None
        except OSError as exc:
            raise ControlUnreachable(
                f"the dryad's control socket {self.path} failed: {exc}"
            ) from exc
        try:
            reply = json.loads(line)
            ok = reply["ok"]
        except (ValueError, KeyError, TypeError):
            raise ControlError(f"the dryad answered {op!r} with garbage: {line[:80]!r}") from None
        if not ok:
            raise ControlError(str(reply.get("error", "unknown error")))
        return reply.get("value")

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise ControlUnreachable(self._why(exc)) from exc
        self._sock = sock
        return sock

    def _why(self, exc: OSError) -> str:
        where = f"cannot reach the dryad's control socket {self.path}"
        if isinstance(exc, PermissionError):
            return f"{where}: permission denied — is this user in group {self.group}?"
        if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
            reason = "no such socket" if isinstance(exc, FileNotFoundError) else "refused"
            return f"{where}: {reason} — is the dryad running?"
        return f"{where}: {exc.strerror or exc}"

    def _read_line(self, sock: socket.socket) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > LINE_MAX:
                raise ControlError("the dryad's reply is too long")
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlError("the dryad closed the connection without answering")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def default_socket() -> str:
    """``$BORUTA_STM_SOCKET`` if set; else the admin socket for root, the user socket for
    everyone else (the original's wrapper)."""
    return os.environ.get(SOCKET_ENV) or (ADMIN_SOCKET if os.geteuid() == 0 else USER_SOCKET)


# Go's flag package, small: -name, --name, -name=value, -name value; bools take no value. --


class UsageError(Exception):
    """A bad command line, reported as Go's flag package does (exit 2)."""


class Refused(Exception):
    """Flags that parse but make no sense together; Go's ``log.Fatal`` (exit 1)."""


@dataclass
class Flag:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def is_bool(self) -> bool:
        return isinstance(self.default, bool)


@dataclass
class FlagSet:
    """A Go-style flag set: parsing stops at the first non-flag or at ``--``."""

    prog: str
    usage: str
    flags: dict[str, Flag] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # the original's, not ours: why

    def add(self, name: str, default: Any, help: str, parse: Callable[[str], Any] = str) -> None:
        self.flags[name] = Flag(name, default, help, parse)

    def parse_args(self, argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        values = {name: f.default for name, f in self.flags.items()}
        args = list(argv)
        while args and args[0].startswith("-") and args[0] != "-":
            arg = args.pop(0)
            if arg == "--":
                break
            name, eq, value = arg.lstrip("-").partition("=")
            flag = self.flags.get(name)
            if name in ("h", "help") and flag is None:
                raise UsageError("")
            if name in self.refused:
                raise UsageError(f"flag -{name} is not supported: {self.refused[name]}")
            if flag is None or not name or arg.startswith("---"):
                raise UsageError(f"flag provided but not defined: {arg.split('=')[0]}")
            if flag.is_bool:
                values[name] = _go_bool(name, value) if eq else True
                continue
            if not eq:
                if not args:
                    raise UsageError(f"flag needs an argument: -{name}")
                value = args.pop(0)
            try:
                values[name] = flag.parse(value)
            except ValueError as exc:
                raise UsageError(f'invalid value "{value}" for flag -{name}: {exc}') from None
        return values, args

    def help_text(self) -> str:
        lines = [f"Usage of {self.prog}: {self.usage}"]
        for name in sorted(self.flags):
            flag = self.flags[name]
            kind = "" if flag.is_bool else f" {_kind(flag.default)}"
            lines.append(f"  -{name}{kind}\n    \t{flag.help}")
        return "\n".join(lines) + "\n"


def _kind(default: Any) -> str:
    if isinstance(default, float):
        return "duration"
    return "int" if isinstance(default, int) else "string"


def _go_bool(name: str, value: str) -> bool:
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise UsageError(f'invalid boolean value "{value}" for -{name}: parse error')


_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|ms|s|m|h)")


def go_duration(text: str) -> float:
    """Seconds in a Go duration such as ``500ms``, ``1m30s`` or ``1.5h``."""
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            raise ValueError("parse error (a Go duration, e.g. 500ms, 2s, 1m)")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError("parse error (a Go duration, e.g. 500ms, 2s, 1m)")
    return -total if text.startswith("-") else total


def go_int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError("parse error") from None


def usage(fs: FlagSet, exc: UsageError) -> int:
    """Report a bad command line as Go's flag package: the error, then the usage."""
    if str(exc):
        sys.stderr.write(f"{exc}\n")
    sys.stderr.write(fs.help_text())
    return EXIT_USAGE if str(exc) else 0


def die(message: str, code: int = EXIT_FAILED) -> int:
    """Report like Go's ``log.Fatal``: a timestamped line on stderr."""
    sys.stderr.write(f"{time.strftime('%Y/%m/%d %H:%M:%S')} {message}\n")
    return code


# The stm command -------------------------------------------------------------------------


def _flags() -> FlagSet:
    fs = FlagSet("stm", "stm [flags] (flags can be combined)")
    fs.add("ts", False, "connect SD card to test server")
    fs.add("dut", False, "connect SD card to DUT")
    fs.add("tick", False, "power off DUT, wait duration specified by 'm' and switch it on again")
    fs.add("m", 1.0, "time delay for tick command (default 1s)", go_duration)
    fs.add("cur", False, "get reading of the current drawn by DUT")
    fs.add("cur-start", False, "start sampling DUT current")
    fs.add("cur-stop", False, "stop sampling DUT current")
    fs.add("cur-get", False, "get CSV of sample recorded")
    fs.add("cur-size", 120, "sample size (default 120)", go_int)
    fs.add("cur-duration", 60.0, "duration the sample should be recorded for (default 1m0s)",
           go_duration)  # fmt: skip
    fs.add("clr", False, "clear the display")
    fs.add("print", "", "print text on the display")
    fs.add("print-x", 0, "x coordinate for print command", go_int)
    fs.add("print-y", 0, "y coordinate (text row 0..2) for print command", go_int)
    fs.add("led1", "", "set the color of led1; accepted format 'r,g,b' (0-255 each)")
    fs.add("led2", "", "set the color of led2; accepted format 'r,g,b' (0-255 each)")
    fs.add("dyper1", "", "switch dyper1 to the given state (on|off)")
    fs.add("dyper2", "", "switch dyper2 to the given state (on|off)")
    fs.add("hdmi", "", "switch HDMI HOTPLUG pin (on|off)")
    fs.add("remote", "", f"control socket (default {ADMIN_SOCKET} for root, else {USER_SOCKET})")
    fs.add("dummy", False, "print actions instead of performing them")
    serving = "the dryad owns the STM and serves the control sockets"
    fs.refused = {"serve": serving, "listen": serving, "user-listen": serving}
    return fs


@dataclass(frozen=True)
class Step:
    """One operation to send, with the Go tool's wording for its failure."""

    failure: str
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    wait: float = 0.0
    show: Callable[[Any], str | None] = lambda value: None


def plan(v: dict[str, Any]) -> list[Step]:
    """The operations the flags ask for, in the original's order; refuses bad values first."""
    steps: list[Step] = []
    if v["ts"] and v["dut"]:
        raise Refused("conflicting flags: DUT and TS")
    if v["ts"]:
        steps.append(Step("failed to switch to TS: ", "ts"))
    if v["dut"]:
        steps.append(Step("failed to switch to DUT: ", "dut"))
    if v["tick"]:
        seconds = v["m"]
        steps.append(Step("failed to tick the power supply: ", "tick", {"seconds": seconds},
                          wait=seconds))  # fmt: skip
    if v["cur"]:
        steps.append(Step("failed to read the power consumption: ", "current", show=str))
    if v["cur-start"] and v["cur-stop"]:
        raise Refused("conflicting flags: cur-start and cur-stop")
    if v["cur-start"]:
        args = {"samples": v["cur-size"], "duration": v["cur-duration"]}
        steps.append(Step("failed to start sampling: ", "current-start", args))
    if v["cur-stop"]:
        steps.append(Step("failed to stop sampling: ", "current-stop"))
    if v["cur-get"]:
        steps.append(Step("failed to get a sample: ", "current-get", show=_csv))
    if v["clr"]:
        steps.append(Step("failed to clear the display: ", "clear"))
    if v["print"]:
        args = {"x": v["print-x"], "y": v["print-y"], "text": v["print"]}
        steps.append(Step("failed to print on the display: ", "print", args))
    for number in (1, 2):
        if v[f"led{number}"]:
            rgb = _rgb(v[f"led{number}"])
            steps.append(Step("failed to update value for led: ", "led",
                              {"number": number, "rgb": rgb}))  # fmt: skip
    for number in (1, 2):
        if v[f"dyper{number}"]:
            on = _on_off("dyper", v[f"dyper{number}"])
            steps.append(Step("failed to switch dyper: ", "dyper", {"number": number, "on": on}))
    if v["hdmi"]:
        steps.append(Step("failed to switch HDMI: ", "hdmi", {"on": _on_off("hdmi", v["hdmi"])}))
    return steps


def _csv(samples: Any) -> str | None:
    return ",".join(str(s) for s in samples) if samples else None


def _rgb(text: str) -> list[int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise Refused(f"failed to parse the led argument: {text!r} is not r,g,b (0-255 each)")
    return [int(p) for p in parts]


def _on_off(name: str, state: str) -> bool:
    if state not in ("on", "off"):
        raise Refused(f"unexpected value provided to {name}: {state}")
    return state == "on"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stm``; exit 0, 1 when an operation fails, 2 on a bad command line."""
    fs = _flags()
    try:
        values, rest = fs.parse_args(sys.argv[1:] if argv is None else argv)
        if rest:
            raise UsageError(f"unexpected argument {rest[0]!r}; stm takes flags only")
    except UsageError as exc:
        return usage(fs, exc)
    try:
        steps = plan(values)
    except Refused as exc:
        return die(str(exc))
    if values["dummy"]:
        for step in steps:
            sys.stderr.write(f"stm: {step.op} {json.dumps(step.args)}\n")
        return 0
    with ControlClient(values["remote"] or default_socket()) as client:
        for step in steps:
            try:
                value = client.call(step.op, wait=step.wait, **step.args)
            except ControlUnreachable as exc:
                return die(str(exc))
            except ControlError as exc:
                return die(f"{step.failure}{exc}")
            shown = step.show(value)
            if shown is not None:
                sys.stdout.write(shown + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
