"""``boruta``: the farm's command line (reserve a board, SSH to it, manage requests and workers)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

# Exit codes; the help's epilog documents them.
OK, REFUSED, USAGE, UNREACHABLE, AUTH, INTERRUPTED = 0, 1, 2, 3, 4, 130


def main(argv: Sequence[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Run one command; ``transport`` lets tests serve the API in-process."""
    # Only argparse here: --help and completion must not pay for httpx (start-up ≤ 0.3 s).
    from coordinator.boruta_cli.parser import build

    parser = build()
    args = parser.parse_args(argv)
    if args.version:
        from coordinator import __version__

        print(f"boruta {__version__}")  # noqa: T201
        return OK
    if args.command is None:
        parser.print_help()
        return USAGE
    if args.command == "completion":
        from coordinator.boruta_cli.completion import script

        sys.stdout.write(script(parser, args.shell))
        return OK
    if args.command == "users":
        sys.stderr.write(
            "boruta: the API has no user management; on the coordinator's host use\n"
            "  boruta-coordinator user add NAME [--admin] [--groups a,b] | token NAME | "
            "remove NAME | list\n"
        )
        return USAGE
    try:
        return _run(args, transport)
    except KeyboardInterrupt:
        sys.stderr.write("\nboruta: interrupted\n")
        return INTERRUPTED


def _run(args: Any, transport: httpx.BaseTransport | None) -> int:
    if "httpx" not in sys.modules:
        # httpx imports its own command line (click, rich, pygments) when they are
        # installed: a third of its import time, never used here. None makes that import
        # fail, and httpx falls back to a stub, as it does when they are absent.
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from coordinator.boruta_cli import commands, config, reserve, shares
    from coordinator.client import Client, ServerUnreachable
    from coordinator.errors import BorutaError, Forbidden, Unauthorized

    try:
        settings = config.load(args)
    except config.ConfigError as exc:
        return _fail(str(exc), USAGE)
    for warning in settings.warnings:
        sys.stderr.write(f"boruta: {warning}\n")
    handlers = {
        "reserve": reserve.reserve,
        "ssh-config": reserve.ssh_config,
        "requests": commands.requests,
        "workers": commands.workers,
        "admin": commands.admin,
        "usage": shares.usage,
    }
    try:
        with Client(settings.url, settings.token, transport=transport) as client:
            return handlers[args.command](client, args)
    except commands.UsageError as exc:
        return _fail(str(exc), USAGE)
    except commands.Refused as exc:
        return _fail(str(exc), REFUSED)
    except ServerUnreachable as exc:
        return _fail(exc.message, UNREACHABLE)
    except Unauthorized as exc:
        if not settings.token:
            return _fail(config.how_to_set_token(), AUTH)
        return _fail(f"{exc.wire_message} (the token from {settings.token_from})", AUTH)
    except Forbidden as exc:
        return _fail(exc.wire_message, AUTH)
    except BorutaError as exc:
        return _fail(exc.wire_message, REFUSED)


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"boruta: {message}\n")
    return code
