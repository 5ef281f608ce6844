"""The tunnel range's claim on the host: overlaps refused, claims released by close and death."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from coordinator.errors import TunnelUnavailable
from coordinator.tunnels import claim as claims
from coordinator.tunnels.claim import MUTEX, PREFIX, Claimed, address, claim

ROOT = Path(__file__).resolve().parents[3]
# Ranges far above any farm's and an address of this test process's own (from its pid):
# a coordinator or another test run on this host never collides with these claims.
LOW = 64000
ME = f"127.{100 + os.getpid() % 100}.{os.getpid() // 100 % 250}.{1 + os.getpid() % 250}"


def held() -> list[str]:
    """Our claims in this namespace's table now."""
    return [n for n in claims._names(claims.TABLE) if Claimed.parse(n) is not None]


def ranges(low: int = LOW, high: int = LOW + 60) -> st.SearchStrategy[range]:
    return st.tuples(st.integers(low, high), st.integers(0, 20)).map(
        lambda t: range(t[0], t[0] + t[1] + 1)
    )


@settings(max_examples=60, deadline=None)
@given(a=ranges(), b=ranges())
def test_a_second_range_is_refused_exactly_when_it_overlaps(a: range, b: range) -> None:
    overlap = bool(set(a) & set(b))
    with claim(a, ME):
        if overlap:
            with pytest.raises(TunnelUnavailable) as refused:
                claim(b, ME)
            assert refused.value.message == (
                f"tunnel_ports {b.start}-{b.stop - 1} (on {ME}) overlap {a.start}-{a.stop - 1} "
                f"(on {ME}) of another coordinator on this host (pid {os.getpid()}): give "
                "each coordinator its own range"
            )
        else:
            claim(b, ME).close()
    claim(b, ME).close()  # and once the first is closed, it may be claimed


def test_adjacent_ranges_do_not_overlap() -> None:
    with claim(range(LOW, LOW + 10), ME), claim(range(LOW + 10, LOW + 20), ME):
        with pytest.raises(TunnelUnavailable, match="overlap"):
            claim(range(LOW + 9, LOW + 11), ME)


@pytest.mark.parametrize(
    ("a", "b", "collide"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),  # one loopback address per coordinator
        ("0.0.0.0", "127.0.0.2", True),
        ("127.0.0.2", "0.0.0.0", True),
        ("0.0.0.0", "::1", False),
        ("::", "127.0.0.2", True),  # "::" is bound dual-stack
        ("::1", "::", True),
        ("::1", "::1", True),
        ("::1", "::2", False),
        ("::1", "127.0.0.1", False),
    ],
)
def test_addresses_collide_as_their_ports_would(a: str, b: str, collide: bool) -> None:
    first, second = Claimed(1, 10, a, 1), Claimed(5, 6, b, 2)
    assert first.collides(second) is collide and second.collides(first) is collide
    assert not first.collides(Claimed(11, 20, a, 2))


def test_addresses_are_spelled_one_way() -> None:
    assert address("[::ffff:127.0.0.1]") == "127.0.0.1"
    assert address("[::0]") == "::"
    assert address("") == "0.0.0.0"
    assert address("localhost") == "127.0.0.1"
    assert address("no-such-host.invalid") == "no-such-host.invalid"


@given(st.text(max_size=80), st.text(max_size=40))
def test_names_that_are_not_claims_are_ignored(junk: str, tail: str) -> None:
    for name in (junk, PREFIX + tail):
        parsed = Claimed.parse(name)
        assert parsed is None or Claimed.parse(parsed.name) == parsed


@given(st.integers(1, 65535), st.integers(0, 100), st.sampled_from(["::1", "10.0.0.1"]))
def test_a_claims_name_says_what_it_claims(first: int, n: int, bind: str) -> None:
    mine = Claimed(first, first + n, bind, 4242)
    assert Claimed.parse(mine.name) == mine


def test_a_claim_is_in_the_hosts_table_while_open(tmp_path: Path) -> None:
    with claim(range(LOW + 100, LOW + 110), ME) as mine:
        assert mine.mine.name in held()
        assert mine.mine.pid == os.getpid()
    assert mine.mine.name not in held()
    mine.close()  # twice is harmless


def test_garbled_lines_and_names_in_the_table_are_skipped(tmp_path: Path) -> None:
    table = tmp_path / "unix"
    other = Claimed(LOW, LOW + 5, ME, 1234)
    table.write_text(
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "garbage\n"
        f"0: 00000002 00000000 00010000 0001 01 1 @{PREFIX}x-y/{ME}/1\n"
        f"0: 00000002 00000000 00010000 0001 01 1 @{PREFIX}{LOW}-{LOW + 5}//1\n"
        f"0: 00000002 00000000 00010000 0001 01 1 /run/{PREFIX}{LOW}-{LOW + 5}/{ME}/7\n"
        "\xff\xfe not text\n"
        f"0: 00000002 00000000 00010000 0001 01 1 @{other.name}\n"
    )
    with pytest.raises(TunnelUnavailable, match=r"overlap .* \(pid 1234\): give each"):
        claim(range(LOW + 5, LOW + 9), ME, table=table)
    claim(range(LOW + 6, LOW + 9), ME, table=table).close()


def test_without_a_table_the_claim_is_bound_unchecked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with claim(range(LOW + 120, LOW + 130), ME, table=tmp_path / "none") as mine:
        assert mine.mine.name in held()
    assert "not checked against other coordinators on this host" in caplog.text


@pytest.fixture
def mutex() -> Iterator[socket.socket]:
    """The claimers' mutex, held by the test (once a coordinator starting on this host
    meanwhile has let it go: it holds it for microseconds)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock.bind("\0" + MUTEX)
                break
            except OSError:
                assert time.monotonic() < deadline, "the mutex stayed taken"
        yield sock


def test_a_mutex_held_too_long_is_a_clear_error(mutex: socket.socket) -> None:
    with pytest.raises(TunnelUnavailable, match=f"held @{MUTEX} for over 0.05 s"):
        claim(range(LOW + 140, LOW + 150), ME, mutex_wait=0.05)
    assert not any(n.startswith(f"{PREFIX}{LOW + 140}-") for n in held())


def test_a_claimer_waits_for_the_mutex(
    mutex: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mutex is released once the claimer has had to retry (its first sleep)."""
    tries: list[float] = []

    def sleep(seconds: float) -> None:
        tries.append(seconds)
        mutex.close()

    monkeypatch.setattr(time, "sleep", sleep)  # the claim module's sleep
    claim(range(LOW + 160, LOW + 170), ME).close()
    assert tries == [claims.MUTEX_POLL]


def test_a_claimer_may_wait_for_a_claim_stepping_down(caplog: pytest.LogCaptureFixture) -> None:
    """A new holder waits for its predecessor on this host to stand by (and says so once)."""
    old = claim(range(LOW + 200, LOW + 210), ME)

    class StepDown(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting up to 30 s for it to stop serving" in record.getMessage():
                old.close()

    handler = StepDown()
    claims.logger.addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, claims.logger.name):
            claim(range(LOW + 205, LOW + 215), ME, wait=30).close()
    finally:
        claims.logger.removeHandler(handler)
    assert caplog.text.count("overlap") == 1


def test_a_claimer_stops_waiting_at_its_bound() -> None:
    with claim(range(LOW + 220, LOW + 230), ME):
        with pytest.raises(TunnelUnavailable, match="overlap"):
            claim(range(LOW + 220, LOW + 221), ME, wait=0.3)


def test_a_killed_holders_claim_no_longer_counts() -> None:
    script = textwrap.dedent(f"""
        import sys
        from coordinator.tunnels.claim import claim
        held = claim(range({LOW + 300}, {LOW + 310}), {ME!r})
        print("claimed", flush=True)
        sys.stdin.read()
    """)
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"claimed\n"
            with pytest.raises(TunnelUnavailable, match=rf"\(pid {child.pid}\)"):
                claim(range(LOW + 305, LOW + 306), ME)
            child.send_signal(signal.SIGKILL)
            assert child.wait(20) == -signal.SIGKILL
        finally:
            child.kill()
    claim(range(LOW + 305, LOW + 306), ME).close()
