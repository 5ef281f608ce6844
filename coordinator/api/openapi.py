"""The OpenAPI document of API v1 and its extensions: every endpoint, parameter range and
status code the code answers, with the size limits a client may read.

A schema-driven fuzz run over every operation checks it against the app
(tests/coordinator/api/test_openapi_fuzz.py).
"""

from __future__ import annotations

from typing import Any, Final

from coordinator.api.openapi_schemas import (
    MAX_EVENT_ID,
    RID,
    UUID,
    error_response,
    ref,
    schemas,
)
from coordinator.boruta_json import SERVER_VERSION

_ERROR: Final = {"$ref": "#/components/responses/Error"}
MAX_HISTORY: Final = 10_000  # as coordinator.api.feed answers at most
JSON: Final = "application/json"


def _json(schema: str | dict[str, Any], description: str = "success") -> dict[str, Any]:
    body = ref(schema) if isinstance(schema, str) else schema
    return {"description": description, "content": {JSON: {"schema": body}}}


def _empty(description: str = "success") -> dict[str, Any]:
    return {"description": description}


def _op(
    summary: str,
    ok: dict[str, dict[str, Any]],
    errors: str,
    *,
    body: str | None = None,
    admin: bool = False,
    public: bool = False,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One operation: its success answers and the error statuses it can give (``errors``
    is a space-separated list; 401 is added unless ``public``, 413 and 415 with a body)."""
    statuses = set(errors.split())
    if not public:
        statuses.add("401")
    if body:
        statuses |= {"400", "413", "415"}
    if admin:
        statuses.add("403")
    operation: dict[str, Any] = {
        "summary": summary + (" (admin)" if admin else ""),
        "responses": {**ok, **dict.fromkeys(sorted(statuses), _ERROR)},
    }
    if public:
        operation["security"] = []
    if body:
        operation["requestBody"] = {"content": {JSON: {"schema": ref(body)}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or {"type": "string"},
        "description": description,
    }


def _whole(top: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": top}


def _headers(*names: str) -> dict[str, Any]:
    return {name: {"schema": {"type": "string"}} for name in names}


_LIST_HEADERS: Final = _headers(
    "Boruta-List-Batch-Size", "Boruta-List-Total", "Boruta-List-Remaining"
)


def openapi_document(max_wait: float = 600.0) -> dict[str, Any]:
    """A hand-kept description of API v1 and its additive extensions; ``max_wait`` is the
    coordinator's ``max_acquire_wait``."""
    rid = [_path("id", RID)]
    uuid = [_path("uuid", UUID)]
    listed = {"200": {**_json("ReqInfoList"), "headers": _LIST_HEADERS}}
    workers = {"200": {**_json("WorkerInfoList"), "headers": _LIST_HEADERS}}
    worker_list = _op("List workers", workers, "400 404", body="WorkersListSpec")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Boruta API", "version": f"v1 (server {SERVER_VERSION})"},
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/api/v1/version": {
                "get": _op("Server and API version", {"200": _json("Version")}, "", public=True),
                "head": _op("The version in headers", {"204": _empty()}, "", public=True),
            },
            "/api/v1/reqs/": {
                "post": _op(
                    "Create a request", {"201": _json("ReqID")}, "400 429 503", body="NewRequest"
                )
            },
            "/api/v1/reqs/list": {
                "post": _op("List requests", listed, "400 404", body="RequestsListSpec")
            },
            "/api/v1/reqs/{id}": {
                "parameters": rid,
                "get": _op("Get a request", {"200": _json("ReqInfo")}, "400 404"),
                "head": _op("A request's state in headers", {"204": _empty()}, "400 404"),
                "post": _op(
                    "Update a WAITING request",
                    {"204": _empty()},
                    "400 403 404 409 503",
                    body="RequestUpdate",
                ),
            },
            "/api/v1/reqs/{id}/close": {
                "parameters": rid,
                "post": _op("Close", {"204": _empty()}, "400 403 404 409 503"),
            },
            "/api/v1/reqs/{id}/prolong": {
                "parameters": rid,
                "post": _op("Prolong", {"204": _empty()}, "400 403 404 409 503"),
            },
            "/api/v1/reqs/{id}/acquire_worker": {
                "parameters": [
                    *rid,
                    _query(
                        "wait",
                        "seconds to wait for a match (ASCII decimal)",
                        {"type": "number", "minimum": 0, "maximum": max_wait},
                    ),
                ],
                "post": _op(
                    "SSH access to the request's worker",
                    {"200": _json("AccessInfo")},
                    "400 403 404 409 503",
                ),
            },
            "/api/v1/workers/": {"get": worker_list, "post": worker_list},
            "/api/v1/workers/list": {"post": worker_list},
            "/api/v1/workers/{uuid}": {
                "parameters": uuid,
                "get": _op("Get a worker", {"200": _json("WorkerInfo")}, "400 404"),
                "head": _op("A worker's state in headers", {"204": _empty()}, "400 404"),
            },
            "/api/v1/workers/{uuid}/hostkeys": {
                "parameters": uuid,
                "get": _op(
                    "The worker sshd's host keys the coordinator vouches for",
                    {"200": _json("HostKeys")},
                    "400 404",
                ),
            },
            "/api/v1/workers/{uuid}/setstate": {
                "parameters": uuid,
                "post": _op(
                    "Set IDLE or MAINTENANCE",
                    {"202": _json({"type": "null"})},
                    "400 404 409 503",
                    body="WorkerStatePack",
                    admin=True,
                ),
            },
            "/api/v1/workers/{uuid}/setgroups": {
                "parameters": uuid,
                "post": _op(
                    "Replace groups",
                    {"204": _empty()},
                    "400 404 409 503",
                    body="Groups",
                    admin=True,
                ),
            },
            "/api/v1/workers/{uuid}/deregister": {
                "parameters": uuid,
                "post": _op("Remove a worker", {"204": _empty()}, "400 404 409 503", admin=True),
            },
            "/api/v1/workers/{uuid}/identify": {
                "parameters": [
                    *uuid,
                    _query(
                        "seconds",
                        "how long the board blinks (default 30)",
                        {"type": "number", "minimum": 0, "maximum": 600},
                    ),
                ],
                "post": _op(
                    "Blink the board to find it in the rack",
                    {"204": _empty()},
                    "400 404 409 503",
                    admin=True,
                ),
            },
            "/api/v1/workers/{uuid}/healthcheck": {
                "parameters": uuid,
                "post": _op(
                    "Run the worker's healthchecks now",
                    {"200": _json("NullableHealth")},
                    "400 404 409 503",
                    admin=True,
                ),
            },
            "/api/v1/workers/{uuid}/panel": {
                "parameters": uuid,
                "get": _op("The board's panel as last seen", {"200": _json("Panel")}, "400 404"),
            },
            "/api/v1/workers/{uuid}/panel.png": {
                "parameters": uuid,
                "get": _op(
                    "The board's OLED as a PNG",
                    {"200": {"description": "success", "content": {"image/png": {}}}},
                    "400 404",
                ),
            },
            **_feed_paths(),
            **_scheduling_paths(),
            "/healthz": {
                "get": {
                    "summary": "Liveness and store check",
                    "security": [],
                    "responses": {
                        "200": _json("Healthz", "ok"),
                        "503": _json("Healthz", "store down"),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/": {"get": _dashboard("The dashboard", "text/html")},
            "/dashboard/{name}": {
                "parameters": [_path("name", {"type": "string"})],
                "get": {
                    **_dashboard("The dashboard's script and style", "text/javascript"),
                    "responses": {
                        "200": {"description": "a file", "content": {"text/javascript": {}}},
                        "404": _ERROR,
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user name and token, for the Go client",
                },
            },
            "responses": {"Error": error_response()},
            "schemas": {**schemas(), **_scheduling_schemas()},
        },
    }


def _dashboard(summary: str, media: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [],
        "responses": {"200": {"description": "the page", "content": {media: {}}}},
    }


def _feed_paths() -> dict[str, Any]:
    """Events, webhooks, history and metrics (additive to the original)."""
    hook = [_path("hook", _whole(MAX_EVENT_ID))]
    limit = _query("limit", f"most rows to answer, up to {MAX_HISTORY}", _whole(MAX_HISTORY))
    after = _query("after", "only those after this id", _whole(MAX_EVENT_ID))
    return {
        "/api/v1/events": {
            "get": _op(
                "Server-Sent Events: one per stored transition, then live ones",
                {"200": {"description": "an endless stream", "content": {"text/event-stream": {}}}},
                "400 503",
                parameters=[
                    _query("token", "the API token, for EventSource (this endpoint only)"),
                    _query("kinds", "comma-separated: request, worker, panel"),
                    _query("subject", "a request ID or worker UUID; repeatable"),
                    _query("states", "comma-separated; the old or the new state matches"),
                    {**after, "description": "replay stored events after this id"},
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": _whole(MAX_EVENT_ID),
                        "description": "as after=; sent by a reconnecting EventSource",
                    },
                ],
            )
        },
        "/api/v1/webhooks": {
            "get": _op(
                "List webhooks (never their secrets)",
                {"200": _json({"type": "array", "items": ref("Webhook")})},
                "503",
                admin=True,
                parameters=[
                    _query("all", "true: include deleted ones", {"type": "boolean"}),
                ],
            ),
            "post": _op(
                "Register a webhook",
                {"201": _json("WebhookID")},
                "400 503",
                body="NewWebhook",
                admin=True,
            ),
        },
        "/api/v1/webhooks/{hook}": {
            "parameters": hook,
            "delete": _op("Delete a webhook", {"204": _empty()}, "404 503", admin=True),
        },
        "/api/v1/webhooks/{hook}/deliveries": {
            "parameters": hook,
            "get": _op(
                "A webhook's deliveries",
                {"200": _json({"type": "array", "items": ref("Delivery")})},
                "400 404 503",
                admin=True,
                parameters=[limit],
            ),
        },
        "/api/v1/history": {
            "get": _op(
                "Recorded transitions with actor and reason, newest last",
                {"200": _json({"type": "array", "items": ref("Transition")})},
                "400 503",
                parameters=[
                    _query("subject", "a request ID or worker UUID; repeatable"),
                    _query("kind", "request or worker; repeatable"),
                    after,
                    limit,
                ],
            )
        },
        "/api/v1/history/jobs": {
            "get": _op(
                "Who held which board, when and for how long",
                {"200": _json({"type": "array", "items": ref("Job")})},
                "400 503",
                parameters=[_query("worker", "a worker UUID"), limit],
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (no token needed when metrics_public is set)",
                {"200": {"description": "success", "content": {"text/plain": {}}}},
                "",
            )
        },
    }


def _scheduling_paths() -> dict[str, Any]:
    """Who the caller is, quotas, usage and the scheduling policy (additive;
    docs/scheduling.md §endpoints)."""
    name = [
        _path("kind", {"enum": ["users", "groups"]}),
        _path("name", {"type": "string", "minLength": 1}),
    ]
    return {
        "/api/v1/whoami": {
            "get": _op(
                "The caller's user name, whether an admin, and groups",
                {"200": _json("WhoAmI")},
                "503",
            )
        },
        "/api/v1/quotas": {
            "get": _op(
                "Every quota of users and groups",
                {"200": _json({"type": "array", "items": ref("QuotaRow")})},
                "503",
            )
        },
        "/api/v1/quotas/{kind}/{name}": {
            "parameters": name,
            "put": _op(
                "Set a user's or a group's quota",
                {"204": _empty()},
                "404 503",
                body="Quota",
                admin=True,
            ),
            "delete": _op("Remove a quota", {"204": _empty()}, "400 404 503", admin=True),
        },
        "/api/v1/usage": {
            "get": _op(
                "Each user's decayed usage, holds, waiting and limits",
                {"200": _json("UsageReport")},
                "503",
            )
        },
        "/api/v1/scheduling": {
            "get": _op(
                "The scheduling policy and usage half-life in force",
                {"200": _json("Scheduling")},
                "503",
            ),
            "post": _op(
                "Switch the policy or half-life",
                {"200": _json("Scheduling")},
                "503",
                body="Scheduling",
                admin=True,
            ),
        },
    }


def _limit(least: int, most: int, what: str) -> dict[str, Any]:
    return {"type": ["integer", "null"], "minimum": least, "maximum": most, "description": what}


def _scheduling_schemas() -> dict[str, Any]:
    return {
        "WhoAmI": {
            "type": "object",
            "properties": {
                "Name": {"type": "string"},
                "Admin": {"type": "boolean"},
                "Groups": {"type": ["array", "null"], "items": {"type": "string"}},
            },
        },
        "QuotaRow": {
            "type": "object",
            "properties": {
                "Kind": {"enum": ["user", "group"]},
                "Name": {"type": "string"},
                "MaxHeld": _limit(0, 10_000, "boards held at once"),
                "MaxWaiting": _limit(0, 1_000_000, "requests waiting at once"),
                "MaxJobSeconds": _limit(1, 31_536_000, "a job's length with prolongs"),
            },
        },
        "UsageReport": {
            "type": "object",
            "properties": {
                "Policy": {"enum": ["fifo", "fair"]},
                "HalfLife": {"type": "integer"},
                "Users": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "Name": {"type": "string"},
                            "Usage": {"type": "number", "minimum": 0},
                            "Holds": {"type": "integer", "minimum": 0},
                            "Waiting": {"type": "integer", "minimum": 0},
                            "Limits": ref("Quota"),
                        },
                    },
                },
            },
        },
        "Quota": {
            "type": "object",
            "description": "absent or null: no limit (docs/scheduling.md)",
            "additionalProperties": False,
            "properties": {
                "MaxHeld": _limit(0, 10_000, "boards held at once"),
                "MaxWaiting": _limit(0, 1_000_000, "requests waiting at once"),
                "MaxJobSeconds": _limit(1, 31_536_000, "a job's length with prolongs"),
            },
        },
        "Scheduling": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "Policy": {"enum": ["fifo", "fair"]},
                "HalfLife": {
                    "type": "integer",
                    "minimum": 60,
                    "maximum": 31_536_000,
                    "description": "seconds until a board-second of usage counts half",
                },
            },
        },
    }
