"""The ``dryad`` command: load the settings, open the board, run the dryad until stopped;
``dryad selftest`` exercises the board's parts instead."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import anyio

from dryad import __version__
from dryad.agent import Agent
from dryad.control import ControlServer
from dryad.dialback import DialBacks
from dryad.errors import ConfigError, DryadError
from dryad.health import Health, HealthSettings
from dryad.host_keys import read as read_host_keys
from dryad.identity import Identity
from dryad.link import Backoff, Link
from dryad.panel import Panel
from dryad.settings import DEFAULT_CONFIG, PROFILE_NAMES, Settings, load
from dryad.sim_users import SimJobUsers, job_users, with_port
from dryad.states import LinkState
from dryad.systemd import Notifier
from dryad.users import JobUsers
from hardware import BoardSettings, HardwareError, open_board

logger = logging.getLogger("dryad")

EXIT_CONFIG = 2  # as argparse uses for bad arguments
EXIT_HARDWARE = 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # asyncssh logs every packet exchange at INFO; the link logs what matters itself.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    # apscheduler logs every scheduled run at INFO; a board running for months needs less.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if args.command == "selftest":
        return _selftest(args)
    try:
        settings = load(args.config)
        if args.profile is not None:
            settings = settings.with_profile(args.profile)
        identity = Identity.load(settings.state_dir)
        users = job_users(settings)
        settings = with_port(settings, users)
    except ConfigError as exc:
        print(f"dryad: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    notifier = Notifier.from_environ()
    try:
        anyio.run(partial(run, settings, identity, users, notifier=notifier), backend="asyncio")
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 0
    except (HardwareError, DryadError, BaseExceptionGroup) as exc:
        return _hardware_failure(exc)
    finally:
        notifier.close()
    return 0


def _hardware_failure(exc: BaseException) -> int:
    leaf = _first(exc)
    if not isinstance(leaf, HardwareError | DryadError):
        raise exc  # a bug: its traceback is what a developer needs
    # Missing hardware or a busy port: people need the reason, not a traceback.
    print(f"dryad: {leaf}", file=sys.stderr)
    return EXIT_HARDWARE


def _selftest(args: argparse.Namespace) -> int:
    # Imported here: the running dryad needs none of it (and PIL's drawing stays out).
    from dryad.selftest import run_selftest

    try:
        settings = load(args.config)
        if args.profile is not None:
            settings = settings.with_profile(args.profile)
    except ConfigError as exc:
        print(f"dryad: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return anyio.run(
            partial(
                run_selftest,
                settings,
                board_settings(settings),
                button=not args.no_button,
                button_timeout=args.button_timeout,
                report=args.report,
                led_show=args.show,
            ),
            backend="asyncio",
        )
    except (HardwareError, DryadError, BaseExceptionGroup) as exc:
        return _hardware_failure(exc)


def board_settings(settings: Settings) -> BoardSettings:
    """The hardware settings of the configured profile."""
    return BoardSettings(
        stm_port=settings.stm.port,
        generic=settings.generic,
        state_file=settings.sim.state_file,
        png_file=settings.sim.png_file,
    )


def host_keys(settings: Settings, users: JobUsers | SimJobUsers) -> Callable[[], tuple[str, ...]]:
    """Where the board's sshd host keys come from: the simulated sshd's own key, or the
    files of ``sshd_host_keys`` (the system's OpenSSH, on a MuxPi or a generic board)."""
    if isinstance(users, SimJobUsers):
        return users.server.host_keys
    return partial(read_host_keys, settings.sshd_host_keys)


def health_settings(settings: Settings) -> HealthSettings:
    """The healthchecks' settings: the [health] table, watching the state directory."""
    return settings.health


async def run(
    settings: Settings,
    identity: Identity,
    users: JobUsers | SimJobUsers,
    *,
    backoff: Backoff | None = None,
    notifier: Notifier | None = None,
) -> None:
    """Run the dryad until SIGTERM or SIGINT: board, panel, health, agent and link.

    Under systemd (``Type=notify``) it says READY=1 once every part runs, keeps the
    link's state in STATUS=, and feeds the watchdog from a task of the same event loop
    as the link and the agent, so a hung loop is restarted (docs/rack.md §the watchdog).
    """
    notifier = notifier or Notifier(None)
    logger.info(
        "dryad %s starting: worker %s, key %s, profile %s, coordinator %s",
        __version__,
        identity.uuid,
        identity.fingerprint,
        settings.profile,
        settings.coordinator,
    )
    async with open_board(settings.profile, board_settings(settings)) as board:
        panel = Panel(board.display, board.leds)
        health = Health(board, health_settings(settings))
        link = Link(
            settings, identity, backoff=backoff or Backoff(), host_keys=host_keys(settings, users)
        )
        sshd_port = int(settings.ssh_address.rpartition(":")[2])
        # Dial-backs go to the coordinator linked now, the one that asks for them.
        dialbacks = DialBacks(lambda: link.host, sshd_port)
        dialbacks.start()
        agent = Agent(
            link,
            panel,
            users,
            health,
            coordinator=lambda: link.coordinator,
            presses=board.stm.presses() if board.stm is not None else None,
            dialbacks=dialbacks,
        )
        agent.on_job_end(dialbacks.end_job)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, tg.cancel_scope)
                if isinstance(users, SimJobUsers):
                    await tg.start(users.run)
                await tg.start(panel.run)
                if board.stm is not None and settings.control.enabled:
                    user_socket, admin_socket = settings.control_sockets()
                    control = ControlServer(
                        board.stm, user_socket, admin_socket, settings.control.group
                    )
                    await tg.start(control.run)
                    agent.on_job_end(control.end_job)
                await tg.start(agent.run)
                await tg.start(health.run, agent.report_health)

                async def on_state(state: LinkState, detail: str) -> None:
                    notifier.status(_status(state, detail, link.coordinator))
                    await agent.link_state(state, detail)

                await tg.start(link.run, agent.handle, on_state)
                notifier.ready(f"dialling {settings.coordinator}")
                await tg.start(notifier.feed, lambda: link.running)
                logger.info("dryad ready (profile %s)", settings.profile)
        finally:
            notifier.stopping()
            dialbacks.stop()
            await panel.aclose()
    logger.info("dryad stopped")


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("%s received; stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def _status(state: LinkState, detail: str, coordinator: str) -> str:
    """The one line `systemctl status dryad` shows."""
    if state is LinkState.CONNECTED:
        return f"connected to {coordinator}"
    return (
        f"{state.value} ({coordinator}): {detail}" if detail else f"{state.value} ({coordinator})"
    )


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    # Defaults filled in here, not by set_defaults: the common options' actions are
    # shared with the sub-command, whose parse would then overwrite what came before.
    for name, default in (
        ("config", DEFAULT_CONFIG),
        ("profile", None),
        # The selftest's table is its output: the parts' INFO lines would only clutter it.
        ("log_level", "WARNING" if args.command == "selftest" else "INFO"),
    ):
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def _parser() -> argparse.ArgumentParser:
    # The common options are accepted before and after "selftest"; SUPPRESS keeps the
    # sub-command from resetting what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"TOML configuration (default {DEFAULT_CONFIG})",
    )
    common.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default=argparse.SUPPRESS,
        help="board profile, overriding the configuration",
    )
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default INFO; WARNING for selftest)",
    )
    parser = argparse.ArgumentParser(
        prog="dryad",
        description="The Boruta agent on a MuxPi board: dials the coordinator.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"dryad {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    selftest = commands.add_parser(
        "selftest",
        parents=[common],
        help="exercise every part of the board, print pass/fail, write a report",
        description="Exercise every fitted part of the board (stop the dryad service "
        "first: it owns the STM), print a pass/fail table and write a report file. "
        "Exit status 0 if nothing failed, 1 otherwise.",
    )
    selftest.add_argument(
        "--no-button", action="store_true", help="skip the button check (no one at the board)"
    )
    selftest.add_argument(
        "--button-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for a button press (default 30)",
    )
    selftest.add_argument(
        "--show",
        type=float,
        default=0.3,
        metavar="S",
        help="seconds each LED colour and the OLED pattern stay, to look at (default 0.3)",
    )
    selftest.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="where the report goes (default: selftest-HOST-TIME.txt in the state directory)",
    )
    return parser
