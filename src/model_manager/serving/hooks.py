"""What the model cache reports as it works: loads, failed loads and unloads (with why)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

from model_manager.types import VersionKey as Key

__all__ = ["CacheHooks", "HookFanout", "NoHooks", "UnloadReason"]


class UnloadReason(enum.StrEnum):
    EVICTED = "evicted"
    IDLE = "idle"
    REQUESTED = "requested"
    CRASHED = "crashed"


class CacheHooks(Protocol):
    def on_load(self, key: Key, size: int, seconds: float) -> None: ...
    def on_load_failure(self, key: Key, reason: str) -> None: ...
    def on_unload(self, key: Key, reason: str) -> None:
        """``reason`` is an ``UnloadReason`` value."""
        ...

    def on_crash(self, key: Key, reason: str) -> None:
        """The process serving the version died (``reason``: "crashed: SIGSEGV during predict")."""
        ...


class HookFanout:
    """Several hooks as one: each event goes to each, in order."""

    def __init__(self, hooks: Sequence[CacheHooks]) -> None:
        self._hooks = hooks

    def on_load(self, key: Key, size: int, seconds: float) -> None:
        for hook in self._hooks:
            hook.on_load(key, size, seconds)

    def on_load_failure(self, key: Key, reason: str) -> None:
        for hook in self._hooks:
            hook.on_load_failure(key, reason)

    def on_unload(self, key: Key, reason: str) -> None:
        for hook in self._hooks:
            hook.on_unload(key, reason)

    def on_crash(self, key: Key, reason: str) -> None:
        for hook in self._hooks:
            hook.on_crash(key, reason)


class NoHooks:
    def on_load(self, key: Key, size: int, seconds: float) -> None:
        pass

    def on_load_failure(self, key: Key, reason: str) -> None:
        pass

    def on_unload(self, key: Key, reason: str) -> None:
        pass

    def on_crash(self, key: Key, reason: str) -> None:
        pass
