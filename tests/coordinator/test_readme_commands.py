"""Every ``boruta`` and ``boruta-coordinator`` command line in the README's code blocks is
accepted by the command's own parser, with its optional parts and each alternative."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator import cli
from coordinator.boruta_cli import parser as boruta_parser

README = Path(__file__).resolve().parents[2] / "README.md"
SAMPLES = {
    "NAME": "bob",
    "UUID": "00000000-0000-4000-8000-000000000001",
    "FILE": "boruta.toml",
    "HOST:PORT": "127.0.0.1:9",
    "PATH|URL": "farm/boruta.db",
    "S": "60",
}
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "boruta": boruta_parser.build,
    "boruta-coordinator": cli._parser,
}


def usage_lines() -> Iterator[tuple[str, list[str]]]:
    """(program, words) for each command line in a ```sh block, comments and redirections cut."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    for line in (line for block in blocks for line in block.splitlines()):
        line = re.sub(r"\s#.*", "", line).split(">>")[0].replace("<(", "").strip().rstrip(")")
        words = line.split()
        if "source" in words:
            words = words[words.index("source") + 1 :]
        if words and words[0] in PARSERS:
            yield words[0], words[1:]


def variants(words: list[str]) -> Iterator[list[str]]:
    """With every optional part and without any; the i-th choice of each ``a|b``."""
    for optional in (True, False):
        kept, depth = [], 0
        for word in words:
            depth += word.count("[")
            if optional or depth == 0:
                kept.append(SAMPLES.get(word.strip("[]"), word.strip("[]")))
            depth -= word.count("]")
        widest = max((w.count("|") + 1 for w in kept), default=1)
        for i in range(widest):
            yield [w.split("|")[min(i, w.count("|"))] for w in kept]


CASES = [(prog, argv) for prog, words in usage_lines() for argv in variants(words)]


def test_the_readme_shows_both_commands() -> None:
    programs = {prog for prog, _ in CASES}
    assert programs == set(PARSERS) and len(CASES) > 20


@pytest.mark.parametrize(("prog", "argv"), CASES, ids=[" ".join([p, *a]) for p, a in CASES])
def test_a_readme_command_line_parses(prog: str, argv: list[str]) -> None:
    try:
        PARSERS[prog]().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README: `{prog} {' '.join(argv)}` is refused (exit {exc.code})")
