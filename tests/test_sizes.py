"""Sizes as people read them: binary units, one decimal."""

from __future__ import annotations

import pytest

from model_manager.sizes import human_size


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (int(14.2 * 1024**2), "14.2 MiB"),
    (25 * 1024**2, "25.0 MiB"), (int(1.5 * 1024**3), "1.5 GiB"), (1024**2 - 1, "1.0 MiB"),
    (3 * 1024**4, "3.0 TiB"),
])
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown
