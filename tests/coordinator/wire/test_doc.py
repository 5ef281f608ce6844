"""docs/link-protocol.md is the table rendered: regenerated here and compared."""

from __future__ import annotations

from pathlib import Path

from coordinator import wire
from coordinator.wire.doc import REGENERATE, render

PAGE = Path(__file__).resolve().parents[3] / "docs" / "link-protocol.md"


def test_the_committed_page_is_the_rendered_table() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        f"docs/link-protocol.md is out of date with the link's table; regenerate it with\n"
        f"    {REGENERATE}\nand commit the result."
    )


def test_the_page_names_every_method_with_its_direction_and_timeout() -> None:
    page = render()
    for row in wire.TABLE.values():
        timeout = "—" if row.timeout is None else f"{row.timeout:g} s"
        assert f"| [`{row}`](#{row}) | {row.direction} | {timeout} |" in page
        assert f"\n### {row}\n" in page
