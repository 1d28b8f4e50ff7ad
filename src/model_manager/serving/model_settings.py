"""Per-model settings: the prediction log's sample rate, the canary guard, dynamic batching, the
model's owner and who is notified of what (``notify`` targets: webhook URLs with their events).

Stored in the registry (``PATCH /api/models/{name}/settings``); the server keeps a copy in memory,
refreshed every few seconds, so the hot path reads a dict and several replicas converge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from model_manager.errors import InvalidInput
from model_manager.registry import Registry
from model_manager.serving.batching import BatchPolicy
from model_manager.telemetry import WindowStats


@dataclasses.dataclass(frozen=True)
class RollbackGuard:
    """Thresholds a canary route must keep once it has served ``min_requests``."""

    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    min_requests: int = 200

    def breach(self, stats: WindowStats) -> str | None:
        """Why these stats break the guard, or None."""
        if stats.judged_requests < self.min_requests:
            return None
        if self.max_error_rate is not None and stats.error_rate > self.max_error_rate:
            return (f"error rate {stats.error_rate:.3f} over {stats.judged_requests} requests is above "
                    f"{self.max_error_rate:g}")
        if self.max_p99_ms is not None and stats.p99 is not None \
                and stats.p99 * 1000 > self.max_p99_ms:
            return (f"p99 {stats.p99 * 1000:.1f} ms over {stats.judged_requests} requests is above "
                    f"{self.max_p99_ms:g} ms")
        return None

    @classmethod
    def from_json(cls, data: Any) -> RollbackGuard:
        if not isinstance(data, dict) or not data.keys() <= {"max_error_rate", "max_p99_ms",
                                                            "min_requests"}:
            raise InvalidInput('auto_rollback is {"max_error_rate": 0.05, "max_p99_ms": 250, '
                               '"min_requests": 200} (any of them), or null')
        min_requests = data.get("min_requests", 200)
        if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 0:
            raise InvalidInput(f"min_requests is a non-negative integer, got {min_requests!r}")
        guard = cls(_number(data, "max_error_rate"), _number(data, "max_p99_ms"), min_requests)
        if guard.max_error_rate is None and guard.max_p99_ms is None:
            raise InvalidInput("auto_rollback needs max_error_rate or max_p99_ms")
        return guard


NOTIFY_EVENTS = ("unhealthy", "degraded", "recovered", "auto_rollback", "drift", "load_failed",
                 "crashed", "cleanup_planned", "archived")
"""What a model's owners can be told of (``notify test`` sends a ``test`` event to every target)."""


@dataclasses.dataclass(frozen=True)
class NotifyTarget:
    """A webhook: a JSON POST per event it wants, signed with HMAC-SHA256 when it has a secret."""

    url: str
    events: tuple[str, ...] = NOTIFY_EVENTS
    secret: str | None = None

    def to_json(self, reveal: bool = False) -> dict[str, Any]:
        """``reveal``: with the secret itself (for the registry), else whether there is one."""
        secret: str | bool | None = self.secret if reveal else self.secret is not None
        return {"url": self.url, "events": list(self.events), "secret": secret}

    @classmethod
    def from_json(cls, data: Any, kept: Mapping[str, NotifyTarget]) -> NotifyTarget:
        """One target as given; ``"secret": true`` keeps the secret ``kept`` has for its URL
        (what GET shows in its place)."""
        if not isinstance(data, Mapping) or not data.keys() <= {"url", "events", "secret"}:
            raise InvalidInput('a notify target is {"url": "https://...", "events": [...], '
                               '"secret": "..."} (events and secret optional)')
        url = data.get("url")
        if not isinstance(url, str) or len(url) > 2048 or urlsplit(url).scheme not in (
                "http", "https") or not urlsplit(url).hostname:
            raise InvalidInput(f"a notify target's url is an http(s) URL, got {url!r}"[:300])
        events = data.get("events", list(NOTIFY_EVENTS))
        if not isinstance(events, list) or not events or \
                not all(isinstance(e, str) and e in NOTIFY_EVENTS for e in events):
            raise InvalidInput(f"a notify target's events are a list of {', '.join(NOTIFY_EVENTS)}; "
                               f"got {events!r}")
        secret = data.get("secret")
        if secret is True:
            secret = kept[url].secret if url in kept else None
        elif secret is False:
            secret = None
        elif secret is not None and (not isinstance(secret, str) or not secret):
            raise InvalidInput("a notify target's secret is a non-empty string, or null")
        return cls(str(url), tuple(dict.fromkeys(events)), secret)


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    prediction_log_rate: float
    """Share of requests whose predictions are logged for outcome joins."""
    auto_rollback: RollbackGuard | None = None
    batching: BatchPolicy | None = None
    """Dynamic batching for the model's versions (a version's ``batching`` metadata wins)."""
    owner: str | None = None
    """The team or person who answers for the model (free text)."""
    notify: tuple[NotifyTarget, ...] = ()
    drift_psi: float = 0.2
    """A column drifts when its population stability index passes this..."""
    drift_ks: float | None = None
    """...or its Kolmogorov-Smirnov statistic passes this (when set)."""

    def to_json(self, reveal: bool = False) -> dict[str, Any]:
        """``reveal``: with the notify targets' secrets (for the registry, never for an API)."""
        guard = self.auto_rollback
        return {"prediction_log_rate": self.prediction_log_rate,
                "auto_rollback": None if guard is None else dataclasses.asdict(guard),
                "batching": None if self.batching is None else self.batching.to_json(),
                "owner": self.owner, "notify": [t.to_json(reveal) for t in self.notify],
                "drift_psi": self.drift_psi, "drift_ks": self.drift_ks}

    def targets_for(self, event: str) -> list[NotifyTarget]:
        return [t for t in self.notify if event == "test" or event in t.events]

    def updated(self, changes: Mapping[str, Any]) -> ModelSettings:
        """These settings with ``changes`` applied (a partial update), checked."""
        unknown = changes.keys() - {"prediction_log_rate", "auto_rollback", "batching", "owner",
                                    "notify", "drift_psi", "drift_ks"}
        if unknown:
            raise InvalidInput(f"unknown settings {sorted(unknown)}; the settings are "
                               f"prediction_log_rate, auto_rollback, batching, owner, notify, "
                               f"drift_psi and drift_ks")
        settings = self
        if "drift_psi" in changes:
            value = _number(changes, "drift_psi")
            if value is None or value <= 0:
                raise InvalidInput("drift_psi is a positive number (0.2: a notable shift)")
            settings = dataclasses.replace(settings, drift_psi=value)
        if "drift_ks" in changes:
            value = _number(changes, "drift_ks")
            if value is not None and not 0 < value <= 1:
                raise InvalidInput("drift_ks is a number in (0, 1], or null")
            settings = dataclasses.replace(settings, drift_ks=value)
        if "owner" in changes:
            owner = changes["owner"]
            if owner is not None and (not isinstance(owner, str) or len(owner) > 200):
                raise InvalidInput("owner is a team or person's name (at most 200 characters), "
                                   "or null")
            settings = dataclasses.replace(settings, owner=owner or None)
        if "notify" in changes:
            raw = changes["notify"]
            if raw is None:
                raw = []
            if not isinstance(raw, list) or len(raw) > 20:
                raise InvalidInput("notify is a list of at most 20 targets, or null")
            kept = {t.url: t for t in self.notify}
            targets = tuple(NotifyTarget.from_json(item, kept) for item in raw)
            settings = dataclasses.replace(settings, notify=targets)
        if "prediction_log_rate" in changes:
            rate = _number(changes, "prediction_log_rate")
            if rate is None or not 0 <= rate <= 1:
                raise InvalidInput("prediction_log_rate is a number between 0 and 1")
            settings = dataclasses.replace(settings, prediction_log_rate=rate)
        if "auto_rollback" in changes:
            raw = changes["auto_rollback"]
            guard = None if raw is None else RollbackGuard.from_json(raw)
            settings = dataclasses.replace(settings, auto_rollback=guard)
        if "batching" in changes:
            raw = changes["batching"]
            batching = None if raw is None else BatchPolicy.from_json(raw)
            settings = dataclasses.replace(settings, batching=batching)
        return settings


class SettingsCache:
    """Every model's settings in memory; models without stored settings get the defaults."""

    def __init__(self, registry: Registry, default_log_rate: float) -> None:
        self._registry = registry
        self.defaults = ModelSettings(default_log_rate)
        self._by_model: dict[str, ModelSettings] = {}

    def get(self, name: str) -> ModelSettings:
        return self._by_model.get(name, self.defaults)

    def notified(self) -> list[str]:
        """The models with notify targets."""
        return [name for name, s in self._by_model.items() if s.notify]

    def guarded(self) -> dict[str, RollbackGuard]:
        """The models with an auto-rollback guard."""
        return {name: s.auto_rollback for name, s in self._by_model.items() if s.auto_rollback}

    def refresh(self) -> None:
        """Re-read every model's settings (blocking: call from a thread)."""
        stored = self._registry.all_settings()
        self._by_model = {name: self.defaults.updated(data) for name, data in stored.items()}

    def update(self, name: str, changes: Mapping[str, Any], actor: str | None = None
               ) -> ModelSettings:
        """Apply a partial update, store it and use it now (blocking: call from a thread)."""
        self._registry.get_model(name)  # 404 for an unknown model
        settings = self._with_stored(name).updated(changes)
        self._registry.set_settings(name, settings.to_json(reveal=True), actor)
        self._by_model[name] = settings
        return settings

    def _with_stored(self, name: str) -> ModelSettings:
        return self.defaults.updated(self._registry.get_settings(name))


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidInput(f"{key} is a non-negative number, got {value!r}")
    return float(value)
