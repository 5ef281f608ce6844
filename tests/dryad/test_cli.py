"""The dryad command: config errors in one line, a sim dryad that registers, clean SIGTERM."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import dryad.cli
from coordinator import wire
from dryad.identity import Identity
from tests.dryad.link_doubles import FAST, FakeCoordinator, settings_for


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('coordinator = "h"\nprofile = "pi"\n', "profile: unknown board profile 'pi'"),
        ('coordinator = "h"\n[health]\ninterval = "often"\n', "health.interval: expected"),
        ("coordinator = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = write_config(tmp_path / "dryad.toml", text)
    assert dryad.cli.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dryad: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_missing_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dryad.cli.main(["--config", str(tmp_path / "none.toml")]) == 2
    assert "no such configuration file" in capsys.readouterr().err


def test_a_bad_job_user_name_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path / "dryad.toml",
        f'coordinator = "h"\nstate_dir = "{tmp_path}/s"\n[job_user]\nname = "Bad Name"\n',
    )
    assert dryad.cli.main(["--config", str(config)]) == 2
    assert "not a valid user or group name" in capsys.readouterr().err


def test_an_unknown_profile_flag_is_refused_by_argparse(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        dryad.cli.main(["--config", str(tmp_path / "x.toml"), "--profile", "pi"])
    assert exited.value.code == 2


def test_missing_hardware_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "dryad.toml",
        f'coordinator = "h"\nstate_dir = "{tmp_path}/s"\nprofile = "generic"\n'
        '[job_user]\nmanage = false\n[generic.display]\ntype = "ssd1306"\ni2c_port = 97\n',
    )
    if importlib.util.find_spec("luma") is None:  # pragma: no cover
        pytest.skip("luma is not installed")
    assert dryad.cli.main(["--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dryad: ") and "Traceback" not in err


def test_a_wrong_generic_pin_stops_the_dryad_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "dryad.toml",
        f'coordinator = "h"\nstate_dir = "{tmp_path}/s"\nprofile = "generic"\n'
        "[job_user]\nmanage = false\n[generic]\nsimulate = true\n"
        '[generic.power]\ntype = "gpio"\npin = "GPIO99"\n',
    )
    assert dryad.cli.main(["--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dryad: generic.power.pin: GPIO99 does not exist")
    assert "Traceback" not in err and "ready" not in err


@pytest.mark.anyio
async def test_a_sim_dryad_registers_with_its_caps(
    coordinator: FakeCoordinator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dryad.users import JobUsers

    caplog.set_level(logging.INFO)
    settings = settings_for(
        coordinator,
        tmp_path / "state",
        job_user={"manage": False},
        sim={"png_file": str(tmp_path / "oled.png")},
    )
    identity = Identity.load(settings.state_dir)
    users = JobUsers("boruta-user", (), manage=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: dryad.cli.run(settings, identity, users, backoff=FAST))
        register = await coordinator.next(wire.REGISTER, within=20)
        assert register.params["caps"] == {"board": "rpi4", "arch": "arm", "UUID": identity.uuid}
        assert register.session.peer is not None
        await register.session.peer.call(wire.DISPLAY, {"state": "IDLE"}, seconds=10)
        # Stopped as systemd stops it: the dryad's own handler has replaced the default.
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
    assert "SIGTERM received; stopping" in caplog.messages
    assert "dryad stopped" in caplog.messages
    ready = f"dryad connected to coordinator {settings.coordinator} as {identity.uuid}"
    assert ready in caplog.messages
    assert (tmp_path / "oled.png").exists()


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_command_connects_and_stops_cleanly_on_sigterm(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "dryad.toml",
        f'coordinator = "127.0.0.1:{coordinator.port}"\n'
        f'enrol_token = "{settings_for(coordinator, tmp_path).enrol_token}"\n'
        f'profile = "sim"\nstate_dir = "{tmp_path}/state"\n'
        "[job_user]\nmanage = false\n",
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = await anyio.open_process(
        [sys.executable, "-m", "dryad", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        env=env,
    )
    async with process:
        assert process.stderr is not None
        seen = b""
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                seen += chunk
                if b"dryad connected to coordinator" in seen:
                    break
            await coordinator.next(wire.REGISTER)
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            async for chunk in process.stderr:
                seen += chunk
            code = await process.wait()
    text = seen.decode()
    assert code == 0, text
    assert "SIGTERM received; stopping" in text and "dryad stopped" in text
    assert "Traceback" not in text


def test_the_dryad_reports_the_distributions_version() -> None:
    from importlib.metadata import version

    import dryad

    assert dryad.__version__ == version("boruta")
