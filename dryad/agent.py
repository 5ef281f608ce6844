"""The agent: serves the coordinator's calls and sends it buttons, health and failures."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from coordinator import wire
from dryad.errors import HealthcheckFailed, JobUserError, LinkError
from dryad.states import LinkState, WorkerState
from hardware import HardwareError

logger = logging.getLogger(__name__)

PANEL_INTERVAL = 0.25  # seconds between panel reports: a blink must not flood the link

P = TypeVar("P", bound=wire.Message)
R = TypeVar("R", bound="wire.Message | None")


class Sender(Protocol):
    """The link as the agent sees it (``dryad.link.Link``)."""

    @property
    def connected(self) -> bool: ...
    async def call(self, method: wire.Method[P, R], params: P) -> R: ...
    async def notify(self, method: wire.Method[P, Any], params: P) -> None: ...


class PanelLike(Protocol):
    """What the agent needs of ``dryad.panel.Panel``."""

    async def show(self, view: wire.Display) -> None: ...
    async def disconnected(self, coordinator: str) -> None: ...
    async def refused(self, coordinator: str) -> None: ...
    async def identify(self, seconds: float) -> None: ...


@runtime_checkable
class ReportingPanel(Protocol):
    """A panel that tells what it draws (``dryad.panel.Panel``); the agent mirrors it."""

    def watch(self, callback: Callable[[], None]) -> None: ...
    def report(self) -> wire.Panel: ...


class JobUsersLike(Protocol):
    """What the agent needs of ``dryad.users.JobUsers``."""

    async def prepare(self, public_key: str) -> None: ...
    async def release(self) -> None: ...


class DialBacksLike(Protocol):
    """What the agent needs of ``dryad.dialback.DialBacks``."""

    async def dial_back(self, params: wire.DialBack) -> wire.DialedBack: ...


class HealthLike(Protocol):
    """What the agent needs of ``dryad.health.Health``."""

    async def check(self) -> wire.HealthReport: ...


class Agent:
    """Serves the coordinator's calls with the panel, the job user and the healthchecks.

    ``handle`` is the link's handler (dispatching from the table to ``HANDLERS``);
    ``link_state`` its state hook; ``report_health`` what the scheduled healthchecks
    report to; ``run`` forwards button presses and, for a panel that reports what it
    draws, sends each change as a ``panel`` notification (at most one per
    ``PANEL_INTERVAL``, the newest; again on every reconnection). The coordinator turns
    a refused ``prepare`` or ``release`` into FAIL with its message.
    """

    def __init__(
        self,
        link: Sender,
        panel: PanelLike,
        users: JobUsersLike,
        health: HealthLike,
        *,
        coordinator: str | Callable[[], str],
        presses: MemoryObjectReceiveStream[int] | None = None,
        dialbacks: DialBacksLike | None = None,
    ) -> None:
        self._link = link
        self._panel = panel
        self._users = users
        self._health = health
        # A function: the coordinator linked now, or last dialled (docs/failover.md).
        self._coordinator = coordinator if callable(coordinator) else (lambda: coordinator)
        self._presses = presses
        self._dialbacks = dialbacks
        self._user_lock = anyio.Lock()  # one job-user operation at a time
        self._view: wire.Display | None = None  # the coordinator's last word for the panel
        self._unsent: wire.HealthReport | None = None
        self._panel_dirty = anyio.Event()  # set when the panel changed since the last report
        self._job_end: list[Callable[[], Awaitable[None]]] = []  # see on_job_end
        self._reporting = panel if isinstance(panel, ReportingPanel) else None
        if self._reporting is not None:
            self._reporting.watch(self._panel_changed)

    def on_job_end(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Call ``hook`` whenever a job's user is removed (prepare for the next, release)."""
        self._job_end.append(hook)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Forward button presses and panel reports to the coordinator until cancelled."""
        async with anyio.create_task_group() as tg:
            if self._reporting is not None:
                tg.start_soon(self._report_panel, self._reporting)
            task_status.started()
            await self._forward_buttons()
            await anyio.sleep_forever()  # a board without buttons runs until told to stop

    # ---- the coordinator's calls ----------------------------------------------------------

    async def handle(self, method: str, params: dict[str, Any]) -> Any:
        """Serve one call; ``wire.WireError`` becomes INVALID_PARAMS in the peer."""
        return await HANDLERS.dispatch(self, method, params)

    async def _prepare(self, params: wire.Prepare) -> None:
        async with self._user_lock:
            try:
                # Shielded: a link that drops mid-way must not leave half a user behind.
                with anyio.CancelScope(shield=True):
                    await self._end_job()
                    await self._users.prepare(params.public_key)
            except JobUserError as exc:
                logger.error("prepare failed: %s", exc)
                raise wire.RpcError(wire.REFUSED, f"prepare failed: {exc}") from exc
        logger.info("job user prepared for the next job")

    async def _release(self, _: wire.Empty) -> None:
        async with self._user_lock:
            try:
                with anyio.CancelScope(shield=True):
                    await self._end_job()
                    await self._users.release()
            except JobUserError as exc:
                logger.error("release failed: %s", exc)
                raise wire.RpcError(wire.REFUSED, f"release failed: {exc}") from exc
        logger.info("job user released")

    async def _end_job(self) -> None:
        for hook in self._job_end:
            await hook()

    async def _show(self, view: wire.Display) -> None:
        self._view = view
        await self._panel.show(view)

    async def _maintenance(self, note: wire.MaintenanceMessage) -> None:
        await self._show(wire.Display.for_maintenance(note))

    async def _healthcheck(self, _: wire.Empty) -> wire.HealthReport:
        try:
            return await self._health.check()
        except HealthcheckFailed as exc:
            raise wire.RpcError(wire.REFUSED, f"healthcheck could not run: {exc}") from exc

    async def _identify(self, params: wire.Identify) -> None:
        # The panel blinks in its own task group, so the admin's call is answered at once.
        await self._panel.identify(params.seconds)

    async def _dial_back(self, params: wire.DialBack) -> wire.DialedBack:
        if self._dialbacks is None:  # the coordinator carries the tunnel over the link
            return wire.DialedBack(False, "this dryad does not dial back")
        return await self._dialbacks.dial_back(params)

    # ---- the link's state -----------------------------------------------------------------

    async def link_state(self, state: LinkState, detail: str) -> None:
        """Show the link's state on the panel; on connection, resend what is pending.

        On connection ``detail`` is the worker's state as registered: a board that has
        no word from the coordinator yet (just started: its boot screen) draws that state
        at once; the coordinator follows with the whole view (owner, reason). A board
        with a view keeps it: the coordinator's ``display`` may have overtaken the answer.
        """
        if state is LinkState.CONNECTED:
            # A restarted coordinator has forgotten our panel: it is in memory only there.
            self._panel_changed()
            registered = _worker_state(detail)
            if registered is not None and self._view is None:
                self._view = wire.Display(registered)
            if self._view is not None:
                await self._panel.show(self._view)  # replaces the "disconnected" screen
            if self._unsent is not None:
                await self.report_health(self._unsent)
        elif state is LinkState.DISCONNECTED:
            await self._panel.disconnected(self._coordinator())
        elif state in (LinkState.ENROLMENT_REFUSED, LinkState.NOT_ENROLLED):
            await self._panel.refused(self._coordinator())
        else:
            await self._panel.show(wire.Display(WorkerState.FAILED, reason=state.value))

    # ---- to the coordinator ---------------------------------------------------------------

    async def report_health(self, report: wire.HealthReport) -> None:
        """Send a scheduled health report; one made while away is sent on reconnection."""
        self._unsent = report
        try:
            await self._link.call(wire.HEALTH, report)
        except (LinkError, TimeoutError) as exc:
            logger.info("health report kept for later: %s", exc)
            return
        except (wire.RpcError, wire.WireError) as exc:  # delivered; resending would not help
            logger.warning("coordinator refused the health report: %s", exc)
        if self._unsent is report:
            self._unsent = None
        for check in report.failed_critical:
            logger.warning("healthcheck %s failed: %s", check.name, check.detail)

    async def set_fail(self, reason: str) -> None:
        """Tell the coordinator this board cannot serve (it FAILs the worker)."""
        logger.error("reporting failure: %s", reason)
        try:
            # The coordinator refuses a reason over its limit; clipped, the failure still lands.
            clipped = wire.limits.clip(reason, wire.limits.MAX_TEXT)
            await self._link.call(wire.SET_FAIL, wire.SetFail(clipped))
        except (LinkError, TimeoutError, wire.RpcError, wire.WireError) as exc:
            logger.warning("failure not delivered: %s", exc)

    async def _report_panel(self, panel: ReportingPanel) -> None:
        # Debounced: the newest panel is read when sending, so a burst costs one report.
        while True:
            await self._panel_dirty.wait()
            self._panel_dirty = anyio.Event()
            await self.send_panel(panel)
            await anyio.sleep(PANEL_INTERVAL)

    def _panel_changed(self) -> None:
        self._panel_dirty.set()

    async def send_panel(self, panel: ReportingPanel) -> None:
        """Send what ``panel`` shows now; dropped while the link is down (sent on return)."""
        if not self._link.connected:
            return
        try:
            await self._link.notify(wire.PANEL, panel.report())
        except LinkError as exc:
            logger.debug("panel not reported: %s", exc)

    async def _forward_buttons(self) -> None:
        if self._presses is None:
            return
        try:
            async with self._presses:
                async for button in self._presses:
                    await self._button(button)
        except HardwareError as exc:
            await self.set_fail(f"STM lost: {exc}")

    async def _button(self, button: int) -> None:
        logger.info("button %d pressed", button)
        try:
            await self._link.notify(wire.BUTTON, wire.Button(button))
        except LinkError as exc:
            logger.info("button %d not forwarded: %s", button, exc)


def _worker_state(text: str) -> WorkerState | None:
    try:
        return WorkerState(text)
    except ValueError:
        return None


# The coordinator's calls, one handler per row of the table that comes to the dryad.
HANDLERS: Final = wire.Handlers[Agent](wire.Direction.TO_DRYAD)
HANDLERS.on(wire.PREPARE, Agent._prepare)
HANDLERS.on(wire.RELEASE, Agent._release)
HANDLERS.on(wire.MAINTENANCE, Agent._maintenance)
HANDLERS.on(wire.HEALTHCHECK, Agent._healthcheck)
HANDLERS.on(wire.IDENTIFY, Agent._identify)
HANDLERS.on(wire.DISPLAY, Agent._show)
HANDLERS.on(wire.DIAL_BACK, Agent._dial_back)
