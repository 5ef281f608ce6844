"""Clients that never name a key type (the Go client, Weles) get the original's key: RSA-2048
as PKCS#1 PEM, the form the Go client parses (docs/boruta-api.md §keys)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


async def test_a_request_without_the_option_gets_pkcs1_rsa_2048_as_the_original(
    farm: AppFarm,
) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request({"Priority": 8, "Caps": {}})
    assert "KeyType" not in await farm.request_json(rid)  # golden bodies stay as they were
    pem = (await farm.post(f"/api/v1/reqs/{rid}/acquire_worker")).json()["Key"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
