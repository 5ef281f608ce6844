"""Host keys the coordinator vouches for: in AccessInfo, at their endpoint, in the clients,
and as the ``known_hosts`` that ``boruta reserve --ssh`` and ``ssh-config`` make ssh use."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import anyio
import httpx
import pytest

from coordinator.boruta_cli import known_hosts
from coordinator.client import AsyncClient
from coordinator.client.local import LocalClient
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import AccessInfo, User
from coordinator.domain.states import WorkerState
from coordinator.errors import MalformedInput
from tests.coordinator.client.cli_runner import Cli
from tests.host_key_samples import ECDSA_256, ED25519
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

KEYS = (ED25519, ECDSA_256)


async def _worker_with_keys(farm: AppFarm, keys: tuple[str, ...] = KEYS) -> WorkerUUID:
    """An IDLE ``board=rpi4`` worker whose dryad reported ``keys`` when it came back."""
    uuid = await farm.idle_worker(1, {"board": "rpi4"})
    await farm.service.register({"UUID": uuid, "board": "rpi4"}, "10.0.0.1:22", keys)
    return uuid


async def test_acquire_worker_answers_the_vouched_keys_and_the_client_reads_them(
    farm: AppFarm, alice: AsyncClient
) -> None:
    await _worker_with_keys(farm)
    rid = await alice.new_request(None, {"board": "rpi4"})
    answer = await farm.post(f"/api/v1/reqs/{rid}/acquire_worker")
    assert list(answer.json()) == ["Addr", "Key", "Username", "HostKeys"]
    assert answer.json()["HostKeys"] == list(KEYS)
    assert (await alice.acquire_worker(rid)).host_keys == KEYS


async def test_the_hostkeys_endpoint_answers_any_user_and_needs_a_token(
    farm: AppFarm, alice: AsyncClient
) -> None:
    uuid = await _worker_with_keys(farm)
    answer = await farm.get(f"/api/v1/workers/{uuid}/hostkeys", as_="bob")
    assert answer.json() == {"WorkerUUID": uuid, "HostKeys": list(KEYS)}
    assert await alice.worker_host_keys(uuid) == KEYS
    assert (await farm.get(f"/api/v1/workers/{uuid}/hostkeys", as_=None)).status_code == 401
    unknown = await farm.get("/api/v1/workers/00000000-0000-4000-8000-000000000077/hostkeys")
    assert unknown.status_code == 404
    assert (await farm.get("/api/v1/workers/nope/hostkeys")).status_code == 400


async def test_the_local_client_answers_as_the_http_one(farm: AppFarm, alice: AsyncClient) -> None:
    uuid = await _worker_with_keys(farm)
    local = LocalClient(farm.service, User("alice"))
    assert await local.worker_host_keys(uuid) == await alice.worker_host_keys(uuid) == KEYS


async def test_a_reconnecting_dryad_replaces_its_keys(farm: AppFarm) -> None:
    uuid = await _worker_with_keys(farm)
    await farm.service.register({"UUID": uuid, "board": "rpi4"}, "10.0.0.1:22", (ED25519,))
    assert farm.service.get_worker(uuid).host_keys == (ED25519,)
    await farm.service.register({"UUID": uuid, "board": "rpi4"}, "10.0.0.1:22")
    answer = await farm.get(f"/api/v1/workers/{uuid}/hostkeys")
    assert answer.json()["HostKeys"] == []


@pytest.mark.parametrize(
    "bad", [["ssh-ed25519 AAAA"], "ssh-ed25519", [f"{ED25519}\n* ssh-rsa AAAA"], [1]]
)
async def test_the_client_refuses_keys_that_are_not_keys(bad: object) -> None:
    body = {"Addr": {"IP": "10.0.0.1", "Port": 20001, "Zone": ""}, "Key": "k", "Username": "u"}

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**body, "HostKeys": bad})

    transport = httpx.MockTransport(serve)
    async with AsyncClient("http://boruta", "t", transport=transport) as client:
        with pytest.raises(MalformedInput, match="HostKeys|host key"):
            await client.acquire_worker(RequestID(1))


def test_known_hosts_names_the_tunnel_as_ssh_looks_it_up() -> None:
    access = AccessInfo("10.0.0.1", 20001, b"", "u", KEYS)
    assert known_hosts.text(access) == f"[10.0.0.1]:20001 {ED25519}\n[10.0.0.1]:20001 {ECDSA_256}\n"
    assert known_hosts.entry("2001:db8::1", 22) == "2001:db8::1"
    for host in ("a b", "*", "a,b", "#x", "x\ny", ""):
        with pytest.raises(MalformedInput):
            known_hosts.entry(host, 20001)


def test_known_hosts_option_quotes_spaces_and_escapes_tokens() -> None:
    assert known_hosts.option_value("/tmp/a b/k") == '"/tmp/a b/k"'
    assert known_hosts.option_value("/tmp/100%/k") == "/tmp/100%%/k"


async def test_ssh_config_writes_a_private_known_hosts_of_the_vouched_keys(
    farm: AppFarm, cli: Cli, tmp_path: Path
) -> None:
    await _worker_with_keys(farm)
    await cli("reserve", "--caps", "board=rpi4")
    code, out, err = await cli("ssh-config", "1")
    known = tmp_path / "cache" / "boruta" / "boruta-1.known_hosts"
    assert code == 0 and err == ""
    assert "    StrictHostKeyChecking yes\n" in out and f"UserKnownHostsFile {known}\n" in out
    assert known.read_text() == "".join(f"[10.0.0.1]:20001 {k}\n" for k in KEYS)
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    assert (await cli("requests", "close", "1"))[0] == 0
    assert not known.exists()  # the job's trust ends with the job


async def test_ssh_config_warns_when_no_key_is_vouched_for(
    farm: AppFarm, cli: Cli, tmp_path: Path
) -> None:
    await farm.idle_worker(1, {"board": "rpi4"})
    await cli("reserve", "--caps", "board=rpi4")
    code, out, err = await cli("ssh-config", "1")
    assert code == 0 and "StrictHostKeyChecking yes" in out
    assert "vouches for no host key" in err and "ssh will refuse it" in err
    assert (tmp_path / "cache" / "boruta" / "boruta-1.known_hosts").read_text() == ""


async def test_reserve_wait_prints_a_strict_ssh_command_and_the_keys_in_json(
    farm: AppFarm, cli: Cli, tmp_path: Path
) -> None:
    uuid = await _worker_with_keys(farm)
    code, out, _ = await cli("reserve", "--caps", "board=rpi4", "--wait")
    known = tmp_path / "cache" / "boruta" / "boruta-1.known_hosts"
    assert code == 0 and f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known}" in out
    assert known.read_text().count("\n") == 2
    assert (await cli("requests", "close", "1"))[0] == 0
    await farm.until_worker(uuid, WorkerState.IDLE)
    code, out, _ = await cli("reserve", "--caps", "board=rpi4", "--wait", "--json")
    assert (code, json.loads(out)["host_keys"]) == (0, list(KEYS))


async def test_reserve_ssh_gives_ssh_the_known_hosts_then_removes_it(
    farm: AppFarm, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, record = tmp_path / "bin", tmp_path / "seen"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    # The known_hosts path is the 10th argument (see reserve.ssh_options).
    fake.write_text(
        f'#!/bin/sh\nf="${{10#UserKnownHostsFile=}}"\nstat -c %a "$f" > {record}\n'
        f'cat "$f" >> {record}\nexit 0\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    await _worker_with_keys(farm)
    code, _, err = await cli("reserve", "--caps", "board=rpi4", "--ssh")
    mode, *lines = record.read_text().splitlines()
    assert (code, mode, lines) == (0, "600", [f"[10.0.0.1]:20001 {k}" for k in KEYS])
    assert "vouches for no host key" not in err
    assert not [p async for p in anyio.Path(tmp_path / "cache").glob("**/*.known_hosts")]
