"""The ``dryad`` command: load the settings, open the board, run the dryad until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from dryad import __version__
from dryad.agent import Agent
from dryad.control import ControlServer
from dryad.errors import ConfigError, DryadError
from dryad.health import Health, HealthSettings
from dryad.identity import Identity
from dryad.link import Backoff, Link
from dryad.panel import Panel
from dryad.settings import DEFAULT_CONFIG, PROFILE_NAMES, Settings, load
from dryad.sim_users import SimJobUsers, job_users, with_port
from dryad.users import JobUsers
from hardware import BoardSettings, HardwareError, open_board

logger = logging.getLogger("dryad")

EXIT_CONFIG = 2  # as argparse uses for bad arguments
EXIT_HARDWARE = 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # asyncssh logs every packet exchange at INFO; the link logs what matters itself.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    # apscheduler logs every scheduled run at INFO; a board running for months needs less.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
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
    try:
        anyio.run(run, settings, identity, users, backend="asyncio")
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 0
    except (HardwareError, DryadError, BaseExceptionGroup) as exc:
        leaf = _first(exc)
        if not isinstance(leaf, HardwareError | DryadError):
            raise  # a bug: its traceback is what a developer needs
        # Missing hardware or a busy port: people need the reason, not a traceback.
        print(f"dryad: {leaf}", file=sys.stderr)
        return EXIT_HARDWARE
    return 0


def board_settings(settings: Settings) -> BoardSettings:
    """The hardware settings of the configured profile."""
    return BoardSettings(
        stm_port=settings.stm.port,
        generic=settings.generic,
        state_file=settings.sim.state_file,
        png_file=settings.sim.png_file,
    )


def health_settings(settings: Settings) -> HealthSettings:
    """The healthchecks' settings: the [health] table, watching the state directory."""
    return settings.health


async def run(
    settings: Settings,
    identity: Identity,
    users: JobUsers | SimJobUsers,
    *,
    backoff: Backoff | None = None,
) -> None:
    """Run the dryad until SIGTERM or SIGINT: board, panel, health, agent and link."""
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
        link = Link(settings, identity, backoff=backoff or Backoff())
        agent = Agent(
            link,
            panel,
            users,
            health,
            coordinator=settings.coordinator,
            presses=board.stm.presses() if board.stm is not None else None,
        )
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
                await tg.start(link.run, agent.handle, agent.link_state)
        finally:
            await panel.aclose()
    logger.info("dryad stopped")


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("%s received; stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dryad", description="The Boruta agent on a MuxPi board: dials the coordinator."
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"TOML configuration (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--profile", choices=PROFILE_NAMES, help="board profile, overriding the configuration"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default INFO)",
    )
    parser.add_argument("--version", action="version", version=f"dryad {__version__}")
    return parser
