"""The policy an auto-rollback sets: the canary's weight moved to production."""

from __future__ import annotations

from typing import Any

from model_manager.serving.guard import _without
from model_manager.serving.traffic import Route, TrafficPolicy


def rolled_back(spec: dict[str, Any], canary: int, production: int) -> dict[str, Any]:
    policy = TrafficPolicy.from_json(spec)
    weight = next(r.weight for r in policy.routes if r.version == canary)
    result = _without(policy, Route(canary, weight), production)
    TrafficPolicy.from_json(result)  # the lifecycle sets it: it must be a valid policy
    return result


def test_canary_weight_moves_to_production() -> None:
    spec = {"routes": [{"version": 3, "weight": 90}, {"version": 4, "weight": 10}]}

    result = rolled_back(spec, canary=4, production=3)

    assert result["routes"] == [{"version": 3, "weight": 100}, {"version": 4, "weight": 0}]


def test_other_routes_keep_their_weight() -> None:
    spec = {"routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 30},
                       {"version": 3, "weight": 20}]}

    result = rolled_back(spec, canary=3, production=1)

    assert result["routes"] == [{"version": 2, "weight": 30}, {"version": 1, "weight": 70},
                                {"version": 3, "weight": 0}]


def test_production_becomes_a_route_when_it_had_none() -> None:
    spec = {"routes": [{"version": 5, "weight": 80}, {"version": 6, "weight": 20}]}

    result = rolled_back(spec, canary=6, production=2)

    assert result["routes"] == [{"version": 5, "weight": 80}, {"version": 2, "weight": 20},
                                {"version": 6, "weight": 0}]


def test_production_leaves_the_shadows_when_it_takes_traffic() -> None:
    spec = {"routes": [{"version": 5, "weight": 100}],
            "shadows": [{"version": 2, "sample_rate": 0.5}, {"version": 7, "sample_rate": 0.1}]}

    result = rolled_back(spec, canary=5, production=2)

    assert result["routes"] == [{"version": 2, "weight": 100}, {"version": 5, "weight": 0}]
    assert result["shadows"] == [{"version": 7, "sample_rate": 0.1}]


def test_shadows_and_sticky_key_are_kept() -> None:
    spec = {"routes": [{"version": 3, "weight": 75}, {"version": 4, "weight": 25}],
            "shadows": [{"version": 8, "sample_rate": 0.2}], "sticky_key": "user"}

    result = rolled_back(spec, canary=4, production=3)

    assert result["shadows"] == [{"version": 8, "sample_rate": 0.2}]
    assert result["sticky_key"] == "user"
