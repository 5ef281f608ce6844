"""The OpenAPI document of API v1 and its extensions, with the size limits a client may read."""

from __future__ import annotations

from typing import Any, Final

from coordinator.boruta_json import SERVER_VERSION
from coordinator.errors import BY_CODE, ERROR_CODE_HEADER

_ERROR: Final = {"$ref": "#/components/responses/Error"}


def _op(summary: str, ok: str, body: str | None = None, admin: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary + (" (admin)" if admin else ""),
        "responses": {
            ok: {"description": "success"},
            "400": _ERROR,
            "401": _ERROR,
            "403": _ERROR,
            "404": _ERROR,
            "503": _ERROR,
        },
    }
    if body:
        operation["requestBody"] = {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}
        }
    return operation


def openapi_document() -> dict[str, Any]:
    """A hand-kept description of API v1 and its additive extensions."""
    rid = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    uuid = [
        {
            "name": "uuid",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Boruta API", "version": f"v1 (server {SERVER_VERSION})"},
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/api/v1/version": {"get": {**_op("Server and API version", "200"), "security": []}},
            "/api/v1/reqs/": {"post": _create()},
            "/api/v1/reqs/list": {"post": _op("List requests", "200", "RequestsListSpec")},
            "/api/v1/reqs/{id}": {
                "parameters": rid,
                "get": _op("Get a request", "200"),
                "post": _op("Update a WAITING request", "204", "ReqInfo"),
            },
            "/api/v1/reqs/{id}/close": {"parameters": rid, "post": _op("Close", "204")},
            "/api/v1/reqs/{id}/prolong": {"parameters": rid, "post": _op("Prolong", "204")},
            "/api/v1/reqs/{id}/acquire_worker": {
                "parameters": [
                    *rid,
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number"},
                        "description": "seconds to wait for a match",
                    },
                ],
                "post": _op("SSH access to the request's worker", "200"),
            },
            "/api/v1/workers/": {"get": _op("List workers", "200", "WorkersListSpec")},
            "/api/v1/workers/list": {"post": _op("List workers", "200", "WorkersListSpec")},
            "/api/v1/workers/{uuid}": {"parameters": uuid, "get": _op("Get a worker", "200")},
            "/api/v1/workers/{uuid}/setstate": {
                "parameters": uuid,
                "post": _op("Set IDLE or MAINTENANCE", "202", admin=True),
            },
            "/api/v1/workers/{uuid}/setgroups": {
                "parameters": uuid,
                "post": _op("Replace groups", "204", admin=True),
            },
            "/api/v1/workers/{uuid}/deregister": {
                "parameters": uuid,
                "post": _op("Remove a worker", "204", admin=True),
            },
            **_feed_paths(),
            **_scheduling_paths(),
            "/healthz": {
                "get": {
                    "summary": "Liveness and store check",
                    "security": [],
                    "responses": {
                        "200": {"description": "ok"},
                        "503": {"description": "store down"},
                    },
                }
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
            "responses": {
                "Error": {
                    "description": "error",
                    "headers": {
                        ERROR_CODE_HEADER: {
                            "description": "the error's stable machine code (the Go"
                            " original sends none); a client that does not know a code goes"
                            " by the status",
                            "schema": {"type": "string", "enum": sorted(BY_CODE)},
                        }
                    },
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"message": {"type": "string"}},
                            }
                        }
                    },
                }
            },
            "schemas": {
                "ReqInfo": {
                    "type": "object",
                    "properties": {
                        "ID": {"type": "integer"},
                        "Priority": {"type": "integer", "minimum": 1, "maximum": 16},
                        "Caps": {"type": "object", "additionalProperties": {"type": "string"}},
                        "ValidAfter": {"type": "string", "format": "date-time"},
                        "Deadline": {"type": "string", "format": "date-time"},
                        "State": {
                            "type": "string",
                            "enum": [
                                "WAITING",
                                "IN PROGRESS",
                                "CANCELLED",
                                "TIMEOUT",
                                "INVALID",
                                "DONE",
                                "FAILED",
                            ],
                        },
                    },
                },
                "RequestsListSpec": {"type": ["object", "null"]},
                "Webhook": {
                    "type": "object",
                    "required": ["URL"],
                    "properties": {
                        "URL": {"type": "string", "format": "uri"},
                        "Kinds": {"type": "array", "items": {"enum": ["request", "worker"]}},
                        "Secret": {
                            "type": "string",
                            "minLength": 16,
                            "description": "HMAC-SHA256 key; generated and answered once if absent",
                        },
                    },
                },
                "WorkersListSpec": {"type": ["object", "null"]},
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
            },
        },
    }


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    schema = {"type": kind}
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _feed_paths() -> dict[str, Any]:
    """Events, webhooks, history and metrics (additive to the original)."""
    hook = [{"name": "hook", "in": "path", "required": True, "schema": {"type": "integer"}}]
    limit = _query("limit", "most rows to answer", "integer")
    return {
        "/api/v1/events": {
            "get": {
                **_op("Server-Sent Events: one per stored transition, then live ones", "200"),
                "parameters": [
                    _query("token", "the API token, for EventSource (this endpoint only)"),
                    _query("kinds", "comma-separated: request, worker (and ephemeral kinds)"),
                    _query("subject", "a request ID or worker UUID; repeatable"),
                    _query("states", "comma-separated; the old or the new state matches"),
                    _query("after", "replay stored events after this id", "integer"),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "integer"},
                        "description": "as after=; sent by a reconnecting EventSource",
                    },
                ],
            }
        },
        "/api/v1/webhooks": {
            "get": {
                **_op("List webhooks (never their secrets)", "200", admin=True),
                "parameters": [_query("all", "true: include deleted ones", "boolean")],
            },
            "post": _op("Register a webhook", "201", "Webhook", admin=True),
        },
        "/api/v1/webhooks/{hook}": {
            "parameters": hook,
            "delete": _op("Delete a webhook", "204", admin=True),
        },
        "/api/v1/webhooks/{hook}/deliveries": {
            "parameters": hook,
            "get": {**_op("A webhook's deliveries", "200", admin=True), "parameters": [limit]},
        },
        "/api/v1/whoami": {
            "get": {
                **_op("The caller's user name, whether an admin, and groups", "200"),
                "responses": {"200": {"description": "success"}, "401": _ERROR, "503": _ERROR},
            }
        },
        "/api/v1/history": {
            "get": {
                **_op("Recorded transitions with actor and reason, newest last", "200"),
                "parameters": [
                    _query("subject", "a request ID or worker UUID; repeatable"),
                    _query("kind", "request or worker; repeatable"),
                    _query("after", "only transitions after this id", "integer"),
                    limit,
                ],
            }
        },
        "/api/v1/history/jobs": {
            "get": {
                **_op("Who held which board, when and for how long", "200"),
                "parameters": [_query("worker", "a worker UUID"), limit],
            }
        },
        "/metrics": {
            "get": {
                **_op("Prometheus metrics (open when metrics_public is set)", "200"),
            }
        },
    }


def _create() -> dict[str, Any]:
    """Creation may also meet the owner's limit of waiting requests (quota-exceeded)."""
    create = _op("Create a request", "201", "ReqInfo")
    create["responses"]["429"] = _ERROR
    return create


def _limit(least: int, most: int, what: str) -> dict[str, Any]:
    return {"type": ["integer", "null"], "minimum": least, "maximum": most, "description": what}


def _scheduling_paths() -> dict[str, Any]:
    """Quotas, usage and the scheduling policy (additive; docs/scheduling.md §endpoints)."""
    name = [
        {"name": "kind", "in": "path", "required": True, "schema": {"enum": ["users", "groups"]}},
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    return {
        "/api/v1/quotas": {"get": _op("Every quota of users and groups", "200")},
        "/api/v1/quotas/{kind}/{name}": {
            "parameters": name,
            "put": _op("Set a user's or a group's quota", "204", "Quota", admin=True),
            "delete": _op("Remove a quota", "204", admin=True),
        },
        "/api/v1/usage": {
            "get": _op("Each user's decayed usage, holds, waiting and limits", "200")
        },
        "/api/v1/scheduling": {
            "get": _op("The scheduling policy and usage half-life in force", "200"),
            "post": _op("Switch the policy or half-life", "200", "Scheduling", admin=True),
        },
    }
