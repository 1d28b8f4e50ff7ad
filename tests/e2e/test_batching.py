"""Dynamic batching through the real server: every caller gets exactly its rows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.onnx_models import linear_model
from tests.support import ServerProcess, push

WEIGHTS = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)


def batch_metric(server: ServerProcess, model: str, suffix: str, le: str | None = None) -> float:
    """The model's batch-rows histogram: ``count``, ``sum``, or the ``bucket`` of batches of at
    most ``le`` rows. Only stacked batches (two requests or more) are counted."""
    text = httpx.get(f"{server.url}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == f"model_manager_batch_rows_{suffix}" and s.labels["model"] == model
               and s.labels.get("le") == le)


async def many_requests(url: str, model: str, n: int) -> list[tuple[np.ndarray, dict[str, object]]]:
    rng = np.random.default_rng(11)
    bodies = [rng.normal(size=(int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(n)]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        answers = await asyncio.gather(*(client.post(f"/v2/models/{model}/infer", json={"inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]})
            for x in bodies))
    assert {a.status_code for a in answers} == {200}
    return [(x, a.json()) for x, a in zip(bodies, answers, strict=True)]


def assert_own_rows(results: list[tuple[np.ndarray, dict[str, object]]]) -> None:
    for x, answer in results:
        output = answer["outputs"][0]  # type: ignore[index]
        assert output["shape"] == [x.shape[0], 4]
        np.testing.assert_allclose(np.array(output["data"]).reshape(-1, 4), x @ WEIGHTS, rtol=1e-5,
                                   atol=1e-5)


def test_batched_answers_equal_unbatched_ones_row_for_row(server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push(client, "stacked", linear_model(tmp_path / "m.onnx", WEIGHTS))
        unbatched = asyncio.run(many_requests(server.url, "stacked", 48))
        assert batch_metric(server, "stacked", "count") == 0
        on = client.patch("/api/models/stacked/settings",
                          json={"batching": {"max_batch_size": 16, "max_queue_delay_us": 200_000}})
        assert on.json()["batching"] == {"max_batch_size": 16, "max_queue_delay_us": 200_000}
    batched = asyncio.run(many_requests(server.url, "stacked", 48))
    assert_own_rows(unbatched)
    assert_own_rows(batched)
    for (_, a), (_, b) in zip(unbatched, batched, strict=True):
        assert a["outputs"] == b["outputs"]  # type: ignore[index]
    batches, rows = batch_metric(server, "stacked", "count"), batch_metric(server, "stacked", "sum")
    assert 0 < batches < 48 and rows > batches  # requests were stacked
    assert rows / batches <= 16


def test_batching_set_in_a_versions_metadata(server: ServerProcess, tmp_path: Path) -> None:
    metadata = json.dumps({"batching": {"max_batch_size": 8, "max_queue_delay_us": 200_000}})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push(client, "per-version", linear_model(tmp_path / "m.onnx", WEIGHTS), metadata=metadata)
        bad = push(client, "per-version", linear_model(tmp_path / "m.onnx", WEIGHTS),
                   metadata=json.dumps({"batching": {"max_batch_size": -1}}))
    assert bad.status_code == 400 and "max_batch_size" in bad.json()["error"]
    assert_own_rows(asyncio.run(many_requests(server.url, "per-version", 24)))
    batches = batch_metric(server, "per-version", "count")
    assert batches > 0  # requests were combined
    assert batch_metric(server, "per-version", "bucket", le="8.0") == batches  # none past 8 rows
    assert batch_metric(server, "per-version", "bucket", le="4.0") < batches  # and 8 were used
