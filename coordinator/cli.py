"""``boruta-coordinator``: serve the API and the dryad link, migrate the database, manage users,
their tokens and the dryads' enrolment tokens."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coordinator import __version__
from coordinator.domain.model import User
from coordinator.errors import BorutaError
from coordinator.settings import Settings, SettingsError, load
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token, new_token
from coordinator.wire import limits

logger = logging.getLogger("coordinator")

READY = "coordinator ready on http://%s:%d"  # the e2e tests and scripts wait for this line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boruta-coordinator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--db", help="SQLite file path or postgresql:// URL")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the coordinator")
    serve.add_argument("--http", help="HOST:PORT of the HTTP API (default 127.0.0.1:8487)")
    serve.add_argument(
        "--link", help='HOST:PORT the dryads dial over SSH (default 127.0.0.1:7175; "" = off)'
    )

    sub.add_parser("migrate", help="bring the database schema up to date")

    user = sub.add_parser("user", help="manage API users").add_subparsers(
        dest="action", required=True
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

    enrol = sub.add_parser(
        "enrol-token",
        help="manage the tokens that let new dryads enrol",
        description="A dryad that connects with an unknown key presents an enrolment token "
        "once; its worker UUID is then bound to its key for good. A token stays valid for "
        "any number of dryads until it expires or is revoked, so one seed file can enrol "
        "a whole batch of boards.",
    ).add_subparsers(dest="action", required=True)
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
        )
    except SettingsError as exc:
        print(f"boruta-coordinator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step
    # asyncssh logs every connection and channel at INFO; the link logs what matters itself.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return _serve(settings)
        store = SqlStore.open(settings.db, sqlite_sync=settings.sqlite_sync)  # type: ignore[arg-type]
        try:
            store.migrate()
            if args.command == "user":
                return _user(store, args)
            if args.command == "enrol-token":
                return _enrol_token(store, args)
            print(f"database {settings.db} is up to date")
            return 0
        finally:
            store.close()
    except BorutaError as exc:
        print(f"boruta-coordinator: {exc.message}", file=sys.stderr)
        return 1


def _user(store: SqlStore, args: Any) -> int:
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
        print(f"created {role} {args.name} (groups: {', '.join(groups) or 'none'}); token:")
        print(token)
    elif args.action == "token":
        token = new_token()
        store.set_token(args.name, hash_token(token))
        print(f"new token for {args.name} (the old one no longer works):")
        print(token)
    elif args.action == "remove":
        store.remove_user(args.name)
        print(f"removed {args.name}")
    else:
        for user in store.users():
            role = "admin" if user.admin else "user"
            print(f"{user.name}\t{role}\t{','.join(user.groups)}")
    return 0


def _enrol_token(store: SqlStore, args: Any) -> int:
    if args.action == "create":
        token = new_token()
        expires = datetime.now(UTC) + timedelta(seconds=args.ttl)
        store.add_enrol_token(hash_token(token), expires)
        print(
            f"enrolment token, valid until {expires.isoformat(timespec='seconds')} for any "
            "number of dryads:"
        )
        print(token)
    else:
        print(f"revoked {store.revoke_enrol_tokens()} enrolment token(s)")
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from coordinator.assembly import Parts, assemble

    store = SqlStore.open(settings.db, sqlite_sync=settings.sqlite_sync)  # type: ignore[arg-type]
    try:
        store.claim_serving()
    except BaseException:
        store.close()
        raise
    coordinator = assemble(settings, Parts(store=store))
    app = coordinator.app

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                logger.info(READY, host, port)

        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn waits for open responses before the lifespan ends; an event stream
            # never ends by itself, so end them all, or SIGTERM would hang on a dashboard.
            coordinator.events.close()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        log_level=settings.log_level.lower(),
        access_log=False,
        server_header=False,
    )
    try:
        asyncio.run(Server(config).serve())
    finally:
        store.close()
    return 0
