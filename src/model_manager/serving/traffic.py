"""``TrafficPolicy``: weighted routes among versions (canary), a sticky routing key, shadows.

Pure and deterministic: the same routing key always lands on the same version (its SHA-256,
taken modulo 100, falls in one route's share of the weights); without a key the split is
random by weight. Shadows receive a copy of a request with their sample rate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Mapping
from typing import Any

from model_manager.errors import InvalidInput

DEFAULT_STICKY_KEY = "routing_key"


@dataclasses.dataclass(frozen=True)
class Route:
    version: int
    weight: int


@dataclasses.dataclass(frozen=True)
class Shadow:
    version: int
    sample_rate: float


@dataclasses.dataclass(frozen=True)
class TrafficPolicy:
    routes: tuple[Route, ...]
    shadows: tuple[Shadow, ...] = ()
    sticky_key: str = DEFAULT_STICKY_KEY
    """The v2 request parameter that carries the routing key (``X-Routing-Key`` works too)."""

    def choose(self, key: str | None, rng: random.Random | None = None) -> int:
        """The version that serves a request with this routing key (None: random by weight)."""
        if key is None:
            point = (rng or random).randrange(100)
        else:
            point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100
        for route in self.routes:
            if point < route.weight:
                return route.version
            point -= route.weight
        return self.routes[-1].version

    def sampled_shadows(self, rng: random.Random | None = None) -> list[int]:
        """The shadow versions that get a copy of this request."""
        draw = rng or random
        return [s.version for s in self.shadows if draw.random() < s.sample_rate]

    def versions(self) -> set[int]:
        return {r.version for r in self.routes} | {s.version for s in self.shadows}

    def to_json(self) -> dict[str, Any]:
        return {"routes": [dataclasses.asdict(r) for r in self.routes],
                "shadows": [dataclasses.asdict(s) for s in self.shadows],
                "sticky_key": self.sticky_key}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrafficPolicy:
        """Parse and check a policy: integer weights summing to 100, each version once."""
        try:
            routes = tuple(Route(_int(r["version"]), _int(r["weight"]))
                           for r in data.get("routes", []))
            shadows = tuple(Shadow(_int(s["version"]), float(s.get("sample_rate", 1.0)))
                            for s in data.get("shadows", []))
            sticky = str(data.get("sticky_key") or DEFAULT_STICKY_KEY)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"a traffic policy is {{'routes': [{{'version', 'weight'}}], "
                               f"'shadows': [{{'version', 'sample_rate'}}], 'sticky_key'}}: {exc}"
                               ) from exc
        _check(routes, shadows)
        return cls(routes, shadows, sticky)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _check(routes: tuple[Route, ...], shadows: tuple[Shadow, ...]) -> None:
    if not routes:
        raise InvalidInput("a traffic policy needs at least one route")
    if any(r.weight < 0 for r in routes) or sum(r.weight for r in routes) != 100:
        raise InvalidInput(f"route weights are non-negative integers summing to 100, got "
                           f"{[r.weight for r in routes]}")
    numbers = [r.version for r in routes] + [s.version for s in shadows]
    if len(numbers) != len(set(numbers)):
        raise InvalidInput("each version appears once among routes and shadows")
    if any(not 0 <= s.sample_rate <= 1 for s in shadows):
        raise InvalidInput("shadow sample rates are between 0 and 1")
