"""dryad-seed, the reader of the boot partition's seed file: merged into the dryad's
configuration and validated by the dryad's own parser; the token kept out of it."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

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


def _pub(kind: str = "ssh-ed25519", comment: str = "alice@lab") -> str:
    key = asyncssh.generate_private_key(kind, comment=comment)
    return str(key.export_public_key().decode().strip())


def _apply(config: Path, boot: Path, text: str, keys: Path, net: Path | None = None) -> int:
    seed = boot / "boruta-seed.toml"
    seed.write_text(text)
    args = [str(seed), "--config", str(config), "--no-hostname", "--authorized-keys", str(keys)]
    args += ["--dut-network", str(net or boot.parent / "dut.network")]
    status: int = seed_mod.main(args)
    return status


def test_admin_keys_become_roots(board: tuple[Path, Path], tmp_path: Path) -> None:
    config, boot = board
    keys = tmp_path / "root/.ssh/authorized_keys"
    alice, bob = _pub(), _pub("ssh-rsa", "bob@lab")
    seed = f'ssh_authorized_keys = [\n  "{alice}",\n  "  {bob}  ",\n  "",\n]\n'
    assert _apply(config, boot, seed, keys) == 0
    lines = keys.read_text().splitlines()
    assert lines == [seed_mod.BLOCK_BEGIN, alice, bob, seed_mod.BLOCK_END]
    assert keys.stat().st_mode & 0o777 == 0o600
    assert keys.parent.stat().st_mode & 0o777 == 0o700
    # Keys alone are a seed worth applying; the configuration is unchanged but valid.
    assert load(config).coordinator_host
    applied = tomllib.loads((boot / "boruta-seed.applied.toml").read_text())
    assert applied["ssh_authorized_keys"] == [alice, f"  {bob}  ", ""]


def test_a_new_seed_replaces_its_keys_and_keeps_the_others(
    board: tuple[Path, Path], tmp_path: Path
) -> None:
    config, boot = board
    keys = tmp_path / "authorized_keys"
    by_hand = _pub(comment="added-by-hand")
    keys.write_text(f"# root's own\n{by_hand}\n")
    assert _apply(config, boot, f'ssh_authorized_keys = ["{_pub()}"]\n', keys) == 0
    carol = _pub(comment="carol@lab")
    assert _apply(config, boot, f'ssh_authorized_keys = ["{carol}"]\n', keys) == 0
    assert keys.read_text().splitlines() == [
        "# root's own",
        by_hand,
        seed_mod.BLOCK_BEGIN,
        carol,
        seed_mod.BLOCK_END,
    ]


def test_without_keys_root_gets_none(board: tuple[Path, Path], tmp_path: Path) -> None:
    """The template and a seed without keys leave root without a way in."""
    config, boot = board
    keys = tmp_path / "authorized_keys"
    assert _apply(config, boot, SEED_TEMPLATE.read_text(), keys) == 0
    assert _apply(config, boot, 'coordinator = "h:7175"\n', keys) == 0
    assert not keys.exists()


ED = _pub()
ED_TYPE, ED_BLOB, _ = ED.split(" ", 2)
RSA_BLOB = _pub("ssh-rsa").split()[1]


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ('"ssh-ed25519 AAAA"', "ssh_authorized_keys: expected a list of strings"),
        ("[1]", "expected a list of strings"),
        ('["-----BEGIN OPENSSH PRIVATE KEY----- b3Blbn"]', "this is a PRIVATE key"),
        (f'["from=\\"10.0.0.1\\" {ED}"]', "is not a public key line"),
        ('["hello"]', "ssh_authorized_keys[1]: 'hello' is not a public key line"),
        (f'["{ED_TYPE}"]', "is not a public key line"),
        (f'["{ED}", "ssh-dss AAAAB3NzaC1kc3M="]', "ssh_authorized_keys[2]:"),
        (f'["{ED_TYPE} {ED_BLOB[:-9]}"]', "the key's base64 is damaged"),
        (f'["{ED_TYPE} {ED_BLOB[:40]}"]', "not a valid ssh-ed25519 key"),  # cut, still base64
        (f'["{ED_TYPE} {RSA_BLOB}"]', "is not a ssh-ed25519 key"),
        (f'["{ED_TYPE} {ED_BLOB[:-8]}AAAAAAA="]', "not a valid ssh-ed25519 key"),
        (f'["{ED}\\n{ED}"]', "one key per string"),
        (f'["{ED_TYPE} {ED_BLOB} caf\u00e9"]', "printable ASCII only"),
    ],
)
def test_bad_keys_refuse_the_seed(
    board: tuple[Path, Path], tmp_path: Path, keys: str, reason: str
) -> None:
    config, boot = board
    target = tmp_path / "authorized_keys"
    before = config.read_text()
    status = _apply(config, boot, f'coordinator = "h:1"\nssh_authorized_keys = {keys}\n', target)
    assert status == 1
    assert reason in (boot / "boruta-seed.error.txt").read_text()
    assert config.read_text() == before and not target.exists()  # nothing half-applied
    assert (boot / "boruta-seed.toml").exists()


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_line_is_a_key_or_a_clear_refusal(line: str) -> None:
    try:
        keys = seed_mod.parse_keys([line])
    except seed_mod.SeedError as exc:
        assert str(exc).startswith("ssh_authorized_keys[1]: ")
    else:
        assert keys == [] or (len(keys) == 1 and "\n" not in keys[0])


def test_the_dut_network_from_the_seed(board: tuple[Path, Path], tmp_path: Path) -> None:
    config, boot = board
    net = tmp_path / "30-muxpi-dut.network"
    keys = tmp_path / "k"
    assert _apply(config, boot, 'dut_address = "10.20.0.1/24"\n', keys, net) == 0
    text = net.read_text()
    assert "Address=10.20.0.1/24\n" in text and "DHCPServer=yes\n" in text
    assert "PoolOffset=10\n" in text and "EmitRouter=no\n" in text
    assert "Path=platform-*.usb-usb-*\n" in text  # the USB adapter, never the lab's EMAC
    assert _apply(config, boot, 'dut_address = "10.20.0.1/30"\ndut_dhcp_server = false\n', keys,
                  net) == 0  # fmt: skip
    text = net.read_text()
    assert "Address=10.20.0.1/30\n" in text and "DHCPServer" not in text
    assert _apply(config, boot, 'dut_address = "none"\n', keys, net) == 0
    assert not net.exists()  # left alone: networkd does not manage it


def test_the_images_dut_network_is_the_original_labs() -> None:
    """192.168.69.1/24 with DHCP from .10, as the original MuxPi setup; the same text
    dryad-seed writes, so the two cannot drift apart."""
    shipped = (IMAGE_BUILD / "overlay/etc/systemd/network/30-muxpi-dut.network").read_text()
    made = seed_mod.dut_network({"dut_address": "192.168.69.1/24"})
    assert made is not None
    assert shipped.splitlines()[1:] == made.splitlines()[1:]  # all but the header line


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('dut_address = "192.168.69.1"\n', "/30 or wider"),
        ('dut_address = "192.168.69.1/31"\n', "/30 or wider"),
        ('dut_address = "fd00::1/64"\n', "/30 or wider"),
        ('dut_address = "192.168.69.0/24"\n', "network's own or broadcast"),
        ('dut_address = "192.168.69.255/24"\n', "network's own or broadcast"),
        ('dut_address = "lab"\n', "'lab' is not an IPv4 address"),
        ("dut_address = 1\n", "dut_address: expected a string"),
        ('dut_address = "10.0.0.1/24"\ndut_dhcp_server = "yes"\n', "expected true or false"),
        ("dut_dhcp_server = false\n", "give dut_address too"),
    ],
)
def test_bad_dut_network_refuses_the_seed(
    board: tuple[Path, Path], tmp_path: Path, text: str, reason: str
) -> None:
    config, boot = board
    net = tmp_path / "dut.network"
    net.write_text("kept\n")
    assert _apply(config, boot, text, tmp_path / "k", net) == 1
    assert reason in (boot / "boruta-seed.error.txt").read_text()
    assert net.read_text() == "kept\n"


def test_a_seeds_coordinator_replaces_a_list_of_them(board: tuple[Path, Path]) -> None:
    config, boot = board
    text = config.read_text().replace(
        'coordinator = "coordinator.invalid:7175"', 'coordinators = ["a.lab:7175", "b.lab:7175"]'
    )
    config.write_text(text)
    assert load(config).coordinator == "a.lab:7175, b.lab:7175"
    seed = boot / "boruta-seed.toml"
    seed.write_text('coordinator = "10.0.2.2:7175"\n')
    assert seed_mod.main([str(seed), "--config", str(config), "--no-hostname"]) == 0
    assert load(config).coordinator == "10.0.2.2:7175"
