"""The job key type a new request may ask for (our extension, docs/boruta-api.md §keys):
absent is the original's RSA-2048 PKCS#1 PEM; ``ed25519`` an OpenSSH-format key; anything
else a 400 that names the allowed values and creates nothing."""

from __future__ import annotations

import json
from typing import Any

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from coordinator.errors import ERROR_CODE_HEADER
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

FARM = hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ALLOWED = ("rsa", "ed25519")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


async def acquire(farm: AppFarm, rid: int) -> Any:
    return (await farm.post(f"/api/v1/reqs/{rid}/acquire_worker")).json()


@FARM
@given(value=JSON_VALUES.filter(lambda v: v is None or v not in ALLOWED))
async def test_an_unknown_key_type_is_400_naming_the_allowed_ones(
    farm: AppFarm, value: object
) -> None:
    before = await farm.snapshot()
    body = json.dumps({"Caps": {}, "KeyType": value})
    answer = await farm.post("/api/v1/reqs/", content=body.encode())
    if value is None:  # null is the same as absent: RSA
        assert answer.status_code == 201
        return
    assert (answer.status_code, answer.headers.get(ERROR_CODE_HEADER)) == (400, "malformed-input")
    assert "KeyType must be one of: rsa, ed25519" in answer.json()["message"]
    assert await farm.snapshot() == before


async def test_asked_for_ed25519_the_access_key_is_openssh_ed25519(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request({"Caps": {}, "KeyType": "ed25519"})
    assert (await farm.request_json(rid))["KeyType"] == "ed25519"
    pem = (await acquire(farm, rid))["Key"]
    assert pem.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key = serialization.load_ssh_private_key(pem.encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    public = asyncssh.import_private_key(pem).export_public_key("openssh").decode()
    assert public.split()[:2] == farm.dryads.calls[-1][2].split()[:2]  # the dryad's line


async def test_rsa_asked_for_by_name_is_the_default_key(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request({"Caps": {}, "KeyType": "rsa"})
    assert "KeyType" not in await farm.request_json(rid)
    assert (await acquire(farm, rid))["Key"].startswith("-----BEGIN RSA PRIVATE KEY-----\n")
