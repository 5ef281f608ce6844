"""The docs/ pages are what the code cites, and the citations cannot rot.

A citation is ``docs/<page>.md §<heading>`` (more headings of the same page follow as
``, §<heading>``), the heading ended by punctuation or the end of the line; see
docs/README.md. These tests fail on a citation of the old, out-of-repository spec, on a
citation whose page or heading does not exist, and on a stray ``§``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its examples are not citations

# Pages another branch writes, which docs/ already links to; remove once they exist.
PENDING: frozenset[str] = frozenset()  # pages another change is about to add

# Made of pieces so that this file does not match itself.
OLD_SPEC = re.compile("spec" + r"[/ ]?§|" + "spec" + r"/[a-z]+\.md|" + "shared" + "/spec")
PAGE = re.compile(r"(?<![\w/.-])docs/([a-z0-9_-]+\.md)")
SECTION = re.compile(r"§([A-Za-z0-9 _-]*)")
MORE = re.compile(r", §")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
SKIP_DIRS = frozenset({".git", ".venv", "__pycache__", "node_modules", ".cache", "out"})


@dataclass(frozen=True)
class Citation:
    where: str  # path:line
    page: str
    section: str


def normalise(heading: str) -> str:
    """A heading as citations name it: no markup, one space between words, lower case."""
    # "_" stays: it is part of names such as set_fail, and GitHub keeps it in anchors.
    return " ".join(re.sub(r"[`*]", "", heading).split()).lower()


def slug(heading: str) -> str:
    """The anchor a Markdown renderer makes of a heading (GitHub's rule for plain text)."""
    return re.sub(r"[^a-z0-9 _-]", "", normalise(heading)).replace(" ", "-")


@cache
def headings(page: str) -> tuple[str, ...]:
    """The headings of docs/<page>, outside fenced code blocks, normalised."""
    found = []
    fenced = False
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append(normalise(match.group(2)))
    return tuple(found)


def repository_files() -> list[Path]:
    """Tracked and new (not ignored) files, or every file when this is no git checkout."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return [
            p
            for p in ROOT.rglob("*")
            if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)
        ]
    return sorted({ROOT / name for name in listed.split("\0") if name})


@cache
def texts() -> tuple[tuple[str, str], ...]:
    """(relative path, content) of every readable text file of the repository but this one."""
    found = []
    for path in repository_files():
        if path.relative_to(ROOT).as_posix() == THIS:
            continue
        try:
            if not path.is_file() or path.stat().st_size > 2_000_000:
                continue
            found.append((path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue  # binary, or gone since it was listed
    return tuple(found)


def outside_docs() -> Iterator[tuple[str, str]]:
    return ((name, text) for name, text in texts() if not name.startswith("docs/"))


def parse(where: str, line: str) -> tuple[list[Citation], set[int]]:
    """The citations in one line, and the positions of the ``§`` signs they use."""
    citations, used = [], set()
    for page in PAGE.finditer(line):
        at = page.end()
        if not line.startswith(" §", at):
            continue  # the page alone, without a section
        at += 1
        while True:
            section = SECTION.match(line, at)
            assert section is not None
            used.add(at)
            citations.append(Citation(where, page.group(1), section.group(1).strip()))
            at = section.end()
            more = MORE.match(line, at)
            if more is None:
                break
            at = more.end() - 1
    return citations, used


def all_citations() -> list[Citation]:
    found = []
    for name, text in texts():
        for number, line in enumerate(text.splitlines(), start=1):
            found += parse(f"{name}:{number}", line)[0]
    return found


def test_nothing_outside_docs_cites_the_old_spec() -> None:
    hits = [
        f"{name}:{number}: {line.strip()}"
        for name, text in outside_docs()
        for number, line in enumerate(text.splitlines(), start=1)
        if OLD_SPEC.search(line)
    ]
    assert not hits, "cite docs/<page>.md §<heading> instead:\n" + "\n".join(hits)


def test_every_citation_names_an_existing_page_and_heading() -> None:
    citations = all_citations()
    assert len(citations) >= 20, "the citation parser finds (almost) nothing: is it broken?"
    bad = []
    for c in citations:
        if not (DOCS / c.page).is_file():
            bad.append(f"{c.where}: no page docs/{c.page}")
        elif normalise(c.section) not in headings(c.page):
            bad.append(
                f"{c.where}: docs/{c.page} has no heading {c.section!r} "
                f"(headings: {', '.join(headings(c.page))})"
            )
    assert not bad, "\n".join(bad)


def test_every_section_sign_outside_docs_belongs_to_a_citation() -> None:
    stray = []
    for name, text in outside_docs():
        for number, line in enumerate(text.splitlines(), start=1):
            if "§" not in line:
                continue
            _, used = parse(f"{name}:{number}", line)
            if any(i not in used for i, ch in enumerate(line) if ch == "§"):
                stray.append(f"{name}:{number}: {line.strip()}")
    assert not stray, "a § outside docs/ must be part of docs/<page>.md §<heading>:\n" + (
        "\n".join(stray)
    )


def test_every_mentioned_page_exists() -> None:
    missing = sorted(
        f"{name}:{number}: docs/{page.group(1)}"
        for name, text in texts()
        for number, line in enumerate(text.splitlines(), start=1)
        for page in PAGE.finditer(line)
        if page.group(1) not in PENDING and not (DOCS / page.group(1)).is_file()
    )
    assert not missing, "\n".join(missing)


def test_headings_are_unique_within_a_page() -> None:
    for page in sorted(p.name for p in DOCS.glob("*.md")):
        names = headings(page)
        repeated = sorted({h for h in names if names.count(h) > 1})
        assert not repeated, f"docs/{page} repeats headings {repeated}: ambiguous citations"


def test_the_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = set(LINK.findall(index)) | {"README.md"}
    unlisted = sorted(p.name for p in DOCS.glob("*.md") if p.name not in linked)
    assert not unlisted, f"docs/README.md does not list {unlisted}"


def test_links_between_pages_reach_a_page_and_a_heading() -> None:
    bad = []
    for page in sorted(DOCS.glob("*.md")):
        fenced = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            if fenced:
                continue
            for target in LINK.findall(line):
                if "://" in target or target.startswith("mailto:"):
                    continue
                name, _, anchor = target.partition("#")
                name = name or page.name
                where = f"docs/{page.name}:{number}: {target}"
                if not (DOCS / name).is_file():
                    if name not in PENDING:
                        bad.append(f"{where}: no such page")
                elif anchor and anchor not in {slug(h) for h in headings(name)}:
                    bad.append(f"{where}: no such heading")
    assert not bad, "\n".join(bad)
