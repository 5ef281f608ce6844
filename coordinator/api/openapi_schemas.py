"""The OpenAPI document's components: every body the API reads or writes, with its limits.

The limits are ``coordinator.wire.limits``' own numbers, so the document cannot drift from
what the API enforces (docs/boruta-api.md §limits).
"""

from __future__ import annotations

from typing import Any, Final

from coordinator.domain.ids import HI_PRIO, LO_PRIO, MAX_REQUEST_ID
from coordinator.domain.model import KeyType
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import BY_CODE, ERROR_CODE_HEADER
from coordinator.wire import hostkeys, limits

MAX_EVENT_ID: Final = 2**63 - 1

TIME: Final = {"type": "string", "format": "date-time"}
NULL_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
UUID: Final = {"type": "string", "pattern": "^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], *required: str, null: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": ["object", "null"] if null else "object",
        "properties": properties,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _list(items: dict[str, Any], most: int) -> dict[str, Any]:
    return {"type": ["array", "null"], "items": items, "maxItems": most}


CAPS: Final = {
    "type": ["object", "null"],
    "maxProperties": limits.MAX_CAPS,
    "propertyNames": {"maxLength": limits.MAX_CAP_KEY},
    "additionalProperties": {"type": "string", "maxLength": limits.MAX_CAP_VALUE},
    "description": f"at most {limits.MAX_CAPS} caps; keys up to {limits.MAX_CAP_KEY}"
    f" characters, values up to {limits.MAX_CAP_VALUE}; text that is not UTF-8 is refused",
}
HOST_KEYS: Final = {
    "type": "array",
    "items": {"type": "string", "maxLength": hostkeys.MAX_HOST_KEY_LINE},
    "maxItems": hostkeys.MAX_HOST_KEYS,
    "description": "the worker sshd's host public keys the coordinator vouches for, each"
    " `type base64` as in known_hosts (docs/boruta-api.md §host keys)",
}
GROUP: Final = {"type": "string", "minLength": 1, "maxLength": limits.MAX_NAME}
RID: Final = {"type": "integer", "minimum": 0, "maximum": MAX_REQUEST_ID}
PRIORITY: Final = {"type": ["integer", "null"], "minimum": HI_PRIO, "maximum": LO_PRIO}
KEY_TYPE: Final = {
    "type": ["string", "null"],
    "enum": [*(kind.value for kind in KeyType), None],
    "description": "our extension: the job's SSH key; absent or null: rsa (RSA-2048 as PKCS#1"
    " PEM, the original's), ed25519: an OpenSSH-format Ed25519 key",
}


def _sorter() -> dict[str, Any]:
    return _obj(
        {
            "Item": {"type": ["string", "null"]},
            "Order": {"type": ["string", "null"], "enum": ["", "ascending", "descending", None]},
        },
        null=True,
    )


def _paginator(anchor: dict[str, Any]) -> dict[str, Any]:
    return _obj(
        {
            "ID": anchor,
            "Direction": {"type": ["string", "null"], "enum": ["", "forward", "backward", None]},
            "Limit": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535},
        },
        null=True,
    )


def schemas() -> dict[str, Any]:
    text = {"type": "string"}
    check = _obj(
        {
            "Name": text,
            "Passed": {"type": "boolean"},
            "Critical": {"type": "boolean"},
            "Detail": text,
        },
        "Name",
        "Passed",
        "Critical",
        "Detail",
    )
    return {
        "Caps": CAPS,
        "NewRequest": _obj(
            {
                "Priority": PRIORITY,
                "Caps": CAPS,
                "ValidAfter": NULL_TIME,
                "Deadline": NULL_TIME,
                "KeyType": KEY_TYPE,
            }
        ),
        "RequestUpdate": _obj(
            {
                "ID": {**RID, "type": ["integer", "null"]},
                "Priority": {**PRIORITY, "minimum": 0, "description": "0: unchanged"},
                "ValidAfter": NULL_TIME,
                "Deadline": NULL_TIME,
            }
        ),
        "ReqID": _obj({"ReqID": RID}, "ReqID"),
        "ReqInfo": _obj(
            {
                "ID": RID,
                "Priority": {"type": "integer", "minimum": HI_PRIO, "maximum": LO_PRIO},
                "Owner": _obj({"Groups": _list(GROUP, limits.MAX_GROUPS), "Name": text}, "Groups"),
                "Deadline": TIME,
                "ValidAfter": TIME,
                "State": {"type": "string", "enum": [s.value for s in RequestState]},
                "Job": _obj({"WorkerUUID": UUID, "Timeout": TIME}, null=True),
                "Caps": {**CAPS, "description": "null for a request created without caps"},
                "Reason": text,
                "KeyType": {
                    "type": "string",
                    "enum": [KeyType.ED25519.value],
                    "description": "present when the request asked for a key other than RSA",
                },
            },
            *("ID", "Priority", "Owner", "Deadline", "ValidAfter", "State", "Job", "Caps"),
        ),
        "ReqInfoList": {"type": "array", "items": ref("ReqInfo")},
        "RequestsListSpec": _obj(
            {
                "Filter": _obj(
                    {
                        "IDs": _list(RID, limits.MAX_LIST),
                        "Priorities": _list({"type": "integer"}, limits.MAX_LIST),
                        "States": _list(
                            {"type": "string", "maxLength": limits.MAX_NAME}, limits.MAX_LIST
                        ),
                    },
                    null=True,
                ),
                "Sorter": _sorter(),
                "Paginator": _paginator({**RID, "type": ["integer", "null"]}),
            },
            null=True,
        ),
        "WorkersListSpec": _obj(
            {
                "Filter": _obj(
                    {
                        "Groups": _list(
                            {"type": "string", "maxLength": limits.MAX_NAME}, limits.MAX_LIST
                        ),
                        "Capabilities": CAPS,
                    },
                    null=True,
                ),
                "Sorter": _sorter(),
                "Paginator": _paginator({"type": ["string", "null"]}),
            },
            null=True,
        ),
        "WorkerInfo": _obj(
            {
                "WorkerUUID": UUID,
                "State": {"type": "string", "enum": [s.value for s in WorkerState]},
                "Groups": _list(GROUP, limits.MAX_GROUPS),
                "Caps": {**CAPS, "type": "object"},
                "Reason": text,
                "Connected": {"type": "boolean"},
                "Health": ref("Health"),
            },
            "WorkerUUID",
            "State",
            "Groups",
            "Caps",
        ),
        "WorkerInfoList": {"type": "array", "items": ref("WorkerInfo")},
        "Health": _obj(
            {
                "At": TIME,
                "Checks": {"type": "array", "items": check, "maxItems": limits.MAX_CHECKS},
            },
            "At",
            "Checks",
        ),
        "NullableHealth": {"oneOf": [ref("Health"), {"type": "null"}]},
        "AccessInfo": _obj(
            {
                "Addr": _obj(
                    {"IP": text, "Port": {"type": "integer"}, "Zone": text}, "IP", "Port", "Zone"
                ),
                "Key": {
                    "type": "string",
                    "description": "the job's private key: RSA-2048 as PKCS#1 PEM, or an"
                    " OpenSSH-format Ed25519 key when the request asked for ed25519",
                },
                "Username": text,
                "HostKeys": HOST_KEYS,
            },
            "Addr",
            "Key",
            "Username",
        ),
        "HostKeys": _obj({"WorkerUUID": UUID, "HostKeys": HOST_KEYS}, "WorkerUUID", "HostKeys"),
        "Version": _obj(
            {"Server": text, "API_Version": text, "API_State": text},
            "Server",
            "API_Version",
            "API_State",
        ),
        "WorkerStatePack": _obj(
            {"WorkerState": {"type": "string", "enum": ["IDLE", "MAINTENANCE"]}}, "WorkerState"
        ),
        "Groups": {
            "type": ["array", "null"],
            "items": GROUP,
            "maxItems": limits.MAX_GROUPS,
            "description": "group names: no control characters",
        },
        "NewWebhook": _obj(
            {
                "URL": {"type": "string", "format": "uri", "maxLength": limits.MAX_URL},
                "Kinds": _list({"type": "string", "enum": ["request", "worker"]}, 2),
                "Secret": {
                    "type": ["string", "null"],
                    "minLength": 16,
                    "maxLength": 256,
                    "description": "HMAC-SHA256 key; generated and answered once if absent",
                },
            },
            "URL",
        ),
        "WebhookID": _obj({"ID": {"type": "integer"}, "Secret": text}, "ID"),
        "Webhook": _obj(
            {
                "ID": {"type": "integer"},
                "URL": text,
                "Kinds": {"type": "array", "items": text},
                "CreatedBy": text,
                "CreatedAt": TIME,
                "DeletedBy": {"type": ["string", "null"]},
                "DeletedAt": NULL_TIME,
            },
            *("ID", "URL", "Kinds", "CreatedBy", "CreatedAt"),
        ),
        "Delivery": _obj(
            {
                "ID": {"type": "integer"},
                "Event": {"type": "integer"},
                "Status": {"type": "string", "enum": ["pending", "delivered", "dropped"]},
                "Attempts": {"type": "integer", "minimum": 0},
                "LastError": text,
                "NextAttemptAt": NULL_TIME,
                "DeliveredAt": NULL_TIME,
            },
            *("ID", "Event", "Status", "Attempts", "LastError", "NextAttemptAt", "DeliveredAt"),
        ),
        "Transition": _obj(
            {
                "id": {"type": "integer"},
                "kind": {"type": "string", "enum": ["request", "worker"]},
                "subject": text,
                "old": text,
                "new": text,
                "reason": text,
                "actor": text,
                "at": TIME,
            },
            *("id", "kind", "subject", "old", "new", "reason", "actor", "at"),
        ),
        "Job": _obj(
            {
                "request": {"type": "integer"},
                "owner": text,
                "worker": text,
                "start": TIME,
                "end": NULL_TIME,
                "duration": {"type": "number", "minimum": 0},
                "ended": {"type": ["string", "null"]},
                "reason": text,
            },
            *("request", "owner", "worker", "start", "end", "duration", "ended", "reason"),
        ),
        "Panel": _obj(
            {
                "worker": UUID,
                "screen": {"type": "string", "contentEncoding": "base64"},
                "leds": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "items": {
                        "type": "array",
                        "minItems": 3,
                        "maxItems": 3,
                        "items": {"type": "integer", "minimum": 0, "maximum": 255},
                    },
                },
                "at": TIME,
            },
            "worker",
            "screen",
            "leds",
            "at",
        ),
        "Healthz": _obj({"status": text}, "status"),
    }


def error_response() -> dict[str, Any]:
    return {
        "description": "error",
        "headers": {
            ERROR_CODE_HEADER: {
                "description": "the error's stable machine code (the Go original sends none);"
                " a client that does not know a code goes by the status",
                "schema": {"type": "string", "enum": sorted(BY_CODE)},
            }
        },
        "content": {
            "application/json": {
                "schema": _obj({"message": {"type": "string"}}, "message"),
            }
        },
    }
