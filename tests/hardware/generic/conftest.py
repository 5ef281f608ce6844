"""Fixtures for the generic board's tests: mock pins and simulated settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from hardware.generic.config import GenericSettings, parse


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pins = MockFactory()
    yield pins
    pins.close()


def simulated(**table: Any) -> GenericSettings:
    """Parsed ``[generic]`` settings with ``simulate = true`` and the given tables."""
    return parse({"simulate": True, **table})


def recorder(path: Path, word: str) -> list[str]:
    """A power command (argv, no shell) that appends *word* to *path*."""
    return ["sh", "-c", f'echo {word} >> "$0"', str(path)]
