"""List answers written in chunks are byte for byte the answer written at once, and give
other tasks a turn between chunks."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, strategies as st

from coordinator import boruta_json as bj
from coordinator.api import chunks

items = st.lists(
    st.fixed_dictionaries(
        {"ID": st.integers(0, 10**6), "Caps": st.dictionaries(st.text(), st.text())}
    ),
    max_size=3 * chunks.CHUNK + 7,
)


@given(items)
def test_chunked_bytes_are_the_bytes_at_once(found: list[dict[str, object]]) -> None:
    async def main() -> bytes:
        return await chunks.json_list(found, dict)

    assert anyio.run(main) == bj.answer_bytes(found)


@pytest.mark.anyio
async def test_other_tasks_run_between_chunks() -> None:
    turns: list[str] = []
    many = list(range(3 * chunks.CHUNK))

    def to_json(n: int) -> object:
        if n % chunks.CHUNK == 0:
            turns.append("chunk")
        return n

    async def other() -> None:
        for _ in range(3):
            turns.append("other")
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await anyio.lowlevel.checkpoint()
        assert await chunks.json_list(many, to_json) == bj.answer_bytes(many)
    assert turns.index("other") < turns.index("chunk", 1)  # not all chunks in one step
    assert turns.count("chunk") == 3


def test_text_that_is_not_utf8_is_scrubbed_in_any_chunk_as_at_once() -> None:
    bad: list[dict[str, object]] = [{"ID": n, "Name": "ok"} for n in range(chunks.CHUNK + 1)]
    bad[-1]["Name"] = "\udc80"  # stored by an old version

    async def main() -> bytes:
        return await chunks.json_list(bad, dict)

    answer = anyio.run(main)
    assert answer == bj.answer_bytes(bad)
    assert answer.endswith('"Name":"\ufffd"}]'.encode())
