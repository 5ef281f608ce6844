"""The feed's events as JSON fields, for the edges that write them: the SSE stream, webhook
bodies, the history and the dashboard's panels."""

from __future__ import annotations

import base64
import json

from coordinator.boruta_json import format_time
from coordinator.feed.events import FeedEvent, State, TransitionEvent
from coordinator.feed.panels import PANEL_EVENT, PanelView


def state_text(state: State | None) -> str:
    """A state as the wire writes it; "" for none (the subject was created or removed)."""
    return "" if state is None else state.value


def transition_json(event: TransitionEvent) -> dict[str, object]:
    return {
        "id": event.id,
        "kind": event.kind,
        "subject": event.subject,
        "old": state_text(event.old),
        "new": state_text(event.new),
        "reason": event.reason,
        "actor": event.actor,
        "at": format_time(event.at),
    }


def panel_json(view: PanelView) -> dict[str, object]:
    """``{"worker", "screen": base64 PNG, "leds": [[r,g,b],[r,g,b]], "at"}``."""
    return {
        "worker": view.worker,
        "screen": base64.b64encode(view.png).decode(),
        "leds": [list(c) for c in view.leds],
        "at": format_time(view.at, millis=True),
    }


def event_name(event: FeedEvent) -> str:
    """``request``, ``worker`` or ``panel``: the SSE event name, the webhook's kind."""
    return PANEL_EVENT if isinstance(event, PanelView) else event.kind


def event_json(event: FeedEvent) -> dict[str, object]:
    return panel_json(event) if isinstance(event, PanelView) else transition_json(event)


def compact(data: object) -> str:
    """Compact JSON keeping non-ASCII as is: SSE data and webhook bodies have always been
    written so, without the ``<>&`` escapes of the API's Go-style bodies."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
