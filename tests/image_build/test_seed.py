"""dryad-seed, the reader of the boot partition's seed file: merged into the dryad's
configuration and validated by the dryad's own parser; the token kept out of it."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from dryad.settings import load
from tests.image_build.commands import IMAGE_BUILD

PKG = IMAGE_BUILD / "pkg-root"
CONFFILE = PKG / "etc/boruta/dryad.toml"
SEED_TEMPLATE = IMAGE_BUILD / "overlay/boot/firmware/boruta-seed.toml"


def _module() -> ModuleType:
    path = PKG / "usr/lib/dryad/python/dryad_seed.py"
    spec = importlib.util.spec_from_file_location("dryad_seed", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dryad_seed"] = module
    spec.loader.exec_module(module)
    return module


seed_mod = _module()


@pytest.fixture
def board(tmp_path: Path) -> tuple[Path, Path]:
    """The packaged conffile, pointed at a temporary state directory, and a boot dir."""
    state = tmp_path / "state"
    config = tmp_path / "etc/dryad.toml"
    config.parent.mkdir()
    config.write_text(
        CONFFILE.read_text()
        .replace("/var/lib/boruta-dryad/enrol-token", str(state / "enrol-token"))
        .replace('"/var/lib/boruta-dryad"', f'"{state}"')
    )
    boot = tmp_path / "boot"
    boot.mkdir()
    return config, boot


def test_packaged_conffile_is_valid() -> None:
    settings = load(CONFFILE)
    assert settings.enrol_token_file == Path("/var/lib/boruta-dryad/enrol-token")
    assert settings.stm.port == "/dev/ttyS2"
    assert settings.profile == "muxpi"


def test_seed_template_asks_for_nothing(board: tuple[Path, Path]) -> None:
    """The template on a fresh image is valid TOML and changes nothing."""
    config, boot = board
    seed = boot / "boruta-seed.toml"
    seed.write_text(SEED_TEMPLATE.read_text())
    before = config.read_text()
    assert seed_mod.main([str(seed), "--config", str(config), "--no-hostname"]) == 0
    assert config.read_text() == before
    assert seed.exists()


def test_seed_applied(board: tuple[Path, Path]) -> None:
    config, boot = board
    seed = boot / "boruta-seed.toml"
    seed.write_text(
        "\ufeff"  # as Notepad saves it
        'coordinator = "10.0.2.2:7175"\n'
        'enrol_token = "  s3cret  "\n'
        "[caps]\n"
        'device_type = "rpi4"\n'
        '"odd key" = "a \\"quoted\\" value"\n'
    )
    assert seed_mod.main([str(seed), "--config", str(config), "--no-hostname"]) == 0
    settings = load(config)
    assert settings.coordinator == "10.0.2.2:7175"
    assert dict(settings.caps) == {"device_type": "rpi4", "odd key": 'a "quoted" value'}
    assert settings.read_enrol_token() == "s3cret"
    token_file = settings.enrol_token_file
    assert token_file is not None and token_file.stat().st_mode & 0o777 == 0o600
    assert "s3cret" not in config.read_text()
    # Renamed, minus the secret, so it is neither applied twice nor left readable.
    assert not seed.exists()
    applied = tomllib.loads((boot / "boruta-seed.applied.toml").read_text())
    assert applied == {
        "coordinator": "10.0.2.2:7175",
        "caps": {"device_type": "rpi4", "odd key": 'a "quoted" value'},
        "enrol_token_applied": True,
    }
    # Everything else of the conffile is kept.
    assert settings.job_user.groups == ("disk", "dialout", "stm", "uucp")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('coordinator = "host:99999"\n', "not a port number"),
        ("coordinator = 7175\n", "expected a string"),
        ('coordinatr = "h:1"\n', "coordinatr: unknown key"),
        ('coordinator = "h:1\n', "cannot read it"),
        ('coordinator = "h:1"\n[caps]\nUUID = "x"\n', "caps.UUID"),
        ('hostname = "bad_name!"\n', "not a host name"),
    ],
)
def test_bad_seed_left_with_the_reason(board: tuple[Path, Path], text: str, reason: str) -> None:
    config, boot = board
    seed = boot / "boruta-seed.toml"
    seed.write_text(text)
    before = config.read_text()
    assert seed_mod.main([str(seed), "--config", str(config), "--no-hostname"]) == 1
    assert config.read_text() == before
    assert seed.exists()
    assert reason in (boot / "boruta-seed.error.txt").read_text()


def test_identity_report(board: tuple[Path, Path]) -> None:
    config, boot = board
    report = boot / "boruta-identity.txt"
    assert seed_mod.main(["--config", str(config), "--identity", str(report)]) == 0
    text = report.read_text()
    uuid = (config.parent.parent / "state/uuid").read_text().strip()
    assert f"dryad UUID: {uuid}\n" in text
    assert "public key: ssh-ed25519 " in text
    # A second boot keeps the identity.
    assert seed_mod.main(["--config", str(config), "--identity", str(report)]) == 0
    assert report.read_text() == text


def test_dump_toml_round_trips() -> None:
    data = {
        "a": "x\\y\n\u00e9",
        "n": 3,
        "f": 1.5,
        "b": False,
        "l": ["p", "q"],
        "t": {"k-1": "v", "with space": "w"},
    }
    assert tomllib.loads(seed_mod.dump_toml(data)) == data
