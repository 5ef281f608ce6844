"""Job keys: their formats, and the stock of RSA keys made ahead (one key, one job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from coordinator.domain.model import KeyType
from coordinator.service import keys as keys_module
from coordinator.service.keymaking import MAKER_NICENESS, rsa_parts
from coordinator.service.keys import (
    RATE_WINDOW,
    JobKey,
    KeyPool,
    generate,
    generate_ed25519,
    kind_of,
    public_of,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(pool: KeyPool) -> AsyncIterator[KeyPool]:
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        yield pool
        tg.cancel_scope.cancel()


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Wait for ``condition``, checking between the pool's own steps."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - the pool tells no one of a new key
            await anyio.sleep(0.01)


# ---- formats ------------------------------------------------------------------------


def test_an_rsa_key_is_pkcs1_pem_of_2048_bits_with_its_authorized_keys_line() -> None:
    key = generate()
    assert key.kind is KeyType.RSA and kind_of(key.private_pem) is KeyType.RSA
    assert key.private_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert key.public_openssh.startswith("ssh-rsa ")
    assert public_of(key.private_pem) == key.public_openssh


def test_an_ed25519_key_is_in_openssh_format_and_both_libraries_read_it() -> None:
    key = generate_ed25519()
    assert key.kind is KeyType.ED25519 and kind_of(key.private_pem) is KeyType.ED25519
    assert key.private_pem.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    private = serialization.load_ssh_private_key(key.private_pem, password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    imported = asyncssh.import_private_key(key.private_pem)
    assert imported.get_algorithm() == "ssh-ed25519"
    assert (
        imported.export_public_key("openssh").decode().split()[:2]
        == (key.public_openssh.split()[:2])
    )
    assert public_of(key.private_pem) == key.public_openssh


def test_no_key_has_no_kind_and_a_foreign_key_is_refused() -> None:
    assert kind_of(b"") is None
    ec = b"-----BEGIN EC PRIVATE KEY-----\n"
    assert kind_of(ec) is None
    with pytest.raises(ValueError):
        public_of(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")


def test_a_repr_never_shows_the_private_key() -> None:
    key = generate_ed25519()
    assert key.private_pem.decode() not in repr(key) and "private" not in repr(key)


# ---- the pool -------------------------------------------------------------------------


async def test_every_key_is_handed_out_once() -> None:
    pool = KeyPool(2, makers=2, processes=False)
    async with running(pool):
        got = [await pool.get() for _ in range(6)] + [
            await pool.get(KeyType.ED25519) for _ in range(6)
        ]
    assert len({k.private_pem for k in got}) == len(got) == 12
    assert [k.kind for k in got] == [KeyType.RSA] * 6 + [KeyType.ED25519] * 6


async def test_the_stock_is_refilled_to_its_size_and_no_further() -> None:
    made: list[float] = []
    pool = KeyPool(3, makers=2, processes=False, make=_counted(made))
    async with running(pool):
        await until(lambda: pool.level == 3)
        await pool.get()
        await pool.get()
        await until(lambda: pool.level == 3)
        assert len(made) == 5  # three, then the two taken: never more than the stock


async def test_an_empty_stock_makes_the_caller_wait_for_a_fresh_key() -> None:
    gate = threading.Event()
    pool = KeyPool(1, makers=1, processes=False, make=_gated(gate))
    async with running(pool):
        gate.set()
        first = await pool.get()
        gate.clear()  # the next key is held back: the stock stays empty
        second: list[JobKey] = []

        async def take() -> None:
            second.append(await pool.get())

        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            await anyio.wait_all_tasks_blocked()
            assert second == [] and pool.level == 0  # waiting, not handed an old key
            gate.set()
        assert second[0].private_pem != first.private_pem


async def test_the_refill_rate_counts_the_keys_of_the_last_minute() -> None:
    now = [1000.0]
    pool = KeyPool(4, makers=1, processes=False, clock=lambda: now[0])
    async with running(pool):
        await until(lambda: pool.level == 4)
        assert pool.rate() == pytest.approx(4 / RATE_WINDOW)
        now[0] += RATE_WINDOW + 1
        assert pool.rate() == 0


async def test_a_failed_key_is_logged_and_the_makers_go_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "RETRY_AFTER_FAILURE", 0.01)
    failures = [RuntimeError("no entropy")]

    def flaky() -> tuple[bytes, str]:
        if failures:
            raise failures.pop()
        return rsa_parts()

    pool = KeyPool(1, makers=1, processes=False, make=flaky)
    async with running(pool):
        key = await pool.get()
    assert key.kind is KeyType.RSA
    assert "making an RSA key failed: no entropy" in caplog.text


async def test_a_pool_that_is_not_running_refuses_rsa_but_makes_ed25519() -> None:
    pool = KeyPool(1, processes=False)
    with pytest.raises(RuntimeError, match="not running"):
        await pool.get()
    assert (await pool.get(KeyType.ED25519)).kind is KeyType.ED25519


def test_a_stock_of_no_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        KeyPool(0)


async def test_processes_make_the_keys() -> None:
    pool = KeyPool(1, makers=1)  # the default: spawned processes at a lower priority
    async with running(pool):
        key = await pool.get()
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048


def _niceness() -> tuple[bytes, str]:
    """A maker's own niceness, in place of a key (a module-level function: spawned
    processes find it by name)."""
    return str(os.nice(0)).encode(), ""


async def test_maker_processes_run_at_a_lower_priority() -> None:
    pool = KeyPool(1, makers=1, make=_niceness)
    async with running(pool):
        key = await pool.get()
    assert int(key.private_pem) == min(os.nice(0) + MAKER_NICENESS, 19)


_POOL_THEN_WAIT = """
import anyio, sys
from coordinator.service.keys import KeyPool

async def main() -> None:
    pool = KeyPool(8, makers=2)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await pool.get()
        print("ready", flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


def test_makers_end_when_the_coordinator_is_killed() -> None:
    """A SIGKILLed coordinator leaves no key makers behind."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-c", _POOL_THEN_WAIT], stdout=subprocess.PIPE, env=env
    ) as parent:
        try:
            assert parent.stdout is not None and parent.stdout.readline() == b"ready\n"
            children = [
                int(pid)
                for task in Path(f"/proc/{parent.pid}/task").iterdir()
                for pid in (task / "children").read_text().split()
            ]
            assert len(children) >= 2  # the makers (and multiprocessing's resource tracker)
        finally:
            parent.kill()
    deadline = time.monotonic() + 30
    while (alive := [p for p in children if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:  # leave nothing behind, even when failing
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def _counted(made: list[float]) -> Callable[[], tuple[bytes, str]]:
    def make() -> tuple[bytes, str]:
        made.append(0.0)
        return rsa_parts()

    return make


def _gated(gate: threading.Event) -> Callable[[], tuple[bytes, str]]:
    def make() -> tuple[bytes, str]:
        gate.wait(30)
        return generate_ed25519().private_pem, "made behind a gate"

    return make
