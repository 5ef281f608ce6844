"""The ``boruta`` command's first hour: a request refused at once, a pasteable ``ssh`` line,
messages that say what to do, and a FAILED worker put back in service."""

from __future__ import annotations

import shlex
import shutil
import stat
import subprocess
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from coordinator.boruta_cli import commands, main
from coordinator.domain.ids import RequestID
from coordinator.domain.states import RequestState, WorkerState
from tests.coordinator.client.cli_runner import Cli
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


async def test_reserve_without_wait_says_at_once_that_a_request_is_invalid(
    farm: AppFarm, cli: Cli
) -> None:
    await farm.parked_worker()  # a worker exists, but none has board=none
    code, out, err = await cli("reserve", "--caps", "board=none")
    assert (code, out) == (1, "")
    assert err.startswith("request 1 is INVALID: ") and len(err.split(": ", 1)[1]) > 2
    assert (await farm.service.get_request(RequestID(1))).state is RequestState.INVALID


async def test_the_printed_ssh_line_names_a_private_key_file_and_parses(
    farm: AppFarm, cli: Cli, tmp_path: Path
) -> None:
    await farm.idle_worker(1, {"board": "rpi4"})
    code, out, _ = await cli("reserve", "--caps", "board=rpi4", "--wait")
    prefix, command = out.splitlines()[0].split(": ", 1)
    argv = shlex.split(command)
    assert (code, prefix, argv[0], argv[-1]) == (0, "request 1", "ssh", "boruta-user@10.0.0.1")
    assert Path(argv[argv.index("-i") + 1]) == tmp_path / "cache" / "boruta" / "boruta-1.key"
    check_ssh_line(argv)


def check_ssh_line(argv: list[str]) -> None:
    """The key file is private and OpenSSH reads the line as meant (``-G`` prints the
    settings it would use and connects nowhere)."""
    key = Path(argv[argv.index("-i") + 1])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    ssh = shutil.which("ssh")
    assert ssh is not None, "the tests need OpenSSH's client (scripts/test.sh installs it)"
    settings = subprocess.run(
        [ssh, "-G", *argv[1:]], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    assert {f"identityfile {key}", "port 20001", "user boruta-user"} <= set(settings)
    assert {"hostname 10.0.0.1", "identitiesonly yes"} <= set(settings)


async def test_closing_shows_the_coordinators_end_time_and_forgets_the_key(
    farm: AppFarm, cli: Cli, tmp_path: Path
) -> None:
    await farm.idle_worker(1, {"board": "rpi4"})
    await cli("reserve", "--caps", "board=rpi4", "--wait")
    farm.clock.advance(timedelta(minutes=10))
    code, out, _ = await cli("requests", "close", "1")
    assert (code, out) == (0, "request 1: DONE, job ended 2026-01-01T00:10:00Z\n")
    assert not (tmp_path / "cache" / "boruta" / "boruta-1.key").exists()
    code, out, _ = await cli("requests", "show", "1", "--json")
    assert '"timeout": "2026-01-01T01:00:00Z"' in out  # the planned end, not the real one


async def test_closing_an_ended_request_says_what_it_is(farm: AppFarm, cli: Cli) -> None:
    await cli("reserve", "--caps", "board=none")  # no worker at all: INVALID at once
    code, out, err = await cli("requests", "close", "1")
    assert (code, out) == (1, "")
    assert err.startswith("boruta: request 1 is INVALID: ")
    assert err.endswith("; only a WAITING or IN PROGRESS request can be closed\n")


async def test_a_missing_token_says_how_to_set_one(farm: AppFarm, cli: Cli, tmp_path: Path) -> None:
    code, out, err = await cli("requests", "list", as_=None)
    path = tmp_path / "config" / "boruta" / "config.toml"
    assert (code, out) == (4, "")
    for way in ("BORUTA_TOKEN=", f'token = "brt_…" in {path}', "--token", "user add NAME"):
        assert way in err
    code, _, err = await cli("--token", "brt_wrong", "requests", "list", as_=None)
    assert code == 4 and err.endswith("(the token from --token)\n")


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("boruta.lab:8487", "needs http:// or https://, e.g. http://boruta.lab:8487"),
        ("127.0.0.1:8487", "needs http:// or https://, e.g. http://127.0.0.1:8487"),
        ("ftp://boruta.lab", "needs http:// or https://"),
        ("http://", "has no valid host"),
        ("http://boruta.lab:port", "is not a URL"),
        ("http://bo ruta.lab", "has no valid host"),
    ],
)
def test_a_url_without_a_scheme_or_host_is_a_usage_error(
    url: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--url", url, "--token", "t", "requests", "list"]) == 2
    err = capsys.readouterr().err
    assert hint in err and "from --url" in err and "reach" not in err


def test_the_url_from_the_environment_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BORUTA_URL", "boruta.lab")
    assert main(["--token", "t", "workers", "list"]) == 2
    assert "(from BORUTA_URL)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["reserve", "--caps", "a=b", "--priority", "99"],
        ["reserve", "--caps", "a=b", "--priority", "0"],
        ["requests", "update", "1", "--priority", "-3"],
        ["requests", "update", "1", "--priority", "high"],
    ],
)
def test_a_priority_out_of_range_says_1_to_16(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "priority must be 1..16" in capsys.readouterr().err


def test_an_unknown_state_is_an_error_listing_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["requests", "list", "--state", "running"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "unknown state 'running'" in err
    assert "waiting, in-progress, cancelled, timeout, invalid, done, failed" in err


async def test_a_state_filter_takes_any_spelling_of_in_progress(farm: AppFarm, cli: Cli) -> None:
    await farm.idle_worker(1, {"board": "rpi4"})
    await cli("reserve", "--caps", "board=rpi4")
    for spelling in ("in-progress", "IN_PROGRESS", "In Progress"):
        code, out, _ = await cli("requests", "list", "--state", spelling)
        assert code == 0 and out.splitlines()[1].split()[:3] == ["1", "8", "IN"], spelling
    assert (await cli("requests", "list", "--state", "done"))[1].splitlines()[1:] == []


async def test_ssh_config_on_a_waiting_or_ended_request_says_so(farm: AppFarm, cli: Cli) -> None:
    await farm.parked_worker()
    await cli("reserve", "--caps", "board=rpi4")
    code, out, err = await cli("ssh-config", "1")
    assert (code, out) == (1, "")
    assert err.startswith("boruta: request 1 is still WAITING for a worker (0 ahead in the queue)")
    await cli("requests", "close", "1")
    code, _, err = await cli("ssh-config", "1")
    assert code == 1 and "request 1 is CANCELLED" in err and "no access" in err


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
async def test_a_config_file_open_to_others_gets_a_warning(
    farm: AppFarm, cli: Cli, tmp_path: Path, mode: int, warned: bool
) -> None:
    path = tmp_path / "config" / "boruta" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'token = "{farm.tokens["alice"]}"\n')
    path.chmod(mode)
    code, _, err = await cli("requests", "list", as_=None)
    assert code == 0
    assert (f"chmod 600 {path}" in err) is warned and (f"mode {mode:04o}" in err) is warned


async def test_setstate_idle_brings_a_failed_worker_back_through_maintenance(
    farm: AppFarm, cli: Cli
) -> None:
    uuid = await farm.idle_worker(1, {"board": "rpi4"})
    await farm.service.set_fail(uuid, "sd card gone")
    code, out, err = await cli("admin", "setstate", uuid, "idle", as_="root")
    assert (code, out) == (0, f"worker {uuid}: going to IDLE\n")
    assert f"worker {uuid} is FAILED (sd card gone); IDLE is allowed only from MAINTENANCE" in err
    assert f"worker {uuid}: in MAINTENANCE" in err
    await farm.until_worker(uuid, WorkerState.IDLE)
    assert [c[0] for c in farm.dryads.calls][-2:] == ["maintenance", "prepare"]


async def test_a_failed_worker_that_fails_again_gets_the_command_to_retry(
    farm: AppFarm, cli: Cli
) -> None:
    uuid = await farm.idle_worker(1, {"board": "rpi4"})
    await farm.service.set_fail(uuid, "sd card gone")
    farm.dryads.fail = "link down"
    code, _, err = await cli("admin", "setstate", uuid, "idle", as_="root")
    assert code == 1 and "FAILED again on its way to MAINTENANCE: maintenance failed" in err
    assert err.endswith(f"run: boruta admin setstate {uuid} idle\n")
    assert farm.service.get_worker(uuid).state is WorkerState.FAIL


async def test_a_worker_stuck_on_its_way_to_maintenance_gets_the_command_to_run(
    farm: AppFarm, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = await farm.idle_worker(1, {"board": "rpi4"})
    await farm.service.set_fail(uuid, "sd card gone")
    release = anyio.Event()

    async def slow_maintenance(worker: str, message: str) -> None:
        await release.wait()

    monkeypatch.setattr(farm.dryads, "maintenance", slow_maintenance)
    monkeypatch.setattr(commands, "RECOVERY_WAIT", 0.3)
    code, _, err = await cli("admin", "setstate", uuid, "idle", as_="root")
    release.set()
    assert code == 1 and "is still BUSY (on its way to MAINTENANCE) after 0.3 s" in err
    assert err.endswith(f"says MAINTENANCE, run: boruta admin setstate {uuid} idle\n")
    await farm.until_worker(uuid, WorkerState.MAINTENANCE)
