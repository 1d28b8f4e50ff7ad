"""TrafficPolicy: weighted, sticky routing and shadow sampling, pure and deterministic."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from model_manager.errors import InvalidInput
from model_manager.serving.traffic import TrafficPolicy

CANARY = {"routes": [{"version": 3, "weight": 90}, {"version": 4, "weight": 10}],
          "shadows": [{"version": 5, "sample_rate": 0.5}]}


def test_keyed_split_is_within_two_points_of_the_weights() -> None:
    policy = TrafficPolicy.from_json(CANARY)
    shares = Counter(policy.choose(f"user-{i}") for i in range(10_000))
    assert abs(shares[3] / 100 - 90) <= 2
    assert abs(shares[4] / 100 - 10) <= 2


def test_a_key_always_lands_on_the_same_version() -> None:
    policy = TrafficPolicy.from_json(CANARY)
    for key in ("alice", "bob", "42"):
        assert len({policy.choose(key) for _ in range(50)}) == 1


def test_unkeyed_requests_split_at_random_by_weight() -> None:
    policy = TrafficPolicy.from_json(CANARY)
    rng = random.Random(1)
    shares = Counter(policy.choose(None, rng) for _ in range(10_000))
    assert abs(shares[4] / 100 - 10) <= 2


def test_shadows_are_sampled_at_their_rate() -> None:
    policy = TrafficPolicy.from_json(CANARY)
    rng = random.Random(2)
    sampled = sum(policy.sampled_shadows(rng) == [5] for _ in range(10_000))
    assert abs(sampled / 100 - 50) <= 2


def test_round_trip_and_default_sticky_key() -> None:
    policy = TrafficPolicy.from_json(CANARY)
    assert TrafficPolicy.from_json(policy.to_json()) == policy
    assert policy.sticky_key == "routing_key"
    assert policy.versions() == {3, 4, 5}


@pytest.mark.parametrize(("policy", "message"), [
    ({"routes": []}, "at least one route"),
    ({"routes": [{"version": 1, "weight": 60}, {"version": 2, "weight": 30}]}, "summing to 100"),
    ({"routes": [{"version": 1, "weight": 50.5}, {"version": 2, "weight": 49.5}]}, "not an integer"),
    ({"routes": [{"version": 1, "weight": 100}], "shadows": [{"version": 1}]}, "appears once"),
    ({"routes": [{"version": 1, "weight": 100}], "shadows": [{"version": 2, "sample_rate": 2}]},
     "between 0 and 1"),
    ({"routes": [{"weight": 100}]}, "a traffic policy is"),
])
def test_invalid_policies_are_refused(policy: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        TrafficPolicy.from_json(policy)
