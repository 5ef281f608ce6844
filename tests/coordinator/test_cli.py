"""``boruta-coordinator``'s user and database commands, run in-process on a real SQLite file."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from coordinator import cli
from coordinator.cli import main
from coordinator.settings import Settings
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token
from coordinator.tunnels.claim import claim


def run(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--db", str(db), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_user_add_prints_a_token_that_is_stored_only_hashed(capsys, db_path: Path) -> None:
    code, out, _ = run(capsys, db_path, "user", "add", "alice", "--groups", "lab1, lab2")
    token = out.splitlines()[-1]
    assert code == 0 and token.startswith("brt_")
    store = SqlStore.open(db_path)
    user = store.user_by_token(hash_token(token))
    store.close()
    assert user is not None and user.groups == ("lab1", "lab2") and not user.admin
    assert token.encode() not in db_path.read_bytes()


def test_replacing_a_token_revokes_the_old_one(capsys, db_path: Path) -> None:
    old = run(capsys, db_path, "user", "add", "root", "--admin")[1].splitlines()[-1]
    new = run(capsys, db_path, "user", "token", "root")[1].splitlines()[-1]
    store = SqlStore.open(db_path)
    assert store.user_by_token(hash_token(old)) is None
    assert store.user_by_token(hash_token(new)) is not None
    store.close()


def test_user_list_and_remove(capsys, db_path: Path) -> None:
    run(capsys, db_path, "user", "add", "root", "--admin")
    run(capsys, db_path, "user", "add", "bob", "--groups", "g")
    assert run(capsys, db_path, "user", "list")[1] == "bob\tuser\tg\nroot\tadmin\t\n"
    assert run(capsys, db_path, "user", "remove", "bob")[0] == 0
    assert "bob" not in run(capsys, db_path, "user", "list")[1]


def test_a_second_user_of_the_same_name_is_refused(capsys, db_path: Path) -> None:
    run(capsys, db_path, "user", "add", "bob")
    code, out, err = run(capsys, db_path, "user", "add", "bob")
    assert code == 1 and "bob" in err and "brt_" not in out


def test_removing_an_unknown_user_says_so(capsys, db_path: Path) -> None:
    code, _, err = run(capsys, db_path, "user", "remove", "nobody")
    assert code == 1 and "not found" in err


def test_migrate_reports_an_up_to_date_database(capsys, db_path: Path) -> None:
    assert run(capsys, db_path, "migrate")[:2] == (0, f"database {db_path} is up to date\n")


def test_a_corrupt_database_is_a_clear_error_not_a_traceback(capsys, db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database" * 100)
    code, _, err = run(capsys, db_path, "migrate")
    assert code == 1 and "corrupt" in err


def test_a_bad_config_file_is_refused_before_anything_runs(capsys, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('http = "nowhere"\n')
    code = main(["--config", str(config), "migrate"])
    assert code == 2 and "HOST:PORT" in capsys.readouterr().err


def test_enrol_token_create_prints_a_token_stored_only_hashed(capsys, db_path: Path) -> None:
    code, out, _ = run(capsys, db_path, "enrol-token", "create", "--ttl", "600")
    token = out.splitlines()[-1]
    store = SqlStore.open(db_path)
    valid_now = store.enrol_token_valid(hash_token(token), datetime.now(UTC))
    valid_later = store.enrol_token_valid(hash_token(token), datetime.now(UTC) + timedelta(hours=1))
    store.close()
    assert code == 0 and token.startswith("brt_") and valid_now and not valid_later
    assert token.encode() not in db_path.read_bytes()


def test_enrol_tokens_last_a_day_by_default(capsys, db_path: Path) -> None:
    token = run(capsys, db_path, "enrol-token", "create")[1].splitlines()[-1]
    store = SqlStore.open(db_path)
    soon = datetime.now(UTC) + timedelta(hours=23, minutes=59)
    valid = [
        store.enrol_token_valid(hash_token(token), soon + timedelta(minutes=m)) for m in (0, 2)
    ]
    store.close()
    assert valid == [True, False]


def test_enrol_token_revoke_ends_every_token(capsys, db_path: Path) -> None:
    tokens = [run(capsys, db_path, "enrol-token", "create")[1].splitlines()[-1] for _ in "ab"]
    code, out, _ = run(capsys, db_path, "enrol-token", "revoke")
    store = SqlStore.open(db_path)
    valid = [store.enrol_token_valid(hash_token(t), datetime.now(UTC)) for t in tokens]
    store.close()
    assert (code, valid) == (0, [False, False])
    assert out == f"revoked 2 enrolment token(s) in database {db_path}\n"


def test_enrol_token_ttl_must_be_positive(capsys, db_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--db", str(db_path), "enrol-token", "create", "--ttl", "0"])
    assert exited.value.code == 2 and "positive" in capsys.readouterr().err


def test_enrol_token_help_says_one_token_enrols_a_batch(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["enrol-token", "--help"])
    assert "whole batch" in " ".join(capsys.readouterr().out.split())


def test_with_no_database_configured_user_add_names_the_one_it_made(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["user", "add", "alice"])
    out, err = capsys.readouterr()
    made = tmp_path / "boruta.db"
    assert code == 0 and made.exists()
    assert f"creating a new database {made}: none is configured (--db PATH|URL" in err
    assert f"in database {made}; token:" in out and out.splitlines()[-1].startswith("brt_")
    assert main(["user", "add", "bob"]) == 0
    assert f"using {made}: none is configured" in capsys.readouterr().err


def test_with_no_database_configured_user_list_makes_no_empty_one(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["user", "list"], ["user", "remove", "x"], ["enrol-token", "revoke"]):
        assert main(argv) == 2
        assert f"no database at {tmp_path / 'boruta.db'}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_db_and_config_are_taken_after_the_sub_command_too(capsys, db_path: Path) -> None:
    assert main(["user", "add", "bob", "--db", str(db_path)]) == 0
    assert f"in database {db_path}; token:" in capsys.readouterr().out
    assert main(["user", "list", "--db", str(db_path)]) == 0
    assert capsys.readouterr() == ("bob\tuser\t\n", "")
    args = cli._parser().parse_args(["serve", "--db", "x.db", "--http", "127.0.0.1:1"])
    assert (args.db, args.http) == ("x.db", "127.0.0.1:1")
    assert cli._parser().parse_args(["--db", "first.db", "migrate"]).db == "first.db"


def test_serve_takes_the_scheduling_policy_and_refuses_others(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    seen: list[Settings] = []

    def serve(settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr("coordinator.cli._serve", serve)
    assert run(capsys, db_path, "serve", "--scheduling", "fair")[0] == 0
    assert seen[0].scheduling == "fair"
    with pytest.raises(SystemExit):
        main(["serve", "--scheduling", "lottery"])
    assert "invalid choice: 'lottery'" in capsys.readouterr().err


# Bytes of argv that are not UTF-8 reach Python as lone surrogates (surrogateescape).
_SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_BAD_NAMES = st.one_of(
    st.tuples(st.text(max_size=5), _SURROGATE, st.text(max_size=5)).map("".join),
    st.text(min_size=65, max_size=80).filter(lambda t: t.strip()),
    st.sampled_from(["a b", "a:b", "a,b", "tab\there", "new\nline", "\x7f"]),
).filter(lambda t: not t.startswith("-"))  # argparse's: an option, not a name


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=_BAD_NAMES, group=st.sampled_from(["", "g"]))
def test_user_add_refuses_names_that_cannot_be_stored_and_stores_nothing(
    capsys, db_path: Path, name: str, group: str
) -> None:
    code, out, err = run(capsys, db_path, "user", "add", name, "--groups", group)
    assert code == 2 and "brt_" not in out
    assert "user name" in err
    assert run(capsys, db_path, "user", "list")[1] == ""


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    group=st.one_of(
        st.tuples(st.just("g"), _SURROGATE).map("".join),
        st.text(st.characters(codec="utf-8", exclude_characters=","), min_size=65).filter(
            lambda g: len(g.strip()) > 64
        ),
        st.sampled_from(["tab\there", "new\nline", "del\x7f"]),
    )
)
def test_user_add_refuses_group_names_that_cannot_be_stored(
    capsys, db_path: Path, group: str
) -> None:
    # One argument with "=": a group that starts with "-" is no option to argparse then.
    code, out, err = run(capsys, db_path, "user", "add", "carol", f"--groups={group}")
    assert code == 2 and "brt_" not in out and "group" in err
    assert run(capsys, db_path, "user", "list")[1] == ""


def test_ctrl_c_while_standing_by_ends_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(settings: Settings) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_serve", interrupted)
    assert main(["--db", "postgresql://nobody@127.0.0.1:1/none", "serve"]) == 130
    assert capsys.readouterr().err == ""


def test_serve_refuses_a_tunnel_range_another_coordinator_here_claimed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: Path
) -> None:
    """Before it binds any port; one line and exit 1, as for a served SQLite file."""
    config = tmp_path / "c.toml"
    config.write_text('tunnel_ports = "64500-64509"\ntunnel_bind = "127.0.0.251"\n')
    args = ["--config", str(config), "serve", "--http", "127.0.0.1:0", "--link", "127.0.0.1:0"]
    with claim(range(64505, 64600), "127.0.0.251"):
        assert run(capsys, db_path, *args) == (
            1,
            "",
            "boruta-coordinator: tunnel_ports 64500-64509 (on 127.0.0.251) overlap 64505-64599 "
            f"(on 127.0.0.251) of another coordinator on this host (pid {os.getpid()}): give "
            "each coordinator its own range\n",
        )
    store = SqlStore.open(str(db_path))
    try:
        store.claim_serving("the test")  # the refused one let the database go
    finally:
        store.close()
