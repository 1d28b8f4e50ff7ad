"""Sizes in bytes as people read them."""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int) -> str:
    """``size`` bytes in binary units with one decimal: ``"512 B"``, ``"14.2 MiB"``, ``"1.5 GiB"``."""
    if abs(size) < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if round(abs(value), 1) < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"
