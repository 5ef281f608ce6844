"""``boruta-coordinator``: serve the API and the dryad link, migrate the database, manage users,
their tokens and the dryads' enrolment tokens."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from coordinator import __version__, logs
from coordinator.domain.model import User
from coordinator.errors import BorutaError, ServingTaken
from coordinator.settings import Settings, SettingsError, load
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token, new_token
from coordinator.wire import limits

logger = logging.getLogger("coordinator")


DB_HELP = "SQLite file path or postgresql:// URL (default: boruta.db here)"
NO_DB = "none is configured (--db PATH|URL, or db in the --config file)"
# Beyond lease_grace: how long a coordinator that took over waits for the tunnel range of
# one on this host that is still stepping down (docs/failover.md §tunnel range claim).
STEP_DOWN: Final = 15.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boruta-coordinator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    parser.add_argument("--db", metavar="PATH|URL", help=DB_HELP)
    # Also after any sub-command (`serve --db PATH`); SUPPRESS keeps a value given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help="TOML settings"
    )
    common.add_argument("--db", metavar="PATH|URL", default=argparse.SUPPRESS, help=DB_HELP)
    sub = _Commands(parser.add_subparsers(dest="command", required=True), common)

    serve = sub.add_parser("serve", help="run the coordinator")
    serve.add_argument("--http", help="HOST:PORT of the HTTP API (default 127.0.0.1:8487)")
    serve.add_argument(
        "--link", help='HOST:PORT the dryads dial over SSH (default 127.0.0.1:7175; "" = off)'
    )
    serve.add_argument(
        "--scheduling",
        choices=("fifo", "fair"),
        help="order within a priority: fifo (the original's) or fair (least usage first)",
    )

    sub.add_parser("migrate", help="bring the database schema up to date")
    sub.add_parser(
        "serving",
        help="say whether a coordinator serves the database, and which (exit 3: none)",
    )

    user = _Commands(
        sub.add_parser("user", help="manage API users").add_subparsers(
            dest="action", required=True
        ),
        common,
    )
    add = user.add_parser("add", help="create a user and print its token (last line)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may manage workers")
    add.add_argument("--groups", default="", help="comma-separated groups")
    token = user.add_parser("token", help="replace a user's token and print the new one")
    token.add_argument("name")
    remove = user.add_parser("remove", help="delete a user; its token stops working")
    remove.add_argument("name")
    user.add_parser("list", help="list users")

    enrol = _Commands(
        sub.add_parser(
            "enrol-token",
            help="manage the tokens that let new dryads enrol",
            description="A dryad that connects with an unknown key presents an enrolment token "
            "once; its worker UUID is then bound to its key for good. A token stays valid for "
            "any number of dryads until it expires or is revoked, so one seed file can enrol "
            "a whole batch of boards.",
        ).add_subparsers(dest="action", required=True),
        common,
    )
    create = enrol.add_parser(
        "create",
        help="make a token and print it (last line); reusable by any number of dryads "
        "until it expires",
    )
    create.add_argument(
        "--ttl",
        type=_positive,
        default=86400,
        metavar="SECONDS",
        help="seconds the token stays valid (default 86400, one day)",
    )
    enrol.add_parser("revoke", help="revoke every enrolment token (enrolled dryads stay)")
    return parser


class _Commands:
    """Sub-parsers that take the common options too; groups (``user``) pass none down."""

    def __init__(
        self,
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser,
    ) -> None:
        self.group, self.common = group, common

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        leaf = name not in ("user", "enrol-token")
        return self.group.add_parser(name, parents=[self.common] if leaf else [], **kw)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load(
            args.config,
            db=args.db,
            http=getattr(args, "http", None),
            link=getattr(args, "link", None),
            scheduling=getattr(args, "scheduling", None),
        )
    except SettingsError as exc:
        print(f"boruta-coordinator: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        if args.command == "serve":
            return _serve(settings)
        if (refused := _default_database(settings.db, args)) is not None:
            return refused
        store = SqlStore.open(settings.db, sqlite_sync=settings.sqlite_sync)  # type: ignore[arg-type]
        try:
            store.migrate()
            where = str(Path(settings.db).resolve()) if "://" not in settings.db else store.url
            if args.command == "user":
                return _user(store, args, where)
            if args.command == "enrol-token":
                return _enrol_token(store, args, where)
            if args.command == "serving":
                return _serving(store, where)
            print(f"database {where} is up to date")
            return 0
        finally:
            store.close()
    except BorutaError as exc:
        print(f"boruta-coordinator: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, say while standing by: no traceback
        return 130


def _default_database(db: str, args: Any) -> int | None:
    """With no database configured, the default file in the current directory is used:
    say so (on stderr, the token stays the last line of stdout), and refuse to make a new
    empty one for a command that only reads or changes what is there."""
    if args.db is not None or db != Settings().db or "://" in db:
        return None
    path = Path(db).resolve()
    creates = args.command == "migrate" or (args.command, getattr(args, "action", "")) in (
        ("user", "add"),
        ("enrol-token", "create"),
    )
    if path.exists():
        print(f"boruta-coordinator: using {path}: {NO_DB}", file=sys.stderr)
    elif creates:
        print(f"boruta-coordinator: creating a new database {path}: {NO_DB}", file=sys.stderr)
    else:
        print(f"boruta-coordinator: no database at {path}: {NO_DB}", file=sys.stderr)
        return 2
    return None


def _user(store: SqlStore, args: Any, where: str) -> int:
    if args.action == "add":
        groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
        try:  # argv bytes that are not UTF-8 arrive as lone surrogates (surrogateescape)
            limits.user_name(args.name)
            limits.count(len(groups), "groups", limits.MAX_GROUPS)
            for group in groups:
                limits.name(group, "group name")
        except limits.TextRefused as exc:
            print(f"boruta-coordinator: {exc}", file=sys.stderr)
            return 2
        token = new_token()
        store.add_user(User(args.name, args.admin, groups), hash_token(token))
        role = "admin" if args.admin else "user"
        print(
            f"created {role} {args.name} (groups: {', '.join(groups) or 'none'}) in "
            f"database {where}; token:"
        )
        print(token)
    elif args.action == "token":
        token = new_token()
        store.set_token(args.name, hash_token(token))
        print(f"new token for {args.name} in database {where} (the old one no longer works):")
        print(token)
    elif args.action == "remove":
        store.remove_user(args.name)
        print(f"removed {args.name} from database {where}")
    else:
        for user in store.users():
            role = "admin" if user.admin else "user"
            print(f"{user.name}\t{role}\t{','.join(user.groups)}")
    return 0


def _enrol_token(store: SqlStore, args: Any, where: str) -> int:
    if args.action == "create":
        token = new_token()
        expires = datetime.now(UTC) + timedelta(seconds=args.ttl)
        store.add_enrol_token(hash_token(token), expires)
        print(
            f"enrolment token in database {where}, valid until "
            f"{expires.isoformat(timespec='seconds')} for any number of dryads:"
        )
        print(token)
    else:
        print(f"revoked {store.revoke_enrol_tokens()} enrolment token(s) in database {where}")
    return 0


def _serving(store: SqlStore, where: str) -> int:
    now = store.who_serves()
    epoch = f" (epoch {now.epoch})" if now.epoch else ""
    if now.served:
        # Where the followers forward to (docs/failover.md §scale-out), once it fenced.
        at = f"; its API for the others: {now.peer_url}" if now.peer_url else ""
        print(f"{now.holder or 'a coordinator'} serves {where}{epoch}{at}")
        return 0
    last = f"; the last one was {now.holder}{epoch}" if now.holder else ""
    print(f"no coordinator serves {where}{last}")
    return 3


def _serve(settings: Settings) -> int:
    """Serve until a signal; on PostgreSQL, stand by while another coordinator serves, and
    stand by again if this one loses the database to another (docs/failover.md §standby)."""
    from coordinator.assembly import Parts, assemble
    from coordinator.httpd.server import serve
    from coordinator.link.peerclient import PeerClient
    from coordinator.store.serving import DatabaseClock

    store = SqlStore.open(settings.db, sqlite_sync=settings.sqlite_sync)  # type: ignore[arg-type]
    first = True
    try:
        while True:
            waited = _claim(store, settings, first)
            if waited is None:
                return 0  # stopped while following
            took_over = waited or not first
            wait = settings.lease_grace + STEP_DOWN if took_over else 0.0
            with _tunnel_range(settings, wait):
                parts = Parts(store=store, clock=DatabaseClock(store.clock_offset))
                if store.sqlite_path is None:  # followers may hold dryad links
                    # The secret is read when first needed: the migration makes it.
                    parts.peers = PeerClient(read_secret=store.peer_secret)
                coordinator = assemble(settings, parts)
                # Followers exist only on PostgreSQL: a lone SQLite coordinator's requests
                # skip the peer gate's look at every request's headers.
                peers = store.peer_secret if store.sqlite_path is None else None
                lost = serve(coordinator, settings, store.lease, peer_secret=peers)
            if not lost:
                return 0
            store.release_serving()
            logger.warning("standing by for %s", store.url)
            first = False
    finally:
        store.close()


def _claim(store: SqlStore, settings: Settings, first: bool) -> bool | None:
    """Take the serving lock; on PostgreSQL, while another coordinator serves, follow it
    (serve the API by forwarding it there: docs/failover.md §scale-out), saying so once.
    Whether it waited (then this coordinator takes over from another); None when a
    signal stopped it meanwhile.

    :param first: at start, a database that cannot be reached is an error, not a wait.
    """
    from coordinator.httpd.follower import Standby, follow

    holder, peer_url = _holder(settings), settings.peer_address
    if first:
        try:
            store.claim_serving(holder, peer_url)
            return False
        except ServingTaken:
            if store.sqlite_path is not None:
                raise  # a SQLite file has one coordinator, and no standby
    standby = Standby(store, holder, peer_url)
    if standby.attempt():
        return False  # nobody else served: nothing to say
    if not follow(store, standby, settings):
        return None
    return True


def _tunnel_range(settings: Settings, wait: float) -> AbstractContextManager[Any]:
    """Claim the tunnel range on this host while serving, when this coordinator binds
    tunnel ports (docs/failover.md §tunnel range claim). ``wait``: for one stepping down.

    :raises TunnelUnavailable: when another coordinator here has an overlapping range.
    """
    from coordinator.assembly import binds_tunnel_ports
    from coordinator.tunnels.claim import claim

    if not binds_tunnel_ports(settings):
        return nullcontext()  # tunnel_mode "none", or no link to carry tunnels: no ports
    return claim(settings.tunnel_port_range, settings.tunnel_bind_host, wait)


def _holder(settings: Settings) -> str:
    """How a standby's message names this coordinator."""
    host = settings.public_host or socket.gethostname()
    return f"coordinator {host} (HTTP port {settings.http_port}, pid {os.getpid()})"
