"""The ``boruta`` command line's grammar (argparse only, so that help and completion are fast)."""

from __future__ import annotations

import argparse
import re

from coordinator.domain.ids import HI_PRIO, LO_PRIO
from coordinator.domain.model import KeyType
from coordinator.domain.states import RequestState

EPILOG = """\
configuration: url and token come from ~/.config/boruta/config.toml
(url = "http://host:8487", token = "brt_..."; keep it private: chmod 600), then
BORUTA_URL / BORUTA_TOKEN, then --url / --token (each overrides the one before).
An admin makes a token with `boruta-coordinator user add NAME` on the server.

exit codes: 0 ok; 1 the coordinator refused (its message is shown) or a reserved
request ended without a worker; 2 usage or configuration error; 3 the coordinator
cannot be reached; 4 authentication or permission refused; 130 interrupted.

users: the API has no user management; admins manage users on the coordinator's
host with `boruta-coordinator user add|token|remove|list`."""


# The --state words: each state's wire text in lower case, its space as a hyphen.
STATE_WORDS = {state.value.lower().replace(" ", "-"): state for state in RequestState}


def priority(text: str) -> int:
    """A priority argument: a whole number 1..16 (1 is served first)."""
    # ASCII digits only: int() would also take "1_6", "+3" and other scripts' digits.
    digits = text.strip()
    value = int(digits) if re.fullmatch(r"[0-9]{1,4}", digits) else 0
    if not HI_PRIO <= value <= LO_PRIO:
        raise argparse.ArgumentTypeError(
            f"priority must be {HI_PRIO}..{LO_PRIO} ({HI_PRIO} is served first), not {text!r}"
        )
    return value


def request_state(text: str) -> RequestState:
    """A --state argument: a request state in any case, ``in-progress`` also as
    ``in_progress`` or ``"in progress"``."""
    word = "-".join(text.strip().lower().replace("_", " ").split())
    if word not in STATE_WORDS:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r}; one of: {', '.join(STATE_WORDS)}"
        )
    return STATE_WORDS[word]


def _common(admin: bool = False) -> argparse.ArgumentParser:
    """Options accepted after any sub-command too; SUPPRESS keeps the top-level value."""
    common = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    common.add_argument("--url", default=s, help="coordinator URL (default http://127.0.0.1:8487)")
    common.add_argument("--token", default=s, help="API token (better: config file or env)")
    common.add_argument("--config", default=s, help="config file to read instead of the default")
    common.add_argument("--json", action="store_true", default=s, help="machine-readable output")
    return common


def build() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="boruta",
        description="Reserve boards of a Boruta farm and manage its requests and workers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--url", help="coordinator URL (default http://127.0.0.1:8487)")
    parser.add_argument("--token", help="API token (better: the config file or BORUTA_TOKEN)")
    parser.add_argument("--config", help="config file instead of ~/.config/boruta/config.toml")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def leaf(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
    ) -> argparse.ArgumentParser:
        return group.add_parser(name, help=text, description=text, parents=[common])

    reserve = leaf(sub, "reserve", "request a board and wait for it (Ctrl-C cancels)")
    reserve.add_argument("--caps", required=True, help="capabilities: key=value[,key=value]")
    reserve.add_argument(
        "--priority",
        type=priority,
        metavar="1..16",
        help="1 is served first; default: the coordinator's",
    )
    reserve.add_argument("--deadline", help="give up waiting at this time or after +DURATION")
    reserve.add_argument(
        "--key-type",
        choices=[kind.value for kind in KeyType],
        default=KeyType.ED25519.value,
        help="the job's SSH key: ed25519 (default) or rsa (RSA-2048, as old clients get)",
    )
    how = reserve.add_mutually_exclusive_group()
    how.add_argument("--wait", action="store_true", help="wait and print the access details")
    how.add_argument("--ssh", action="store_true", help="wait, then open an SSH shell on it")

    reqs = sub.add_parser("requests", help="list, show, close, prolong, update requests")
    rsub = reqs.add_subparsers(dest="action", metavar="ACTION", required=True)
    rlist = leaf(rsub, "list", "list requests")
    rlist.add_argument(
        "--state",
        action="append",
        type=request_state,
        help=f"only requests in this state (repeatable): {', '.join(STATE_WORDS)}",
    )
    for name, text in (
        ("show", "show one request"),
        ("close", "cancel a waiting request or end a running job"),
        ("prolong", "move the job's end one period on"),
    ):
        leaf(rsub, name, text).add_argument("id", type=int)
    update = leaf(rsub, "update", "change a waiting request")
    update.add_argument("id", type=int)
    update.add_argument("--priority", type=priority, metavar="1..16", help="1 is served first")
    update.add_argument("--valid-after", help="RFC 3339 time or +DURATION (e.g. +30m)")
    update.add_argument("--deadline", help="RFC 3339 time or +DURATION (e.g. +4h)")

    workers = sub.add_parser("workers", help="list and show workers")
    wsub = workers.add_subparsers(dest="action", metavar="ACTION", required=True)
    wlist = leaf(wsub, "list", "list workers")
    wlist.add_argument("--group", action="append", help="in any of these groups (repeatable)")
    wlist.add_argument("--caps", help="with these capabilities: key=value[,key=value]")
    leaf(wsub, "show", "show one worker").add_argument("uuid")

    admin = sub.add_parser("admin", help="manage workers (admins only)")
    asub = admin.add_subparsers(dest="action", metavar="ACTION", required=True)
    setstate = leaf(asub, "setstate", "put a worker in service (idle) or take it out")
    setstate.add_argument("uuid")
    setstate.add_argument("state", choices=["idle", "maintenance"])
    setgroups = leaf(asub, "setgroups", "replace a worker's groups")
    setgroups.add_argument("uuid")
    setgroups.add_argument("groups", nargs="*", help="groups (none: no groups)")
    leaf(asub, "deregister", "remove a worker in MAINTENANCE or FAILED").add_argument("uuid")
    identify = leaf(asub, "identify", "blink the board so it can be found in the rack")
    identify.add_argument("uuid")
    identify.add_argument("--seconds", type=float, default=30.0)
    leaf(asub, "healthcheck", "run the worker's healthchecks now").add_argument("uuid")
    quota = asub.add_parser("quota", help="set, remove or list quotas of users and groups")
    qsub = quota.add_subparsers(dest="quota_action", metavar="ACTION", required=True)
    leaf(qsub, "list", "list every quota")
    for name, text in (("set", "set (replace) a quota"), ("remove", "remove a quota")):
        q = leaf(qsub, name, text)
        who = q.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="a user's own quota (wins over its groups')")
        who.add_argument("--group", help="a quota for each member of a group")
        if name == "set":
            q.add_argument("--max-held", type=int, help="boards held at once (unset: no limit)")
            q.add_argument("--max-waiting", type=int, help="requests waiting at once")
            q.add_argument("--max-job", help="longest job with prolongs: 7200, 2h, 1d")
    sched = leaf(asub, "scheduling", "show or switch the order within a priority")
    sched.add_argument("policy", nargs="?", choices=["fifo", "fair"])
    sched.add_argument("--half-life", help="usage half-life: 86400, 12h, 1d")

    leaf(sub, "usage", "every user's recent board usage, holds, waiting requests and limits")

    leaf(sub, "ssh-config", "print an OpenSSH Host block for a running request").add_argument(
        "id", type=int
    )
    sub.add_parser(
        "users",
        help="not in the API: use `boruta-coordinator user …` on the server",
        description="The API has no user management. On the coordinator's host: "
        "boruta-coordinator user add NAME [--admin] [--groups a,b] | token NAME | "
        "remove NAME | list",
    )
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])
    return parser
