"""Settings: defaults, the TOML file, flags over the file, and clear refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.domain.fairshare import Policy, Scheduling
from coordinator.settings import Settings, SettingsError, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "coordinator.toml"
    path.write_text(text)
    return path


def test_defaults_match_the_original_ports_and_timeout() -> None:
    settings = load(None)
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8487)
    assert settings.policy.job_timeout == timedelta(hours=1)


def test_file_values_apply_and_flags_override_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[coordinator]\ndb = "/var/lib/boruta.db"\njob_timeout = 600\n'
        'max_job_length = 1200\nhttp = "0.0.0.0:9000"\n',
    )
    settings = load(path, http="127.0.0.1:1", db=None)
    assert settings.db == "/var/lib/boruta.db" and settings.http == "127.0.0.1:1"
    assert settings.policy.max_job_length == timedelta(seconds=1200)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('colour = "blue"', "unknown setting 'colour'"),
        ('job_timeout = "1h"', "job_timeout must be a int"),
        ("job_timeout = true", "job_timeout must be a int"),
        ("job_timeout = 0", "job_timeout must be positive"),
        ("job_timeout = 7200\nmax_job_length = 3600", "max_job_length must be at least"),
        ('sqlite_sync = "OFF"', "sqlite_sync must be FULL or NORMAL"),
        ('http = "localhost"', "http must be HOST:PORT"),
        ("this is not toml", "cannot read"),
        ('scheduling = "lottery"', "scheduling must be fifo or fair, not 'lottery'"),
        ("usage_half_life = 0", "usage_half_life must be from 60 to 31536000 seconds"),
        ("usage_half_life = 59", "usage_half_life must be from 60"),
        ("finished_in_memory = -1", "finished_in_memory must be zero or more"),
        ("loop_lag_probe = -0.001", "loop_lag_probe must be from 0 to 1 second"),
        ("loop_lag_probe = 5", "loop_lag_probe must be from 0 to 1 second"),
        ('peer_url = "https://a.lab:8487"', "peer_url must be http://HOST:PORT"),
        ('peer_url = "http://a.lab"', "peer_url must be http://HOST:PORT"),
        ('peer_url = "http://a.lab:0"', "peer_url must be http://HOST:PORT"),
        ('peer_url = "http://a.lab:99999"', "peer_url must be http://HOST:PORT"),
        ('peer_url = "http://a.lab:8487/api"', "peer_url must be http://HOST:PORT"),
        ('peer_url = "http://u:p@a.lab:8487"', "peer_url must be http://HOST:PORT"),
        ('peer_url = "http://a.lab:8487?x=1"', "peer_url must be http://HOST:PORT"),
        ('peer_url = "http://a .lab:8487"', "peer_url must be http://HOST:PORT"),
        ('peer_url = "http://[::1:8487"', "peer_url must be http://HOST:PORT"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(
    tmp_path: Path, text: str, complaint: str
) -> None:
    with pytest.raises(SettingsError, match=complaint):
        load(write(tmp_path, text))


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_an_ipv6_listen_address_is_split_correctly() -> None:
    settings = Settings(http="[::1]:8487").validate()
    assert (settings.http_host, settings.http_port) == ("::1", 8487)


def test_scheduling_comes_from_the_file_and_the_serve_flag(tmp_path: Path) -> None:
    assert load(None).scheduling_rules == Scheduling()  # fifo, one day: the original's order
    path = write(tmp_path, 'scheduling = "fair"\nusage_half_life = 7200\n')
    assert load(path).scheduling_rules == Scheduling(Policy.FAIR, timedelta(hours=2))
    assert load(path, scheduling="fifo").scheduling_rules.policy is Policy.FIFO


def test_the_peer_url_is_derived_from_the_public_host_or_the_http_address() -> None:
    assert Settings(peer_url="http://b.lab:80/").peer_address == "http://b.lab:80"
    assert Settings(http="10.0.0.2:8487").peer_address == "http://10.0.0.2:8487"
    assert Settings(http="0.0.0.0:8487", public_host="a.lab").peer_address == "http://a.lab:8487"
    assert Settings(http="[::1]:9000").peer_address == "http://[::1]:9000"
    wildcard = Settings(http="0.0.0.0:8487").peer_address
    assert wildcard.startswith("http://") and "0.0.0.0" not in wildcard
    assert Settings(http="127.0.0.1:0").peer_address == ""  # chosen at start: unknown


def test_a_good_peer_url_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, 'peer_url = "http://[fd00::2]:8487"\n')
    assert load(path).peer_address == "http://[fd00::2]:8487"
