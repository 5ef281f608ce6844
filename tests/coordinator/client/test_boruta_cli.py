"""The ``boruta`` command run in-process (a worker thread, the app in the test's loop):
tables, ``--json``, exit codes, the server's messages, config precedence, ssh-config."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import anyio
import pytest

from coordinator.boruta_cli import config, main
from coordinator.domain.ids import RequestID
from coordinator.domain.model import KeyType
from coordinator.domain.states import RequestState, WorkerState
from tests.coordinator.client.cli_runner import Cli
from tests.coordinator.client.thread_bridge import ThreadBridge
from tests.coordinator.doubles import ADMIN
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


async def test_requests_as_tables_and_json(farm: AppFarm, cli: Cli) -> None:
    await farm.parked_worker()
    assert await cli("reserve", "--caps", "board=rpi4", "--priority", "5") == (0, "1\n", "")
    code, out, _ = await cli("requests", "list")
    header, row = out.splitlines()
    assert code == 0 and header.split() == [
        *("ID", "PRI", "STATE", "OWNER", "WORKER", "ENDS/DEADLINE", "CAPS")
    ]
    assert row.split()[:5] == ["1", "5", "WAITING", "alice", "-"]
    code, out, _ = await cli("requests", "list", "--json", "--state", "waiting")
    assert [(r["id"], r["state"], r["caps"]) for r in json.loads(out)] == [
        (1, "WAITING", {"board": "rpi4"})
    ]
    code, out, _ = await cli("--json", "requests", "show", "1")
    assert (code, json.loads(out)["queue_position"]) == (0, 0)
    code, out, _ = await cli("requests", "show", "1")
    assert "queue position  0 waiting ahead" in out
    assert await cli("requests", "update", "1", "--priority", "3") == (
        0,
        "request 1: WAITING\n",
        "",
    )
    # The fake clock's time, not the local one: the end is the coordinator's record.
    assert await cli("requests", "close", "1") == (
        0,
        "request 1: CANCELLED at 2026-01-01T00:00:00Z\n",
        "",
    )
    code, out, _ = await cli("workers", "list", "--caps", "board=rpi4")
    assert code == 0 and "MAINTENANCE  down  -       board=rpi4" in out
    code, out, _ = await cli("workers", "show", "00000000-0000-4000-8000-000000000009", "--json")
    assert json.loads(out)["state"] == "MAINTENANCE"


async def test_errors_are_the_servers_message_and_an_exit_code(farm: AppFarm, cli: Cli) -> None:
    uuid = await farm.parked_worker()
    assert await cli("requests", "show", "7") == (1, "", "boruta: Request not found\n")
    await cli("reserve", "--caps", "board=rpi4")
    assert await cli("requests", "update", "1", "--valid-after", "+40d") == (
        1,
        "",
        "boruta: invalid request: requested time range illegal - "
        "ValidAfter must be before Deadline\n",
    )
    assert await cli("requests", "prolong", "1") == (
        1,
        "",
        "boruta: invalid request: worker not assigned\n",
    )
    code, _, err = await cli("requests", "list", as_=None)
    assert code == 4 and err.startswith("boruta: no API token: set BORUTA_TOKEN=")
    assert await cli("admin", "deregister", uuid) == (4, "", "boruta: only an admin may do this\n")
    assert await cli("requests", "close", "1", as_="bob") == (
        4,
        "",
        "boruta: only the owner of a request or an admin may do this\n",
    )
    assert await cli("reserve", "--caps", "nonsense") == (
        2,
        "",
        "boruta: capability 'nonsense' is not key=value\n",
    )
    assert (await cli("requests", "update", "1", "--deadline", "soon"))[0] == 2


async def test_unreachable_usage_and_interrupted_codes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--url", "http://127.0.0.1:1", "--token", "t", "requests", "list"]
    assert await anyio.to_thread.run_sync(main, argv) == 3
    assert "cannot reach the coordinator at http://127.0.0.1:1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["requests", "frobnicate"])
    assert usage.value.code == 2
    assert main(["users"]) == 2
    assert "boruta-coordinator user add" in capsys.readouterr().err
    assert main([]) == 2


async def test_admin_commands(farm: AppFarm, cli: Cli) -> None:
    uuid = await farm.worker(1)
    assert await cli("admin", "setgroups", uuid, "lab,ci", as_="root") == (
        0,
        f"worker {uuid}: groups lab,ci\n",
        "",
    )
    assert (await cli("admin", "identify", uuid, "--seconds", "4", as_="root"))[0] == 0
    assert ("identify", uuid, "4.0") in farm.dryads.calls
    assert await cli("admin", "healthcheck", uuid, as_="root") == (
        0,
        "stm: ok (version 1.2)\n",
        "",
    )
    assert (await cli("admin", "setstate", uuid, "idle", "--json", as_="root"))[0] == 0
    await farm.until_worker(uuid, WorkerState.IDLE)
    code, _, err = await cli("admin", "deregister", uuid, as_="root")
    assert (code, err) == (
        1,
        "boruta: invalid request: Worker is not in FAIL or MAINTENANCE state\n",
    )


def test_config_file_then_environment_then_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("BORUTA_URL", raising=False)
    monkeypatch.delenv("BORUTA_TOKEN", raising=False)
    none = Namespace(url=None, token=None, config=None)
    assert config.load(none) == config.Config("http://127.0.0.1:8487", None)
    (tmp_path / "boruta").mkdir()
    (tmp_path / "boruta" / "config.toml").write_text('url = "http://file"\ntoken = "f"\n')
    assert config.load(none) == config.Config("http://file", "f")
    monkeypatch.setenv("BORUTA_URL", "http://env")
    monkeypatch.setenv("BORUTA_TOKEN", "e")
    assert config.load(none) == config.Config("http://env", "e")
    flags = Namespace(url="http://flag", token="x", config=None)
    assert config.load(flags) == config.Config("http://flag", "x")
    assert "x" not in repr(config.load(flags))
    (tmp_path / "bad.toml").write_text("url = 3\n")
    with pytest.raises(config.ConfigError, match="url must be a string"):
        config.load(Namespace(url=None, token=None, config=str(tmp_path / "bad.toml")))


async def test_the_token_from_the_config_file_is_used_and_a_flag_overrides_it(
    farm: AppFarm, cli: Cli, tmp_path: Path
) -> None:
    folder = tmp_path / "config" / "boruta"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(f'token = "{farm.tokens["alice"]}"\n')
    assert (await cli("requests", "list", as_=None))[0] == 0
    assert (await cli("--token", "wrong", "requests", "list", as_=None))[0] == 4
    (folder / "config.toml").write_text("token = [")
    code, _, err = await cli("requests", "list", as_=None)
    assert code == 2 and err.startswith("boruta: ") and "config.toml" in err


async def test_ssh_config_prints_a_host_block_and_writes_a_private_key(
    farm: AppFarm, cli: Cli, tmp_path: Path
) -> None:
    await farm.idle_worker(1, {"board": "rpi4"})
    await cli("reserve", "--caps", "board=rpi4")
    code, out, _ = await cli("ssh-config", "1")
    key = tmp_path / "cache" / "boruta" / "boruta-1.key"
    known = key.with_suffix(".known_hosts")
    assert code == 0 and out == (
        "Host boruta-1\n    HostName 10.0.0.1\n    Port 20001\n    User boruta-user\n"
        f"    IdentityFile {key}\n    IdentitiesOnly yes\n    StrictHostKeyChecking yes\n"
        f"    UserKnownHostsFile {known}\n"
    )
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")  # Ed25519
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700


async def test_reserve_asks_for_ed25519_unless_told_rsa(farm: AppFarm, cli: Cli) -> None:
    await farm.idle_worker(1, {"board": "rpi4"})
    await farm.idle_worker(2, {"board": "rpi4"})
    assert (await cli("reserve", "--caps", "board=rpi4"))[0] == 0
    assert (await cli("reserve", "--caps", "board=rpi4", "--key-type", "rsa"))[0] == 0
    kinds = [farm.service.farm.requests[RequestID(n)].key_type for n in (1, 2)]
    assert kinds == [KeyType.ED25519, KeyType.RSA]


def test_an_unknown_key_type_is_an_error_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["reserve", "--caps", "a=b", "--key-type", "dsa"])
    assert exited.value.code == 2 and "(choose from 'rsa', 'ed25519')" in capsys.readouterr().err


async def test_reserve_wait_prints_the_access_when_matched(farm: AppFarm, cli: Cli) -> None:
    await farm.idle_worker(1, {"board": "rpi4"})
    code, out, err = await cli("reserve", "--caps", "board=rpi4", "--wait", "--json")
    access = json.loads(out)
    assert (code, access["id"], access["port"], access["username"]) == (0, 1, 20001, "boruta-user")
    assert access["key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert err.startswith("request 1 created for board=rpi4\n")


async def test_reserve_waits_in_the_queue_until_a_worker_is_free(
    farm: AppFarm, cli: Cli, bridge: ThreadBridge
) -> None:
    uuid = await farm.parked_worker()
    result: list[tuple[int, str, str]] = []

    async def reserve() -> None:
        result.append(await cli("reserve", "--caps", "board=rpi4", "--wait"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reserve)
        await bridge.acquiring.wait()  # the CLI has shown the request waiting
        await farm.service.set_worker_state(ADMIN, uuid, WorkerState.IDLE)
    code, out, err = result[0]
    assert code == 0 and out.startswith("request 1: ssh -i ") and "boruta-user@10.0.0.9" in out
    assert "request 1 WAITING, 0 ahead in the queue" in err


async def test_reserve_ssh_runs_ssh_with_a_private_key_then_releases(
    farm: AppFarm, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, record = tmp_path / "bin", tmp_path / "ssh.args"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {record}\n'
        f'stat -c %a "$2" >> {record}\n'
        f'cat "$2" | head -1 >> {record}\n'
        "exit 7\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    await farm.idle_worker(1, {"board": "rpi4"})
    code, _, err = await cli("reserve", "--caps", "board=rpi4", "--ssh")
    args = record.read_text().splitlines()
    key = args[1]
    known = args[9].removeprefix("UserKnownHostsFile=")
    assert args[:-2] == [
        *("-i", key, "-p", "20001", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes"),
        *("-o", f"UserKnownHostsFile={known}", "boruta-user@10.0.0.1"),
    ]
    assert not await anyio.Path(known).exists()
    assert args[-2:] == ["600", "-----BEGIN OPENSSH PRIVATE KEY-----"]
    assert not await anyio.Path(key).exists()
    assert code == 7 and "request 1 closed" in err
    assert (await farm.service.get_request(RequestID(1))).state is RequestState.DONE


def test_help_and_completion_do_not_import_httpx() -> None:
    probe = (
        "import sys\n"
        "from coordinator.boruta_cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "main(['completion', 'bash'])\n"
        "heavy = {m.split('.')[0] for m in sys.modules} & {'httpx', 'anyio', 'starlette'}\n"
        "print('HEAVY', sorted(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.splitlines()[-1] == "HEAVY []"


def test_bash_completion_completes_commands_and_actions(tmp_path: Path) -> None:
    script = tmp_path / "boruta.bash"
    script.write_text(
        subprocess.run(
            [sys.executable, "-m", "coordinator.boruta_cli", "completion", "bash"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    probe = (
        f"source {script}\n"
        'COMP_WORDS=(boruta requests ""); COMP_CWORD=2; _boruta; echo "${COMPREPLY[*]}"\n'
        'COMP_WORDS=(boruta ad); COMP_CWORD=1; _boruta; echo "${COMPREPLY[*]}"\n'
        'COMP_WORDS=(boruta admin setstate u ""); COMP_CWORD=4; _boruta; echo "${COMPREPLY[*]}"\n'
    )
    lines = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert set(lines[0].split()) >= {"list", "show", "close", "prolong", "update"}
    assert lines[1] == "admin"
    assert "idle" in lines[2].split() and "maintenance" in lines[2].split()
    zsh = subprocess.run(
        [sys.executable, "-m", "coordinator.boruta_cli", "completion", "zsh"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert zsh.startswith("#compdef boruta\n") and "complete -F _boruta boruta" in zsh
